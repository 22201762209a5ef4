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

/* ---- sending ---- */

void vgb_server_client_update_events(struct client *c);

/* Marks @c for destruction at the next safe point (never destroyed under a callback). */
void vgb_server_client_kill(struct client *c, const char *why)
{
	if (c->dead)
		return;
	vgb_log(VGB_LOG_DEBUG, "client %u: disconnecting (%s)", c->id, why);
	c->dead = true;
}

static void outmsg_free(struct outmsg *m)
{
	for (unsigned i = 0; i < m->n_fds; i++)
		vgb_close(m->fds[i]);
	free(m);
}

/* Sends what is queued. Returns 0 (sent or still queued) or -errno (client is dead). */
int vgb_server_client_flush(struct client *c)
{
	while (c->outq) {
		struct outmsg *m = c->outq;
		ssize_t r;
		struct iovec iov = { m->data, m->len };
		union {
			char buf[CMSG_SPACE(sizeof(int) * VGB_PROTO_MAX_FDS)];
			struct cmsghdr align;
		} ctrl;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

		if (m->n_fds) {
			struct cmsghdr *cm;
			memset(&ctrl, 0, sizeof(ctrl));
			mh.msg_control = ctrl.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->n_fds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * m->n_fds);
			memcpy(CMSG_DATA(cm), m->fds, sizeof(int) * m->n_fds);
		}
		do
			r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->outq = m->next;
		if (!c->outq)
			c->outq_tail = &c->outq;
		c->outq_len--;
		outmsg_free(m);
	}
	return 0;
}

/*
 * Sends a reply (result, then @body) to request @type/@id with @n_fds borrowed fds. When the
 * socket is full the reply is queued (fds duplicated) and reading from the client pauses.
 */
void vgb_server_client_reply(struct client *c, uint16_t type, uint64_t id, int32_t result,
			 const void *body, size_t body_len, const int *fds, unsigned n_fds)
{
	struct vgb_msg_reply rh = { .result = result, .n_fds = n_fds };
	struct outmsg *m;
	size_t total;
	int r;

	if (c->dead)
		return;
	if (result < 0) {
		c->request_errors++;
		body_len = 0;
		n_fds = 0;
		rh.n_fds = 0;
	}
	if (!c->outq) {
		r = vgb_msg_send(c->fd, type, VGB_MSG_FLAG_REPLY, id, &rh, sizeof(rh), body, body_len,
				 fds, n_fds, MSG_DONTWAIT);
		if (r == 0)
			return;
		if (r != -EAGAIN) {
			vgb_server_client_kill(c, "send failed");
			return;
		}
	}
	if (c->outq_len >= MAX_OUTQ) {
		vgb_server_client_kill(c, "not reading its replies");
		return;
	}
	total = sizeof(struct vgb_msg_header) + sizeof(rh) + body_len;
	m = malloc(sizeof(*m) + total);
	if (!m) {
		vgb_server_client_kill(c, "out of memory");
		return;
	}
	m->next = NULL;
	m->n_fds = 0;
	for (unsigned i = 0; i < n_fds; i++) {
		int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			outmsg_free(m);
			vgb_server_client_kill(c, "cannot queue an fd");
			return;
		}
		m->fds[m->n_fds++] = fd;
	}
	ssize_t len = vgb_msg_encode(m->data, total, type, VGB_MSG_FLAG_REPLY, id, &rh, sizeof(rh),
				     body, body_len);
	if (len < 0) {
		outmsg_free(m);
		vgb_server_client_kill(c, "reply too large");
		return;
	}
	m->len = (size_t)len;
	*c->outq_tail = m;
	c->outq_tail = &m->next;
	c->outq_len++;
	vgb_server_client_update_events(c);
}

void vgb_server_client_update_events(struct client *c)
{
	struct epoll_event ev = { .data.ptr = &c->src };
	bool paused = c->outq || c->n_pending >= c->server->opts.max_pending;

	if (c->dead)
		return;
	/* EPOLLHUP (the peer closed) is always reported. */
	ev.events = (paused ? 0 : EPOLLIN) | (c->outq ? EPOLLOUT : 0);
	if (ev.events == c->events)
		return;
	if (epoll_ctl(c->server->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		vgb_server_client_kill(c, "epoll_ctl failed");
		return;
	}
	c->events = ev.events;
}

/* ---- fences ---- */

/* A fenced command (answered at once when its fence was already complete: a sink that takes
 * frames inside present, or an earlier completion). Its reply carries the fence flag too. */
bool vgb_server_is_fenced(const void *cmd, size_t len, const void *resp, size_t resp_len)
{
	struct virtio_gpu_ctrl_hdr h, rh;

	if (len < sizeof(h) || resp_len < sizeof(rh))
		return false;
	memcpy(&h, cmd, sizeof(h));
	memcpy(&rh, resp, sizeof(rh));
	return (h.flags & VIRTIO_GPU_FLAG_FENCE) && (rh.flags & VIRTIO_GPU_FLAG_FENCE);
}

void vgb_server_count_fence_latency(struct client *c, uint64_t dt)
{
	c->fence_latency_sum_ns += dt;
	c->fence_latency_max_ns = VGB_MAX(c->fence_latency_max_ns, dt);
	c->fences_replied++;
}

static void fence_done(void *data, uint64_t cookie, const void *resp, size_t len)
{
	struct client *c = data;
	struct pending **pp, *p;

	for (pp = &c->pending; (p = *pp); pp = &p->next)
		if (p->cookie == cookie)
			break;
	if (!p) {
		vgb_log(VGB_LOG_ERROR, "client %u: completion of unknown fence cookie %llu", c->id,
			(unsigned long long)cookie);
		return;
	}
	*pp = p->next;
	c->n_pending--;
	vgb_server_client_reply(c, VGB_MSG_VIRTIO_GPU_CMD, p->id, 0, resp, len, NULL, 0);
	vgb_server_count_fence_latency(c, vgb_now_ns() - p->t0_ns);
	free(p);
	vgb_server_client_update_events(c);
}

void vgb_server_client_destroy(struct client *c)
{
	struct vgb_server *s = c->server;
	struct client **pp;

	for (pp = &s->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			s->n_clients--;
			break;
		}
	if (c->fd >= 0) {
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	/* The gpu first: it drops its blobs (and listener) before the map and devices go. */
	vgb_gpu_destroy(c->gpu);
	vgb_memmap_destroy(c->map);
	for (uint32_t i = 0; i < c->n_devices; i++) {
		vgb_server_unwatch_faults(s, c->devices[i].dev);
		vgb_vfio_device_destroy(c->devices[i].dev);
	}
	free(c->devices);
	while (c->outq) {
		struct outmsg *m = c->outq;
		c->outq = m->next;
		outmsg_free(m);
	}
	while (c->pending) {
		struct pending *p = c->pending;
		c->pending = p->next;
		free(p);
	}
	if (c->slot < s->opts.max_clients)
		s->slots[c->slot] = false;
	vgb_log(VGB_LOG_DEBUG, "client %u: freed", c->id);
	free(c);
}

void vgb_server_reap_dead(struct vgb_server *s)
{
	struct client *c = s->clients, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->dead)
			vgb_server_client_destroy(c);
	}
}

static int client_create(struct vgb_server *s, int fd, const struct ucred *cred)
{
	struct vgb_gpu_config cfg = { 0 };
	struct epoll_event ev;
	struct client *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->src.kind = SOURCE_CLIENT;
	c->server = s;
	c->fd = fd;
	c->pid = cred->pid;
	c->uid = cred->uid;
	c->id = s->next_client_id++;
	c->next_device_id = s->n_devices + 1;
	c->outq_tail = &c->outq;
	c->next_cookie = 1;
	c->slot = UINT32_MAX;
	for (uint32_t i = 0; i < s->opts.max_clients; i++)
		if (!s->slots[i]) {
			c->slot = i;
			break;
		}
	/* Link first so that vgb_server_client_destroy() unwinds whatever follows. */
	c->next = s->clients;
	s->clients = c;
	s->n_clients++;
	if (c->slot == UINT32_MAX) {
		r = -EUSERS;
		goto fail;
	}
	s->slots[c->slot] = true;

	c->devices = calloc(s->opts.max_devices ? s->opts.max_devices : 1, sizeof(*c->devices));
	if (!c->devices) {
		r = -ENOMEM;
		goto fail;
	}
	r = vgb_memmap_create(&c->map);
	if (r < 0)
		goto fail;
	vgb_gpu_limits_init(&cfg.limits);
	cfg.limits.max_entries = s->opts.max_entries;
	cfg.limits.max_blob_bytes = s->opts.max_blob_size;
	cfg.limits.max_resources = s->opts.max_resources;
	cfg.limits.num_scanouts = s->opts.num_scanouts;
	if (s->opts.fence_timeout_ms)
		cfg.limits.fence_timeout_ms = s->opts.fence_timeout_ms;
	cfg.display = s->opts.display;
	cfg.scanout_base = c->slot * s->opts.num_scanouts;
	cfg.fence_done = fence_done;
	cfg.fence_data = c;
	r = vgb_gpu_create(c->map, &cfg, &c->gpu);
	if (r < 0)
		goto fail;

	ev.events = EPOLLIN;
	ev.data.ptr = &c->src;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		goto fail;
	}
	c->events = ev.events;
	vgb_log(VGB_LOG_DEBUG, "client %u: connected (pid %d, uid %u)", c->id, (int)c->pid,
		(unsigned)c->uid);
	return 0;

fail:
	c->fd = -1; /* the caller closes it */
	vgb_server_client_destroy(c);
	return r;
}

/* Keeps @fd until its first request, which gets @why as its answer. Takes ownership of @fd. */
static void refuse(struct vgb_server *s, int fd, int why)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct refused *rf = NULL;

	for (unsigned i = 0; i < MAX_REFUSED && !rf; i++)
		if (s->refused[i].fd < 0)
			rf = &s->refused[i];
	if (!rf) {
		rf = &s->refused[s->refused_next];
		s->refused_next = (s->refused_next + 1) % MAX_REFUSED;
		vgb_server_refused_close(s, rf);
	}
	rf->src.kind = SOURCE_REFUSED;
	ev.data.ptr = &rf->src;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return;
	}
	rf->fd = fd;
	rf->why = why;
}

void vgb_server_refused_close(struct vgb_server *s, struct refused *rf)
{
	if (rf->fd < 0)
		return;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, rf->fd, NULL);
	rf->fd = vgb_close(rf->fd);
}

void vgb_server_handle_refused(struct vgb_server *s, struct refused *rf)
{
	struct vgb_msg_reply rh = { .result = rf->why };
	struct vgb_msg msg;
	ssize_t n;

	if (rf->fd < 0)
		return;
	n = vgb_msg_recv(rf->fd, s->rxbuf, s->opts.max_msg, &msg);
	if (n == -EAGAIN)
		return;
	if (n > 0 || n == -EBADMSG || n == -EMSGSIZE) {
		vgb_msg_send(rf->fd, msg.hdr.type, VGB_MSG_FLAG_REPLY, msg.hdr.id, &rh, sizeof(rh),
			     NULL, 0, NULL, 0, MSG_DONTWAIT);
		if (n > 0)
			vgb_msg_close_fds(&msg);
	}
	vgb_server_refused_close(s, rf);
}

void vgb_server_handle_accept(struct vgb_server *s)
{
	for (int i = 0; i < 16; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd, r;

		fd = accept4(s->listen.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				vgb_log_errno(VGB_LOG_WARN, -errno, "accept");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			s->clients_rejected++;
			close(fd);
			continue;
		}
		if (cred.uid != s->opts.allowed_uid) {
			s->clients_rejected++;
			vgb_log_ratelimited(VGB_LOG_WARN,
					    "refused pid %d: uid %u is not the allowed uid %u "
					    "(--allowed-uid)",
					    (int)cred.pid, (unsigned)cred.uid,
					    (unsigned)s->opts.allowed_uid);
			refuse(s, fd, -EACCES);
			continue;
		}
		if (s->n_clients >= s->opts.max_clients) {
			s->clients_rejected++;
			vgb_log_ratelimited(VGB_LOG_WARN, "refused pid %d: %u clients already "
					    "(--max-clients)", (int)cred.pid, s->n_clients);
			refuse(s, fd, -EUSERS);
			continue;
		}
		r = client_create(s, fd, &cred);
		if (r < 0) {
			s->clients_rejected++;
			vgb_log_errno(VGB_LOG_WARN, r, "cannot serve pid %d", (int)cred.pid);
			close(fd);
			continue;
		}
		s->clients_accepted++;
	}
}


