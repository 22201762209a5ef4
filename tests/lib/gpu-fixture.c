/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu-fixture.h"
#include "tap.h"
#include "vgb/util.h"

void guest_init(struct guest *g, const char *vdev_spec)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, 16 * MiB) < 0)
		tap_bail("memfd: %m");
	g->ram = mmap(NULL, 16 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g->ram == MAP_FAILED)
		tap_bail("mmap: %m");
	if (vgb_memmap_create(&g->map) < 0 ||
	    vgb_memmap_add_ram(g->map, 0, 16 * MiB, fd, 0, &g->ram_id) < 0)
		tap_bail("guest map");
	g->dev = NULL;
	if (vdev_spec) {
		if (vgb_vfio_vdev_create(vdev_spec, &g->dev) < 0 ||
		    vgb_memmap_add_vfio(g->map, 32 * MiB, 4 * MiB, g->dev, 2, 0, &g->bar_id) < 0)
			tap_bail("guest BAR");
	}
}

void guest_finish(struct guest *g)
{
	vgb_memmap_destroy(g->map);
	vgb_vfio_device_destroy(g->dev);
	munmap(g->ram, 16 * MiB);
}

struct done_rec dones[64];
unsigned n_dones;

void on_fence(void *data, uint64_t cookie, const void *resp, size_t len)
{
	if (n_dones < VGB_ARRAY_SIZE(dones)) {
		dones[n_dones].cookie = cookie;
		memcpy(&dones[n_dones].hdr, resp, sizeof(dones[n_dones].hdr));
		dones[n_dones].len = len;
	}
	n_dones++;
}

struct vgb_gpu *make_gpu(struct guest *g, struct vgb_display *d,
				void (*tweak)(struct vgb_gpu_config *))
{
	struct vgb_gpu_config cfg = { .display = d, .fence_done = on_fence };
	struct vgb_gpu *gpu;

	vgb_gpu_limits_init(&cfg.limits);
	if (tweak)
		tweak(&cfg);
	if (vgb_gpu_create(g->map, &cfg, &gpu) < 0)
		tap_bail("gpu create");
	return gpu;
}

uint64_t next_cookie = 1000;
struct last_resp last;

void two_scanouts(struct vgb_gpu_config *cfg)
{
	cfg->limits.num_scanouts = 2;
}

long gf_send(struct vgb_gpu *gpu, const void *cmd, size_t len)
{
	memset(&last, 0, sizeof(last));
	last.rc = vgb_gpu_process(gpu, cmd, len, last.buf, sizeof(last.buf), &last.len,
				  next_cookie++);
	if (last.rc < 0)
		return last.rc;
	if (last.rc == 1)
		return 0;
	memcpy(&last.type, last.buf, 4);
	return le32toh(last.type);
}

long create_2d(struct vgb_gpu *gpu, uint32_t id, uint32_t fmt, uint32_t w, uint32_t h)
{
	struct virtio_gpu_resource_create_2d c = {
		.hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D), .resource_id = htole32(id),
		.format = htole32(fmt), .width = htole32(w), .height = htole32(h),
	};
	return SEND(gpu, c);
}

long attach(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr, const uint32_t *len,
		   uint32_t n)
{
	struct attach_msg m = { .attach = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
					      .resource_id = htole32(id),
					      .nr_entries = htole32(n) } };

	for (uint32_t i = 0; i < n; i++)
		m.e[i] = (struct virtio_gpu_mem_entry){ htole64(addr[i]), htole32(len[i]), 0 };
	return gf_send(gpu, &m, sizeof(m.attach) + n * sizeof(m.e[0]));
}

long create_blob(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr,
			const uint32_t *len, uint32_t n)
{
	struct blob_msg m = { .blob = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
					    .resource_id = htole32(id),
					    .blob_mem = htole32(VIRTIO_GPU_BLOB_MEM_GUEST),
					    .blob_flags = htole32(VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE),
					    .nr_entries = htole32(n) } };
	uint64_t size = 0;

	for (uint32_t i = 0; i < n; i++) {
		m.e[i] = (struct virtio_gpu_mem_entry){ htole64(addr[i]), htole32(len[i]), 0 };
		size += len[i];
	}
	m.blob.size = htole64(size);
	return gf_send(gpu, &m, sizeof(m.blob) + n * sizeof(m.e[0]));
}

/* Writes a w x h frame @n, rows @stride apart, into blob pages @addr (each PG long). */
void draw(struct guest *g, const uint64_t *addr, uint32_t n_pages, uint32_t w, uint32_t h,
		 uint32_t stride, uint32_t n)
{
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			uint64_t off = (uint64_t)y * stride + x * 4u;
			uint32_t v = px(x, y, n);

			if (off / PG < n_pages)
				memcpy(g->ram + addr[off / PG] + off % PG, &v, 4);
		}
}

bool frame_is(const struct record_frame *f, uint32_t w, uint32_t h, uint32_t n)
{
	if (!f->pixels || f->frame.width != w || f->frame.height != h)
		return false;
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			uint32_t v;

			memcpy(&v, f->pixels + ((size_t)y * w + x) * 4, 4);
			if (v != px(x, y, n)) {
				tap_diag("(%u,%u) = %#x, want %#x", x, y, v, px(x, y, n));
				return false;
			}
		}
	return true;
}

const uint64_t fb_pages[4] = { 0x123000, 0x200000, 0x1ff000, 0x345000 };
const uint32_t fb_lens[4] = { PG, PG, PG, PG };

void setup_blob_scanout(struct guest *g, struct vgb_gpu *gpu, uint32_t id)
{
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(id),
	};
	struct virtio_gpu_set_scanout_blob sb =
		scanout_blob(0, id, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64, 256, 0);

	tap_is_uint(create_blob(gpu, id, fb_pages, fb_lens, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "blob %u: create (4 scattered pages)", id);
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "blob %u: TRANSFER_TO_HOST_2D is OK",
		    id);
	tap_is_uint(SEND(gpu, sb), VIRTIO_GPU_RESP_OK_NODATA, "blob %u: SET_SCANOUT_BLOB", id);
}

/* Re-reports one TAP line of the child's ("ok N - what[ # TODO|SKIP why]"). */
static void relay(char *line)
{
	bool ok = strncmp(line, "ok ", 3) == 0;
	char *what, *dir;

	if (line[0] == '#') {
		tap_diag("%s", line[1] == ' ' ? line + 2 : line + 1);
		return;
	}
	if (!ok && strncmp(line, "not ok ", 7) != 0) {
		tap_ok(strncmp(line, "Bail out!", 9) != 0, "child: %s", line);
		return;
	}
	what = strstr(line, " - ");
	what = what ? what + 3 : line;
	if ((dir = strstr(what, " # TODO "))) {
		*dir = '\0';
		tap_todo(ok, dir + 8, "%s", what);
	} else if ((dir = strstr(what, " # SKIP "))) {
		*dir = '\0';
		tap_skip(dir + 8, "%s", what);
	} else {
		tap_ok(ok, "%s", what);
	}
}

void gf_run(const char *name, void (*fn)(void))
{
	int pfd[2], status;
	FILE *in;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	void *warm[4];
	pid_t pid;

	fflush(stdout);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		tap_bail("pipe: %m");
	pid = fork();
	if (pid < 0)
		tap_bail("fork: %m");
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		/*
		 * Heap that grows after fork() is a new mapping beside the inherited one, which
		 * a group's leak check would count. Grow it once, by plenty, before the group,
		 * and never trim it.
		 */
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
		mallopt(M_TOP_PAD, 64 << 20);
		for (int i = 0; i < 4; i++)
			warm[i] = malloc(120 << 10);
		for (int i = 0; i < 4; i++)
			free(warm[i]);
		fn();
		fflush(stdout);
		_exit(0);
	}
	close(pfd[1]);
	in = fdopen(pfd[0], "r");
	if (!in)
		tap_bail("fdopen: %m");
	while ((n = getline(&line, &cap, in)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		relay(line);
	}
	free(line);
	fclose(in);
	if (waitpid(pid, &status, 0) < 0)
		tap_bail("waitpid: %m");
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the group's process ended cleanly",
	       name);
}
