/* SPDX-License-Identifier: MIT */
/* A private GMainContext watched through one epoll fd: see gloop.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "gloop.h"

int vgb_gloop_init(struct vgb_gloop *l)
{
	memset(l, 0, sizeof(*l));
	l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epoll_fd < 0)
		return -errno;
	l->ctx = g_main_context_new();
	g_main_context_acquire(l->ctx);
	g_main_context_push_thread_default(l->ctx);
	return 0;
}

void vgb_gloop_finish(struct vgb_gloop *l)
{
	if (l->ctx) {
		/* Let cancelled operations deliver their callbacks before the context goes. */
		for (int i = 0; i < 100 && g_main_context_iteration(l->ctx, FALSE); i++)
			;
		g_main_context_pop_thread_default(l->ctx);
		g_main_context_release(l->ctx);
		g_main_context_unref(l->ctx);
		l->ctx = NULL;
	}
	if (l->epoll_fd > 0)
		close(l->epoll_fd);
	l->epoll_fd = -1;
	free(l->fds);
	free(l->watched);
	l->fds = NULL;
	l->watched = NULL;
	l->n_fds = l->cap_fds = l->n_watched = l->cap_watched = 0;
}

int vgb_gloop_get_fd(const struct vgb_gloop *l)
{
	return l->epoll_fd;
}

static uint32_t poll_to_epoll(gushort events)
{
	uint32_t e = 0;

	if (events & G_IO_IN)
		e |= EPOLLIN;
	if (events & G_IO_OUT)
		e |= EPOLLOUT;
	if (events & G_IO_PRI)
		e |= EPOLLPRI;
	return e;
}

/* Makes the epoll set equal to the queried fds (with their events OR-ed per fd). */
static int sync_epoll(struct vgb_gloop *l)
{
	int *want = calloc((size_t)l->n_fds + 1, sizeof(int));
	uint32_t *ev = calloc((size_t)l->n_fds + 1, sizeof(uint32_t));
	int n_want = 0, r = 0;

	if (!want || !ev) {
		free(want);
		free(ev);
		return -ENOMEM;
	}
	for (int i = 0; i < l->n_fds; i++) {
		int j;
		for (j = 0; j < n_want && want[j] != l->fds[i].fd; j++)
			;
		if (j == n_want)
			want[n_want++] = l->fds[i].fd;
		ev[j] |= poll_to_epoll(l->fds[i].events);
	}
	/* Remove what is no longer wanted. */
	for (int i = 0; i < l->n_watched; i++) {
		bool keep = false;
		for (int j = 0; j < n_want; j++)
			keep |= want[j] == l->watched[i];
		if (!keep)
			epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, l->watched[i], NULL);
	}
	/* Add or modify the rest. */
	for (int j = 0; j < n_want; j++) {
		struct epoll_event e = { .events = ev[j], .data.fd = want[j] };
		bool had = false;
		for (int i = 0; i < l->n_watched; i++)
			had |= l->watched[i] == want[j];
		if (epoll_ctl(l->epoll_fd, had ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, want[j], &e) < 0 &&
		    !(had && errno == ENOENT)) {
			r = -errno;
			break;
		}
	}
	free(ev);
	free(l->watched);
	l->watched = want;
	l->n_watched = n_want;
	return r;
}

int vgb_gloop_dispatch(struct vgb_gloop *l, unsigned max_rounds)
{
	gint prio = 0, timeout = -1, n;
	bool ready;

	for (unsigned i = 0; i < max_rounds && g_main_context_iteration(l->ctx, FALSE); i++)
		;
	/* What to watch until the next round: one prepare/query/check without dispatching. */
	ready = g_main_context_prepare(l->ctx, &prio);
	for (;;) {
		n = g_main_context_query(l->ctx, prio, &timeout, l->fds, l->cap_fds);
		if (n <= l->cap_fds)
			break;
		GPollFD *nf = realloc(l->fds, (size_t)n * sizeof(*nf));
		if (!nf) {
			g_main_context_check(l->ctx, prio, NULL, 0);
			return -ENOMEM;
		}
		l->fds = nf;
		l->cap_fds = n;
	}
	l->n_fds = n;
	for (int i = 0; i < n; i++)
		l->fds[i].revents = 0;
	ready |= g_main_context_check(l->ctx, prio, l->fds, n);
	int r = sync_epoll(l);
	if (r < 0)
		return r;
	/* Sources still ready after the bounded rounds: come back at once. */
	return ready ? 0 : timeout;
}
