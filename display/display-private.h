/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_DISPLAY_PRIVATE_H
#define VGB_DISPLAY_DISPLAY_PRIVATE_H

#include "vgb/display.h"

/*
 * Checks what every sink relies on: a scanout index in range, a size, a format we handle, and
 * a CPU view (when present) whose stride covers a row. Returns 0 or -EINVAL.
 */
int vgb_frame_check(const struct vgb_frame *frame);

/* The frame's damage clipped to the scanout; the whole scanout when the damage is empty. */
struct vgb_rect vgb_frame_damage(const struct vgb_frame *frame);

static inline void vgb_frame_complete(const struct vgb_frame *frame, int status)
{
	if (frame->done)
		frame->done(frame->done_data, status);
}

#endif
