/* SPDX-License-Identifier: MIT */
/* Format tables, pixel decoding, rectangles and the gather copy, table-driven. */
#include <drm_fourcc.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"

static const struct {
	uint32_t virtio;
	uint32_t drm;
	int64_t shm;
	bool alpha;
	/* the bytes B0..B3 of one pixel in memory, and the colour they mean */
	uint8_t mem[4];
	uint8_t rgba[4];
} formats[] = {
	{ 1, DRM_FORMAT_ARGB8888, 0, true, { 0x30, 0x20, 0x10, 0x80 }, { 0x10, 0x20, 0x30, 0x80 } },
	{ 2, DRM_FORMAT_XRGB8888, 1, false, { 0x30, 0x20, 0x10, 0x80 }, { 0x10, 0x20, 0x30, 0xff } },
	{ 3, DRM_FORMAT_BGRA8888, DRM_FORMAT_BGRA8888, true, { 0x80, 0x10, 0x20, 0x30 },
	  { 0x10, 0x20, 0x30, 0x80 } },
	{ 4, DRM_FORMAT_BGRX8888, DRM_FORMAT_BGRX8888, false, { 0x80, 0x10, 0x20, 0x30 },
	  { 0x10, 0x20, 0x30, 0xff } },
	{ 67, DRM_FORMAT_ABGR8888, DRM_FORMAT_ABGR8888, true, { 0x10, 0x20, 0x30, 0x80 },
	  { 0x10, 0x20, 0x30, 0x80 } },
	{ 68, DRM_FORMAT_RGBX8888, DRM_FORMAT_RGBX8888, false, { 0x80, 0x30, 0x20, 0x10 },
	  { 0x10, 0x20, 0x30, 0xff } },
	{ 121, DRM_FORMAT_RGBA8888, DRM_FORMAT_RGBA8888, true, { 0x80, 0x30, 0x20, 0x10 },
	  { 0x10, 0x20, 0x30, 0x80 } },
	{ 134, DRM_FORMAT_XBGR8888, DRM_FORMAT_XBGR8888, false, { 0x10, 0x20, 0x30, 0x80 },
	  { 0x10, 0x20, 0x30, 0xff } },
};

static void test_formats(void)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(formats); i++) {
		uint32_t px;
		uint8_t rgba[4];

		tap_is_uint(vgb_format_virtio_to_drm(formats[i].virtio), formats[i].drm,
			    "virtio format %u -> DRM", formats[i].virtio);
		tap_is_int(vgb_format_drm_to_wl_shm(formats[i].drm), formats[i].shm,
			   "virtio format %u -> wl_shm", formats[i].virtio);
		tap_is_uint(vgb_format_bpp(formats[i].drm), 4, "virtio format %u: 4 bytes",
			    formats[i].virtio);
		tap_ok(vgb_format_has_alpha(formats[i].drm) == formats[i].alpha,
		       "virtio format %u: alpha %d", formats[i].virtio, formats[i].alpha);
		memcpy(&px, formats[i].mem, 4);
		vgb_format_to_rgba(formats[i].drm, px, rgba);
		tap_is_mem(rgba, formats[i].rgba, 4, "virtio format %u: memory bytes decode",
			   formats[i].virtio);
	}
	static const uint32_t unknown_virtio[] = { 0, 5, 66, 69, 120, 122, 133, 135, 0xffffffff };
	for (size_t i = 0; i < VGB_ARRAY_SIZE(unknown_virtio); i++)
		tap_is_uint(vgb_format_virtio_to_drm(unknown_virtio[i]), 0,
			    "unknown virtio format %u -> 0", unknown_virtio[i]);
	static const uint32_t unknown_drm[] = { 0, DRM_FORMAT_NV12, DRM_FORMAT_RGB565,
						DRM_FORMAT_XRGB2101010, 1, 0xffffffff };
	for (size_t i = 0; i < VGB_ARRAY_SIZE(unknown_drm); i++) {
		tap_is_int(vgb_format_drm_to_wl_shm(unknown_drm[i]), -1, "unknown fourcc 0x%x -> -1",
			   unknown_drm[i]);
		tap_is_uint(vgb_format_bpp(unknown_drm[i]), 0, "unknown fourcc 0x%x: bpp 0",
			    unknown_drm[i]);
	}
}

#define SW 13
#define SH 9

static void test_copy(void)
{
	static const struct {
		struct vgb_rect r;
		uint32_t src_stride, dst_stride;
	} cases[] = {
		{ { 0, 0, SW, SH }, SW * 4, SW * 4 },
		{ { 0, 0, SW, SH }, SW * 4 + 12, SW * 4 },
		{ { 3, 2, 5, 4 }, SW * 4 + 4, SW * 4 + 32 },
		{ { SW - 1, SH - 1, 1, 1 }, SW * 4, SW * 4 },
		{ { 4, 4, 0, 3 }, SW * 4, SW * 4 },
		{ { 4, 4, 3, 0 }, SW * 4, SW * 4 },
		{ { 0, 5, SW, 1 }, SW * 4 + 8, SW * 4 + 8 },
	};

	for (size_t c = 0; c < VGB_ARRAY_SIZE(cases); c++) {
		uint32_t src[SH * (SW + 8)], dst[SH * (SW + 8)], want[SH * (SW + 8)];
		struct vgb_cpu_view v = { .data = src, .stride = cases[c].src_stride, .memfd = -1 };
		const struct vgb_rect *r = &cases[c].r;
		uint32_t ss = cases[c].src_stride / 4, ds = cases[c].dst_stride / 4;

		for (size_t i = 0; i < VGB_ARRAY_SIZE(src); i++)
			src[i] = 0x01000000u * (uint32_t)c + (uint32_t)i;
		memset(dst, 0xee, sizeof(dst));
		memset(want, 0xee, sizeof(want));
		for (uint32_t y = r->y; y < r->y + r->height; y++)
			for (uint32_t x = r->x; x < r->x + r->width; x++)
				want[y * ds + x] = src[y * ss + x];
		tap_is_int(vgb_copy_rect(dst, cases[c].dst_stride, &v, r, 4), 0, "copy case %zu: 0", c);
		tap_is_mem(dst, want, sizeof(dst),
			   "copy case %zu: rect %ux%u+%u+%u, strides %u/%u: exactly the rectangle", c,
			   r->width, r->height, r->x, r->y, cases[c].src_stride, cases[c].dst_stride);
	}
}

/* A view whose lower rows lie on a page cut from the memfd under the mapping. */
static void test_copy_fault(void)
{
	const uint32_t stride = 1024;
	int fd = memfd_create("vanishing", MFD_CLOEXEC);
	static uint32_t dst[8 * 256];
	void *map = MAP_FAILED;

	if (fd >= 0 && ftruncate(fd, 2 * 4096) == 0)
		map = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED || ftruncate(fd, 4096) < 0) {
		tap_ok(false, "a memfd cut under its mapping");
	} else {
		struct vgb_cpu_view v = { .data = map, .stride = stride, .memfd = -1 };
		struct vgb_rect top = { 0, 0, 256, 4 }, all = { 0, 0, 256, 8 }, low = { 8, 6, 4, 1 };

		((uint32_t *)map)[3 * 256 + 7] = 0x12345678;
		tap_is_int(vgb_copy_rect(dst, 1024, &v, &top, 4), 0, "rows on the page still backed");
		tap_is_uint(dst[3 * 256 + 7], 0x12345678, "copied");
		tap_is_int(vgb_copy_rect(dst, 1024, &v, &all, 4), -EIO,
			   "rows reaching the cut page: -EIO, not SIGBUS");
		tap_is_int(vgb_copy_rect(dst, 1024, &v, &low, 4), -EIO,
			   "a rectangle inside the cut page: -EIO");
		tap_is_int(vgb_copy_rect(dst, 1024, &v, &top, 4), 0, "and copies work after it");
	}
	if (map != MAP_FAILED)
		munmap(map, 2 * 4096);
	if (fd >= 0)
		close(fd);
}

static void test_rects(void)
{
	static const struct {
		struct vgb_rect a, b, want;
	} unions[] = {
		{ { 0, 0, 0, 0 }, { 1, 2, 3, 4 }, { 1, 2, 3, 4 } },
		{ { 1, 2, 3, 4 }, { 0, 0, 0, 0 }, { 1, 2, 3, 4 } },
		{ { 0, 0, 2, 2 }, { 5, 5, 1, 1 }, { 0, 0, 6, 6 } },
		{ { 4, 4, 4, 4 }, { 5, 5, 1, 1 }, { 4, 4, 4, 4 } },
		{ { 4, 4, 4, 4 }, { 0, 6, 2, 10 }, { 0, 4, 8, 12 } },
	};
	for (size_t i = 0; i < VGB_ARRAY_SIZE(unions); i++) {
		struct vgb_rect r = unions[i].a;
		vgb_rect_union(&r, &unions[i].b);
		tap_is_mem(&r, &unions[i].want, sizeof(r), "union case %zu", i);
	}
	static const struct {
		struct vgb_rect r;
		bool left;
		struct vgb_rect want;
	} clips[] = {
		{ { 0, 0, 10, 10 }, true, { 0, 0, 10, 10 } },
		{ { 5, 5, 10, 10 }, true, { 5, 5, 5, 5 } },
		{ { 10, 0, 1, 1 }, false, { 0, 0, 0, 0 } },
		{ { 0, 10, 1, 1 }, false, { 0, 0, 0, 0 } },
		{ { 9, 9, 0xffffffff, 0xffffffff }, true, { 9, 9, 1, 1 } },
		{ { 0xffffffff, 0, 1, 1 }, false, { 0, 0, 0, 0 } },
	};
	for (size_t i = 0; i < VGB_ARRAY_SIZE(clips); i++) {
		struct vgb_rect r = clips[i].r;
		bool left = vgb_rect_clip(&r, 10, 10);
		tap_ok(left == clips[i].left, "clip case %zu: something left = %d", i, clips[i].left);
		tap_is_mem(&r, &clips[i].want, sizeof(r), "clip case %zu: result", i);
	}
	static const struct vgb_rect empty[] = { { 0, 0, 0, 5 }, { 3, 3, 5, 0 } };
	for (size_t i = 0; i < VGB_ARRAY_SIZE(empty); i++)
		tap_ok(vgb_rect_is_empty(&empty[i]), "empty case %zu", i);
}

static void test_path_names(void)
{
	static const struct {
		enum vgb_present_path p;
		const char *name;
	} names[] = {
		{ VGB_PATH_NONE, "none" },         { VGB_PATH_DMABUF, "dmabuf" },
		{ VGB_PATH_EGL, "egl" },           { VGB_PATH_SHM_DIRECT, "shm-direct" },
		{ VGB_PATH_SHM_COPY, "shm-copy" }, { VGB_PATH_CAPTURE, "capture" },
	};
	for (size_t i = 0; i < VGB_ARRAY_SIZE(names); i++)
		tap_is_str(vgb_present_path_name(names[i].p), names[i].name, "path name %zu", i);
}

int main(void)
{
	tap_plan_lazy();
	test_formats();
	test_copy();
	test_copy_fault();
	test_rects();
	test_path_names();
	return tap_done();
}
