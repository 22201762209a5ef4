/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_WINDOW_H
#define VGB_DISPLAY_WAYLAND_WINDOW_H

/*
 * A scanout's window: an xdg_toplevel on its own wl_surface, scaled by wp_viewporter to the size
 * the compositor configures, and the frame waiting to go on it (latest frame wins).
 */

#include "wayland-private.h"

/* The scanout state for @index (made when absent; no window yet). Returns 0 or -ENOMEM. */
int vgb_wayland_scanout_new(struct wayland_sink *s, uint32_t index, struct scanout **ret);
/* The scanout for @index with its window open (the caller flushes). Returns 0 or -errno. */
int vgb_wayland_scanout_get(struct wayland_sink *s, uint32_t index, struct scanout **ret);
/*
 * Destroys the scanout's Wayland objects; the pending frame and any frame in flight complete
 * with @status. The cursor image stays for the next window.
 */
void vgb_wayland_scanout_drop_window(struct scanout *so, int status);
/* Drops the window and frees the scanout (accepts NULL). */
void vgb_wayland_scanout_destroy(struct scanout *so);
/* Records the size of the buffer about to be attached, and rescales the viewport. */
void vgb_wayland_scanout_set_buffer_size(struct scanout *so, uint32_t width, uint32_t height);

/* Forgets the pending frame without completing it (its completion moved elsewhere). */
void vgb_wayland_pending_clear(struct pending_frame *p);
/* Completes the pending frame with @status and forgets it. */
void vgb_wayland_pending_finish(struct pending_frame *p, int status);

#endif
