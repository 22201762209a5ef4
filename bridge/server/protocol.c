/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "protocol.h"
#include "vgb/util.h"

static const char *const type_names[] = {
	[VGB_MSG_HELLO] = "HELLO",
	[VGB_MSG_ADD_RAM] = "ADD_RAM",
	[VGB_MSG_ADD_VFIO_DEVICE] = "ADD_VFIO_DEVICE",
	[VGB_MSG_MAP_VFIO_WINDOW] = "MAP_VFIO_WINDOW",
	[VGB_MSG_REMOVE_WINDOW] = "REMOVE_WINDOW",
	[VGB_MSG_REMOVE_DEVICE] = "REMOVE_DEVICE",
	[VGB_MSG_VIRTIO_GPU_CMD] = "VIRTIO_GPU_CMD",
	[VGB_MSG_EXPORT_BLOB] = "EXPORT_BLOB",
	[VGB_MSG_STATS] = "STATS",
	[VGB_MSG_QUERY_DEVICE] = "QUERY_DEVICE",
};

const char *vgb_msg_type_name(uint32_t type)
{
	if (type < VGB_ARRAY_SIZE(type_names) && type_names[type])
		return type_names[type];
	return "unknown";
}

void vgb_msg_close_fds(struct vgb_msg *msg)
{
	for (unsigned i = 0; i < msg->n_fds && i < VGB_PROTO_MAX_FDS; i++)
		msg->fds[i] = vgb_close(msg->fds[i]);
	msg->n_fds = 0;
}

int vgb_msg_parse(const void *buf, size_t len, struct vgb_msg *ret)
{
	struct vgb_msg_header hdr;

	memset(&ret->hdr, 0, sizeof(ret->hdr));
	ret->payload = NULL;
	if (len < sizeof(hdr))
		return -EBADMSG;
	memcpy(&hdr, buf, sizeof(hdr));
	ret->hdr = hdr;
	if (len > VGB_PROTO_MAX_MSG)
		return -EMSGSIZE;
	if ((size_t)hdr.length != len - sizeof(hdr))
		return -EBADMSG;
	ret->payload = (const uint8_t *)buf + sizeof(hdr);
	return 0;
}

/* The fixed part of each request and the fds it states. */
struct request_shape {
	size_t fixed;     /* bytes of the fixed struct */
	bool variable;    /* bytes may follow the fixed struct */
};

static const struct request_shape shapes[] = {
	[VGB_MSG_HELLO] = { sizeof(struct vgb_msg_hello), false },
	[VGB_MSG_ADD_RAM] = { sizeof(struct vgb_msg_add_ram), false },
	[VGB_MSG_ADD_VFIO_DEVICE] = { sizeof(struct vgb_msg_add_device), true },
	[VGB_MSG_MAP_VFIO_WINDOW] = { sizeof(struct vgb_msg_map_window), false },
	[VGB_MSG_REMOVE_WINDOW] = { sizeof(struct vgb_msg_remove_window), false },
	[VGB_MSG_REMOVE_DEVICE] = { sizeof(struct vgb_msg_remove_device), false },
	[VGB_MSG_VIRTIO_GPU_CMD] = { sizeof(struct vgb_msg_gpu_cmd), true },
	[VGB_MSG_EXPORT_BLOB] = { sizeof(struct vgb_msg_export_blob), false },
	[VGB_MSG_STATS] = { sizeof(struct vgb_msg_stats), false },
	[VGB_MSG_QUERY_DEVICE] = { sizeof(struct vgb_msg_query_device), false },
};

int vgb_msg_check_request(const struct vgb_msg *msg)
{
	const struct vgb_msg_header *h = &msg->hdr;
	size_t len = h->length;
	unsigned stated_fds = 0;

	if (h->type == 0 || h->type >= VGB_ARRAY_SIZE(shapes) || shapes[h->type].fixed == 0)
		return -EOPNOTSUPP;
	if (h->flags != 0)
		return -EINVAL;
	if (len < shapes[h->type].fixed)
		return -EBADMSG;
	if (!shapes[h->type].variable && len != shapes[h->type].fixed)
		return -EBADMSG;

	switch (h->type) {
	case VGB_MSG_HELLO: {
		struct vgb_msg_hello m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved)
			return -EINVAL;
		break;
	}
	case VGB_MSG_ADD_RAM: {
		struct vgb_msg_add_ram m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.flags)
			return -EINVAL;
		if (m.n_fds != 1)
			return -EBADMSG;
		stated_fds = m.n_fds;
		break;
	}
	case VGB_MSG_ADD_VFIO_DEVICE: {
		struct vgb_msg_add_device m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved)
			return -EINVAL;
		if (m.n_fds > 1)
			return -EBADMSG;
		if (m.path_len > VGB_PROTO_MAX_PATH)
			return -ENAMETOOLONG;
		if (len != sizeof(m) + m.path_len)
			return -EBADMSG;
		if (m.kind > VGB_DEVICE_VFIO_USER_FD)
			return -EINVAL;
		bool with_fd = m.kind == VGB_DEVICE_FD || m.kind == VGB_DEVICE_VFIO_USER_FD;
		if (with_fd != (m.n_fds == 1))
			return -EBADMSG;
		if (!with_fd && m.path_len == 0)
			return -EINVAL;
		if (memchr((const uint8_t *)msg->payload + sizeof(m), 0, m.path_len))
			return -EINVAL;
		stated_fds = m.n_fds;
		break;
	}
	case VGB_MSG_REMOVE_DEVICE: {
		struct vgb_msg_remove_device m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved)
			return -EINVAL;
		break;
	}
	case VGB_MSG_VIRTIO_GPU_CMD: {
		struct vgb_msg_gpu_cmd m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved || m.queue > VGB_GPU_QUEUE_CURSOR)
			return -EINVAL;
		break;
	}
	case VGB_MSG_EXPORT_BLOB: {
		struct vgb_msg_export_blob m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.flags)
			return -EINVAL;
		break;
	}
	case VGB_MSG_STATS: {
		struct vgb_msg_stats m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved || (m.flags & ~VGB_STATS_SELF_ONLY))
			return -EINVAL;
		break;
	}
	case VGB_MSG_QUERY_DEVICE: {
		struct vgb_msg_query_device m;
		memcpy(&m, msg->payload, sizeof(m));
		if (m.reserved || (m.flags & ~VGB_QUERY_REGION_FD))
			return -EINVAL;
		break;
	}
	default:
		break;
	}

	if (stated_fds != msg->n_fds)
		return -EBADMSG;
	return 0;
}

ssize_t vgb_msg_encode(void *buf, size_t size, uint16_t type, uint16_t flags, uint64_t id,
		       const void *p1, size_t n1, const void *p2, size_t n2)
{
	struct vgb_msg_header hdr = { .type = type, .flags = flags, .id = id };
	size_t total;

	if (__builtin_add_overflow(n1, n2, &total) ||
	    __builtin_add_overflow(total, sizeof(hdr), &total) || total > VGB_PROTO_MAX_MSG ||
	    total > size)
		return -EMSGSIZE;
	hdr.length = (uint32_t)(total - sizeof(hdr));
	memcpy(buf, &hdr, sizeof(hdr));
	if (n1)
		memcpy((uint8_t *)buf + sizeof(hdr), p1, n1);
	if (n2)
		memcpy((uint8_t *)buf + sizeof(hdr) + n1, p2, n2);
	return (ssize_t)total;
}

int vgb_msg_send(int sock, uint16_t type, uint16_t flags, uint64_t id, const void *p1,
		 size_t n1, const void *p2, size_t n2, const int *fds, unsigned n_fds,
		 int sendflags)
{
	struct vgb_msg_header hdr = { .type = type, .flags = flags, .id = id };
	union {
		char buf[CMSG_SPACE(sizeof(int) * VGB_PROTO_MAX_FDS)];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov[3];
	struct msghdr mh = { .msg_iov = iov };
	size_t total;
	ssize_t r;

	if (n_fds > VGB_PROTO_MAX_FDS)
		return -EINVAL;
	if (__builtin_add_overflow(n1, n2, &total) ||
	    __builtin_add_overflow(total, sizeof(hdr), &total) || total > VGB_PROTO_MAX_MSG)
		return -EMSGSIZE;
	hdr.length = (uint32_t)(total - sizeof(hdr));

	iov[mh.msg_iovlen++] = (struct iovec){ &hdr, sizeof(hdr) };
	if (n1)
		iov[mh.msg_iovlen++] = (struct iovec){ (void *)p1, n1 };
	if (n2)
		iov[mh.msg_iovlen++] = (struct iovec){ (void *)p2, n2 };

	if (n_fds) {
		struct cmsghdr *c;

		memset(&ctrl, 0, sizeof(ctrl));
		mh.msg_control = ctrl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}

	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL | sendflags);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if ((size_t)r != total)
		return -EIO; /* SOCK_SEQPACKET sends whole packets */
	return 0;
}

ssize_t vgb_msg_recv(int sock, void *buf, size_t size, struct vgb_msg *ret)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VGB_PROTO_MAX_FDS)];
		struct cmsghdr align;
	} ctrl;
	struct iovec iov = { buf, size };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctrl.buf,
		.msg_controllen = sizeof(ctrl.buf),
	};
	bool bad_cmsg = false;
	ssize_t n;
	int r;

	ret->n_fds = 0;
	for (unsigned i = 0; i < VGB_PROTO_MAX_FDS; i++)
		ret->fds[i] = -1;
	memset(&ret->hdr, 0, sizeof(ret->hdr));
	ret->payload = NULL;

	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;

	/* Take every fd first, so that each error path below closes them. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			bad_cmsg = true;
			continue;
		}
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (ret->n_fds < VGB_PROTO_MAX_FDS)
				ret->fds[ret->n_fds++] = fd;
			else {
				close(fd); /* cannot happen with our buffer size, but never leak */
				bad_cmsg = true;
			}
		}
	}

	if (n == 0 && ret->n_fds == 0)
		return 0; /* orderly shutdown (SEQPACKET has no zero-length packets of ours) */

	if ((size_t)n > size) {
		/* MSG_TRUNC: n is the real length; keep what header we got for the reply. */
		if (size >= sizeof(ret->hdr))
			memcpy(&ret->hdr, buf, sizeof(ret->hdr));
		vgb_msg_close_fds(ret);
		return -EMSGSIZE;
	}
	r = vgb_msg_parse(buf, (size_t)n, ret);
	if (r < 0) {
		vgb_msg_close_fds(ret);
		return r;
	}
	if (bad_cmsg || (mh.msg_flags & MSG_CTRUNC)) {
		vgb_msg_close_fds(ret);
		return -EBADMSG;
	}
	return n;
}
