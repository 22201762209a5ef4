/* SPDX-License-Identifier: MIT */
/* The sink interface: thin wrappers over each sink's ops. */
#include <errno.h>
#include <string.h>

#include "display-private.h"

const char *vgb_present_path_name(enum vgb_present_path path)
{
	switch (path) {
	case VGB_PATH_NONE:
		return "none";
	case VGB_PATH_DMABUF:
		return "dmabuf";
	case VGB_PATH_EGL:
		return "egl";
	case VGB_PATH_SHM_DIRECT:
		return "shm-direct";
	case VGB_PATH_SHM_COPY:
		return "shm-copy";
	case VGB_PATH_CAPTURE:
		return "capture";
	}
	return "unknown";
}

int vgb_display_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	if (!d || !frame)
		return -EINVAL;
	if (!d->ops->present)
		return -EOPNOTSUPP;
	return d->ops->present(d, frame);
}

void vgb_display_forget(struct vgb_display *d, uint64_t buffer_id)
{
	if (d && d->ops->forget && buffer_id)
		d->ops->forget(d, buffer_id);
}

void vgb_display_disable_scanout(struct vgb_display *d, uint32_t scanout)
{
	if (d && d->ops->disable_scanout)
		d->ops->disable_scanout(d, scanout);
}

int vgb_display_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			   uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y)
{
	if (!d)
		return -EINVAL;
	if (argb && (w == 0 || h == 0 || w > VGB_CURSOR_MAX || h > VGB_CURSOR_MAX))
		return -EINVAL;
	if (!d->ops->set_cursor)
		return 0;
	return d->ops->set_cursor(d, scanout, argb, w, h, hot_x, hot_y);
}

void vgb_display_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	if (d && d->ops->move_cursor)
		d->ops->move_cursor(d, scanout, x, y);
}

int vgb_display_get_fd(struct vgb_display *d)
{
	if (!d || !d->ops->get_fd)
		return -1;
	return d->ops->get_fd(d);
}

int vgb_display_dispatch(struct vgb_display *d)
{
	if (!d || !d->ops->dispatch)
		return 0;
	return d->ops->dispatch(d);
}

int vgb_display_next_timeout_ms(struct vgb_display *d)
{
	if (!d || !d->ops->next_timeout_ms)
		return -1;
	return d->ops->next_timeout_ms(d);
}

int vgb_display_reconnect(struct vgb_display *d)
{
	if (!d)
		return -EINVAL;
	if (!d->ops->reconnect)
		return 0;
	return d->ops->reconnect(d);
}

void vgb_display_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (d && d->ops->get_stats)
		d->ops->get_stats(d, ret);
}

void vgb_display_destroy(struct vgb_display *d)
{
	if (d && d->ops->destroy)
		d->ops->destroy(d);
}


int vgb_frame_check(const struct vgb_frame *frame)
{
	uint32_t bpp = vgb_format_bpp(frame->fourcc);
	uint64_t row;

	if (frame->scanout >= VGB_DISPLAY_MAX_SCANOUTS || frame->width == 0 ||
	    frame->height == 0 || frame->width > 16384 || frame->height > 16384 || bpp == 0)
		return -EINVAL;
	if (!frame->cpu && !frame->dmabuf)
		return -EINVAL;
	if (frame->cpu) {
		row = (uint64_t)frame->width * bpp;
		if (!frame->cpu->data || frame->cpu->stride < row)
			return -EINVAL;
	}
	if (frame->dmabuf) {
		const struct vgb_dmabuf *b = frame->dmabuf;
		if (b->n_planes == 0 || b->n_planes > VGB_DMABUF_MAX_PLANES)
			return -EINVAL;
		for (uint32_t i = 0; i < b->n_planes; i++)
			if (b->fd[i] < 0)
				return -EINVAL;
	}
	return 0;
}

struct vgb_rect vgb_frame_damage(const struct vgb_frame *frame)
{
	struct vgb_rect r = frame->damage;

	if (vgb_rect_is_empty(&r) || !vgb_rect_clip(&r, frame->width, frame->height))
		r = (struct vgb_rect){ 0, 0, frame->width, frame->height };
	return r;
}
