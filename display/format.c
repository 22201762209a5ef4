/* SPDX-License-Identifier: MIT */
/* virtio-gpu formats, DRM fourccs, wl_shm formats, and the gather copy. */
#include <drm_fourcc.h>
#include <string.h>

#include "vgb/display.h"
#include "vgb/guard.h"
#include "vgb/util.h"

/* VIRTIO_GPU_FORMAT_* name memory byte order; DRM fourccs name a little-endian word. */
static const struct {
	uint32_t virtio;
	uint32_t drm;
} virtio_formats[] = {
	{ 1, DRM_FORMAT_ARGB8888 },   /* B8G8R8A8_UNORM */
	{ 2, DRM_FORMAT_XRGB8888 },   /* B8G8R8X8_UNORM */
	{ 3, DRM_FORMAT_BGRA8888 },   /* A8R8G8B8_UNORM */
	{ 4, DRM_FORMAT_BGRX8888 },   /* X8R8G8B8_UNORM */
	{ 67, DRM_FORMAT_ABGR8888 },  /* R8G8B8A8_UNORM */
	{ 68, DRM_FORMAT_RGBX8888 },  /* X8B8G8R8_UNORM */
	{ 121, DRM_FORMAT_RGBA8888 }, /* A8B8G8R8_UNORM */
	{ 134, DRM_FORMAT_XBGR8888 }, /* R8G8B8X8_UNORM */
};

uint32_t vgb_format_virtio_to_drm(uint32_t virtio_format)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(virtio_formats); i++)
		if (virtio_formats[i].virtio == virtio_format)
			return virtio_formats[i].drm;
	return 0;
}

uint32_t vgb_format_bpp(uint32_t fourcc)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(virtio_formats); i++)
		if (virtio_formats[i].drm == fourcc)
			return 4;
	return 0;
}

int64_t vgb_format_drm_to_wl_shm(uint32_t fourcc)
{
	/* wl_shm's two historical exceptions; every other wl_shm format is the fourcc. */
	if (fourcc == DRM_FORMAT_ARGB8888)
		return 0;
	if (fourcc == DRM_FORMAT_XRGB8888)
		return 1;
	if (vgb_format_bpp(fourcc) == 0)
		return -1;
	return fourcc;
}

bool vgb_format_has_alpha(uint32_t fourcc)
{
	switch (fourcc) {
	case DRM_FORMAT_ARGB8888:
	case DRM_FORMAT_BGRA8888:
	case DRM_FORMAT_ABGR8888:
	case DRM_FORMAT_RGBA8888:
		return true;
	default:
		return false;
	}
}

void vgb_format_to_rgba(uint32_t fourcc, uint32_t px, uint8_t ret_rgba[4])
{
	uint8_t r, g, b, a;

	switch (fourcc) {
	case DRM_FORMAT_ARGB8888:
	case DRM_FORMAT_XRGB8888:
		a = px >> 24, r = px >> 16, g = px >> 8, b = px;
		break;
	case DRM_FORMAT_BGRA8888:
	case DRM_FORMAT_BGRX8888:
		b = px >> 24, g = px >> 16, r = px >> 8, a = px;
		break;
	case DRM_FORMAT_ABGR8888:
	case DRM_FORMAT_XBGR8888:
		a = px >> 24, b = px >> 16, g = px >> 8, r = px;
		break;
	case DRM_FORMAT_RGBA8888:
	case DRM_FORMAT_RGBX8888:
		r = px >> 24, g = px >> 16, b = px >> 8, a = px;
		break;
	default:
		r = g = b = a = 0;
		break;
	}
	if (!vgb_format_has_alpha(fourcc))
		a = 0xff;
	ret_rgba[0] = r;
	ret_rgba[1] = g;
	ret_rgba[2] = b;
	ret_rgba[3] = a;
}

int vgb_copy_rect(void *dst, uint32_t dst_stride, const struct vgb_cpu_view *src,
		  const struct vgb_rect *rect, uint32_t bpp)
{
	size_t row = (size_t)rect->width * bpp;
	size_t xoff = (size_t)rect->x * bpp;

	if (row == 0 || rect->height == 0)
		return 0;
	/* The view may be a BAR the guest stops decoding, or a dmabuf revoked under us: a fault
	 * there is a failed frame, not a dead process. */
	return vgb_guarded_copy_2d((char *)dst + (size_t)rect->y * dst_stride + xoff, dst_stride,
				   (const char *)src->data + (size_t)rect->y * src->stride + xoff,
				   src->stride, row, rect->height);
}

bool vgb_rect_is_empty(const struct vgb_rect *r)
{
	return r->width == 0 || r->height == 0;
}

void vgb_rect_union(struct vgb_rect *acc, const struct vgb_rect *r)
{
	if (vgb_rect_is_empty(r))
		return;
	if (vgb_rect_is_empty(acc)) {
		*acc = *r;
		return;
	}
	uint64_t x1 = VGB_MIN(acc->x, r->x), y1 = VGB_MIN(acc->y, r->y);
	uint64_t x2 = VGB_MAX((uint64_t)acc->x + acc->width, (uint64_t)r->x + r->width);
	uint64_t y2 = VGB_MAX((uint64_t)acc->y + acc->height, (uint64_t)r->y + r->height);
	acc->x = (uint32_t)x1;
	acc->y = (uint32_t)y1;
	acc->width = (uint32_t)(x2 - x1);
	acc->height = (uint32_t)(y2 - y1);
}

bool vgb_rect_clip(struct vgb_rect *r, uint32_t width, uint32_t height)
{
	if (r->x >= width || r->y >= height) {
		*r = (struct vgb_rect){ 0 };
		return false;
	}
	r->width = VGB_MIN(r->width, width - r->x);
	r->height = VGB_MIN(r->height, height - r->y);
	return !vgb_rect_is_empty(r);
}
