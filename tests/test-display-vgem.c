/* SPDX-License-Identifier: MIT */
/*
 * vm suite, in a Linux 6.1 guest with vgem (run by tests/vm/guest-display.sh in a chroot of the
 * host's userspace): real dmabufs through a real weston.
 *  1. weston --use-gl (llvmpipe, kms_swrast on vgem's card0) advertises linux-dmabuf v3 with
 *     the implicit modifier: a vgem dumb buffer exported as a dmabuf (no CPU view) is imported
 *     with `create` and shown; the screenshot equals the pattern exactly.
 *  2. A memfd passed off as a dmabuf is refused (`failed`) and the frame falls back to shm
 *     (pixels not compared under GL: kms_swrast mis-renders shm XRGB8888 there).
 *  3. weston --use-pixman: the same memfd frame through wl_shm, pixels compared exactly.
 */
#include <drm.h>
#include <drm_fourcc.h>
#include <drm_mode.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "weston-harness.h"

#define W 64
#define H 48

static uint32_t pattern(uint32_t x, uint32_t y)
{
	return ((x * 4) << 16) | ((y * 5) << 8) | ((x ^ y) & 0xff);
}

static bool screen_is_pattern(struct weston *w, const char *what)
{
	static uint32_t got[W * H], want[W * H];
	int r;

	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			want[y * W + x] = 0xff000000u | pattern(x, y);
	r = weston_screenshot(w, got);
	if (r < 0)
		return tap_ok(false, "%s: screenshot (%d)", what, r);
	return tap_ok(compare_pixels(got, want, W, H) == 0, "%s: screenshot matches exactly", what);
}

/* A vgem dumb buffer on card0 (the render node refuses dumb buffers), exported as a dmabuf. */
static int vgem_dmabuf(int card, struct vgb_dmabuf *ret)
{
	struct drm_mode_create_dumb create = { .width = W, .height = H, .bpp = 32 };
	struct drm_prime_handle prime = { 0 };
	void *map;

	if (ioctl(card, DRM_IOCTL_MODE_CREATE_DUMB, &create) < 0)
		return -errno;
	prime.handle = create.handle;
	prime.flags = DRM_CLOEXEC | DRM_RDWR;
	if (ioctl(card, DRM_IOCTL_PRIME_HANDLE_TO_FD, &prime) < 0)
		return -errno;
	map = mmap(NULL, create.size, PROT_READ | PROT_WRITE, MAP_SHARED, prime.fd, 0);
	if (map == MAP_FAILED) {
		close(prime.fd);
		return -errno;
	}
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			((uint32_t *)((char *)map + (size_t)y * create.pitch))[x] = pattern(x, y);
	munmap(map, create.size);
	vgb_dmabuf_init(ret);
	ret->width = W;
	ret->height = H;
	ret->fourcc = DRM_FORMAT_XRGB8888;
	ret->modifier = DRM_FORMAT_MOD_LINEAR;
	ret->n_planes = 1;
	ret->fd[0] = prime.fd;
	ret->stride[0] = create.pitch;
	return 0;
}

int main(void)
{
	/* The GL renderer under llvmpipe in a TCG guest takes tens of seconds for a first frame on
	 * a loaded host: the sink's bound on each compositor answer is generous here. */
	struct vgb_display_options opts = { .title = "vgemvm", .fullscreen = true,
					    .timeout_ms = 120000 /* llvmpipe in TCG, busy host */ };
	struct vgb_display *d = NULL;
	struct vgb_display_stats st;
	struct vgb_dmabuf vgem, fake;
	struct weston w;
	int card, memfd, r;
	void *ram;

	tap_plan_lazy();
	card = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
	tap_ok(card >= 0, "vgem's /dev/dri/card0 opens");
	if (card < 0)
		tap_bail("no card0: is vgem loaded?");
	r = vgem_dmabuf(card, &vgem);
	tap_is_int(r, 0, "a vgem dumb buffer exported as a dmabuf, pattern written");
	if (r < 0)
		tap_bail("no vgem dmabuf");

	/* The memfd stand-in: same pixels, also offered as a CPU view on the memfd. */
	memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	tap_ok(memfd >= 0 && ftruncate(memfd, W * H * 4) == 0 &&
		       fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0,
	       "guest RAM memfd (sealed against shrinking)");
	ram = mmap(NULL, W * H * 4, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			((uint32_t *)ram)[y * W + x] = pattern(x, y);
	vgb_dmabuf_init(&fake);
	fake.width = W;
	fake.height = H;
	fake.fourcc = DRM_FORMAT_XRGB8888;
	fake.modifier = DRM_FORMAT_MOD_LINEAR;
	fake.n_planes = 1;
	fake.fd[0] = memfd;
	fake.stride[0] = W * 4;
	struct vgb_cpu_view view = { .data = ram, .stride = W * 4, .memfd = memfd,
				     .memfd_size = W * H * 4 };

	/* ---- GL renderer: real dmabuf imports ---- */
	setenv("VGB_WESTON_RENDERER", "gl", 1);
	r = weston_start(&w, W, H);
	tap_is_int(r, 0, "weston --use-gl is up");
	if (r < 0)
		tap_bail("no weston");
	r = vgb_display_create_wayland(w.socket, &opts, &d);
	tap_is_int(r, 0, "sink connected");
	if (r < 0)
		tap_bail("no sink");
	{
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 1, .dmabuf = &vgem, .done = frame_done };
		r = present_and_wait(d, &f);
		tap_is_int(r, 0, "vgem dmabuf frame shown");
		vgb_display_get_stats(d, &st);
		tap_is_str(vgb_present_path_name(st.last_path), "dmabuf", "path dmabuf");
		tap_is_uint(st.dmabuf_failed, 0, "not refused");
		tap_is_uint(st.copies, 0, "no CPU copy");
		screen_is_pattern(&w, "vgem dmabuf under the GL renderer");
	}
	{
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 2, .dmabuf = &fake, .cpu = &view,
				       .done = frame_done };
		r = present_and_wait(d, &f);
		tap_is_int(r, 0, "memfd passed off as a dmabuf: frame completes");
		vgb_display_get_stats(d, &st);
		tap_is_uint(st.dmabuf_failed, 1, "the compositor answered failed");
		tap_ok(st.last_path == VGB_PATH_SHM_DIRECT || st.last_path == VGB_PATH_SHM_COPY,
		       "and the frame went through wl_shm (%s)", vgb_present_path_name(st.last_path));
	}
	vgb_display_destroy(d);
	weston_stop(&w);

	/* ---- pixman: the shm pixels ---- */
	setenv("VGB_WESTON_RENDERER", "pixman", 1);
	r = weston_start(&w, W, H);
	tap_is_int(r, 0, "weston --use-pixman is up");
	if (r < 0)
		tap_bail("no weston");
	r = vgb_display_create_wayland(w.socket, &opts, &d);
	tap_is_int(r, 0, "sink connected");
	if (r < 0)
		tap_bail("no sink");
	{
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 2, .dmabuf = &fake, .cpu = &view,
				       .done = frame_done };
		r = present_and_wait(d, &f);
		tap_is_int(r, 0, "memfd frame under pixman");
		vgb_display_get_stats(d, &st);
		tap_is_str(vgb_present_path_name(st.last_path), "shm-direct",
			   "no linux-dmabuf under pixman: wl_shm on the memfd");
		screen_is_pattern(&w, "shm under pixman");
	}
	vgb_display_destroy(d);
	weston_stop(&w);

	munmap(ram, W * H * 4);
	vgb_dmabuf_finish(&vgem);
	close(memfd);
	close(card);
	return tap_done();
}
