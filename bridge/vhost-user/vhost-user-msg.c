/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user transport: framed reads with their fds, replies, and one handler per front-end
 * request (QEMU's docs/interop/vhost-user.rst).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "vgb/display-qemu.h"
#include "vgb/log.h"
#include "vgb/util.h"

#include "vhost-user-private.h"

static void rx_drop_fds(struct rx *rx)
{
	for (unsigned i = 0; i < rx->n_fds; i++)
		vgb_close(rx->fds[i]);
	rx->n_fds = 0;
	rx->too_many_fds = false;
}

void vgb_vhost_rx_reset(struct rx *rx)
{
	rx_drop_fds(rx);
	rx->got = 0;
}

/* Takes fd @i of the current message (the rx no longer closes it). */
static int rx_take_fd(struct rx *rx, unsigned i)
{
	int fd = rx->fds[i];
	rx->fds[i] = -1;
	return fd;
}

/*
 * Reads at most the rest of the current message, so that fds stay with their message.
 * Returns 1 when a whole message is in @rx, 0 when more is needed, -ECONNRESET at EOF,
 * -EPROTO for a payload larger than @max_payload, or -errno.
 */
static int rx_read(int fd, struct rx *rx, size_t max_payload)
{
	const size_t hdr = sizeof(struct vgb_vhost_user_header);

	for (;;) {
		size_t want;
		if (rx->got < hdr) {
			want = hdr - rx->got;
		} else {
			uint32_t size;
			memcpy(&size, rx->buf + 8, sizeof(size));
			if (size > max_payload)
				return -EPROTO;
			if (rx->got == hdr + size)
				return 1;
			want = hdr + size - rx->got;
		}

		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * VGB_VHOST_USER_MAX_FDS)];
		} control;
		struct iovec iov = { .iov_base = rx->buf + rx->got, .iov_len = want };
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = control.buf,
			.msg_controllen = sizeof(control.buf),
		};
		ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int f;
				memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (rx->n_fds < VGB_VHOST_USER_MAX_FDS) {
					rx->fds[rx->n_fds++] = f;
				} else {
					close(f);
					rx->too_many_fds = true;
				}
			}
		}
		if (msg.msg_flags & MSG_CTRUNC)
			rx->too_many_fds = true;
		if (n == 0)
			return -ECONNRESET;
		rx->got += (size_t)n;
	}
}

static int send_all(int fd, const struct iovec *iov_in, int n_iov, int pass_fd)
{
	struct iovec iov[4];
	int cnt = n_iov;
	bool first = true;

	memcpy(iov, iov_in, sizeof(*iov) * (size_t)n_iov);
	while (cnt > 0) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} control;
		struct msghdr msg = { .msg_iov = iov + (n_iov - cnt), .msg_iovlen = (size_t)cnt };
		if (first && pass_fd >= 0) {
			msg.msg_control = control.buf;
			msg.msg_controllen = sizeof(control.buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
		}
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		first = false;
		size_t left = (size_t)n;
		while (cnt > 0 && left >= iov[n_iov - cnt].iov_len) {
			left -= iov[n_iov - cnt].iov_len;
			cnt--;
		}
		if (cnt > 0) {
			iov[n_iov - cnt].iov_base = (char *)iov[n_iov - cnt].iov_base + left;
			iov[n_iov - cnt].iov_len -= left;
		}
	}
	return 0;
}

static int send_reply(struct vgb_vhost_dev *dev, uint32_t request, const void *payload,
		      size_t size)
{
	struct vgb_vhost_user_header h = {
		.request = request,
		.flags = VGB_VHOST_USER_VERSION | VGB_VHOST_USER_FLAG_REPLY,
		.size = (uint32_t)size,
	};
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)payload, .iov_len = size },
	};
	return send_all(dev->sock_fd, iov, size ? 2 : 1, -1);
}

static int reply_u64(struct vgb_vhost_dev *dev, uint32_t request, uint64_t v)
{
	return send_reply(dev, request, &v, sizeof(v));
}


static int payload_u64(const struct msg *m, uint64_t *ret)
{
	if (m->size != sizeof(uint64_t))
		return -EINVAL;
	memcpy(ret, m->payload, sizeof(*ret));
	return 0;
}

static int payload_state(const struct msg *m, struct vgb_vhost_user_vring_state *ret)
{
	if (m->size != sizeof(*ret))
		return -EINVAL;
	memcpy(ret, m->payload, sizeof(*ret));
	if (ret->index >= VGB_VHOST_QUEUES)
		return -EINVAL;
	return 0;
}

static int handle_vring_fd(const struct msg *m, unsigned *ret_index, int *ret_fd)
{
	uint64_t v;
	int r = payload_u64(m, &v);
	if (r < 0)
		return r;
	unsigned idx = v & VGB_VHOST_USER_VRING_IDX_MASK;
	bool nofd = v & VGB_VHOST_USER_VRING_NOFD;
	if (idx >= VGB_VHOST_QUEUES || (v & ~(uint64_t)(VGB_VHOST_USER_VRING_IDX_MASK |
						      VGB_VHOST_USER_VRING_NOFD)))
		return -EINVAL;
	if (nofd ? m->rx->n_fds != 0 : m->rx->n_fds != 1)
		return -EINVAL;
	*ret_index = idx;
	*ret_fd = nofd ? -1 : rx_take_fd(m->rx, 0);
	return 0;
}

static int handle_message(struct vgb_vhost_dev *dev, const struct msg *m, bool *replied)
{
	struct vgb_vhost_user_vring_state st;
	uint64_t v;
	unsigned idx;
	int fd, r;

	*replied = false;
	/* Only these take fds: any other message carrying fds is malformed. */
	if (m->rx->n_fds && m->request != VGB_VHOST_USER_SET_MEM_TABLE &&
	    m->request != VGB_VHOST_USER_SET_VRING_KICK &&
	    m->request != VGB_VHOST_USER_SET_VRING_CALL &&
	    m->request != VGB_VHOST_USER_SET_VRING_ERR &&
	    m->request != VGB_VHOST_USER_GPU_SET_SOCKET)
		return -EINVAL;

	switch (m->request) {
	case VGB_VHOST_USER_GET_FEATURES:
		*replied = true;
		return reply_u64(dev, m->request, DEV_FEATURES);

	case VGB_VHOST_USER_SET_FEATURES:
		if ((r = payload_u64(m, &v)) < 0)
			return r;
		/*
		 * QEMU forwards the guest's acks as they are, including transport bits we never
		 * offered (RING_RESET, NOTIFY_ON_EMPTY): we act on the ones we know.
		 */
		dev->features = v;
		dev->features_set = true;
		for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++) {
			dev->vrings[i].vq.event_idx = v & (1ull << VIRTIO_RING_F_EVENT_IDX);
			dev->vrings[i].vq.indirect = v & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
			/* Without PROTOCOL_FEATURES, rings start enabled (vhost-user.rst). */
			if (!(v & (1ull << VGB_VHOST_F_PROTOCOL_FEATURES)))
				dev->vrings[i].enabled = true;
		}
		return 0;

	case VGB_VHOST_USER_SET_OWNER:
		dev->owner = true;
		return 0;

	case VGB_VHOST_USER_RESET_OWNER:
	case VGB_VHOST_USER_RESET_DEVICE:
		vgb_vhost_vrings_reset(dev);
		dev->features = 0;
		dev->features_set = false;
		return 0;

	case VGB_VHOST_USER_GET_PROTOCOL_FEATURES:
		*replied = true;
		return reply_u64(dev, m->request, DEV_PROTOCOL_FEATURES);

	case VGB_VHOST_USER_SET_PROTOCOL_FEATURES:
		if ((r = payload_u64(m, &v)) < 0)
			return r;
		dev->protocol_features = v & DEV_PROTOCOL_FEATURES;
		return 0;

	case VGB_VHOST_USER_GET_QUEUE_NUM:
		*replied = true;
		return reply_u64(dev, m->request, VGB_VHOST_QUEUES);

	case VGB_VHOST_USER_SET_MEM_TABLE:
		return vgb_vhost_handle_set_mem_table(dev, m);

	case VGB_VHOST_USER_SET_VRING_NUM:
		if ((r = payload_state(m, &st)) < 0)
			return r;
		if (st.num == 0 || st.num > VGB_VQ_MAX_SIZE || (st.num & (st.num - 1)))
			return -EINVAL;
		dev->vrings[st.index].num = st.num;
		return 0;

	case VGB_VHOST_USER_SET_VRING_ADDR: {
		struct vgb_vhost_user_vring_addr a;
		if (m->size != sizeof(a))
			return -EINVAL;
		memcpy(&a, m->payload, sizeof(a));
		if (a.index >= VGB_VHOST_QUEUES)
			return -EINVAL;
		struct vhost_vring *vr = &dev->vrings[a.index];
		vr->addr = a;
		vr->addr_set = true;
		if (vr->started) {
			vr->base = vr->vq.last_avail_idx;
			if ((r = vgb_vhost_vring_setup(dev, a.index)) < 0) {
				vgb_vhost_vring_stop(dev, a.index);
				return r;
			}
		}
		return 0;
	}

	case VGB_VHOST_USER_SET_VRING_BASE:
		if ((r = payload_state(m, &st)) < 0)
			return r;
		if (st.num > UINT16_MAX)
			return -EINVAL;
		dev->vrings[st.index].base = (uint16_t)st.num;
		return 0;

	case VGB_VHOST_USER_GET_VRING_BASE: {
		if ((r = payload_state(m, &st)) < 0)
			return r;
		struct vhost_vring *vr = &dev->vrings[st.index];
		vgb_vhost_vring_stop(dev, st.index);
		struct vgb_vhost_user_vring_state reply = { st.index, vr->base };
		*replied = true;
		return send_reply(dev, m->request, &reply, sizeof(reply));
	}

	case VGB_VHOST_USER_SET_VRING_KICK: {
		if ((r = handle_vring_fd(m, &idx, &fd)) < 0)
			return r;
		struct vhost_vring *vr = &dev->vrings[idx];
		vgb_vhost_epoll_del(dev, vr->kick_fd);
		vr->kick_fd = vgb_close(vr->kick_fd);
		vr->kick_fd = fd;
		if (fd >= 0 && (r = vgb_vhost_epoll_add(dev, fd, TAG(TAG_KICK, idx))) < 0)
			return r;
		if ((r = vgb_vhost_vring_setup(dev, idx)) < 0)
			return r;
		vr->started = true;
		vgb_vhost_process_queue(dev, idx);
		return 0;
	}

	case VGB_VHOST_USER_SET_VRING_CALL:
		if ((r = handle_vring_fd(m, &idx, &fd)) < 0)
			return r;
		vgb_close(dev->vrings[idx].call_fd);
		dev->vrings[idx].call_fd = fd;
		return 0;

	case VGB_VHOST_USER_SET_VRING_ERR:
		if ((r = handle_vring_fd(m, &idx, &fd)) < 0)
			return r;
		vgb_close(dev->vrings[idx].err_fd);
		dev->vrings[idx].err_fd = fd;
		return 0;

	case VGB_VHOST_USER_SET_VRING_ENABLE:
		if ((r = payload_state(m, &st)) < 0)
			return r;
		if (st.num > 1)
			return -EINVAL;
		dev->vrings[st.index].enabled = st.num;
		if (st.num)
			vgb_vhost_process_queue(dev, st.index);
		return 0;

	case VGB_VHOST_USER_GET_CONFIG: {
		struct vgb_vhost_user_config c = { 0 };
		if (m->size < 12 || m->size > sizeof(c))
			return -EINVAL;
		memcpy(&c, m->payload, m->size);
		*replied = true;
		if (c.size > VGB_VHOST_USER_MAX_CONFIG || m->size != 12 + c.size ||
		    c.offset > sizeof(dev->config) || c.size > sizeof(dev->config) - c.offset) {
			/* A reply without data tells QEMU the read failed. */
			c.size = 0;
			send_reply(dev, m->request, &c, 12);
			return -EINVAL;
		}
		memcpy(c.region, (uint8_t *)&dev->config + c.offset, c.size);
		return send_reply(dev, m->request, &c, 12 + c.size);
	}

	case VGB_VHOST_USER_SET_CONFIG: {
		struct vgb_vhost_user_config c = { 0 };
		if (m->size < 12 || m->size > sizeof(c))
			return -EINVAL;
		memcpy(&c, m->payload, m->size);
		if (c.size > VGB_VHOST_USER_MAX_CONFIG || m->size != 12 + c.size ||
		    c.offset > sizeof(dev->config) || c.size > sizeof(dev->config) - c.offset)
			return -EINVAL;
		/* Only events_clear is writable (virtio 5.7.4). */
		struct virtio_gpu_config cfg = dev->config;
		memcpy((uint8_t *)&cfg + c.offset, c.region, c.size);
		dev->config.events_read &= ~cfg.events_clear;
		return 0;
	}

	case VGB_VHOST_USER_GPU_SET_SOCKET:
		if (m->rx->n_fds != 1 || m->size != 0)
			return -EINVAL;
		return vgb_qemu_display_set_socket(dev->qemu, rx_take_fd(m->rx, 0));

	default:
		vgb_log_ratelimited(VGB_LOG_WARN, "vhost-user: unsupported request %u", m->request);
		return -EOPNOTSUPP;
	}
}

int vgb_vhost_sock_dispatch(struct vgb_vhost_dev *dev)
{
	for (;;) {
		int r = rx_read(dev->sock_fd, &dev->rx, VGB_VHOST_USER_MAX_PAYLOAD);
		if (r == 0)
			return 0;
		if (r < 0)
			return r == -ECONNRESET ? r : (r == -EPROTO ? r : -ECONNRESET);

		struct vgb_vhost_user_header h;
		memcpy(&h, dev->rx.buf, sizeof(h));
		struct msg m = { h.request, h.flags, h.size, dev->rx.buf + sizeof(h), &dev->rx };
		bool replied = false;

		dev->stats.messages++;
		if ((h.flags & VGB_VHOST_USER_VERSION_MASK) != VGB_VHOST_USER_VERSION) {
			vgb_vhost_rx_reset(&dev->rx);
			return -EPROTO;
		}
		r = handle_message(dev, &m, &replied);
		if (r < 0) {
			dev->stats.bad_messages++;
			vgb_log_ratelimited(VGB_LOG_DEBUG, "vhost-user: request %u: %s", h.request,
					    strerror(-r));
		}
		if (!replied && (h.flags & VGB_VHOST_USER_FLAG_NEED_REPLY) &&
		    (dev->protocol_features & (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
			/* REPLY_ACK: 0 for success, non-zero for failure. */
			if (reply_u64(dev, h.request, r < 0 ? 1 : 0) < 0) {
				vgb_vhost_rx_reset(&dev->rx);
				return -ECONNRESET;
			}
		}
		vgb_vhost_rx_reset(&dev->rx);
	}
}
