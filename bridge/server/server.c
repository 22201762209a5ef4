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

/* What an epoll event points at. */
enum source_kind {
	SOURCE_LISTEN = 1,
	SOURCE_SIGNAL,
	SOURCE_DISPLAY,
	SOURCE_CLIENT,
	SOURCE_FAULTS,
};

struct source {
	enum source_kind kind;
};

/* A reply that could not be sent at once (the client's socket was full). */
struct outmsg {
	struct outmsg *next;
	size_t len;
	int fds[VGB_PROTO_MAX_FDS];
	unsigned n_fds;
	uint8_t data[];
};

/* A deferred VIRTIO_GPU_CMD reply, waiting for its fence. */
struct pending {
	struct pending *next;
	uint64_t cookie;
	uint64_t id;
	uint64_t t0_ns;
};

struct client_device {
	uint32_t id;
	struct vgb_vfio_device *dev; /* owned */
};

struct client {
	struct source src;
	struct vgb_server *server;
	struct client *next;
	int fd;
	uint32_t id;
	uint32_t slot;     /* scanout block: guest scanout N is display scanout slot*num + N */
	pid_t pid;
	uid_t uid;
	bool hello_done;
	bool dead;         /* to be destroyed at the next safe point */
	uint32_t events;   /* current epoll mask */

	struct vgb_memmap *map;
	struct vgb_gpu *gpu;
	struct client_device *devices; /* the client's own, max_devices slots */
	uint32_t n_devices;
	uint32_t next_device_id;

	struct outmsg *outq, **outq_tail;
	unsigned outq_len;
	struct pending *pending;
	unsigned n_pending;
	uint64_t next_cookie;

	/* counters for STATS */
	uint64_t requests, request_errors, fences_replied, fence_latency_max_ns,
		fence_latency_sum_ns;
};

struct vgb_server {
	struct vgb_server_options opts;
	int epoll_fd;
	int listen_fd;
	int signal_fd;
	int display_fd; /* registered display fd, or -1 */
	struct source listen_src, signal_src, display_src;
	char *socket_path; /* we created it: unlink on destroy */
	dev_t socket_dev;
	ino_t socket_ino;

	struct client *clients;
	unsigned n_clients;
	bool *slots; /* max_clients */
	uint32_t next_client_id;

	struct vgb_vfio_device **devices; /* daemon devices, ids 1..n_devices */
	uint32_t n_devices;

	/* I/O page-fault queues of cdev-opened devices, daemon's and clients' (see watch_faults) */
	struct fault_watch *fault_watches;
	struct vgb_iommufd_fault_stats faults_retired; /* of devices already gone */

	uint8_t *rxbuf; /* opts.max_msg */
	bool stopping;
	uint64_t start_ns;
	uint64_t clients_accepted, clients_rejected;
};

/* Replies that pile up in a client's queue before it counts as not reading: disconnect. */
#define MAX_OUTQ 1024u
/* Requests handled per client per wakeup, so one busy client cannot starve the others. */
#define BATCH 32
/* Rows in a STATS reply (docs/protocol.md): 200 keep it near 64 KiB, well under the default
 * socket buffer that a packet must fit. Rows beyond are left out; n_clients says how many follow. */
#define STATS_MAX_ROWS 200u

static const struct vgb_server_options defaults = {
	.max_clients = 64,
	.max_entries = 16384,
	.max_blob_size = 256ull << 20,
	.max_resources = 1024,
	.max_windows = VGB_MEMMAP_MAX_WINDOWS,
	.max_devices = 16,
	.max_pending = 256,
	.max_msg = VGB_PROTO_MAX_MSG,
	.num_scanouts = 1,
	.allow_device_paths = true,
};

void vgb_server_options_init(struct vgb_server_options *ret)
{
	*ret = defaults;
	ret->allowed_uid = getuid();
}

int vgb_server_create(const struct vgb_server_options *opts, struct vgb_server **ret)
{
	struct vgb_server *s;
	struct vgb_server_options o;

	if (opts)
		o = *opts;
	else
		vgb_server_options_init(&o);
	if (!o.max_clients || !o.max_entries || !o.max_blob_size || !o.max_resources ||
	    !o.max_windows || !o.max_pending || o.max_windows > VGB_MEMMAP_MAX_WINDOWS ||
	    o.num_scanouts < 1 || o.num_scanouts > 16 ||
	    o.max_msg < sizeof(struct vgb_msg_header) + 64 || o.max_msg > VGB_PROTO_MAX_MSG)
		return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = o;
	s->listen_fd = s->signal_fd = s->display_fd = -1;
	s->listen_src.kind = SOURCE_LISTEN;
	s->signal_src.kind = SOURCE_SIGNAL;
	s->display_src.kind = SOURCE_DISPLAY;
	s->next_client_id = 1;
	s->start_ns = vgb_now_ns();
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->rxbuf = malloc(o.max_msg);
	s->slots = calloc(o.max_clients, sizeof(*s->slots));
	if (s->epoll_fd < 0 || !s->rxbuf || !s->slots) {
		int r = s->epoll_fd < 0 ? -errno : -ENOMEM;
		vgb_server_destroy(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* ---- sending ---- */

static void client_update_events(struct client *c);

/* Marks @c for destruction at the next safe point (never destroyed under a callback). */
static void client_kill(struct client *c, const char *why)
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
static int client_flush(struct client *c)
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
static void client_reply(struct client *c, uint16_t type, uint64_t id, int32_t result,
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
			client_kill(c, "send failed");
			return;
		}
	}
	if (c->outq_len >= MAX_OUTQ) {
		client_kill(c, "not reading its replies");
		return;
	}
	total = sizeof(struct vgb_msg_header) + sizeof(rh) + body_len;
	m = malloc(sizeof(*m) + total);
	if (!m) {
		client_kill(c, "out of memory");
		return;
	}
	m->next = NULL;
	m->n_fds = 0;
	for (unsigned i = 0; i < n_fds; i++) {
		int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			outmsg_free(m);
			client_kill(c, "cannot queue an fd");
			return;
		}
		m->fds[m->n_fds++] = fd;
	}
	ssize_t len = vgb_msg_encode(m->data, total, type, VGB_MSG_FLAG_REPLY, id, &rh, sizeof(rh),
				     body, body_len);
	if (len < 0) {
		outmsg_free(m);
		client_kill(c, "reply too large");
		return;
	}
	m->len = (size_t)len;
	*c->outq_tail = m;
	c->outq_tail = &m->next;
	c->outq_len++;
	client_update_events(c);
}

static void client_update_events(struct client *c)
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
		client_kill(c, "epoll_ctl failed");
		return;
	}
	c->events = ev.events;
}

/* ---- fences ---- */

/* A fenced command (answered at once when its fence was already complete: a sink that takes
 * frames inside present, or an earlier completion). Its reply carries the fence flag too. */
static bool is_fenced(const void *cmd, size_t len, const void *resp, size_t resp_len)
{
	struct virtio_gpu_ctrl_hdr h, rh;

	if (len < sizeof(h) || resp_len < sizeof(rh))
		return false;
	memcpy(&h, cmd, sizeof(h));
	memcpy(&rh, resp, sizeof(rh));
	return (h.flags & VIRTIO_GPU_FLAG_FENCE) && (rh.flags & VIRTIO_GPU_FLAG_FENCE);
}

static void count_fence_latency(struct client *c, uint64_t dt)
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
	client_reply(c, VGB_MSG_VIRTIO_GPU_CMD, p->id, 0, resp, len, NULL, 0);
	count_fence_latency(c, vgb_now_ns() - p->t0_ns);
	free(p);
	client_update_events(c);
}

/* ---- client lifetime ---- */

/*
 * ---- I/O page faults (issue: iommufd) ----
 * A device opened through its VFIO cdev may come with a fault queue (vgb_vfio_device_fault_queue):
 * its fd joins the loop, every group read is answered (INVALID: the daemon resolves no faults),
 * and the counts go to STATS. A watch outlives its device until the end of the dispatch round,
 * so an event already fetched for it is skipped rather than used after free.
 */
struct fault_watch {
	struct source src;
	struct fault_watch *next;
	struct vgb_vfio_device *dev;       /* NULL once unwatched */
	struct vgb_iommufd_fault_queue *q;
	bool polling;
};

static void watch_faults(struct vgb_server *s, struct vgb_vfio_device *dev)
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
static void unwatch_faults(struct vgb_server *s, struct vgb_vfio_device *dev)
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

static void free_unwatched(struct vgb_server *s)
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

static void handle_faults(struct vgb_server *s, struct fault_watch *w)
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
static void fault_totals(const struct vgb_server *s, uint32_t *ret_polling,
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

static void client_destroy(struct client *c)
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
		unwatch_faults(s, c->devices[i].dev);
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

static void reap_dead(struct vgb_server *s)
{
	struct client *c = s->clients, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->dead)
			client_destroy(c);
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
	/* Link first so that client_destroy() unwinds whatever follows. */
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
	client_destroy(c);
	return r;
}

static void handle_accept(struct vgb_server *s)
{
	for (int i = 0; i < 16; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd, r;

		fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				vgb_log_errno(VGB_LOG_WARN, -errno, "accept");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
		    cred.uid != s->opts.allowed_uid) {
			s->clients_rejected++;
			vgb_log_ratelimited(VGB_LOG_WARN, "rejected a client with uid %d (allowed: %u)",
					    len == sizeof(cred) ? (int)cred.uid : -1,
					    (unsigned)s->opts.allowed_uid);
			close(fd);
			continue;
		}
		if (s->n_clients >= s->opts.max_clients) {
			s->clients_rejected++;
			vgb_log_ratelimited(VGB_LOG_WARN, "rejected pid %d: %u clients already",
					    (int)cred.pid, s->n_clients);
			close(fd);
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

/* ---- requests ---- */

/* A device id as this client sees it: daemon devices first, then its own. */
static struct vgb_vfio_device *client_device(struct client *c, uint32_t id, bool *ret_own,
					     uint32_t *ret_idx)
{
	struct vgb_server *s = c->server;

	if (id >= 1 && id <= s->n_devices) {
		*ret_own = false;
		return s->devices[id - 1];
	}
	for (uint32_t i = 0; i < c->n_devices; i++)
		if (c->devices[i].id == id) {
			*ret_own = true;
			if (ret_idx)
				*ret_idx = i;
			return c->devices[i].dev;
		}
	return NULL;
}

static int do_hello(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_server *s = c->server;
	struct vgb_msg_hello m;
	struct vgb_msg_hello_reply rep = { 0 };

	memcpy(&m, msg->payload, sizeof(m));
	if (c->hello_done)
		return -EALREADY;
	if (m.version < 1)
		return -EPROTONOSUPPORT;
	c->hello_done = true;
	rep.version = VGB_MIN(m.version, VGB_PROTO_VERSION);
	rep.n_devices = s->n_devices;
	rep.features = 0; /* none defined in version 1 */
	rep.max_entries = s->opts.max_entries;
	rep.max_resources = s->opts.max_resources;
	rep.max_blob_size = s->opts.max_blob_size;
	rep.client_id = c->id;
	rep.max_windows = s->opts.max_windows;
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), NULL, 0);
	return 1;
}

static int do_add_ram(struct client *c, struct vgb_msg *msg)
{
	struct vgb_msg_add_ram m;
	int r;

	memcpy(&m, msg->payload, sizeof(m));
	if (vgb_memmap_count(c->map) >= c->server->opts.max_windows)
		return -ENOSPC;
	r = vgb_memmap_add_ram(c->map, m.gpa, m.size, msg->fds[0], m.offset, NULL);
	if (r < 0)
		return r;
	msg->fds[0] = -1; /* the map owns it now */
	msg->n_fds = 0;
	return 0;
}

static int do_add_device(struct client *c, struct vgb_msg *msg)
{
	struct vgb_server *s = c->server;
	struct vgb_msg_add_device m;
	struct vgb_msg_add_device_reply rep = { 0 };
	struct vgb_vfio_device *dev = NULL;
	char path[VGB_PROTO_MAX_PATH + 1];
	int r;

	memcpy(&m, msg->payload, sizeof(m));
	memcpy(path, (const uint8_t *)msg->payload + sizeof(m), m.path_len);
	path[m.path_len] = 0;
	if (c->n_devices >= s->opts.max_devices)
		return -ENOSPC;
	if (!s->opts.allow_device_paths && (m.kind == VGB_DEVICE_BDF || m.kind == VGB_DEVICE_CDEV ||
					    m.kind == VGB_DEVICE_VFIO_USER))
		return -EPERM;

	switch (m.kind) {
	case VGB_DEVICE_FD:
		r = vgb_vfio_kernel_adopt(msg->fds[0], m.path_len ? path : "client-fd", &dev);
		if (r == 0) {
			msg->fds[0] = -1;
			msg->n_fds = 0;
		}
		break;
	case VGB_DEVICE_BDF:
		r = vgb_vfio_kernel_open(path, 0, &dev);
		break;
	case VGB_DEVICE_CDEV:
#if VGB_VFIO_HAVE_CDEV
		r = vgb_vfio_kernel_open_cdev(path, &dev);
#else
		r = -EOPNOTSUPP; /* this build has no cdev + iommufd path */
#endif
		break;
	case VGB_DEVICE_VIRTUAL:
		r = vgb_vfio_vdev_create(path, &dev);
		break;
	case VGB_DEVICE_VFIO_USER:
		r = vgb_vfio_user_connect(path, &dev);
		break;
	case VGB_DEVICE_VFIO_USER_FD:
		r = vgb_vfio_user_adopt(msg->fds[0], m.path_len ? path : "client-vfio-user", &dev);
		if (r == 0) {
			msg->fds[0] = -1;
			msg->n_fds = 0;
		}
		break;
	default:
		r = -EINVAL;
		break;
	}
	if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "client %u: cannot add device '%s'", c->id, path);
		return r;
	}
	c->devices[c->n_devices].id = c->next_device_id++;
	c->devices[c->n_devices].dev = dev;
	rep.device_id = c->devices[c->n_devices].id;
	rep.caps = dev->caps;
	rep.num_regions = dev->num_regions;
	c->n_devices++;
	watch_faults(s, dev);
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), NULL, 0);
	return 1;
}

static int do_map_window(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_msg_map_window m;
	struct vgb_vfio_device *dev;
	bool own;

	memcpy(&m, msg->payload, sizeof(m));
	dev = client_device(c, m.device_id, &own, NULL);
	if (!dev)
		return -ENODEV;
	if (vgb_memmap_count(c->map) >= c->server->opts.max_windows)
		return -ENOSPC;
	return vgb_memmap_add_vfio(c->map, m.gpa, m.size, dev, m.region_index, m.region_offset,
				   NULL);
}

static int do_remove_window(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_msg_remove_window m;
	const struct vgb_memmap_window *w;

	memcpy(&m, msg->payload, sizeof(m));
	w = vgb_memmap_lookup(c->map, m.gpa);
	if (!w || w->gpa != m.gpa)
		return -ENOENT;
	return vgb_memmap_remove(c->map, w->id);
}

static int do_remove_device(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_msg_remove_device m;
	struct vgb_vfio_device *dev;
	uint32_t idx = 0;
	bool own;

	memcpy(&m, msg->payload, sizeof(m));
	dev = client_device(c, m.device_id, &own, &idx);
	if (!dev)
		return -ENODEV;
	if (!own)
		return -EPERM;
	/* Its windows go first: the blobs using them become invalid (the gpu's listener). */
	vgb_memmap_remove_device(c->map, dev);
	unwatch_faults(c->server, dev);
	vgb_vfio_device_destroy(dev);
	c->devices[idx] = c->devices[--c->n_devices];
	return 0;
}

static int do_gpu_cmd(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_server *s = c->server;
	const uint8_t *cmd = (const uint8_t *)msg->payload + sizeof(struct vgb_msg_gpu_cmd);
	size_t len = msg->hdr.length - sizeof(struct vgb_msg_gpu_cmd);
	uint8_t resp[VGB_GPU_MAX_RESP];
	struct pending *p;
	size_t resp_len = 0;
	int r;

	(void)s;
	/* Registered before processing: the completion may run inside vgb_gpu_process(). */
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cookie = c->next_cookie++;
	p->id = msg->hdr.id;
	p->t0_ns = vgb_now_ns();
	p->next = c->pending;
	c->pending = p;
	c->n_pending++;

	r = vgb_gpu_process(c->gpu, cmd, len, resp, sizeof(resp), &resp_len, p->cookie);
	if (r == 1) {
		client_update_events(c);
		return 1; /* replied now or later by fence_done() */
	}
	/* Not deferred: the entry is still ours (at the head unless a completion ran). */
	uint64_t t0 = p->t0_ns;
	for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			c->n_pending--;
			free(p);
			break;
		}
	if (r < 0)
		return r;
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, resp, resp_len, NULL, 0);
	if (is_fenced(cmd, len, resp, resp_len))
		count_fence_latency(c, vgb_now_ns() - t0);
	return 1;
}

static enum vgb_wire_strategy wire_strategy(enum vgb_export_strategy st)
{
	switch (st) {
	case VGB_EXPORT_VFIO_DMABUF:
		return VGB_WIRE_STRATEGY_VFIO_DMABUF;
	case VGB_EXPORT_UDMABUF:
		return VGB_WIRE_STRATEGY_UDMABUF;
	case VGB_EXPORT_CPU_VIEW:
		return VGB_WIRE_STRATEGY_CPU;
	default:
		return VGB_WIRE_STRATEGY_NONE;
	}
}

static int do_export_blob(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_msg_export_blob m;
	struct vgb_msg_export_blob_reply rep = { 0 };
	enum vgb_export_strategy st = VGB_EXPORT_NONE;
	struct vgb_dmabuf buf;
	off_t size;
	int r;

	memcpy(&m, msg->payload, sizeof(m));
	vgb_dmabuf_init(&buf);
	r = vgb_gpu_export_blob(c->gpu, m.resource_id, &buf, &st);
	if (r < 0)
		return r;
	if (buf.n_planes < 1 || buf.fd[0] < 0) {
		vgb_dmabuf_finish(&buf);
		return -EIO;
	}
	size = lseek(buf.fd[0], 0, SEEK_END);
	rep.strategy = wire_strategy(st);
	rep.size = size > 0 ? (uint64_t)size : 0;
	rep.width = buf.width;
	rep.height = buf.height;
	rep.fourcc = buf.fourcc;
	rep.stride = buf.stride[0];
	rep.offset = buf.offset[0];
	rep.modifier = buf.modifier;
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), &buf.fd[0], 1);
	vgb_dmabuf_finish(&buf);
	return 1;
}

static void fill_client_stats(struct client *c, struct vgb_wire_stats_client *row)
{
	struct vgb_gpu_stats gs;

	memset(row, 0, sizeof(*row));
	vgb_gpu_get_stats(c->gpu, &gs);
	row->client_id = c->id;
	row->pid = c->pid;
	row->windows = (uint32_t)vgb_memmap_count(c->map);
	row->devices = c->n_devices;
	row->resources = gs.resources;
	row->blobs_vfio_dmabuf = gs.blobs_by_strategy[VGB_EXPORT_VFIO_DMABUF];
	row->blobs_udmabuf = gs.blobs_by_strategy[VGB_EXPORT_UDMABUF];
	row->blobs_cpu = gs.blobs_by_strategy[VGB_EXPORT_CPU_VIEW];
	row->requests = c->requests;
	row->request_errors = c->request_errors;
	for (unsigned i = 0; i < VGB_GPU_STAT_COUNT; i++) {
		row->gpu_commands += gs.commands[i];
		if (i < VGB_WIRE_STATS_COMMANDS)
			row->commands[i] = gs.commands[i];
	}
	row->gpu_errors = gs.errors;
	row->exports_vfio_dmabuf = gs.exports_by_strategy[VGB_EXPORT_VFIO_DMABUF];
	row->exports_udmabuf = gs.exports_by_strategy[VGB_EXPORT_UDMABUF];
	row->exports_cpu = gs.exports_by_strategy[VGB_EXPORT_CPU_VIEW];
	row->export_failures = gs.export_failures;
	row->blob_segments = gs.blob_segments;
	row->segments_merged = gs.segments_merged;
	row->blobs_invalidated = gs.blobs_invalidated;
	row->flushes = gs.flushes;
	row->frames_presented = gs.frames_presented;
	row->copies = gs.copies;
	row->bytes_copied = gs.bytes_copied;
	row->fences_completed = gs.fences_completed;
	row->fences_timed_out = gs.fences_timed_out;
	row->fences_pending = c->n_pending;
	row->fence_latency_max_ns = c->fence_latency_max_ns;
	row->fence_latency_sum_ns = c->fence_latency_sum_ns;
	row->fences_replied = c->fences_replied;
}

static int do_stats(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_server *s = c->server;
	struct vgb_msg_stats m;
	struct vgb_wire_stats_global *g;
	struct vgb_wire_stats_client *rows;
	size_t max_rows, n = 0, len;
	uint8_t *buf;

	memcpy(&m, msg->payload, sizeof(m));
	max_rows = (m.flags & VGB_STATS_SELF_ONLY) ? 1 : VGB_MIN(s->n_clients, STATS_MAX_ROWS);
	len = sizeof(*g) + max_rows * sizeof(*rows);
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	g = (struct vgb_wire_stats_global *)(void *)buf;
	rows = (struct vgb_wire_stats_client *)(void *)(buf + sizeof(*g));

	g->uptime_ns = vgb_now_ns() - s->start_ns;
	g->clients_accepted = s->clients_accepted;
	g->clients_rejected = s->clients_rejected;
	g->clients_now = s->n_clients;
	if (s->opts.display) {
		struct vgb_display_stats ds = { 0 };
		vgb_display_get_stats(s->opts.display, &ds);
		g->display_path = ds.last_path;
		snprintf(g->display_name, sizeof(g->display_name), "%s",
			 s->opts.display->ops && s->opts.display->ops->name ?
				 s->opts.display->ops->name : "?");
		g->frames_presented = ds.frames_presented;
		g->frames_dropped = ds.frames_dropped;
		g->frame_copies = ds.copies;
		g->bytes_copied = ds.bytes_copied;
		g->dmabuf_failed = ds.dmabuf_failed;
		g->latency_p50_ns = ds.latency_p50_ns;
		g->latency_p99_ns = ds.latency_p99_ns;
		g->display_connected = ds.connected;
	} else {
		snprintf(g->display_name, sizeof(g->display_name), "none");
	}
	{
		struct vgb_iommufd_fault_stats fs;
		fault_totals(s, &g->fault_queues, &fs);
		g->fault_groups = fs.groups;
		g->fault_errors = fs.response_errors + fs.malformed + fs.short_reads + fs.oversized;
	}
	if (m.flags & VGB_STATS_SELF_ONLY) {
		fill_client_stats(c, &rows[n++]);
	} else {
		for (struct client *o = s->clients; o && n < max_rows; o = o->next)
			if (!o->dead)
				fill_client_stats(o, &rows[n++]);
	}
	g->n_clients = (uint32_t)n;
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, buf, sizeof(*g) + n * sizeof(*rows), NULL,
		     0);
	free(buf);
	return 1;
}

static int do_query_device(struct client *c, const struct vgb_msg *msg)
{
	struct vgb_msg_query_device m;
	struct vgb_msg_query_device_reply rep = { 0 };
	const struct vgb_vfio_region_info *info;
	struct vgb_vfio_device *dev;
	int fd = -1, r;
	bool own;

	memcpy(&m, msg->payload, sizeof(m));
	dev = client_device(c, m.device_id, &own, NULL);
	if (!dev)
		return -ENODEV;
	r = vgb_vfio_region_info(dev, m.region_index, &info);
	if (r < 0)
		return r;
	if (m.flags & VGB_QUERY_REGION_FD) {
		if (dev->path != VGB_VFIO_PATH_VIRTUAL)
			return -EOPNOTSUPP;
		fd = vgb_vfio_vdev_region_memfd(dev, m.region_index);
		if (fd < 0)
			return fd;
	}
	rep.caps = dev->caps;
	rep.num_regions = dev->num_regions;
	rep.region_flags = info->flags;
	rep.region_size = info->size;
	snprintf(rep.name, sizeof(rep.name), "%s", dev->name);
	client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), &fd, fd >= 0 ? 1 : 0);
	return 1;
}

/* Returns 1 when it replied itself, else the result to reply with (no body). */
static int dispatch_request(struct client *c, struct vgb_msg *msg)
{
	if (!c->hello_done && msg->hdr.type != VGB_MSG_HELLO)
		return -EPROTO;
	switch (msg->hdr.type) {
	case VGB_MSG_HELLO:
		return do_hello(c, msg);
	case VGB_MSG_ADD_RAM:
		return do_add_ram(c, msg);
	case VGB_MSG_ADD_VFIO_DEVICE:
		return do_add_device(c, msg);
	case VGB_MSG_MAP_VFIO_WINDOW:
		return do_map_window(c, msg);
	case VGB_MSG_REMOVE_WINDOW:
		return do_remove_window(c, msg);
	case VGB_MSG_REMOVE_DEVICE:
		return do_remove_device(c, msg);
	case VGB_MSG_VIRTIO_GPU_CMD:
		return do_gpu_cmd(c, msg);
	case VGB_MSG_EXPORT_BLOB:
		return do_export_blob(c, msg);
	case VGB_MSG_STATS:
		return do_stats(c, msg);
	case VGB_MSG_QUERY_DEVICE:
		return do_query_device(c, msg);
	}
	return -EOPNOTSUPP;
}

static void handle_message(struct client *c, struct vgb_msg *msg)
{
	int r;

	c->requests++;
	r = vgb_msg_check_request(msg);
	if (r == 0)
		r = dispatch_request(c, msg);
	if (r < 0)
		vgb_log_errno(VGB_LOG_DEBUG, r, "client %u: %s #%llu", c->id,
			      vgb_msg_type_name(msg->hdr.type), (unsigned long long)msg->hdr.id);
	if (r != 1)
		client_reply(c, msg->hdr.type, msg->hdr.id, r, NULL, 0, NULL, 0);
	/* Whatever fds the request did not consume are closed here. */
	vgb_msg_close_fds(msg);
}

static void handle_client(struct client *c, uint32_t events)
{
	struct vgb_server *s = c->server;

	if (events & EPOLLOUT) {
		if (client_flush(c) < 0) {
			client_kill(c, "send failed");
			return;
		}
		client_update_events(c);
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		client_kill(c, "hangup");
		return;
	}
	for (int i = 0; i < BATCH && !c->dead && (c->events & EPOLLIN); i++) {
		struct vgb_msg msg;
		ssize_t n = vgb_msg_recv(c->fd, s->rxbuf, s->opts.max_msg, &msg);

		if (n == -EAGAIN)
			break;
		if (n == 0) {
			client_kill(c, "closed");
			break;
		}
		if (n == -EBADMSG || n == -EMSGSIZE) {
			/* The packet is dropped (its fds closed); the client may go on. */
			c->requests++;
			client_reply(c, msg.hdr.type, msg.hdr.id, (int32_t)n, NULL, 0, NULL, 0);
			continue;
		}
		if (n < 0) {
			client_kill(c, "recv failed");
			break;
		}
		handle_message(c, &msg);
	}
}

/* ---- the loop ---- */

static void handle_signal(struct vgb_server *s)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		vgb_log(VGB_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
		s->stopping = true;
	}
}

/* Keeps the display's fd registered (a reconnect may change it). */
static void sync_display_fd(struct vgb_server *s)
{
	int fd = s->opts.display ? vgb_display_get_fd(s->opts.display) : -1;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->display_src };

	if (fd == s->display_fd)
		return;
	if (s->display_fd >= 0)
		epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->display_fd, NULL);
	s->display_fd = -1;
	if (fd >= 0 && epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0)
		s->display_fd = fd;
}

static int next_timeout(struct vgb_server *s, int timeout_ms)
{
	int t = timeout_ms;

#define FOLD(x) do { int x_ = (x); if (x_ >= 0 && (t < 0 || x_ < t)) t = x_; } while (0)
	if (s->opts.display)
		FOLD(vgb_display_next_timeout_ms(s->opts.display));
	for (struct client *c = s->clients; c; c = c->next)
		if (!c->dead)
			FOLD(vgb_gpu_next_timeout_ms(c->gpu));
#undef FOLD
	return t;
}

int vgb_server_dispatch(struct vgb_server *s, int timeout_ms)
{
	struct epoll_event evs[32];
	bool display_ready = false;
	int n;

	sync_display_fd(s);
	n = epoll_wait(s->epoll_fd, evs, (int)VGB_ARRAY_SIZE(evs), next_timeout(s, timeout_ms));
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		struct source *src = evs[i].data.ptr;

		switch (src->kind) {
		case SOURCE_LISTEN:
			handle_accept(s);
			break;
		case SOURCE_SIGNAL:
			handle_signal(s);
			break;
		case SOURCE_DISPLAY:
			display_ready = true;
			break;
		case SOURCE_CLIENT: {
			struct client *c = vgb_container_of(src, struct client, src);
			if (!c->dead)
				handle_client(c, evs[i].events);
			break;
		}
		case SOURCE_FAULTS:
			handle_faults(s, vgb_container_of(src, struct fault_watch, src));
			break;
		}
	}
	/* The display completes frames (fence_done may run), then fence deadlines. */
	if (s->opts.display && (display_ready || vgb_display_next_timeout_ms(s->opts.display) == 0)) {
		int r = vgb_display_dispatch(s->opts.display);
		if (r < 0)
			vgb_log_ratelimited(VGB_LOG_WARN, "display: %s", strerror(-r));
	}
	for (struct client *c = s->clients; c; c = c->next)
		if (!c->dead && vgb_gpu_next_timeout_ms(c->gpu) == 0)
			vgb_gpu_dispatch_timeouts(c->gpu);
	reap_dead(s);
	free_unwatched(s);
	return 0;
}

int vgb_server_run(struct vgb_server *s)
{
	while (!s->stopping) {
		int r = vgb_server_dispatch(s, -1);
		if (r < 0)
			return vgb_log_errno(VGB_LOG_ERROR, r, "event loop");
	}
	return 0;
}

void vgb_server_stop(struct vgb_server *s)
{
	s->stopping = true;
}

bool vgb_server_is_stopping(const struct vgb_server *s)
{
	return s->stopping;
}

int vgb_server_get_fd(const struct vgb_server *s)
{
	return s->epoll_fd;
}

unsigned vgb_server_client_count(const struct vgb_server *s)
{
	return s->n_clients;
}

/* ---- setup ---- */

static int watch_listen_fd(struct vgb_server *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->listen_src };
	int fl;

	if (s->listen_fd >= 0)
		return -EBUSY;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	s->listen_fd = fd;
	return 0;
}

int vgb_server_adopt_listen_fd(struct vgb_server *s, int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int type = 0, acc = 0, fl;
	socklen_t l1 = sizeof(type), l2 = sizeof(acc);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) < 0)
		return -errno;
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	if (sa.sun_family != AF_UNIX || type != SOCK_SEQPACKET)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l2) < 0)
		return -errno;
	if (!acc)
		return -EINVAL;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	return watch_listen_fd(s, fd);
}

/* Whether someone accepts on @path. */
static bool socket_is_live(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return true; /* cannot tell: do not remove it */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	return errno != ECONNREFUSED;
}

int vgb_server_listen(struct vgb_server *s, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	struct stat st;
	mode_t old;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if (s->listen_fd >= 0)
		return -EBUSY;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (socket_is_live(path))
			return -EADDRINUSE;
		vgb_log(VGB_LOG_DEBUG, "replacing stale socket %s", path);
		unlink(path);
	}
	/* Created 0600 from the start: no window in which another user could connect. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0)
		return -errno;
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		unlink(path);
		return r;
	}
	s->socket_path = strdup(path);
	if (!s->socket_path) {
		unlink(path);
		return -ENOMEM;
	}
	s->socket_dev = st.st_dev;
	s->socket_ino = st.st_ino;
	r = watch_listen_fd(s, fd);
	if (r < 0) {
		unlink(path);
		free(s->socket_path);
		s->socket_path = NULL;
		return r;
	}
	TAKE_FD(fd);
	return 0;
}

int vgb_server_add_device(struct vgb_server *s, struct vgb_vfio_device *dev)
{
	struct vgb_vfio_device **d;

	if (s->n_clients || s->clients_accepted)
		return -EBUSY;
	d = realloc(s->devices, (s->n_devices + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	s->devices = d;
	d[s->n_devices++] = dev;
	watch_faults(s, dev);
	return (int)s->n_devices;
}

int vgb_server_watch_signals(struct vgb_server *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->signal_src };
	sigset_t set;
	int fd;

	if (s->signal_fd >= 0)
		return 0;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	s->signal_fd = fd;
	return 0;
}

void vgb_server_destroy(struct vgb_server *s)
{
	if (!s)
		return;
	while (s->clients)
		client_destroy(s->clients);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->socket_path) {
		struct stat st;
		/* Only our own socket: a newer daemon may have replaced it. */
		if (stat(s->socket_path, &st) == 0 && st.st_dev == s->socket_dev &&
		    st.st_ino == s->socket_ino)
			unlink(s->socket_path);
		free(s->socket_path);
	}
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	for (uint32_t i = 0; i < s->n_devices; i++) {
		unwatch_faults(s, s->devices[i]);
		vgb_vfio_device_destroy(s->devices[i]);
	}
	free(s->devices);
	free_unwatched(s);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	free(s->rxbuf);
	free(s->slots);
	free(s);
}
