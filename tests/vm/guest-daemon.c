/* SPDX-License-Identifier: MIT */
/*
 * In-guest, both kernels: the vgbridged service loop and a client, in one process, speaking the
 * wire protocol over a real AF_UNIX socket, with a real vfio-pci BAR2 window and a RAM memfd
 * window.
 *   guest-daemon --dmabuf      (a kernel with VFIO DMA_BUF and udmabuf: 7.2)
 *   guest-daemon --no-dmabuf   (a kernel without either: 6.1)
 * The expectation comes from the command line, never from what the kernel turns out to have.
 *
 * The daemon owns the lab's first device (as with --vfio BDF) and presents to a recording sink.
 * The client plays a guest: a blob of scattered, reordered BAR2 pages and one of scattered RAM
 * pages, each shown with SET_SCANOUT_BLOB and a fenced RESOURCE_FLUSH, then EXPORT_BLOB.
 * Checked: the strategy (VFIO dmabuf for the BAR blob and udmabuf for the RAM blob on 7.2, the
 * CPU view on 6.1), EXPORT_BLOB handing the dmabuf back (its size; the udmabuf's bytes) or
 * answering -EOPNOTSUPP, every byte the display was handed, STATS, nothing logged above debug,
 * and nothing leaked once the client is gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "guest.h"
#include "lab.h"
#include "leak.h"
#include "logcap.h"
#include "record-sink.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE
#define RAM_GPA 0x40000000ull
#define RAM_PAGES 4096ull /* 16 MiB */
#define RAM_SEED 0x5eedf00du
#define BAR_GPA 0x100000000ull
#define WIDTH 128u /* 16 pages = 128 x 128 XRGB8888 */
#define HEIGHT 128u

struct piece {
	uint64_t gpa, len;
};

static struct vm_lab_device lab[VM_LAB_MAX_DEVICES];
static struct vgb_server *srv;
static struct record_sink *sink;

/* Whether @len bytes at @view are the pieces' bytes, in order, from their sources. */
static bool bytes_ok(const uint8_t *view, const struct piece *p, size_t n)
{
	uint64_t pos = 0;
	bool ok = true;

	for (size_t k = 0; k < n; k++) {
		bool bar = p[k].gpa >= BAR_GPA;
		uint64_t off = p[k].gpa - (bar ? BAR_GPA : RAM_GPA);

		ok = vm_lab_pattern_ok(view + pos, off, p[k].len, bar ? lab[0].seed : RAM_SEED) &&
		     ok;
		pos += p[k].len;
	}
	return ok;
}

static int64_t gpu(struct vgb_client *c, const void *cmd, size_t len)
{
	uint8_t resp[512];
	size_t rlen = 0;
	int r = vgb_client_gpu_cmd(c, VGB_GPU_QUEUE_CONTROL, cmd, len, resp, sizeof(resp), &rlen);

	return r < 0 ? (int64_t)r : (int64_t)vgb_guest_resp_type(resp, rlen);
}

/* Shows blob @res made of @p and checks the display's bytes and EXPORT_BLOB. */
static void check_blob(struct vgb_client *c, const char *what, uint32_t res,
		       const struct piece *p, size_t n, bool want_dmabuf,
		       enum vgb_wire_strategy want_strategy)
{
	struct virtio_gpu_mem_entry ents[16];
	struct vgb_msg_export_blob_reply ex;
	uint8_t cmd[1024];
	uint64_t total = 0;
	unsigned before = sink->n_frames;
	int efd = -1, r;
	size_t len;

	for (size_t k = 0; k < n; k++) {
		ents[k] = (struct virtio_gpu_mem_entry){ .addr = p[k].gpa, .length = (uint32_t)p[k].len };
		total += p[k].len;
	}
	if (total != (uint64_t)WIDTH * HEIGHT * 4)
		tap_bail("%s: pieces must make %ux%u pixels", what, WIDTH, HEIGHT);

	len = vgb_guest_create_blob(cmd, sizeof(cmd), res, VIRTIO_GPU_BLOB_MEM_GUEST,
				    VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, total, ents, (uint32_t)n);
	tap_is_int(gpu(c, cmd, len), VIRTIO_GPU_RESP_OK_NODATA, "%s: RESOURCE_CREATE_BLOB", what);
	len = vgb_guest_transfer_2d(cmd, sizeof(cmd), res, 0, 0, WIDTH, HEIGHT, 0, 0);
	tap_is_int(gpu(c, cmd, len), VIRTIO_GPU_RESP_OK_NODATA, "%s: TRANSFER_TO_HOST_2D (no-op)",
		   what);
	len = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, res, WIDTH, HEIGHT,
					 VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, WIDTH * 4, 0, 0, 0, WIDTH,
					 HEIGHT);
	tap_is_int(gpu(c, cmd, len), VIRTIO_GPU_RESP_OK_NODATA, "%s: SET_SCANOUT_BLOB", what);
	len = vgb_guest_flush(cmd, sizeof(cmd), res, 0, 0, WIDTH, HEIGHT, res);
	tap_is_int(gpu(c, cmd, len), VIRTIO_GPU_RESP_OK_NODATA, "%s: fenced RESOURCE_FLUSH", what);

	if (tap_is_uint(sink->n_frames, before + 1, "%s: the display got one frame", what)) {
		struct record_frame *f = &sink->frames[sink->n_frames - 1];

		tap_ok(f->had_cpu && f->pixels && bytes_ok(f->pixels, p, n),
		       "%s: every byte handed to the display is the guest's", what);
		tap_ok(f->had_dmabuf == want_dmabuf, "%s: the frame carries %s dmabuf", what,
		       f->had_dmabuf ? "a" : "no");
	}

	r = vgb_client_export_blob(c, res, &ex, &efd);
	if (want_strategy == VGB_WIRE_STRATEGY_CPU) {
		tap_is_int(r, -EOPNOTSUPP, "%s: EXPORT_BLOB: -EOPNOTSUPP (CPU view only)", what);
	} else {
		off_t size = efd >= 0 ? lseek(efd, 0, SEEK_END) : -1;

		tap_ok(r == 0 && ex.strategy == want_strategy && efd >= 0 && size == (off_t)total &&
			       ex.width == WIDTH && ex.stride == WIDTH * 4,
		       "%s: EXPORT_BLOB handed back a %s dmabuf of %lld bytes (r=%d, strategy %u)",
		       what, want_strategy == VGB_WIRE_STRATEGY_UDMABUF ? "udmabuf" : "VFIO",
		       (long long)size, r, ex.strategy);
		if (want_strategy == VGB_WIRE_STRATEGY_UDMABUF && efd >= 0) {
			void *m = mmap(NULL, total, PROT_READ, MAP_SHARED, efd, 0);
			tap_ok(m != MAP_FAILED && bytes_ok(m, p, n),
			       "%s: the exported udmabuf shows the guest's bytes", what);
			if (m != MAP_FAILED)
				munmap(m, total);
		}
	}
	vgb_close(efd);
}

int main(int argc, char **argv)
{
	struct leak_snapshot before;
	struct vgb_server_options opts;
	struct vgb_vfio_device *dev;
	struct vgb_client *c;
	struct vgb_msg_hello_reply hello;
	char dir[] = "/tmp/vgb-guest-daemon-XXXXXX", path[64];
	bool want;
	int n, r, ram;

	if (argc != 2 || (strcmp(argv[1], "--dmabuf") && strcmp(argv[1], "--no-dmabuf")))
		tap_bail("usage: guest-daemon --dmabuf|--no-dmabuf");
	want = strcmp(argv[1], "--dmabuf") == 0;
	n = vm_lab_devices(lab, VM_LAB_MAX_DEVICES);
	if (n < 1)
		tap_bail("needs the lab's ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	tap_plan_lazy();

	if (mkdir("/tmp", 0755) < 0 && errno != EEXIST)
		tap_bail("mkdir /tmp: %s", strerror(errno));
	if (!mkdtemp(dir))
		tap_bail("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/vgb.sock", dir);

	sink = record_sink_create();
	if (!sink)
		tap_bail("record sink");
	sink->auto_complete = true;
	vgb_server_options_init(&opts);
	opts.display = &sink->base;
	r = vgb_server_create(&opts, &srv);
	if (r == 0)
		r = vgb_server_listen(srv, path);
	if (r < 0)
		tap_bail("server: %s", strerror(-r));
	r = vgb_vfio_kernel_open(lab[0].bdf, 0, &dev);
	if (r < 0)
		tap_bail("cannot open %s: %s", lab[0].bdf, strerror(-r));
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF) == want,
	       "%s: DMA_BUF capability %s", lab[0].bdf, want ? "present" : "absent");
	tap_is_int(vgb_server_add_device(srv, dev), 1, "the daemon owns %s as device 1",
		   lab[0].bdf);
	ram = vm_lab_make_ram("vgb-guest-daemon-ram", RAM_PAGES * PAGE, RAM_SEED);

	leak_snapshot(&before);
	logcap_start();
	r = vgb_client_connect(path, &c);
	if (r < 0)
		tap_bail("connect: %s", strerror(-r));
	vgb_client_set_wait_hook(c, server_pump, srv);
	tap_is_int(vgb_client_hello(c, &hello), 0, "HELLO");
	tap_is_uint(hello.n_devices, 1, "HELLO: one daemon device");
	tap_is_int(vgb_client_add_ram(c, ram, RAM_GPA, RAM_PAGES * PAGE, 0), 0,
		   "ADD_RAM: a 16 MiB memfd window");
	tap_is_int(vgb_client_map_window(c, BAR_GPA, lab[0].size, 1, 2, 0), 0,
		   "MAP_VFIO_WINDOW: BAR2 of %s (%llu MiB)", lab[0].bdf,
		   (unsigned long long)(lab[0].size >> 20));

	{
		/* Scattered, reordered BAR2 pages (not the last page: guest-smoke writes it). */
		const struct piece a[] = {
			{ BAR_GPA + 300 * PAGE, 2 * PAGE }, { BAR_GPA + 4 * PAGE, PAGE },
			{ BAR_GPA + 2000 * PAGE, 3 * PAGE }, { BAR_GPA + 9 * PAGE, 4 * PAGE },
			{ BAR_GPA + 100 * PAGE, 6 * PAGE },
		};
		check_blob(c, "BAR2 blob", 1, a, VGB_ARRAY_SIZE(a), want,
			   want ? VGB_WIRE_STRATEGY_VFIO_DMABUF : VGB_WIRE_STRATEGY_CPU);
	}
	{
		const struct piece b[] = {
			{ RAM_GPA + 64 * PAGE, 4 * PAGE }, { RAM_GPA + 8 * PAGE, PAGE },
			{ RAM_GPA + 200 * PAGE, 2 * PAGE }, { RAM_GPA + 1000 * PAGE, 9 * PAGE },
		};
		check_blob(c, "RAM blob", 2, b, VGB_ARRAY_SIZE(b), want,
			   want ? VGB_WIRE_STRATEGY_UDMABUF : VGB_WIRE_STRATEGY_CPU);
	}

	{
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;

		r = vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows);
		tap_ok(r == 0 && g.n_clients == 1 &&
			       rows[0].blobs_vfio_dmabuf == (want ? 1u : 0u) &&
			       rows[0].blobs_udmabuf == (want ? 1u : 0u) &&
			       rows[0].blobs_cpu == (want ? 0u : 2u) && rows[0].fences_completed == 2,
		       "STATS: blobs vfio-dmabuf %u, udmabuf %u, cpu-view %u; fences %llu",
		       rows ? rows[0].blobs_vfio_dmabuf : 0, rows ? rows[0].blobs_udmabuf : 0,
		       rows ? rows[0].blobs_cpu : 0,
		       rows ? (unsigned long long)rows[0].fences_completed : 0);
		free(rows);
	}
	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0, "nothing logged above debug (%u%s%s)",
	       logcap_count_at_or_above(VGB_LOG_INFO), *logcap_last_loud() ? ": " : "",
	       logcap_last_loud());
	logcap_stop();

	vgb_client_destroy(c);
	for (int i = 0; i < 400 && vgb_server_client_count(srv); i++)
		vgb_server_dispatch(srv, 25);
	record_sink_clear(sink);
	leak_check(&before, "client gone: its windows, blobs, exports and mappings are freed");

	close(ram);
	vgb_server_destroy(srv);
	record_sink_destroy(sink);
	rmdir(dir);
	return tap_done();
}
