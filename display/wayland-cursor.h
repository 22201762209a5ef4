/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_CURSOR_H
#define VGB_DISPLAY_WAYLAND_CURSOR_H

/* The seat's pointer and each scanout's cursor surface. */

#include "wayland-private.h"

/* Binds the registry's wl_seat @name and follows its pointer. */
void vgb_wayland_seat_bind(struct wayland_sink *s, struct wl_registry *registry, uint32_t name,
			   uint32_t version);
/* Destroys the pointer and the seat (either may be absent). */
void vgb_wayland_seat_release(struct wayland_sink *s);

/*
 * Shows the scanout's cursor image (so->cursor_argb; NULL hides it) on its cursor surface, and
 * sets it as the pointer's image when the pointer is over the scanout. The caller flushes.
 * Returns 0 or -errno (-EOPNOTSUPP: no ARGB8888 over wl_shm).
 */
int vgb_wayland_cursor_update(struct scanout *so);
/* Destroys the cursor surface and buffer; the image (cursor_argb) stays for the next window. */
void vgb_wayland_cursor_drop(struct scanout *so);

#endif
