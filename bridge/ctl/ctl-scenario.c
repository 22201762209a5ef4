/* SPDX-License-Identifier: MIT */
/*
 * vgbctl scenario: plays what a Linux 6.1 guest's virtio-gpu driver sends for a dumb
 * framebuffer (drivers/gpu/drm/virtio with blob resources), against a running vgbridged:
 *
 *   GET_DISPLAY_INFO
 *   RESOURCE_CREATE_BLOB (BLOB_MEM_GUEST, USE_SHAREABLE, the entries inline): the shmem pages
 *     of the dumb buffer, one entry per physically contiguous run, scattered in guest memory
 *   per frame: the guest draws into its pages, then
 *     TRANSFER_TO_HOST_2D (a no-op for blobs)
 *     SET_SCANOUT_BLOB (first frame only: the framebuffer does not change afterwards)
 *     RESOURCE_FLUSH with a fence, waited for (the guest waits at most 50 ms)
 *   RESOURCE_UNREF
 *
 * Guest memory is a RAM memfd window (--memory ram), a window on the daemon's virtual
 * device's BAR2 (--memory bar), or both, alternating runs (--memory mixed).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ctl-bridge.h"
#include "guest.h"
#include "vgb/util.h"

#define RAM_GPA 0x0ull
#define BAR_GPA 0x100000000ull /* 4 GiB: where a VMM would put a 64-bit BAR */
#define PAGE VGB_PAGE_SIZE
#define RUN_SLOT_PAGES 16u

struct run {
	uint64_t gpa;
	uint64_t fb_off; /* offset inside the framebuffer */
	uint64_t len;
	uint8_t *host;   /* where the guest writes it (our mapping of the memory) */
};

struct space {
	uint64_t gpa, size;
	uint8_t *map;
	uint64_t next_slot;
	uint64_t *slots; /* shuffled slot indices */
	uint64_t n_slots;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so runs are reproducible. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static int space_init(struct space *s, uint64_t gpa, uint64_t size, uint8_t *map)
{
	s->gpa = gpa;
	s->size = size;
	s->map = map;
	s->n_slots = size / (RUN_SLOT_PAGES * PAGE);
	s->next_slot = 0;
	s->slots = calloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slots));
	if (!s->slots)
		return -ENOMEM;
	for (uint64_t i = 0; i < s->n_slots; i++)
		s->slots[i] = i;
	for (uint64_t i = s->n_slots; i > 1; i--) {
		uint64_t j = rng() % i, t = s->slots[i - 1];
		s->slots[i - 1] = s->slots[j];
		s->slots[j] = t;
	}
	return 0;
}

/*
 * Places the framebuffer's pages as runs of 1..16 pages in random slots of the spaces
 * (alternating when there are two). About one run in four continues right after the previous
 * one, as when the guest's segment size cap splits a contiguous range: the bridge merges those.
 */
static int place_runs(struct space *spaces, unsigned n_spaces, uint64_t fb_size,
		      struct run **ret, uint32_t *ret_n)
{
	uint64_t max_runs = fb_size / PAGE + 1, off = 0;
	struct run *runs = calloc(max_runs, sizeof(*runs));
	uint32_t n = 0;

	if (!runs)
		return -ENOMEM;
	while (off < fb_size) {
		struct space *s = &spaces[n % n_spaces];
		uint64_t pages = 1 + rng() % RUN_SLOT_PAGES, len, base;

		len = VGB_MIN(pages * PAGE, fb_size - off);
		uint64_t slot = RUN_SLOT_PAGES * PAGE;
		if (n_spaces == 1 && n > 0 && (rng() % 4) == 0 &&
		    (runs[n - 1].gpa - s->gpa) % slot + runs[n - 1].len + len <= slot) {
			/* touching the previous run, inside the same slot */
			base = runs[n - 1].gpa + runs[n - 1].len;
		} else {
			if (s->next_slot >= s->n_slots) {
				free(runs);
				return -ENOSPC;
			}
			base = s->gpa + s->slots[s->next_slot++] * RUN_SLOT_PAGES * PAGE;
		}
		runs[n].gpa = base;
		runs[n].fb_off = off;
		runs[n].len = len;
		runs[n].host = s->map + (base - s->gpa);
		off += len;
		n++;
	}
	*ret = runs;
	*ret_n = n;
	return 0;
}

/* The guest draws frame @f: a moving gradient with a bar sweeping across (XRGB8888). */
static void draw(const struct run *runs, uint32_t n, uint32_t w, uint32_t h, uint32_t f,
		 uint32_t *frame)
{
	uint32_t bar = (f * 8) % w;

	for (uint32_t y = 0; y < h; y++) {
		uint32_t *row = frame + (size_t)y * w;
		for (uint32_t x = 0; x < w; x++) {
			uint32_t r = (x + f * 4) & 0xff, g = (y + f * 2) & 0xff, b = (x ^ y) & 0xff;
			if (x >= bar && x < bar + 32)
				r = g = b = 0xff;
			row[x] = 0xff000000u | r << 16 | g << 8 | b;
		}
	}
	for (uint32_t i = 0; i < n; i++)
		memcpy(runs[i].host, (const uint8_t *)frame + runs[i].fb_off, runs[i].len);
}

/* CRC-32 (IEEE, zlib's crc32()) of @len bytes, so a frame can be matched with what a capture
 * sink recorded (its frames.txt). */
static uint32_t crc32_of(const void *data, size_t len)
{
	static uint32_t table[256];
	const uint8_t *p = data;
	uint32_t crc = 0xffffffffu;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
	for (size_t i = 0; i < len; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffffu;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Sends one command; returns the response type or a negative errno. */
static int64_t cmd(struct vgb_client *c, const void *buf, size_t len)
{
	uint8_t resp[512];
	size_t rlen = 0;
	int r;

	if (!len)
		return -EMSGSIZE;
	r = vgb_client_gpu_cmd(c, VGB_GPU_QUEUE_CONTROL, buf, len, resp, sizeof(resp), &rlen);
	if (r < 0)
		return r;
	return vgb_guest_resp_type(resp, rlen);
}

static int check(const char *what, int64_t r, uint32_t want)
{
	if (r < 0) {
		fprintf(stderr, "scenario: %s: %s\n", what, strerror((int)-r));
		return -1;
	}
	if ((uint32_t)r != want) {
		fprintf(stderr, "scenario: %s: %s (expected %s)\n", what,
			vgb_guest_resp_name((uint32_t)r), vgb_guest_resp_name(want));
		return -1;
	}
	return 0;
}

static void usage(void)
{
	printf("Usage: vgbctl scenario [OPTIONS]\n"
	       "Plays a Linux 6.1 guest showing a dumb framebuffer through blob resources.\n"
	       "  --socket PATH        vgbridged's socket\n"
	       "  --width N, --height N  framebuffer size (default 1280x800)\n"
	       "  --frames N           frames to flush (default 120)\n"
	       "  --interval-ms N      pace frames N ms apart (default 16; 0: as fast as possible)\n"
	       "  --memory ram|bar|mixed  where the pages live (default ram; bar and mixed need\n"
	       "                       vgbridged --virtual-device)\n"
	       "  --device N           daemon device id for bar/mixed (default 1)\n"
	       "  --quiet              one line every 30 frames instead of every frame\n");
}

int vgb_ctl_scenario(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "width", required_argument, NULL, 'W' },
		{ "height", required_argument, NULL, 'H' },
		{ "frames", required_argument, NULL, 'n' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "memory", required_argument, NULL, 'm' },
		{ "device", required_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char path[108];
	uint32_t w = 1280, h = 800, frames = 120, interval_ms = 16, device = 1;
	const char *memory = "ram";
	bool quiet = false, use_ram, use_bar;
	struct vgb_client *c = NULL;
	struct vgb_msg_hello_reply hello;
	struct space spaces[2];
	unsigned n_spaces = 0;
	struct run *runs = NULL;
	uint32_t n_runs = 0, *frame = NULL;
	uint8_t *ram_map = MAP_FAILED, *bar_map = MAP_FAILED;
	uint64_t ram_size = 0, bar_size = 0, fb_size;
	struct virtio_gpu_mem_entry *ents = NULL;
	uint8_t *buf = NULL;
	size_t buf_cap, n;
	int ram_fd = -1, bar_fd = -1, status = 1, o;
	int64_t r;
	double t_flush_min = 1e9, t_flush_max = 0, t_flush_sum = 0, t_t2d_sum = 0, t_draw_sum = 0;

	vgb_ctl_default_socket(path, sizeof(path));
	optind = 1;
	while ((o = getopt_long(argc, argv, "s:W:H:n:i:m:d:qh", longopts, NULL)) != -1) {
		switch (o) {
		case 's':
			snprintf(path, sizeof(path), "%s", optarg);
			break;
		case 'W':
			w = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'H':
			h = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'n':
			frames = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'i':
			interval_ms = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'm':
			memory = optarg;
			break;
		case 'd':
			device = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage();
			return 0;
		default:
			return 2;
		}
	}
	use_ram = strcmp(memory, "ram") == 0 || strcmp(memory, "mixed") == 0;
	use_bar = strcmp(memory, "bar") == 0 || strcmp(memory, "mixed") == 0;
	if ((!use_ram && !use_bar) || w < 16 || h < 16 || w > 8192 || h > 8192 || frames == 0) {
		usage();
		return 2;
	}
	fb_size = (uint64_t)w * h * 4;

	r = vgb_client_connect(path, &c);
	if (r < 0) {
		fprintf(stderr, "scenario: cannot connect to %s: %s\n", path, strerror((int)-r));
		return 1;
	}
	r = vgb_client_hello(c, &hello);
	if (r < 0) {
		fprintf(stderr, "scenario: HELLO: %s\n", strerror((int)-r));
		goto out;
	}

	/* Guest memory: one 16-page slot per run at worst (runs of one page). The memfd is
	 * sparse: only the pages the guest draws into are ever allocated. */
	if (use_ram) {
		ram_size = VGB_ALIGN_UP(fb_size * RUN_SLOT_PAGES, 1u << 20);
		ram_fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (ram_fd < 0 || ftruncate(ram_fd, (off_t)ram_size) < 0) {
			perror("scenario: memfd");
			goto out;
		}
		ram_map = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
		if (ram_map == MAP_FAILED) {
			perror("scenario: mmap");
			goto out;
		}
		r = vgb_client_add_ram(c, ram_fd, RAM_GPA, ram_size, 0);
		if (r < 0) {
			fprintf(stderr, "scenario: ADD_RAM: %s\n", strerror((int)-r));
			goto out;
		}
		if (space_init(&spaces[n_spaces++], RAM_GPA, ram_size, ram_map) < 0)
			goto out;
	}
	if (use_bar) {
		struct vgb_msg_query_device_reply q;

		if (device < 1 || device > hello.n_devices) {
			fprintf(stderr, "scenario: the daemon has no device %u (start vgbridged with "
					"--virtual-device default)\n", device);
			goto out;
		}
		r = vgb_client_query_device(c, device, 2, VGB_QUERY_REGION_FD, &q, &bar_fd);
		if (r < 0 || bar_fd < 0) {
			fprintf(stderr, "scenario: QUERY_DEVICE %u BAR2: %s\n", device,
				strerror(r < 0 ? (int)-r : ENODEV));
			goto out;
		}
		bar_size = q.region_size;
		if (bar_size < VGB_ALIGN_UP(fb_size * 2, RUN_SLOT_PAGES * PAGE)) {
			fprintf(stderr, "scenario: BAR2 of %s is %llu bytes: too small for %ux%u\n",
				q.name, (unsigned long long)bar_size, w, h);
			goto out;
		}
		bar_map = mmap(NULL, bar_size, PROT_READ | PROT_WRITE, MAP_SHARED, bar_fd, 0);
		if (bar_map == MAP_FAILED) {
			perror("scenario: mmap BAR2");
			goto out;
		}
		r = vgb_client_map_window(c, BAR_GPA, bar_size, device, 2, 0);
		if (r < 0) {
			fprintf(stderr, "scenario: MAP_VFIO_WINDOW: %s\n", strerror((int)-r));
			goto out;
		}
		if (space_init(&spaces[n_spaces++], BAR_GPA, bar_size, bar_map) < 0)
			goto out;
		printf("scenario: BAR2 of device %u (%s, caps 0x%x): %llu MiB at gpa 0x%llx\n",
		       device, q.name, q.caps, (unsigned long long)(bar_size >> 20),
		       (unsigned long long)BAR_GPA);
	}
	if (place_runs(spaces, n_spaces, fb_size, &runs, &n_runs) < 0) {
		fprintf(stderr, "scenario: cannot place %llu bytes of pages\n",
			(unsigned long long)fb_size);
		goto out;
	}
	if (n_runs > hello.max_entries) {
		fprintf(stderr, "scenario: %u entries exceed the daemon's %u\n", n_runs,
			hello.max_entries);
		goto out;
	}
	ents = calloc(n_runs, sizeof(*ents));
	frame = malloc(fb_size);
	buf_cap = sizeof(struct virtio_gpu_resource_create_blob) + n_runs * sizeof(*ents) + 512;
	buf = malloc(buf_cap);
	if (!ents || !frame || !buf)
		goto out;
	for (uint32_t i = 0; i < n_runs; i++) {
		ents[i].addr = runs[i].gpa;
		ents[i].length = (uint32_t)runs[i].len;
	}
	printf("scenario: %ux%u XRGB8888 dumb buffer, %llu KiB in %u page runs (%s memory)\n", w,
	       h, (unsigned long long)(fb_size >> 10), n_runs, memory);

	n = vgb_guest_get_display_info(buf, buf_cap);
	if (check("GET_DISPLAY_INFO", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_DISPLAY_INFO) < 0)
		goto out;
	n = vgb_guest_create_blob(buf, buf_cap, 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, fb_size, ents, n_runs);
	if (check("RESOURCE_CREATE_BLOB", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_NODATA) < 0)
		goto out;

	{
		struct vgb_msg_export_blob_reply ex;
		int efd = -1;

		r = vgb_client_export_blob(c, 1, &ex, &efd);
		if (r == 0)
			printf("scenario: EXPORT_BLOB: %s dmabuf of %llu bytes\n",
			       ex.strategy == VGB_WIRE_STRATEGY_VFIO_DMABUF ? "vfio" : "udmabuf",
			       (unsigned long long)ex.size);
		else
			printf("scenario: EXPORT_BLOB: no dmabuf (%s): the blob is shown through "
			       "its CPU view\n", strerror((int)-r));
		vgb_close(efd);
	}

	/* The daemon's display counters are global: remember where they stood so the summary
	 * speaks of this run's frames only. */
	uint64_t copies0 = 0, presented0 = 0;
	{
		struct vgb_wire_stats_global g0;
		struct vgb_wire_stats_client *rows0 = NULL;

		if (vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g0, &rows0) == 0) {
			copies0 = g0.frame_copies;
			presented0 = g0.frames_presented;
		}
		free(rows0);
	}

	for (uint32_t f = 0; f < frames; f++) {
		struct timespec t0, tf;
		double t_draw, t_t2d, t_flush;

		clock_gettime(CLOCK_MONOTONIC, &tf);
		draw(runs, n_runs, w, h, f, frame);
		t_draw = ms_since(&tf);

		clock_gettime(CLOCK_MONOTONIC, &t0);
		n = vgb_guest_transfer_2d(buf, buf_cap, 1, 0, 0, w, h, 0, 0);
		if (check("TRANSFER_TO_HOST_2D", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_NODATA) < 0)
			goto out;
		t_t2d = ms_since(&t0);
		if (f == 0) {
			n = vgb_guest_set_scanout_blob(buf, buf_cap, 0, 1, w, h,
						       VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, w * 4, 0,
						       0, 0, w, h);
			if (check("SET_SCANOUT_BLOB", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_NODATA) < 0)
				goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		n = vgb_guest_flush(buf, buf_cap, 1, 0, 0, w, h, f + 1);
		if (check("RESOURCE_FLUSH (fenced)", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_NODATA) < 0)
			goto out;
		t_flush = ms_since(&t0);

		t_flush_min = VGB_MIN(t_flush_min, t_flush);
		t_flush_max = VGB_MAX(t_flush_max, t_flush);
		t_flush_sum += t_flush;
		t_t2d_sum += t_t2d;
		t_draw_sum += t_draw;
		if (!quiet || f % 30 == 0 || f + 1 == frames)
			printf("frame %4u: guest draw %6.2f ms, T2D %6.3f ms, fenced flush %6.3f ms, "
			       "crc32=%08x\n",
			       f, t_draw, t_t2d, t_flush, crc32_of(frame, fb_size));
		if (interval_ms) {
			double left = interval_ms - ms_since(&tf);
			if (left > 0) {
				struct timespec ts = { 0, (long)(left * 1e6) };
				nanosleep(&ts, NULL);
			}
		}
	}

	{
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;
		static const char *const paths[] = { "none", "dmabuf", "egl", "shm-direct",
						     "shm-copy", "capture" };

		r = vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows);
		if (r == 0 && g.n_clients == 1) {
			const struct vgb_wire_stats_client *s = &rows[0];
			const char *strategy = s->blobs_vfio_dmabuf ? "vfio-dmabuf" :
					       s->blobs_udmabuf    ? "udmabuf" :
					       s->blobs_cpu        ? "cpu-view" : "none";
			char name[17];

			memcpy(name, g.display_name, 16);
			name[16] = 0;
			printf("summary: %u frames; strategy %s; %u entries -> %llu segments "
			       "(%llu merged away)\n",
			       frames, strategy, n_runs, (unsigned long long)s->blob_segments,
			       (unsigned long long)s->segments_merged);
			printf("summary: commands %llu, gpu errors %llu, fences %llu completed "
			       "(%llu at the deadline)\n",
			       (unsigned long long)s->gpu_commands, (unsigned long long)s->gpu_errors,
			       (unsigned long long)s->fences_completed,
			       (unsigned long long)s->fences_timed_out);
			uint64_t copies = g.frame_copies - copies0;
			uint64_t presented = g.frames_presented - presented0;

			/* Per guest flush: what the frame path costs. Per presented frame: more
			 * than one when the guest flushes faster than the compositor repaints
			 * (each flush's damage is still copied once, when it is taken). */
			printf("summary: display %s, path %s, %.2f display copies per guest flush "
			       "(%.2f per presented frame, %llu presented), %.2f bridge copies per "
			       "flush\n",
			       name, g.display_path < 6 ? paths[g.display_path] : "?",
			       frames ? (double)copies / (double)frames : 0.0,
			       presented ? (double)copies / (double)presented : 0.0,
			       (unsigned long long)presented,
			       s->frames_presented ? (double)s->copies / (double)s->frames_presented
						   : 0.0);
			printf("summary: fenced flush round trip min %.3f / avg %.3f / max %.3f ms; "
			       "T2D avg %.3f ms; guest draw avg %.2f ms; display latency p50 %.3f ms\n",
			       t_flush_min, t_flush_sum / frames, t_flush_max, t_t2d_sum / frames,
			       t_draw_sum / frames, (double)g.latency_p50_ns / 1e6);
		}
		free(rows);
	}

	n = vgb_guest_unref(buf, buf_cap, 1);
	if (check("RESOURCE_UNREF", cmd(c, buf, n), VIRTIO_GPU_RESP_OK_NODATA) < 0)
		goto out;
	status = 0;
out:
	for (unsigned i = 0; i < n_spaces; i++)
		free(spaces[i].slots);
	if (ram_map != MAP_FAILED)
		munmap(ram_map, ram_size);
	if (bar_map != MAP_FAILED)
		munmap(bar_map, bar_size);
	vgb_close(ram_fd);
	vgb_close(bar_fd);
	free(runs);
	free(ents);
	free(frame);
	free(buf);
	vgb_client_destroy(c);
	return status;
}
