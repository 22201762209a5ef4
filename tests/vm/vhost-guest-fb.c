/* SPDX-License-Identifier: MIT */
/*
 * Runs inside the guest of the vhost-user end-to-end test (static, in the initramfs): draws a
 * known pattern into a DRM dumb buffer on virtio-gpu's card0, shows it, then changes one small
 * rectangle and flushes only that damage (DIRTYFB with one clip). Talks to the host over the
 * serial console: prints "@@VGB-VHOST <event> ..." lines and waits for a line on stdin before
 * each next step.
 *
 *   vhost-guest-fb twice   frame1, wait, frame2 (the rectangle), wait, then redraw full frames
 *                          until killed (the host kills QEMU mid-frame)
 *   vhost-guest-fb once    frame1, wait, exit
 *   vhost-guest-fb benchN  frame1, wait, N full-frame redraws (timed), wait, exit
 *
 * The patterns are shared with tests/vm/vhost-e2e, which checks weston's screenshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <drm.h>
#include <drm_mode.h>

#define RECT_X 100u
#define RECT_Y 80u
#define RECT_W 64u
#define RECT_H 32u

static uint32_t pattern1(uint32_t x, uint32_t y)
{
	return ((x * 3 + y * 5) & 0xff) << 16 | ((x ^ (y << 1)) & 0xff) << 8 | (((x + y) >> 1) & 0xff);
}

static uint32_t pattern2(uint32_t x, uint32_t y)
{
	return (0xff - ((x * 7) & 0xff)) << 16 | ((y * 11) & 0xff) << 8 | 0x5a;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;
	do
		r = ioctl(fd, req, arg);
	while (r < 0 && errno == EINTR);
	return r;
}

static void die(const char *what)
{
	printf("@@VGB-VHOST error %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void wait_host(void)
{
	char line[64];
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		die("stdin closed");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "once";
	int fd = -1;

	for (int i = 0; i < 200 && fd < 0; i++) {
		fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
		if (fd < 0)
			usleep(50000);
	}
	if (fd < 0)
		die("open /dev/dri/card0");

	struct drm_mode_card_res res = { 0 };
	if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res) < 0)
		die("GETRESOURCES");
	uint32_t conns[16], crtcs[16], encs[16];
	if (res.count_connectors > 16 || res.count_crtcs > 16 || res.count_encoders > 16 ||
	    !res.count_connectors || !res.count_crtcs)
		die("resources");
	res.connector_id_ptr = (uintptr_t)conns;
	res.crtc_id_ptr = (uintptr_t)crtcs;
	res.encoder_id_ptr = (uintptr_t)encs;
	res.count_fbs = 0;
	if (xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res) < 0)
		die("GETRESOURCES 2");

	struct drm_mode_modeinfo modes[64];
	struct drm_mode_get_connector conn = { .connector_id = conns[0] };
	if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn) < 0)
		die("GETCONNECTOR");
	if (conn.count_modes == 0)
		die("no modes");
	if (conn.count_modes > 64)
		conn.count_modes = 64;
	uint32_t n_modes = conn.count_modes;
	conn.modes_ptr = (uintptr_t)modes;
	conn.count_props = 0;
	conn.count_encoders = 0;
	if (xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &conn) < 0)
		die("GETCONNECTOR 2");
	struct drm_mode_modeinfo *mode_info = &modes[0];
	for (uint32_t i = 0; i < n_modes && i < conn.count_modes; i++) {
		if (modes[i].type & DRM_MODE_TYPE_PREFERRED) {
			mode_info = &modes[i];
			break;
		}
	}
	uint32_t w = mode_info->hdisplay, h = mode_info->vdisplay;

	struct drm_mode_create_dumb cd = { .width = w, .height = h, .bpp = 32 };
	if (xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd) < 0)
		die("CREATE_DUMB");
	struct drm_mode_fb_cmd fbc = { .width = w, .height = h, .pitch = cd.pitch, .bpp = 32,
				       .depth = 24, .handle = cd.handle };
	if (xioctl(fd, DRM_IOCTL_MODE_ADDFB, &fbc) < 0)
		die("ADDFB");
	struct drm_mode_map_dumb md = { .handle = cd.handle };
	if (xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &md) < 0)
		die("MAP_DUMB");
	uint8_t *map = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)md.offset);
	if (map == MAP_FAILED)
		die("mmap");

	for (uint32_t y = 0; y < h; y++) {
		uint32_t *row = (uint32_t *)(map + (size_t)y * cd.pitch);
		for (uint32_t x = 0; x < w; x++)
			row[x] = pattern1(x, y);
	}
	struct drm_mode_crtc crtc = {
		.crtc_id = crtcs[0], .fb_id = fbc.fb_id, .set_connectors_ptr = (uintptr_t)&conns[0],
		.count_connectors = 1, .mode = *mode_info, .mode_valid = 1,
	};
	if (xioctl(fd, DRM_IOCTL_MODE_SETCRTC, &crtc) < 0)
		die("SETCRTC");
	printf("@@VGB-VHOST frame1 %u %u %u\n", w, h, cd.pitch);
	wait_host();

	if (strncmp(mode, "bench", 5) == 0) {
		/* bench<N>: N full-frame redraws, each flushed with DIRTYFB, timed in the guest. */
		uint32_t frames = (uint32_t)strtoul(mode + 5, NULL, 10);
		struct drm_clip_rect all = { 0, 0, (uint16_t)w, (uint16_t)h };
		struct drm_mode_fb_dirty_cmd d = { .fb_id = fbc.fb_id, .num_clips = 1,
						   .clips_ptr = (uintptr_t)&all };
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (uint32_t n = 0; n < frames; n++) {
			for (uint32_t y = 0; y < h; y++)
				((uint32_t *)(map + (size_t)y * cd.pitch))[n % w] = pattern2(n, y);
			if (xioctl(fd, DRM_IOCTL_MODE_DIRTYFB, &d) < 0)
				die("DIRTYFB");
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("@@VGB-VHOST bench %u %lld\n", frames,
		       (long long)(t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec));
		wait_host();
		return 0;
	}

	if (strcmp(mode, "once") == 0) {
		printf("@@VGB-VHOST done\n");
		fflush(stdout);
		return 0;
	}

	for (uint32_t y = RECT_Y; y < RECT_Y + RECT_H; y++) {
		uint32_t *row = (uint32_t *)(map + (size_t)y * cd.pitch);
		for (uint32_t x = RECT_X; x < RECT_X + RECT_W; x++)
			row[x] = pattern2(x, y);
	}
	struct drm_clip_rect clip = { RECT_X, RECT_Y, RECT_X + RECT_W, RECT_Y + RECT_H };
	struct drm_mode_fb_dirty_cmd dirty = { .fb_id = fbc.fb_id, .num_clips = 1,
					       .clips_ptr = (uintptr_t)&clip };
	if (xioctl(fd, DRM_IOCTL_MODE_DIRTYFB, &dirty) < 0)
		die("DIRTYFB");
	printf("@@VGB-VHOST frame2 %u %u %u %u\n", RECT_X, RECT_Y, RECT_W, RECT_H);
	wait_host();

	/* Full-frame redraws until the host kills the VM in the middle of one. */
	printf("@@VGB-VHOST busy\n");
	fflush(stdout);
	struct drm_clip_rect full = { 0, 0, (uint16_t)w, (uint16_t)h };
	dirty.clips_ptr = (uintptr_t)&full;
	for (uint32_t n = 0;; n++) {
		for (uint32_t y = 0; y < h; y += 4)
			((uint32_t *)(map + (size_t)y * cd.pitch))[n % w] = n;
		xioctl(fd, DRM_IOCTL_MODE_DIRTYFB, &dirty);
	}
}
