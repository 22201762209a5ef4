/* SPDX-License-Identifier: MIT */
/*
 * The QEMU display sink: frames, the cursor and the display queries over the vhost-user-gpu
 * socket (QEMU's docs/interop/vhost-user-gpu.rst). See include/vgb/display-qemu.h for the queue
 * policy. Every write is non-blocking: QEMU stops reading this socket while it waits for its UI
 * (a DMABUF_UPDATE in flight), and a full socket must never stall the backend's other VMs.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <drm_fourcc.h>

#include "display-private.h"
#include "vgb/display-qemu.h"
#include "vgb/log.h"
#include "vgb/util.h"

/* Replies from QEMU: display info 408 bytes, EDID 1056. */
#define RX_MAX_PAYLOAD 4096u

enum wait {
	WAIT_NONE = 0,
	WAIT_PROTOCOL, /* GET_PROTOCOL_FEATURES sent */
	WAIT_QUERY,    /* GET_DISPLAY_INFO / GET_EDID sent */
	WAIT_DMABUF,   /* DMABUF_UPDATE sent, its frame not done yet */
};

/* One message on its way to QEMU: header and payload in @data, @off bytes already written. */
struct qmsg {
	struct qmsg *next;
	uint32_t request, scanout;
	struct vgb_rect rect; /* UPDATE: its rectangle, to merge when a newer frame replaces it */
	int fd;               /* passed with the first byte; owned */
	size_t len, off;
	uint8_t data[];
};

struct qemu_sink {
	struct vgb_display base;
	struct vgb_qemu_display_callbacks cb;
	void *cb_data;

	int fd;
	uint32_t watched; /* events asked of the backend's poll */
	enum wait wait;
	uint32_t wait_request;
	uint64_t protocol;

	struct qmsg *outq, **outq_tail;
	unsigned outq_len;
	size_t outq_bytes;

	uint8_t rx[sizeof(struct vgb_vhost_gpu_header) + RX_MAX_PAYLOAD];
	size_t rx_got;

	uint32_t width[VGB_DISPLAY_MAX_SCANOUTS], height[VGB_DISPLAY_MAX_SCANOUTS];
	uint64_t dmabuf_id[VGB_DISPLAY_MAX_SCANOUTS];
	int32_t cursor_x, cursor_y;
	bool cursor_visible;
	vgb_frame_done_fn dmabuf_done;
	void *dmabuf_done_data;

	struct vgb_display_stats stats;
	struct vgb_qemu_display_counters counters;
};

static const struct vgb_display_ops qemu_ops;

static struct qemu_sink *qemu_sink_from(struct vgb_display *d)
{
	return vgb_container_of(d, struct qemu_sink, base);
}

static void qmsg_free(struct qmsg *m)
{
	vgb_close(m->fd);
	free(m);
}

static void update_watch(struct qemu_sink *s)
{
	uint32_t ev = POLLIN | (s->outq ? POLLOUT : 0);

	if (s->fd < 0 || ev == s->watched)
		return;
	s->watched = ev;
	if (s->cb.watch)
		s->cb.watch(s->cb_data, s->fd, ev, 0);
}

/* Closes the socket; @why (-errno, 0 for an orderly close) goes to the watch callback. */
static void sink_close(struct qemu_sink *s, int why, bool callbacks)
{
	enum wait w = s->wait;
	uint32_t request = s->wait_request;

	if (s->fd < 0)
		return;
	if (why)
		s->counters.disconnects += why != -EPIPE;
	vgb_log(VGB_LOG_DEBUG, "qemu display: socket closed (%s)", why ? strerror(-why) : "by us");
	if (callbacks && s->cb.watch)
		s->cb.watch(s->cb_data, s->fd, 0, why);
	s->fd = vgb_close(s->fd);
	s->watched = 0;
	while (s->outq) {
		struct qmsg *m = s->outq;
		s->outq = m->next;
		qmsg_free(m);
	}
	s->outq_tail = &s->outq;
	s->outq_len = 0;
	s->outq_bytes = 0;
	s->rx_got = 0;
	s->wait = WAIT_NONE;
	s->protocol = 0;
	memset(s->width, 0, sizeof(s->width));
	memset(s->height, 0, sizeof(s->height));
	memset(s->dmabuf_id, 0, sizeof(s->dmabuf_id));
	if (w == WAIT_DMABUF && s->dmabuf_done) {
		vgb_frame_done_fn done = s->dmabuf_done;
		s->dmabuf_done = NULL;
		done(s->dmabuf_done_data, -EPIPE);
	}
	if (!callbacks)
		return;
	if (w == WAIT_QUERY && s->cb.reply)
		s->cb.reply(s->cb_data, request, -EPIPE, NULL, 0);
	if (w != WAIT_NONE && s->cb.idle)
		s->cb.idle(s->cb_data);
}

/* Writes what the socket takes now. Returns 0 or -errno (then the socket is closed). */
static int flush(struct qemu_sink *s)
{
	while (s->outq) {
		struct qmsg *m = s->outq;
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} control;
		struct iovec iov = { .iov_base = m->data + m->off, .iov_len = m->len - m->off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (m->off == 0 && m->fd >= 0) {
			memset(&control, 0, sizeof(control));
			mh.msg_control = control.buf;
			mh.msg_controllen = sizeof(control.buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &m->fd, sizeof(int));
		}
		do
			n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			int r = -errno;
			sink_close(s, r == -EPIPE || r == -ECONNRESET ? -EPIPE : r, true);
			return r;
		}
		if (m->off == 0)
			m->fd = vgb_close(m->fd); /* the kernel has its copy */
		m->off += (size_t)n;
		s->outq_bytes -= (size_t)n;
		if (m->off < m->len)
			continue;
		s->outq = m->next;
		if (!s->outq)
			s->outq_tail = &s->outq;
		s->outq_len--;
		s->counters.msgs_sent++;
		qmsg_free(m);
	}
	update_watch(s);
	return 0;
}

/*
 * Removes the queued, unstarted messages of @scanout with request @request; returns how many,
 * and grows @acc (when not NULL) by their rectangles.
 */
static unsigned drop_queued(struct qemu_sink *s, uint32_t request, uint32_t scanout,
			    struct vgb_rect *acc)
{
	unsigned n = 0;

	for (struct qmsg **pp = &s->outq; *pp;) {
		struct qmsg *m = *pp;
		if (m->request != request || m->scanout != scanout || m->off != 0 /* being written */) {
			pp = &m->next;
			continue;
		}
		if (acc)
			vgb_rect_union(acc, &m->rect);
		*pp = m->next;
		s->outq_len--;
		s->outq_bytes -= m->len;
		qmsg_free(m);
		n++;
	}
	s->outq_tail = &s->outq;
	while (*s->outq_tail)
		s->outq_tail = &(*s->outq_tail)->next;
	return n;
}

/*
 * Queues one message (header, @p1, @p2; a dup of @fd when >= 0) and writes what the socket takes.
 * Returns 0 or -errno (-ENOTCONN without a socket; -ENOBUFS: the queue overflowed and the socket
 * was closed).
 */
static int queue_msg_rect(struct qemu_sink *s, uint32_t request, uint32_t scanout,
			  const struct vgb_rect *rect, const void *p1, size_t n1, const void *p2,
			  size_t n2, int fd)
{
	struct vgb_vhost_gpu_header h = { .request = request };
	size_t len = sizeof(h) + n1 + n2;
	struct qmsg *m;

	if (s->fd < 0)
		return -ENOTCONN;
	if (n1 + n2 > UINT32_MAX)
		return -EINVAL;
	h.size = (uint32_t)(n1 + n2);
	m = malloc(sizeof(*m) + len);
	if (!m)
		return -ENOMEM;
	*m = (struct qmsg){ .request = request, .scanout = scanout, .fd = -1, .len = len };
	if (rect)
		m->rect = *rect;
	if (fd >= 0) {
		m->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (m->fd < 0) {
			int r = -errno;
			free(m);
			return r;
		}
	}
	memcpy(m->data, &h, sizeof(h));
	if (n1)
		memcpy(m->data + sizeof(h), p1, n1);
	if (n2)
		memcpy(m->data + sizeof(h) + n1, p2, n2);
	*s->outq_tail = m;
	s->outq_tail = &m->next;
	s->outq_len++;
	s->outq_bytes += len;
	int r = flush(s);
	if (r < 0)
		return r;
	if (s->outq_len > VGB_QEMU_DISPLAY_MAX_QUEUED ||
	    s->outq_bytes > VGB_QEMU_DISPLAY_MAX_QUEUED_BYTES) {
		sink_close(s, -ENOBUFS, true);
		return -ENOBUFS;
	}
	return 0;
}

static int queue_msg(struct qemu_sink *s, uint32_t request, uint32_t scanout, const void *p1,
		     size_t n1, int fd)
{
	return queue_msg_rect(s, request, scanout, NULL, p1, n1, NULL, 0, fd);
}

/* ---- replies ---- */

static void handle_reply(struct qemu_sink *s, const struct vgb_vhost_gpu_header *h,
			 const uint8_t *payload)
{
	if (!(h->flags & VGB_VHOST_GPU_FLAG_REPLY)) {
		vgb_log(VGB_LOG_DEBUG, "qemu display: unexpected request %u", h->request);
		return;
	}
	switch (s->wait) {
	case WAIT_PROTOCOL: {
		uint64_t f;
		if (h->request != VGB_VHOST_GPU_GET_PROTOCOL_FEATURES || h->size != sizeof(f))
			break;
		memcpy(&f, payload, sizeof(f));
		f &= (1ull << VGB_VHOST_GPU_PROTOCOL_F_EDID) |
		     (1ull << VGB_VHOST_GPU_PROTOCOL_F_DMABUF2);
		s->protocol = f;
		s->wait = WAIT_NONE;
		queue_msg(s, VGB_VHOST_GPU_SET_PROTOCOL_FEATURES, 0, &f, sizeof(f), -1);
		if (s->fd >= 0 && s->cb.idle)
			s->cb.idle(s->cb_data);
		return;
	}
	case WAIT_QUERY:
		if (h->request != s->wait_request)
			break;
		s->wait = WAIT_NONE;
		if (s->cb.reply)
			s->cb.reply(s->cb_data, h->request, 0, payload, h->size);
		if (s->cb.idle)
			s->cb.idle(s->cb_data);
		return;
	case WAIT_DMABUF:
		if (h->request != VGB_VHOST_GPU_DMABUF_UPDATE)
			break;
		s->wait = WAIT_NONE;
		if (s->dmabuf_done) {
			vgb_frame_done_fn done = s->dmabuf_done;
			s->dmabuf_done = NULL;
			s->stats.frames_presented++;
			done(s->dmabuf_done_data, 0);
		}
		if (s->cb.idle)
			s->cb.idle(s->cb_data);
		return;
	case WAIT_NONE:
		break;
	}
	vgb_log(VGB_LOG_DEBUG, "qemu display: unexpected reply %u (%u bytes)", h->request, h->size);
}

/* Reads what QEMU sent. Returns 0, or -errno when the socket was closed. */
static int receive(struct qemu_sink *s)
{
	const size_t hdr = sizeof(struct vgb_vhost_gpu_header);

	while (s->fd >= 0) {
		struct vgb_vhost_gpu_header h;
		size_t want;

		if (s->rx_got < hdr) {
			want = hdr - s->rx_got;
		} else {
			memcpy(&h, s->rx, hdr);
			if (h.size > RX_MAX_PAYLOAD) {
				sink_close(s, -EPROTO, true);
				return -EPROTO;
			}
			want = hdr + h.size - s->rx_got;
		}
		if (want) {
			union {
				struct cmsghdr align;
				char buf[CMSG_SPACE(sizeof(int) * 8)];
			} control;
			struct iovec iov = { .iov_base = s->rx + s->rx_got, .iov_len = want };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
					     .msg_control = control.buf,
					     .msg_controllen = sizeof(control.buf) };
			ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return 0;
			/* QEMU sends no fds: close any that come. */
			for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n >= 0 && c;
			     c = CMSG_NXTHDR(&mh, c)) {
				if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
					continue;
				for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
					int f;
					memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
					close(f);
				}
			}
			if (n <= 0) {
				int r = n == 0 ? -EPIPE : -errno;
				sink_close(s, r == -ECONNRESET ? -EPIPE : r, true);
				return r;
			}
			s->rx_got += (size_t)n;
			continue;
		}
		memcpy(&h, s->rx, hdr);
		s->rx_got = 0;
		handle_reply(s, &h, s->rx + hdr);
	}
	return 0;
}

/* ---- the sink ops ---- */

/* Copies @rect of @f to @dst (packed rows) as x8r8g8b8, the only layout UPDATE carries. */
static int copy_x8r8g8b8(uint8_t *dst, const struct vgb_frame *f, const struct vgb_rect *rect)
{
	const struct vgb_cpu_view *v = f->cpu;
	struct vgb_cpu_view at = *v;
	struct vgb_rect all = { 0, 0, rect->width, rect->height };
	size_t n = (size_t)rect->width * rect->height;

	at.data = (const uint8_t *)v->data + (size_t)rect->y * v->stride + (size_t)rect->x * 4;
	int r = vgb_copy_rect(dst, rect->width * 4, &at, &all, 4);
	if (r < 0)
		return r;
	if (f->fourcc == DRM_FORMAT_XRGB8888 || f->fourcc == DRM_FORMAT_ARGB8888)
		return 0; /* same bytes; QEMU ignores the X/A byte */
	for (size_t i = 0; i < n; i++) {
		uint32_t px;
		uint8_t c[4];
		memcpy(&px, dst + i * 4, 4);
		vgb_format_to_rgba(f->fourcc, px, c);
		px = 0xff000000u | (uint32_t)c[0] << 16 | (uint32_t)c[1] << 8 | c[2];
		memcpy(dst + i * 4, &px, 4);
	}
	return 0;
}

static int present_dmabuf(struct qemu_sink *s, const struct vgb_frame *f,
			  const struct vgb_rect *damage)
{
	uint32_t id = f->scanout;
	int r;

	if (s->dmabuf_id[id] != f->buffer_id || !f->buffer_id || s->width[id] != f->width ||
	    s->height[id] != f->height) {
		bool v2 = s->protocol & (1ull << VGB_VHOST_GPU_PROTOCOL_F_DMABUF2);
		struct vgb_vhost_gpu_dmabuf_scanout m = {
			.scanout_id = id,
			.width = f->width,
			.height = f->height,
			.fd_width = f->dmabuf->width,
			.fd_height = f->dmabuf->height,
			.fd_stride = f->dmabuf->stride[0],
			.fd_drm_fourcc = (int32_t)f->dmabuf->fourcc,
			.modifier = f->dmabuf->modifier,
		};
		r = queue_msg(s, v2 ? VGB_VHOST_GPU_DMABUF_SCANOUT2 : VGB_VHOST_GPU_DMABUF_SCANOUT, id,
			      &m, v2 ? sizeof(m) : sizeof(m) - sizeof(m.modifier), f->dmabuf->fd[0]);
		if (r < 0)
			return r;
		s->dmabuf_id[id] = f->buffer_id;
		s->width[id] = f->width;
		s->height[id] = f->height;
	}
	struct vgb_vhost_gpu_update u = {
		.scanout_id = id, .x = damage->x, .y = damage->y,
		.width = damage->width, .height = damage->height,
	};
	r = queue_msg(s, VGB_VHOST_GPU_DMABUF_UPDATE, id, &u, sizeof(u), -1);
	if (r < 0)
		return r;
	/* QEMU answers when its UI has drawn: that is when the frame is taken. */
	s->wait = WAIT_DMABUF;
	s->dmabuf_done = f->done;
	s->dmabuf_done_data = f->done_data;
	return 0;
}

static int qemu_present(struct vgb_display *d, const struct vgb_frame *f)
{
	struct qemu_sink *s = qemu_sink_from(d);
	uint32_t id = f->scanout;
	int r = vgb_frame_check(f);

	if (r < 0)
		return r;
	if (s->fd < 0)
		return -ENOTCONN;
	if (vgb_format_bpp(f->fourcc) != 4)
		return -EOPNOTSUPP;
	struct vgb_rect damage = f->damage;
	if (!vgb_rect_is_empty(&damage) && !vgb_rect_clip(&damage, f->width, f->height))
		damage = (struct vgb_rect){ 0 };

	if (f->dmabuf && f->dmabuf->n_planes == 1 && s->wait == WAIT_NONE)
		return present_dmabuf(s, f, &damage);
	if (!f->cpu)
		return -EOPNOTSUPP;

	if (s->width[id] != f->width || s->height[id] != f->height || s->dmabuf_id[id]) {
		struct vgb_vhost_gpu_scanout m = { .scanout_id = id, .width = f->width,
						   .height = f->height };
		/* A new size makes queued pixels of the old one pointless. */
		s->stats.frames_dropped += drop_queued(s, VGB_VHOST_GPU_UPDATE, id, NULL);
		r = queue_msg(s, VGB_VHOST_GPU_SCANOUT, id, &m, sizeof(m), -1);
		if (r < 0)
			return r;
		s->width[id] = f->width;
		s->height[id] = f->height;
		s->dmabuf_id[id] = 0;
	}
	/* Latest frame wins: an UPDATE of this scanout still queued is replaced, its
	 * rectangle merged into this one's (the pixels come from the newer frame). */
	unsigned dropped = drop_queued(s, VGB_VHOST_GPU_UPDATE, id, &damage);
	s->stats.frames_dropped += dropped;
	if (!vgb_rect_is_empty(&damage)) {
		size_t bytes = (size_t)damage.width * damage.height * 4;
		struct vgb_vhost_gpu_update u = {
			.scanout_id = id, .x = damage.x, .y = damage.y,
			.width = damage.width, .height = damage.height,
		};
		uint8_t *px = malloc(bytes);
		if (!px)
			return -ENOMEM;
		r = copy_x8r8g8b8(px, f, &damage);
		if (r == 0)
			r = queue_msg_rect(s, VGB_VHOST_GPU_UPDATE, id, &damage, &u, sizeof(u), px,
					   bytes, -1);
		free(px);
		if (r < 0)
			return r;
		s->counters.update_bytes += bytes;
		s->stats.bytes_copied += bytes;
		s->stats.copies++;
	}
	s->stats.frames_presented++;
	s->stats.last_path = VGB_PATH_SHM_COPY;
	vgb_frame_complete(f, 0);
	return 0;
}

static void qemu_disable_scanout(struct vgb_display *d, uint32_t scanout)
{
	struct qemu_sink *s = qemu_sink_from(d);
	struct vgb_vhost_gpu_scanout m = { .scanout_id = scanout };

	if (scanout >= VGB_DISPLAY_MAX_SCANOUTS)
		return;
	s->stats.frames_dropped += drop_queued(s, VGB_VHOST_GPU_UPDATE, scanout, NULL);
	queue_msg(s, VGB_VHOST_GPU_SCANOUT, scanout, &m, sizeof(m), -1);
	s->width[scanout] = s->height[scanout] = 0;
	s->dmabuf_id[scanout] = 0;
}

static int qemu_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			   uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y)
{
	struct qemu_sink *s = qemu_sink_from(d);

	if (!argb) {
		struct vgb_vhost_gpu_cursor_pos p = { .scanout_id = scanout };
		s->cursor_visible = false;
		drop_queued(s, VGB_VHOST_GPU_CURSOR_POS, scanout, NULL);
		return queue_msg(s, VGB_VHOST_GPU_CURSOR_POS_HIDE, scanout, &p, sizeof(p), -1);
	}
	if (w > 64 || h > 64)
		return -EINVAL;
	_cleanup_free_ struct vgb_vhost_gpu_cursor_update *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	/* The shape travels with the position the cursor has now (the virtio-gpu
	 * UPDATE_CURSOR carries both): QEMU draws it there at once. */
	u->pos = (struct vgb_vhost_gpu_cursor_pos){ scanout, (uint32_t)s->cursor_x,
						    (uint32_t)s->cursor_y };
	u->hot_x = hot_x;
	u->hot_y = hot_y;
	for (uint32_t y = 0; y < h; y++)
		memcpy(&u->data[y * 64], argb + (size_t)y * w, (size_t)w * 4);
	s->cursor_visible = true;
	drop_queued(s, VGB_VHOST_GPU_CURSOR_UPDATE, scanout, NULL);
	drop_queued(s, VGB_VHOST_GPU_CURSOR_POS, scanout, NULL);
	return queue_msg(s, VGB_VHOST_GPU_CURSOR_UPDATE, scanout, u, sizeof(*u), -1);
}

static void qemu_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	struct qemu_sink *s = qemu_sink_from(d);
	struct vgb_vhost_gpu_cursor_pos p = { scanout, (uint32_t)x, (uint32_t)y };

	s->cursor_x = x;
	s->cursor_y = y;
	drop_queued(s, VGB_VHOST_GPU_CURSOR_POS, scanout, NULL);
	queue_msg(s, s->cursor_visible ? VGB_VHOST_GPU_CURSOR_POS : VGB_VHOST_GPU_CURSOR_POS_HIDE,
		  scanout, &p, sizeof(p), -1);
}

static int qemu_get_fd(struct vgb_display *d)
{
	return qemu_sink_from(d)->fd;
}

static int qemu_dispatch(struct vgb_display *d)
{
	struct qemu_sink *s = qemu_sink_from(d);
	int r;

	if (s->fd < 0)
		return 0;
	r = flush(s);
	if (r < 0)
		return r;
	return receive(s);
}

static void qemu_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct qemu_sink *s = qemu_sink_from(d);

	*ret = s->stats;
	ret->connected = s->fd >= 0;
}

static void qemu_destroy(struct vgb_display *d)
{
	struct qemu_sink *s = qemu_sink_from(d);

	sink_close(s, 0, false);
	free(s);
}

static const struct vgb_display_ops qemu_ops = {
	.name = "qemu",
	.present = qemu_present,
	.disable_scanout = qemu_disable_scanout,
	.set_cursor = qemu_set_cursor,
	.move_cursor = qemu_move_cursor,
	.get_fd = qemu_get_fd,
	.dispatch = qemu_dispatch,
	.get_stats = qemu_get_stats,
	.destroy = qemu_destroy,
};

int vgb_display_create_qemu(const struct vgb_qemu_display_callbacks *cb, void *data,
			    struct vgb_display **ret)
{
	struct qemu_sink *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->base.ops = &qemu_ops;
	if (cb)
		s->cb = *cb;
	s->cb_data = data;
	s->fd = -1;
	s->outq_tail = &s->outq;
	*ret = &s->base;
	return 0;
}

static struct qemu_sink *checked(struct vgb_display *d)
{
	return d && d->ops == &qemu_ops ? qemu_sink_from(d) : NULL;
}

int vgb_qemu_display_set_socket(struct vgb_display *d, int fd)
{
	struct qemu_sink *s = checked(d);
	int fl;

	if (!s || fd < 0) {
		vgb_close(fd);
		return -EINVAL;
	}
	sink_close(s, 0, true);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	s->fd = fd;
	s->watched = 0;
	update_watch(s);
	int r = queue_msg(s, VGB_VHOST_GPU_GET_PROTOCOL_FEATURES, 0, NULL, 0, -1);
	if (r < 0)
		return r;
	s->wait = WAIT_PROTOCOL;
	return 0;
}

void vgb_qemu_display_close(struct vgb_display *d)
{
	struct qemu_sink *s = checked(d);

	if (s)
		sink_close(s, 0, true);
}

bool vgb_qemu_display_is_connected(struct vgb_display *d)
{
	struct qemu_sink *s = checked(d);

	return s && s->fd >= 0;
}

bool vgb_qemu_display_is_busy(struct vgb_display *d)
{
	struct qemu_sink *s = checked(d);

	return s && s->fd >= 0 && s->wait != WAIT_NONE;
}

bool vgb_qemu_display_has_edid(struct vgb_display *d)
{
	struct qemu_sink *s = checked(d);

	return s && s->fd >= 0 && (s->protocol & (1ull << VGB_VHOST_GPU_PROTOCOL_F_EDID));
}

int vgb_qemu_display_query(struct vgb_display *d, uint32_t request, uint32_t scanout)
{
	struct qemu_sink *s = checked(d);
	struct vgb_vhost_gpu_edid_request er = { .scanout_id = scanout };
	int r;

	if (!s)
		return -EINVAL;
	if (s->fd < 0)
		return -ENOTCONN;
	if (s->wait != WAIT_NONE)
		return -EBUSY;
	if (request == VGB_VHOST_GPU_GET_EDID)
		r = queue_msg(s, request, scanout, &er, sizeof(er), -1);
	else if (request == VGB_VHOST_GPU_GET_DISPLAY_INFO)
		r = queue_msg(s, request, 0, NULL, 0, -1);
	else
		return -EINVAL;
	if (r < 0)
		return r;
	s->wait = WAIT_QUERY;
	s->wait_request = request;
	return 0;
}

void vgb_qemu_display_get_counters(struct vgb_display *d, struct vgb_qemu_display_counters *ret)
{
	struct qemu_sink *s = checked(d);

	*ret = s ? s->counters : (struct vgb_qemu_display_counters){ 0 };
}
