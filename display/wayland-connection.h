/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_CONNECTION_H
#define VGB_DISPLAY_WAYLAND_CONNECTION_H

/* The compositor connection: connect, bind, pump, flush, tear down. */

#include "wayland-private.h"

/*
 * Starts connecting to s->socket_name (NULL: $WAYLAND_DISPLAY) without waiting: the socket is
 * connected and the first round trip asked for; s->display is set, s->connected not yet. The
 * sink's dispatch pumps the socket and calls vgb_wayland_connect_step(). Returns 0 (or 0 when
 * a connection exists or is under way), or -errno of the socket (the compositor is not there).
 */
int vgb_wayland_connect_start(struct wayland_sink *s);
/*
 * Moves the handshake on after a pump: two round trips (globals; then formats, dmabuf
 * feedback, clock, seat), each answered within opts.timeout_ms. Returns 1 once connected, 0
 * while under way, or -errno (-ETIMEDOUT, -EPROTONOSUPPORT: no wl_compositor, wl_shm or
 * xdg_wm_base), the sink then disconnected.
 */
int vgb_wayland_connect_step(struct wayland_sink *s);
/* Start and steps, waiting for the compositor (at most opts.timeout_ms per round trip): for
 * vgb_display_create_wayland(), before there is a loop to keep. Returns 0 or -errno. */
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
