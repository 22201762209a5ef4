/* SPDX-License-Identifier: MIT */
/* The sink's fd in the daemon's loop, and one line when the compositor goes, one when it is back. */
#include <sys/epoll.h>

#include "plumbing.h"
#include "vgb/display.h"
#include "vgb/log.h"

void vgb_daemon_display_watch(struct vgb_display_watch *w, struct vgb_display *d, int epoll_fd,
			      uint64_t data)
{
	struct vgb_display_stats st = { 0 };
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };
	int fd;

	if (!d)
		return;
	vgb_display_get_stats(d, &st);
	fd = vgb_display_get_fd(d);
	if (fd != w->fd || st.reconnects != w->reconnects) {
		if (w->fd >= 0)
			epoll_ctl(epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
		w->fd = -1;
		w->reconnects = st.reconnects;
		if (fd >= 0 && epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0)
			w->fd = fd;
	}
	if (w->connected && !st.connected) {
		vgb_log(VGB_LOG_WARN, "display %s: compositor lost; frames are dropped until it is "
			"back (retrying every second)", d->ops->name);
		w->warned = true;
	} else if (!w->connected && st.connected && w->warned) {
		vgb_log(VGB_LOG_INFO, "display %s: compositor back", d->ops->name);
		w->warned = false;
	}
	w->connected = st.connected;
}
