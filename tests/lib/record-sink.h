/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_RECORD_SINK_H
#define VGB_TESTS_RECORD_SINK_H

/*
 * A display sink for tests: it records every call, copies each frame's pixels out of the CPU
 * view at present time, and keeps each frame's completion until the test calls
 * record_sink_complete() (or completes at once in auto mode, like the null sink).
 */

#include <stdbool.h>
#include <stdint.h>

#include "vgb/display.h"

#define RECORD_SINK_MAX_FRAMES 64

struct record_frame {
	struct vgb_frame frame;  /* as presented; pointers inside are not kept valid */
	bool had_dmabuf, had_cpu;
	struct vgb_dmabuf dmabuf; /* copy of the descriptor (fds as numbers only) */
	int memfd;               /* cpu->memfd at present time */
	uint64_t memfd_offset;
	uint8_t *pixels;         /* width * height * 4, packed, copied from the CPU view */
	const void *cpu_data;    /* cpu->data, to read again before completion */
	uint32_t cpu_stride;
	bool completed;
};

struct record_sink {
	struct vgb_display base;
	bool auto_complete;   /* complete inside present (the null sink's behaviour) */
	int present_result;   /* when < 0, present fails with it and records nothing */
	unsigned n_frames;
	struct record_frame frames[RECORD_SINK_MAX_FRAMES];
	unsigned n_forgets, n_disables, n_cursor_sets, n_cursor_moves;
	uint64_t last_forget;
	uint32_t last_disabled;
	bool cursor_visible;
	uint32_t cursor_w, cursor_h, cursor_first_pixel;
	int32_t cursor_x, cursor_y;
};

struct record_sink *record_sink_create(void);
/* Completes frame @i with @status (calls its done callback). Returns false if already done. */
bool record_sink_complete(struct record_sink *s, unsigned i, int status);
/* Completes every frame not completed yet with @status. */
void record_sink_complete_all(struct record_sink *s, int status);
/* Forgets the recorded frames (completing open ones with -ECANCELED first). */
void record_sink_clear(struct record_sink *s);
/* Frees the recording; completes open frames with -EPIPE first, like a sink going away. */
void record_sink_destroy(struct record_sink *s);

#endif
