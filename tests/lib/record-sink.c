/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "record-sink.h"
#include "vgb/util.h"

static struct record_sink *from(struct vgb_display *d)
{
	return vgb_container_of(d, struct record_sink, base);
}

static int rs_present(struct vgb_display *d, const struct vgb_frame *f)
{
	struct record_sink *s = from(d);
	struct record_frame *rf;

	if (s->present_result < 0)
		return s->present_result;
	if (s->n_frames >= RECORD_SINK_MAX_FRAMES)
		return -ENOSPC;
	rf = &s->frames[s->n_frames++];
	memset(rf, 0, sizeof(*rf));
	rf->frame = *f;
	rf->memfd = -1;
	if (f->dmabuf) {
		rf->had_dmabuf = true;
		rf->dmabuf = *f->dmabuf;
	}
	if (f->cpu) {
		rf->had_cpu = true;
		rf->memfd = f->cpu->memfd;
		rf->memfd_offset = f->cpu->memfd_offset;
		rf->cpu_data = f->cpu->data;
		rf->cpu_stride = f->cpu->stride;
		rf->pixels = malloc((size_t)f->width * f->height * 4);
		if (rf->pixels)
			for (uint32_t y = 0; y < f->height; y++)
				memcpy(rf->pixels + (size_t)y * f->width * 4,
				       (const uint8_t *)f->cpu->data + (size_t)y * f->cpu->stride,
				       (size_t)f->width * 4);
	}
	if (s->auto_complete)
		record_sink_complete(s, s->n_frames - 1, 0);
	return 0;
}

static void rs_forget(struct vgb_display *d, uint64_t id)
{
	from(d)->n_forgets++;
	from(d)->last_forget = id;
}

static void rs_disable(struct vgb_display *d, uint32_t scanout)
{
	from(d)->n_disables++;
	from(d)->last_disabled = scanout;
}

static int rs_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			 uint32_t w, uint32_t h, uint32_t hx, uint32_t hy)
{
	struct record_sink *s = from(d);

	s->n_cursor_sets++;
	s->cursor_visible = argb != NULL;
	s->cursor_w = w;
	s->cursor_h = h;
	s->cursor_first_pixel = argb ? argb[0] : 0;
	return 0;
}

static void rs_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	from(d)->n_cursor_moves++;
	from(d)->cursor_x = x;
	from(d)->cursor_y = y;
}

static void rs_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct record_sink *s = from(d);

	memset(ret, 0, sizeof(*ret));
	for (unsigned i = 0; i < s->n_frames; i++)
		if (s->frames[i].completed)
			ret->frames_presented++;
	ret->connected = true;
}

static const struct vgb_display_ops rs_ops = {
	.name = "record",
	.present = rs_present,
	.forget = rs_forget,
	.disable_scanout = rs_disable,
	.set_cursor = rs_set_cursor,
	.move_cursor = rs_move_cursor,
	.get_stats = rs_get_stats,
};

struct record_sink *record_sink_create(void)
{
	struct record_sink *s = calloc(1, sizeof(*s));

	if (s)
		s->base.ops = &rs_ops;
	return s;
}

bool record_sink_complete(struct record_sink *s, unsigned i, int status)
{
	struct record_frame *rf;

	if (i >= s->n_frames || s->frames[i].completed)
		return false;
	rf = &s->frames[i];
	rf->completed = true;
	if (rf->frame.done)
		rf->frame.done(rf->frame.done_data, status);
	return true;
}

void record_sink_complete_all(struct record_sink *s, int status)
{
	for (unsigned i = 0; i < s->n_frames; i++)
		record_sink_complete(s, i, status);
}

void record_sink_clear(struct record_sink *s)
{
	record_sink_complete_all(s, -ECANCELED);
	for (unsigned i = 0; i < s->n_frames; i++)
		free(s->frames[i].pixels);
	s->n_frames = 0;
}

void record_sink_destroy(struct record_sink *s)
{
	if (!s)
		return;
	record_sink_complete_all(s, -EPIPE);
	record_sink_clear(s);
	free(s);
}
