/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_CONNECTION_H
#define VGB_DISPLAY_WAYLAND_CONNECTION_H

/* The compositor connection: connect, bind, pump, flush, tear down. */

#include "wayland-private.h"

/*
 * Connects to s->socket_name (NULL: $WAYLAND_DISPLAY) and binds the globals, waiting at most
 * opts.timeout_ms for each of two round trips. Returns 0, -EPROTONOSUPPORT (no wl_compositor,
 * wl_shm or xdg_wm_base), -ETIMEDOUT, or -errno of the connect; the sink is then disconnected.
 */
int vgb_wayland_connect(struct wayland_sink *s);
/*
 * Drops every Wayland object: windows, frames in flight and pending (completed with @status),
 * cached buffers, the EGL importer. Scanouts keep their cursor image for a reconnect.
 */
void vgb_wayland_disconnect(struct wayland_sink *s, int status);
/* The compositor went: disconnects with -EPIPE and schedules a reconnect (opts.reconnect_ms). */
void vgb_wayland_lost(struct wayland_sink *s);
/*
 * Flushes requests. A full socket is not an error: need_flush is set and dispatch retries.
 * Returns 0 or -EPIPE (the caller then calls vgb_wayland_lost()).
 */
int vgb_wayland_flush(struct wayland_sink *s);
/* Reads and dispatches what is there, waiting at most @wait_ms. Returns 0 or -EPIPE. */
int vgb_wayland_pump(struct wayland_sink *s, int wait_ms);

#endif
