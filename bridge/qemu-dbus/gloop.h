/* SPDX-License-Identifier: MIT */
#ifndef VGB_QEMU_DBUS_GLOOP_H
#define VGB_QEMU_DBUS_GLOOP_H

/*
 * A private GMainContext driven from an epoll loop without blocking it.
 *
 * GDBus does its socket I/O on its own worker thread and hands every method call, reply and
 * signal to the GMainContext that was thread-default when the object or call was made. That
 * context's only file descriptors are then its wakeup eventfd (the worker thread signals it
 * when it queues work) plus whatever sources we add. vgb_gloop keeps those fds in an epoll set
 * of its own, so the daemon's loop watches one fd: when it is readable, or when the timeout
 * from vgb_gloop_dispatch() expires, the loop calls vgb_gloop_dispatch() again, which runs
 * the ready sources without ever waiting (g_main_context_iteration(ctx, FALSE)).
 *
 * The context is acquired by and pushed as thread-default on the creating thread; every call
 * must come from that thread.
 */

#include <glib.h>

struct vgb_gloop {
	GMainContext *ctx;
	int epoll_fd;
	GPollFD *fds;   /* from the last query */
	int n_fds, cap_fds;
	int *watched;   /* fds in epoll_fd */
	int n_watched, cap_watched;
};

/* Creates the context and its epoll fd, and makes the context thread-default. 0 or -errno. */
int vgb_gloop_init(struct vgb_gloop *l);
/* Pops and releases the context; closes the epoll fd. Accepts a zeroed or finished loop. */
void vgb_gloop_finish(struct vgb_gloop *l);
/* The fd to watch for EPOLLIN. */
int vgb_gloop_get_fd(const struct vgb_gloop *l);
/*
 * Runs every ready source (bounded: at most @max_rounds non-blocking iterations), then
 * refreshes the watched fds. Returns the timeout in ms after which it must run again even if
 * nothing is readable (-1: none), or -errno when the epoll set could not be updated.
 */
int vgb_gloop_dispatch(struct vgb_gloop *l, unsigned max_rounds);

#endif
