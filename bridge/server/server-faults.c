/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "gpu.h"
#include "memmap.h"
#include "protocol.h"
#include "server.h"
#include "vgb/display.h"
#include "vgb/iommufd.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#include "server-private.h"

/*
 * I/O page faults. A device opened through its VFIO cdev may come with a fault queue
 * (vgb_vfio_device_fault_queue): its fd joins the loop, every group read is answered (INVALID: the
 * daemon resolves no faults), and the counts go to STATS. A watch outlives its device until the
 * end of the dispatch round, so an event already fetched for it is skipped rather than used after
 * free.
 */

void vgb_server_watch_faults(struct vgb_server *s, struct vgb_vfio_device *dev)
{
	struct vgb_iommufd_fault_queue *q = vgb_vfio_device_fault_queue(dev);
	struct epoll_event ev = { .events = EPOLLIN };
	struct fault_watch *w;

	if (!q)
		return;
	w = calloc(1, sizeof(*w));
	if (!w) {
		/* Still usable: the kernel answers the device's faults when it is destroyed. */
		vgb_log(VGB_LOG_WARN, "device %s: no memory to watch its page faults", dev->name);
		return;
	}
	w->src.kind = SOURCE_FAULTS;
	w->dev = dev;
	w->q = q;
	ev.data.ptr = &w->src;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, vgb_iommufd_fault_queue_fd(q), &ev) == 0)
		w->polling = true;
	else
		vgb_log(VGB_LOG_WARN, "device %s: cannot poll its page faults: %s", dev->name,
			strerror(errno));
	w->next = s->fault_watches;
	s->fault_watches = w;
}

static void fault_stats_add(struct vgb_iommufd_fault_stats *sum,
			    const struct vgb_iommufd_fault_stats *st)
{
	sum->groups += st->groups;
	sum->records += st->records;
	sum->response_errors += st->response_errors;
	sum->malformed += st->malformed;
	sum->short_reads += st->short_reads;
	sum->oversized += st->oversized;
}

/* Before @dev is destroyed: stop polling, keep its counts. */
void vgb_server_unwatch_faults(struct vgb_server *s, struct vgb_vfio_device *dev)
{
	for (struct fault_watch *w = s->fault_watches; w; w = w->next) {
		struct vgb_iommufd_fault_stats st;

		if (w->dev != dev)
			continue;
		if (w->polling)
			epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, vgb_iommufd_fault_queue_fd(w->q), NULL);
		vgb_iommufd_fault_queue_get_stats(w->q, &st);
		fault_stats_add(&s->faults_retired, &st);
		w->polling = false;
		w->dev = NULL;
		w->q = NULL;
	}
}

void vgb_server_free_unwatched(struct vgb_server *s)
{
	struct fault_watch **pp = &s->fault_watches;

	while (*pp) {
		struct fault_watch *w = *pp;
		if (w->dev) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		free(w);
	}
}

void vgb_server_handle_faults(struct vgb_server *s, struct fault_watch *w)
{
	int r;

	if (!w->dev || !w->polling)
		return;
	r = vgb_iommufd_fault_queue_dispatch(w->q);
	if (r == -EMSGSIZE) {
		/* It cannot make progress; polling it would spin. Its groups are answered when the
		 * device goes. */
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, vgb_iommufd_fault_queue_fd(w->q), NULL);
		w->polling = false;
		vgb_log(VGB_LOG_WARN, "device %s: a page-fault group too large to read; "
			"no longer reading its faults", w->dev->name);
	} else if (r < 0) {
		vgb_log_ratelimited(VGB_LOG_WARN, "device %s: page faults: %s", w->dev->name,
				    strerror(-r));
	}
}

/* Counts of every fault queue the daemon has had. */
void vgb_server_fault_totals(const struct vgb_server *s, uint32_t *ret_polling,
			 struct vgb_iommufd_fault_stats *ret)
{
	*ret = s->faults_retired;
	*ret_polling = 0;
	for (const struct fault_watch *w = s->fault_watches; w; w = w->next) {
		struct vgb_iommufd_fault_stats st;

		if (!w->dev)
			continue;
		vgb_iommufd_fault_queue_get_stats(w->q, &st);
		fault_stats_add(ret, &st);
		if (w->polling)
			(*ret_polling)++;
	}
}

