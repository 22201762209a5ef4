/* SPDX-License-Identifier: MIT */
/*
 * vm suite, Linux 7.2 guest, end to end (run by tests/vm/guest-display.sh in a chroot of the
 * host's userspace, host / over 9p):
 *
 *   test-bridge-vm-weston VGBRIDGED
 *
 * A real weston (--backend=headless-backend.so --use-pixman --debug, tests/weston-harness.c)
 * and the real daemon, VGBRIDGED --display wayland on that weston, with the kernel VFIO
 * backend. This program plays the VMM over the wire protocol (bridge/client/client.c):
 *  - ADD_VFIO_DEVICE by BDF (the lab's first ivshmem device, bound to vfio-pci: the daemon
 *    opens it itself), two MAP_VFIO_WINDOWs on its BAR2 at non-zero region offsets, adjacent
 *    in guest-physical space but not in the BAR;
 *  - a blob of scattered, reordered BAR2 pages (one entry straddles the two windows), a scanout
 *    rectangle inside the framebuffer, a fenced RESOURCE_FLUSH; then a page flip to a second
 *    blob (other pages, a plane offset) and another; then back to the first blob with a fenced
 *    flush of a part only.
 * Checked after each: STATS (strategy vfio-dmabuf, the fence completed by the display and not
 * at the deadline, the wayland sink connected and showing through shm-copy from the CPU view,
 * no dmabuf refused by weston, one frame presented and copied), EXPORT_BLOB (a VFIO dmabuf whose
 * size by lseek is the blob's, and the scanout layout), and weston's screenshot, which must
 * equal what the host wrote into the BAR's backing file at those offsets (the lab's pattern),
 * pixel for pixel (RGB: the output has no alpha, so the X byte is not seen); outside the last
 * flush's damage, the previous frame stays. Finally the daemon exits 0 on SIGTERM having logged
 * no warning or error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "guest.h"
#include "lab.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "vgb/vfio.h"
#include "weston-harness.h"

#define PAGE VGB_PAGE_SIZE
#define BAR_GPA 0x100000000ull
/* Two windows on BAR2: guest-physical [BAR_GPA, +1 MiB) is BAR bytes [3 MiB, 4 MiB), and
 * [BAR_GPA + 1 MiB, +2 MiB more) is BAR bytes [512 KiB, 2.5 MiB). */
#define WIN_A_SIZE 0x100000ull
#define WIN_A_REGION 0x300000ull
#define WIN_B_SIZE 0x200000ull
#define WIN_B_REGION 0x80000ull

/* The framebuffer: 128 x 72 XRGB8888, stride 512 (9 pages); the scanout shows 96 x 64 of it
 * from (16, 4). Weston's output is the scanout's size. */
#define FB_W 128u
#define FB_H 72u
#define STRIDE (FB_W * 4)
#define SX 16u
#define SY 4u
#define W 96u
#define H 64u

struct piece {
	uint64_t gpa, len; /* gpa relative to BAR_GPA */
};

/* Blob 1: 9 pages; the second entry straddles windows A and B. */
static const struct piece blob1[] = {
	{ 0x1f000, 2 * PAGE },  /* A */
	{ 0xff000, 2 * PAGE },  /* A's last page, B's first */
	{ 0x105000, PAGE },     /* B */
	{ 0x3000, 3 * PAGE },   /* A */
	{ 0x2ff000, PAGE },     /* B's last page */
};
/* Blob 2: 10 pages; the framebuffer starts at its second page (SET_SCANOUT_BLOB offsets[0]). */
#define BLOB2_OFFSET PAGE
static const struct piece blob2[] = {
	{ 0x180000, 4 * PAGE }, /* B */
	{ 0x80000, PAGE },      /* A */
	{ 0x1c0000, 3 * PAGE }, /* B */
	{ 0x0, 2 * PAGE },      /* A */
};

static const char *daemon_path;
static char log_path[128];

/* The BAR2 offset of guest-physical BAR_GPA + @gpa, by the windows above. */
static uint64_t bar_offset(uint64_t gpa)
{
	if (gpa < WIN_A_SIZE)
		return WIN_A_REGION + gpa;
	return WIN_B_REGION + (gpa - WIN_A_SIZE);
}

/* The BAR2 offset of byte @off of a blob made of @p. */
static uint64_t blob_bar_offset(const struct piece *p, size_t n, uint64_t off)
{
	for (size_t k = 0; k < n; k++) {
		if (off < p[k].len)
			return bar_offset(p[k].gpa + off);
		off -= p[k].len;
	}
	tap_bail("blob offset past the blob");
}

static uint64_t blob_size(const struct piece *p, size_t n)
{
	uint64_t total = 0;

	for (size_t k = 0; k < n; k++)
		total += p[k].len;
	return total;
}

/* What the scanout must show: the host's pattern at the BAR offsets of each pixel. */
static void expected(const struct piece *p, size_t n, uint64_t fb_offset, uint32_t seed,
		     uint32_t *ret)
{
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++) {
			uint64_t o = fb_offset + (uint64_t)(SY + y) * STRIDE + (SX + x) * 4;
			ret[y * W + x] = vm_lab_word(seed, blob_bar_offset(p, n, o));
		}
}

/* Whether @got equals @want (RGB); otherwise prints where they differ. */
static bool same_pixels(const uint32_t *got, const uint32_t *want)
{
	uint32_t x0 = W, y0 = H, x1 = 0, y1 = 0;

	if (compare_pixels(got, want, W, H) == 0)
		return true;
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			if ((got[y * W + x] ^ want[y * W + x]) & 0xffffff) {
				x0 = VGB_MIN(x0, x);
				y0 = VGB_MIN(y0, y);
				x1 = VGB_MAX(x1, x + 1);
				y1 = VGB_MAX(y1, y + 1);
			}
	tap_diag("differences within %ux%u+%u+%u", x1 - x0, y1 - y0, x0, y0);
	return false;
}

/* Prints the daemon's log as TAP diagnostics. */
static void dump_log(void)
{
	char line[512];
	FILE *f = fopen(log_path, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		tap_diag("vgbridged: %s", line);
	}
	fclose(f);
}

/* Lines of the daemon's log at warn or error. */
static unsigned loud_lines(void)
{
	char line[512];
	unsigned n = 0;
	FILE *f = fopen(log_path, "re");

	if (!f)
		return 1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "vgb warn", 8) == 0 || strncmp(line, "vgb error", 9) == 0)
			n++;
	fclose(f);
	return n;
}

/* Starts the daemon on @sock with the wayland sink; it says when it is ready (sd_notify). */
static pid_t start_daemon(const struct weston *w, const char *dir, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[64];
	int nfd;
	pid_t pid;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
	nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (nfd < 0 || bind(nfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		tap_bail("notify socket: %s", strerror(errno));
	snprintf(log_path, sizeof(log_path), "%s/vgbridged.log", dir);
	pid = fork();
	if (pid < 0)
		tap_bail("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("NOTIFY_SOCKET", sa.sun_path, 1);
		setenv("WAYLAND_DISPLAY", w->socket, 1);
		/* weston_start() set XDG_RUNTIME_DIR. The fence deadline is long: a flush must
		 * complete because the display took the frame, not because time ran out. */
		execl(daemon_path, daemon_path, "--socket", sock, "--display", "wayland",
		      "--fence-timeout-ms", "10000", "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	for (;;) {
		struct pollfd p = { .fd = nfd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 30000) <= 0 || (n = recv(nfd, buf, sizeof(buf) - 1, 0)) <= 0) {
			dump_log();
			tap_bail("vgbridged did not get ready");
		}
		buf[n] = 0;
		if (strcmp(buf, "READY=1") == 0)
			break;
	}
	close(nfd);
	return pid;
}

static uint32_t gpu(struct vgb_client *c, const void *cmd, size_t len, uint64_t *ret_fence)
{
	uint8_t resp[512];
	size_t rlen = 0;
	int r = vgb_client_gpu_cmd(c, VGB_GPU_QUEUE_CONTROL, cmd, len, resp, sizeof(resp), &rlen);

	if (r < 0) {
		tap_diag("VIRTIO_GPU_CMD: %s", strerror(-r));
		return 0;
	}
	if (ret_fence && rlen >= sizeof(struct virtio_gpu_ctrl_hdr)) {
		const struct virtio_gpu_ctrl_hdr *h = (const void *)resp;

		*ret_fence = le64toh(h->fence_id) | (uint64_t)(le32toh(h->flags) &
							       VIRTIO_GPU_FLAG_FENCE) << 63;
	}
	return vgb_guest_resp_type(resp, rlen);
}

static int stats(struct vgb_client *c, struct vgb_wire_stats_global *g,
		 struct vgb_wire_stats_client *row)
{
	struct vgb_wire_stats_client *rows = NULL;
	int r = vgb_client_stats(c, VGB_STATS_SELF_ONLY, g, &rows);

	if (r == 0 && g->n_clients != 1)
		r = -EPROTO;
	if (r == 0)
		*row = rows[0];
	free(rows);
	return r;
}

struct step {
	const char *what;
	uint32_t res;
	const struct piece *p; /* the blob's entries (NULL: it exists already) */
	size_t n;
	uint32_t fb_offset;    /* SET_SCANOUT_BLOB offsets[0] */
	struct vgb_rect flush; /* RESOURCE_FLUSH rectangle, framebuffer coordinates */
	const uint32_t *want;  /* the screenshot it must give */
};

/* Creates the step's blob, scans it out, flushes with a fence, and checks STATS, EXPORT_BLOB
 * and the screenshot. */
static void show(struct vgb_client *c, struct weston *w, const struct step *st,
		 const struct piece *p, size_t n)
{
	static uint32_t got[W * H];
	const char *what = st->what;
	struct virtio_gpu_mem_entry ents[8];
	struct vgb_wire_stats_global g0, g;
	struct vgb_wire_stats_client row0, row;
	struct vgb_msg_export_blob_reply ex;
	uint64_t total = blob_size(p, n), fence = 0, fence_id = 0x100 + st->res;
	/* The damage in scanout coordinates: the flush rectangle clipped to the scanout. */
	uint32_t x0 = VGB_MAX(st->flush.x, SX), y0 = VGB_MAX(st->flush.y, SY);
	uint32_t x1 = VGB_MIN(st->flush.x + st->flush.width, SX + W);
	uint32_t y1 = VGB_MIN(st->flush.y + st->flush.height, SY + H);
	uint64_t damage_bytes = (uint64_t)(x1 - x0) * (y1 - y0) * 4;
	uint8_t cmd[1024];
	size_t len;
	int efd = -1, r;

	if (stats(c, &g0, &row0) < 0)
		tap_bail("STATS");
	if (st->p) {
		for (size_t k = 0; k < n; k++)
			ents[k] = (struct virtio_gpu_mem_entry){
				.addr = htole64(BAR_GPA + p[k].gpa),
				.length = htole32((uint32_t)p[k].len) };
		len = vgb_guest_create_blob(cmd, sizeof(cmd), st->res, VIRTIO_GPU_BLOB_MEM_GUEST,
					    VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, total, ents,
					    (uint32_t)n);
		tap_is_uint(gpu(c, cmd, len, NULL), VIRTIO_GPU_RESP_OK_NODATA,
			    "%s: RESOURCE_CREATE_BLOB of %zu entries in BAR2 (%llu KiB)", what, n,
			    (unsigned long long)(total >> 10));
	}
	len = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, st->res, FB_W, FB_H,
					 VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, STRIDE, st->fb_offset, SX,
					 SY, W, H);
	tap_is_uint(gpu(c, cmd, len, NULL), VIRTIO_GPU_RESP_OK_NODATA,
		    "%s: SET_SCANOUT_BLOB %ux%u+%u+%u of a %ux%u framebuffer at offset %u", what, W,
		    H, SX, SY, FB_W, FB_H, st->fb_offset);
	len = vgb_guest_flush(cmd, sizeof(cmd), st->res, st->flush.x, st->flush.y,
			      st->flush.width, st->flush.height, fence_id);
	tap_is_uint(gpu(c, cmd, len, &fence), VIRTIO_GPU_RESP_OK_NODATA,
		    "%s: fenced RESOURCE_FLUSH %ux%u+%u+%u answered", what, st->flush.width,
		    st->flush.height, st->flush.x, st->flush.y);
	tap_is_uint(fence, (1ull << 63) | fence_id, "%s: the response carries the fence", what);

	/* The display counts a frame as presented when weston's presentation feedback arrives,
	 * which may follow the fence (the copy completes it). */
	for (int i = 0; i < 300; i++) {
		r = stats(c, &g, &row);
		if (r < 0 || g.frames_presented > g0.frames_presented)
			break;
		usleep(100 * 1000);
	}
	if (!tap_is_int(r, 0, "%s: STATS", what))
		tap_bail("no STATS");
	tap_ok(row.blobs_vfio_dmabuf == row0.blobs_vfio_dmabuf + (st->p ? 1 : 0) &&
		       row.blobs_cpu == 0 && row.blobs_udmabuf == 0 && row.export_failures == 0,
	       "%s: STATS: strategy vfio-dmabuf (live vfio-dmabuf blobs %u, cpu-view %u, "
	       "udmabuf %u; export failures %llu)", what, row.blobs_vfio_dmabuf, row.blobs_cpu,
	       row.blobs_udmabuf, (unsigned long long)row.export_failures);
	tap_ok(row.fences_completed == row0.fences_completed + 1 &&
		       row.fences_timed_out == 0 && row.fences_pending == 0,
	       "%s: STATS: the fence completed when the display took the frame, not at the "
	       "deadline (completed %llu, timed out %llu)", what,
	       (unsigned long long)row.fences_completed,
	       (unsigned long long)row.fences_timed_out);
	tap_ok(g.display_connected == 1 && strcmp(g.display_name, "wayland") == 0 &&
		       g.display_path == VGB_PATH_SHM_COPY && g.dmabuf_failed == 0,
	       "%s: STATS: the wayland sink shows it through the CPU view (%.16s, connected %u, "
	       "path %s, dmabufs refused %llu)", what, g.display_name, g.display_connected,
	       vgb_present_path_name(g.display_path), (unsigned long long)g.dmabuf_failed);
	/* A buffer the compositor has not shown yet is first refreshed from the front buffer
	 * (docs/display.md), so only the first frame's copy is the damage alone. */
	tap_ok(g.frames_presented == g0.frames_presented + 1 &&
		       g.frame_copies == g0.frame_copies + 1 &&
		       g.bytes_copied - g0.bytes_copied >= damage_bytes &&
		       g.bytes_copied - g0.bytes_copied <= damage_bytes + (uint64_t)W * H * 4,
	       "%s: STATS: one frame presented, one copy with the %llu bytes of the damage "
	       "(presented %llu, copies %llu; bytes copied %llu, a refresh included)", what,
	       (unsigned long long)damage_bytes, (unsigned long long)g.frames_presented,
	       (unsigned long long)g.frame_copies,
	       (unsigned long long)(g.bytes_copied - g0.bytes_copied));

	r = vgb_client_export_blob(c, st->res, &ex, &efd);
	{
		off_t size = efd >= 0 ? lseek(efd, 0, SEEK_END) : -1;

		tap_ok(r == 0 && ex.strategy == VGB_WIRE_STRATEGY_VFIO_DMABUF && efd >= 0 &&
			       size == (off_t)total && ex.size == total,
		       "%s: EXPORT_BLOB hands over a VFIO dmabuf of %lld bytes by lseek (blob %llu; "
		       "r=%d, strategy %u)", what, (long long)size, (unsigned long long)total, r,
		       ex.strategy);
		tap_ok(r == 0 && ex.width == FB_W && ex.height == FB_H && ex.stride == STRIDE &&
			       ex.offset == st->fb_offset && ex.fourcc == 0x34325258 /* XR24 */ &&
			       ex.modifier == 0,
		       "%s: EXPORT_BLOB: layout %ux%u stride %u offset %u", what, ex.width,
		       ex.height, ex.stride, ex.offset);
	}
	vgb_close(efd);

	r = weston_screenshot(w, got);
	tap_ok(r == 0 && same_pixels(got, st->want),
	       "%s: weston's screenshot equals what the host wrote into the BAR's backing file at "
	       "the blob's scattered offsets (%s)", what, r < 0 ? strerror(-r) : "taken");
}

int main(int argc, char **argv)
{
	struct vm_lab_device lab[VM_LAB_MAX_DEVICES];
	struct vgb_msg_hello_reply hello;
	struct vgb_msg_add_device_reply dev;
	struct vgb_client *c;
	struct weston w;
	const char *tmp = getenv("TMPDIR");
	char dir[64], sock[128];
	int n, r, status;
	pid_t pid;

	if (argc != 2)
		tap_bail("usage: test-bridge-vm-weston VGBRIDGED");
	daemon_path = argv[1];
	tap_plan_lazy();
	n = vm_lab_devices(lab, VM_LAB_MAX_DEVICES);
	if (n < 1)
		tap_bail("needs the lab's ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	if (lab[0].size < WIN_A_REGION + WIN_A_SIZE)
		tap_bail("BAR2 of %s is too small", lab[0].bdf);
	if (!tmp || !*tmp || strlen(tmp) > 32)
		tmp = "/tmp";
	snprintf(dir, sizeof(dir), "%s/vgb-vm-weston-XXXXXX", tmp);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp: %s", strerror(errno));
	snprintf(sock, sizeof(sock), "%s/vgb.sock", dir);

	setenv("VGB_WESTON_RENDERER", "pixman", 1);
	r = weston_start(&w, W, H);
	if (!tap_is_int(r, 0, "weston --use-pixman is up (%ux%u)", W, H))
		tap_bail("no weston");
	pid = start_daemon(&w, dir, sock);
	tap_ok(pid > 0, "vgbridged --display wayland on it is ready (sd_notify)");

	r = vgb_client_connect(sock, &c);
	if (r < 0)
		tap_bail("connect: %s", strerror(-r));
	tap_is_int(vgb_client_hello(c, &hello), 0, "HELLO");
	r = vgb_client_add_device(c, VGB_DEVICE_BDF, lab[0].bdf, -1, &dev);
	if (!tap_is_int(r, 0, "ADD_VFIO_DEVICE %s by BDF: the daemon opens it through vfio-pci",
			lab[0].bdf)) {
		dump_log();
		tap_bail("no device");
	}
	tap_ok(dev.caps & VGB_VFIO_CAP_DMA_BUF, "the device has the DMA_BUF capability (caps %#x)",
	       dev.caps);
	tap_is_int(vgb_client_map_window(c, BAR_GPA, WIN_A_SIZE, dev.device_id, 2, WIN_A_REGION),
		   0, "MAP_VFIO_WINDOW A: 1 MiB of BAR2 at region offset 3 MiB");
	tap_is_int(vgb_client_map_window(c, BAR_GPA + WIN_A_SIZE, WIN_B_SIZE, dev.device_id, 2,
					 WIN_B_REGION),
		   0, "MAP_VFIO_WINDOW B: the next 2 MiB of guest space, BAR2 at 512 KiB");

	{
		static uint32_t want1[W * H], want2[W * H], want3[W * H];
		/* Step 3's flush: framebuffer rectangle 40x20+30+20, so scanout 40x20+14+16. */
		const struct vgb_rect part = { 30, 20, 40, 20 };
		const struct vgb_rect all = { 0, 0, FB_W, FB_H };
		const struct step steps[] = {
			{ "blob 1", 1, blob1, VGB_ARRAY_SIZE(blob1), 0, all, want1 },
			{ "blob 2 (page flip)", 2, blob2, VGB_ARRAY_SIZE(blob2), BLOB2_OFFSET, all,
			  want2 },
			/* Back to blob 1, flushing a part only: outside it the screen keeps blob 2. */
			{ "blob 1 again, damage only", 1, NULL, 0, 0, part, want3 },
		};

		expected(blob1, VGB_ARRAY_SIZE(blob1), 0, lab[0].seed, want1);
		expected(blob2, VGB_ARRAY_SIZE(blob2), BLOB2_OFFSET, lab[0].seed, want2);
		memcpy(want3, want2, sizeof(want3));
		for (uint32_t y = part.y - SY; y < part.y - SY + part.height; y++)
			for (uint32_t x = part.x - SX; x < part.x - SX + part.width; x++)
				want3[y * W + x] = want1[y * W + x];
		show(c, &w, &steps[0], blob1, VGB_ARRAY_SIZE(blob1));
		show(c, &w, &steps[1], blob2, VGB_ARRAY_SIZE(blob2));
		show(c, &w, &steps[2], blob1, VGB_ARRAY_SIZE(blob1));
	}

	vgb_client_destroy(c);
	kill(pid, SIGTERM);
	r = waitpid(pid, &status, 0);
	tap_ok(r == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "vgbridged exits 0 on SIGTERM");
	if (!tap_is_uint(loud_lines(), 0, "vgbridged logged no warning or error"))
		dump_log();
	weston_stop(&w);
	unlink(log_path);
	unlink(sock);
	rmdir(dir);
	return tap_done();
}
