/* SPDX-License-Identifier: MIT */
/*
 * The vfio-user backend: a client of a vfio-user server over an AF_UNIX stream socket (QEMU's
 * docs/interop/vfio-user.rst; wire structs in vgb/vfio-user.h). One request at a time: each op
 * sends its message and waits for the reply with a deadline. The region-info cache in
 * device.c holds what DEVICE_GET_REGION_INFO answered; the fd an mmappable region's answer
 * carries is kept here per region and handed out by region_mmap_fd, so the segment mapper and
 * the export planner's CPU view map the server's own memory.
 *
 * A reply that cannot be framed (bad header, wrong id or command, longer than asked for, a
 * timeout, EOF) leaves the stream unusable: the device is gone (see vgb/vfio.h). A reply that
 * frames well but says something wrong (a bad index, fds where none belong) fails only its
 * call, with -EPROTO.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "private.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio-user.h"
#include "vgb/vfio.h"

#define VU_MAX_REGIONS 256u
#define VU_DEFAULT_TIMEOUT_MS 5000
/* Our own cap on one REGION_READ/WRITE, below the server's max_data_xfer_size. */
#define VU_MAX_XFER (1u << 20)
/* The most fds one received message may carry before it is refused as malformed. */
#define VU_RECV_FDS 16u
/* Server-to-client requests we answer with an error while waiting for one reply. */
#define VU_MAX_UNSOLICITED 16u
#define VU_CLIENT_CAPS "{\"capabilities\":{\"max_msg_fds\":1,\"max_data_xfer_size\":1048576}}"

struct vu_device {
	struct vgb_vfio_device base;
	int sock;
	bool owns_sock;     /* false while adopting: a failed adopt leaves the fd to the caller */
	bool gone;
	int gone_reason;    /* what made it gone, for logs */
	uint16_t next_id;
	int timeout_ms;
	uint32_t max_xfer;  /* bytes per REGION_READ/WRITE */
	int *region_fd;     /* num_regions, -1 when none */
};

static const struct vgb_vfio_device_ops vu_ops;

static struct vu_device *vu_from(struct vgb_vfio_device *dev)
{
	return dev && dev->ops == &vu_ops ? vgb_container_of(dev, struct vu_device, base) : NULL;
}

bool vgb_vfio_user_is_gone(const struct vgb_vfio_device *dev)
{
	return dev && dev->ops == &vu_ops &&
	       vgb_container_of(dev, const struct vu_device, base)->gone;
}

void vgb_vfio_user_set_timeout(struct vgb_vfio_device *dev, int timeout_ms)
{
	struct vu_device *v = vu_from(dev);

	if (v)
		v->timeout_ms = timeout_ms;
}

static void close_region_fds(struct vu_device *v)
{
	if (!v->region_fd)
		return;
	for (uint32_t i = 0; i < v->base.num_regions; i++)
		v->region_fd[i] = vgb_close(v->region_fd[i]);
}

/* The server is gone or cannot be trusted: nothing more goes over this socket. */
static int vu_gone(struct vu_device *v, int why)
{
	if (!v->gone) {
		vgb_log_errno(VGB_LOG_DEBUG, why, "%s: vfio-user server gone", v->base.name);
		v->gone = true;
		v->gone_reason = why;
		if (v->owns_sock)
			vgb_close(v->sock);
		v->sock = -1;
		close_region_fds(v);
		/* What was exported from this device is stale now. */
		v->base.generation++;
	}
	return -ENODEV;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int remaining(uint64_t deadline)
{
	uint64_t now = now_ms();

	if (deadline == UINT64_MAX)
		return -1;
	return now >= deadline ? 0 : (int)VGB_MIN(deadline - now, (uint64_t)INT32_MAX);
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fds[i] = vgb_close(fds[i]);
}

/*
 * Reads exactly @len bytes before @deadline. Fds that arrive are appended to @fds (up to
 * VU_RECV_FDS; *@n_fds counts them, and *@extra is set when more came or they were cut).
 * Returns 0, -ECONNRESET on EOF, -ETIMEDOUT or -errno.
 */
static int recv_exact(int sock, void *buf, size_t len, uint64_t deadline, int *fds,
		      size_t *n_fds, bool *extra)
{
	size_t got = 0;

	while (got < len) {
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(VU_RECV_FDS * sizeof(int))];
		} ctl;
		struct iovec iov = { (uint8_t *)buf + got, len - got };
		struct msghdr mh = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof(ctl.buf),
		};
		ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0) {
			struct pollfd p = { .fd = sock, .events = POLLIN };
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			r = poll(&p, 1, remaining(deadline));
			if (r < 0 && errno != EINTR)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
			continue;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t k;

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
				*extra = true;
				continue;
			}
			k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				if (*n_fds < VU_RECV_FDS) {
					fds[(*n_fds)++] = fd;
				} else {
					close(fd);
					*extra = true;
				}
			}
		}
		if (mh.msg_flags & MSG_CTRUNC)
			*extra = true;
		if (n == 0)
			return -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

/* Reads and drops @len bytes (a payload we do not want). */
static int drain(int sock, size_t len, uint64_t deadline, int *fds, size_t *n_fds, bool *extra)
{
	uint8_t scratch[4096];

	while (len) {
		size_t n = VGB_MIN(len, sizeof(scratch));
		int r = recv_exact(sock, scratch, n, deadline, fds, n_fds, extra);

		if (r < 0)
			return r;
		len -= n;
	}
	return 0;
}

/*
 * One request and its reply. The reply's payload (at most @reply_max bytes, else the stream
 * is broken) goes to @reply; its fds, at most @max_fds of them, to @ret_fds.
 */
static int vu_call(struct vu_device *v, uint16_t cmd, const struct iovec *req, int n_req,
		   const int *fds, size_t n_fds, void *reply, size_t reply_max, size_t *ret_len,
		   int *ret_fds, size_t max_fds, size_t *ret_n_fds)
{
	struct vgb_vfio_user_hdr hdr = { .cmd = cmd, .flags = VGB_VFIO_USER_F_REQUEST };
	uint64_t deadline;
	size_t size = sizeof(hdr);
	unsigned unsolicited = 0;
	int r;

	if (v->gone)
		return -ENODEV;
	for (int i = 0; i < n_req; i++)
		size += req[i].iov_len;
	if (size > UINT32_MAX)
		return -EINVAL;
	hdr.size = (uint32_t)size;
	hdr.id = v->next_id++;
	deadline = v->timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)v->timeout_ms;

	r = vgb_vfio_user_send(v->sock, &hdr, req, n_req, fds, n_fds, v->timeout_ms);
	if (r < 0)
		return vu_gone(v, r);

	for (;;) {
		struct vgb_vfio_user_hdr rep;
		int got_fds[VU_RECV_FDS];
		size_t n_got = 0, payload;
		bool extra = false;

		r = recv_exact(v->sock, &rep, sizeof(rep), deadline, got_fds, &n_got, &extra);
		if (r < 0) {
			close_fds(got_fds, n_got);
			return vu_gone(v, r);
		}
		if (rep.size < sizeof(rep)) {
			close_fds(got_fds, n_got);
			vgb_log(VGB_LOG_DEBUG, "%s: reply size %u is shorter than a header",
				v->base.name, rep.size);
			return vu_gone(v, -EPROTO);
		}
		payload = rep.size - sizeof(rep);

		if ((rep.flags & VGB_VFIO_USER_F_TYPE_MASK) == VGB_VFIO_USER_F_REQUEST) {
			/* We never map DMA, so the server has nothing to ask: refuse, bounded. */
			struct vgb_vfio_user_hdr err = {
				.id = rep.id, .cmd = rep.cmd, .size = sizeof(err),
				.flags = VGB_VFIO_USER_F_REPLY | VGB_VFIO_USER_F_ERROR,
				.error = EOPNOTSUPP,
			};

			r = payload > VU_MAX_XFER + 64 ? -EPROTO
							: drain(v->sock, payload, deadline, got_fds,
								&n_got, &extra);
			close_fds(got_fds, n_got);
			if (r < 0 || ++unsolicited > VU_MAX_UNSOLICITED)
				return vu_gone(v, r < 0 ? r : -EPROTO);
			if (!(rep.flags & VGB_VFIO_USER_F_NO_REPLY)) {
				r = vgb_vfio_user_send(v->sock, &err, NULL, 0, NULL, 0, v->timeout_ms);
				if (r < 0)
					return vu_gone(v, r);
			}
			continue;
		}
		if ((rep.flags & VGB_VFIO_USER_F_TYPE_MASK) != VGB_VFIO_USER_F_REPLY ||
		    rep.id != hdr.id || rep.cmd != cmd || payload > reply_max) {
			close_fds(got_fds, n_got);
			vgb_log(VGB_LOG_DEBUG,
				"%s: %s reply: id %u (sent %u), cmd %u, flags %#x, %zu bytes (at most %zu)",
				v->base.name, vgb_vfio_user_cmd_name(cmd), rep.id, hdr.id, rep.cmd,
				rep.flags, payload, reply_max);
			return vu_gone(v, -EPROTO);
		}
		if (rep.flags & VGB_VFIO_USER_F_ERROR) {
			r = drain(v->sock, payload, deadline, got_fds, &n_got, &extra);
			close_fds(got_fds, n_got);
			if (r < 0)
				return vu_gone(v, r);
			return rep.error > 0 && rep.error < 4096 ? -(int)rep.error : -EIO;
		}
		r = recv_exact(v->sock, reply, payload, deadline, got_fds, &n_got, &extra);
		if (r < 0) {
			close_fds(got_fds, n_got);
			return vu_gone(v, r);
		}
		if (extra || n_got > max_fds) {
			close_fds(got_fds, n_got);
			vgb_log(VGB_LOG_DEBUG, "%s: %s reply carries %zu fds (at most %zu)",
				v->base.name, vgb_vfio_user_cmd_name(cmd), n_got, max_fds);
			return -EPROTO;
		}
		if (ret_len)
			*ret_len = payload;
		for (size_t i = 0; i < n_got; i++)
			ret_fds[i] = got_fds[i];
		if (ret_n_fds)
			*ret_n_fds = n_got;
		return 0;
	}
}

int vgb_vfio_user_request(struct vgb_vfio_device *dev, uint16_t cmd, const void *req,
			  size_t req_len, const int *fds, size_t n_fds, void *reply,
			  size_t reply_max, size_t *ret_len, int *ret_fds, size_t max_fds,
			  size_t *ret_n_fds)
{
	struct vu_device *v = vu_from(dev);
	struct iovec iov = { (void *)req, req_len };
	size_t n = 0;
	int r;

	if (!v || (req_len && !req) || (reply_max && !reply) || (max_fds && !ret_fds))
		return -EINVAL;
	r = vu_call(v, cmd, &iov, 1, fds, n_fds, reply, reply_max, ret_len, ret_fds, max_fds, &n);
	if (r >= 0 && ret_n_fds)
		*ret_n_fds = n;
	return r;
}

/* ---- the ops ---- */

static int vu_get_region_info(struct vgb_vfio_device *dev, void *arg)
{
	struct vu_device *v = vu_from(dev);
	struct vfio_region_info *info = arg, req = {
		.argsz = info->argsz,
		.index = info->index,
	};
	struct iovec iov = { &req, sizeof(req) };
	uint32_t index = info->index, argsz = info->argsz;
	size_t len = 0, n_fds = 0;
	int fd = -1, r;

	if (argsz < sizeof(*info) || index >= dev->num_regions)
		return -EINVAL;
	r = vu_call(v, VGB_VFIO_USER_DEVICE_GET_REGION_INFO, &iov, 1, NULL, 0, info, argsz, &len,
		    &fd, 1, &n_fds);
	if (r < 0)
		return r;
	if (len < sizeof(*info) || info->index != index || info->argsz < sizeof(*info)) {
		vgb_log(VGB_LOG_DEBUG, "%s: region %u info: %zu bytes for index %u", dev->name,
			index, len, info->index);
		r = -EPROTO;
		goto out;
	}
	memset((uint8_t *)info + len, 0, argsz - len);
	/* A cap chain that did not fit is not there: the caller re-queries with info->argsz. */
	if (info->argsz > argsz) {
		info->cap_offset = 0;
		goto out;
	}
	if (info->flags & VFIO_REGION_INFO_FLAG_MMAP) {
		if (!n_fds) {
			vgb_log(VGB_LOG_DEBUG, "%s: region %u is mmappable but came without an fd",
				dev->name, index);
			r = -EPROTO;
			goto out;
		}
		vgb_fd_move(&v->region_fd[index], &fd);
	}
out:
	vgb_close(fd);
	return r;
}

static int vu_get_device_info(struct vgb_vfio_device *dev, void *arg)
{
	struct vu_device *v = vu_from(dev);
	struct vfio_device_info *info = arg;
	struct vgb_vfio_user_device_info req = { .argsz = sizeof(req) }, rep;
	struct iovec iov = { &req, sizeof(req) };
	size_t len = 0;
	int r;

	if (info->argsz < sizeof(rep))
		return -EINVAL;
	r = vu_call(v, VGB_VFIO_USER_DEVICE_GET_INFO, &iov, 1, NULL, 0, &rep, sizeof(rep), &len,
		    NULL, 0, NULL);
	if (r < 0)
		return r;
	if (len < sizeof(rep))
		return -EPROTO;
	info->flags = rep.flags;
	info->num_regions = rep.num_regions;
	info->num_irqs = rep.num_irqs;
	return 0;
}

static ssize_t vu_region_read(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			      void *buf, size_t len)
{
	struct vu_device *v = vu_from(dev);
	_cleanup_free_ uint8_t *rep = NULL;
	size_t done = 0;

	if (v->gone)
		return -ENODEV;
	rep = malloc(sizeof(struct vgb_vfio_user_region_rw) + VGB_MIN(len, v->max_xfer));
	if (!rep)
		return -ENOMEM;
	while (done < len) {
		uint32_t chunk = (uint32_t)VGB_MIN(len - done, v->max_xfer);
		struct vgb_vfio_user_region_rw req = { off + done, index, chunk }, got;
		struct iovec iov = { &req, sizeof(req) };
		size_t n = 0;
		int r;

		r = vu_call(v, VGB_VFIO_USER_REGION_READ, &iov, 1, NULL, 0, rep,
			    sizeof(req) + chunk, &n, NULL, 0, NULL);
		if (r < 0)
			return done && r != -ENODEV ? (ssize_t)done : r;
		if (n < sizeof(got))
			return -EPROTO;
		memcpy(&got, rep, sizeof(got));
		if (got.offset != req.offset || got.region != index || got.count > chunk ||
		    n != sizeof(got) + got.count) {
			vgb_log(VGB_LOG_DEBUG, "%s: REGION_READ reply for %u@%#llx: %u bytes of %u@%#llx",
				dev->name, index, (unsigned long long)req.offset, got.count,
				got.region, (unsigned long long)got.offset);
			return -EPROTO;
		}
		memcpy((uint8_t *)buf + done, rep + sizeof(got), got.count);
		done += got.count;
		if (got.count < chunk)
			break;
	}
	return (ssize_t)done;
}

static ssize_t vu_region_write(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			       const void *buf, size_t len)
{
	struct vu_device *v = vu_from(dev);
	size_t done = 0;

	if (v->gone)
		return -ENODEV;
	while (done < len) {
		uint32_t chunk = (uint32_t)VGB_MIN(len - done, v->max_xfer);
		struct vgb_vfio_user_region_rw req = { off + done, index, chunk }, got;
		struct iovec iov[2] = {
			{ &req, sizeof(req) },
			{ (uint8_t *)buf + done, chunk },
		};
		size_t n = 0;
		int r;

		r = vu_call(v, VGB_VFIO_USER_REGION_WRITE, iov, 2, NULL, 0, &got, sizeof(got), &n,
			    NULL, 0, NULL);
		if (r < 0)
			return done && r != -ENODEV ? (ssize_t)done : r;
		if (n != sizeof(got) || got.offset != req.offset || got.region != index ||
		    got.count > chunk)
			return -EPROTO;
		done += got.count;
		if (got.count < chunk)
			break;
	}
	return (ssize_t)done;
}

static int vu_region_mmap_fd(struct vgb_vfio_device *dev, uint32_t index)
{
	struct vu_device *v = vu_from(dev);

	if (v->gone)
		return -ENODEV;
	if (index >= dev->num_regions || v->region_fd[index] < 0)
		return -EINVAL;
	return v->region_fd[index];
}

static int vu_reset(struct vgb_vfio_device *dev)
{
	return vu_call(vu_from(dev), VGB_VFIO_USER_DEVICE_RESET, NULL, 0, NULL, 0, NULL, 0, NULL,
		       NULL, 0, NULL);
}

static void vu_destroy(struct vgb_vfio_device *dev)
{
	struct vu_device *v = vu_from(dev);

	close_region_fds(v);
	free(v->region_fd);
	if (v->owns_sock)
		vgb_close(v->sock);
	free(v);
}

static const struct vgb_vfio_device_ops vu_ops = {
	.name = "vfio-user",
	/* No DMA_BUF: the protocol has no way to export one. */
	.capabilities = VGB_VFIO_CAP_MMAP | VGB_VFIO_CAP_RESET,
	.get_region_info = vu_get_region_info,
	.get_device_info = vu_get_device_info,
	.region_read = vu_region_read,
	.region_write = vu_region_write,
	.region_mmap_fd = vu_region_mmap_fd,
	.reset = vu_reset,
	.destroy = vu_destroy,
};

/* ---- connecting ---- */

static int handshake(struct vu_device *v)
{
	static const char caps_json[] = VU_CLIENT_CAPS;
	struct vgb_vfio_user_version ver = { VGB_VFIO_USER_MAJOR, VGB_VFIO_USER_MINOR };
	struct iovec iov[2] = { { &ver, sizeof(ver) }, { (void *)caps_json, sizeof(caps_json) } };
	struct vgb_vfio_user_caps caps;
	_cleanup_free_ uint8_t *rep = malloc(sizeof(ver) + VGB_VFIO_USER_MAX_JSON);
	size_t len = 0;
	int r;

	if (!rep)
		return -ENOMEM;
	r = vu_call(v, VGB_VFIO_USER_VERSION, iov, 2, NULL, 0, rep,
		    sizeof(ver) + VGB_VFIO_USER_MAX_JSON, &len, NULL, 0, NULL);
	if (r < 0)
		return r;
	if (len < sizeof(ver))
		return -EPROTO;
	memcpy(&ver, rep, sizeof(ver));
	if (ver.major != VGB_VFIO_USER_MAJOR || ver.minor > VGB_VFIO_USER_MINOR) {
		vgb_log(VGB_LOG_DEBUG, "%s: server speaks vfio-user %u.%u, we speak %u.%u",
			v->base.name, ver.major, ver.minor, VGB_VFIO_USER_MAJOR,
			VGB_VFIO_USER_MINOR);
		return -EPROTO;
	}
	if (len > sizeof(ver)) {
		r = vgb_vfio_user_parse_caps((const char *)rep + sizeof(ver), len - sizeof(ver),
					     &caps);
		if (r < 0)
			return vgb_log_errno(VGB_LOG_DEBUG, -EPROTO, "%s: server capabilities",
					     v->base.name);
	} else {
		vgb_vfio_user_caps_default(&caps);
	}
	if (!caps.max_data_xfer_size)
		return -EPROTO;
	v->max_xfer = (uint32_t)VGB_MIN(caps.max_data_xfer_size, (uint64_t)VU_MAX_XFER);
	return 0;
}

int vgb_vfio_user_adopt(int fd, const char *name, struct vgb_vfio_device **ret)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int type = 0, domain = 0;
	socklen_t sl = sizeof(type);
	struct vu_device *v;
	int r;

	if (fd < 0 || !ret)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0)
		return -errno;
	sl = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl) < 0)
		return -errno;
	if (domain != AF_UNIX || type != SOCK_STREAM)
		return vgb_log_errno(VGB_LOG_DEBUG, -EPROTOTYPE,
				     "vfio-user needs an AF_UNIX stream socket");

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	vgb_vfio_device_init(&v->base, &vu_ops, 0, name && name[0] ? name : "vfio-user");
	v->base.path = VGB_VFIO_PATH_VFIO_USER;
	v->sock = fd;
	v->timeout_ms = VU_DEFAULT_TIMEOUT_MS;
	v->max_xfer = VGB_VFIO_USER_DEFAULT_MAX_XFER;

	r = handshake(v);
	if (r >= 0)
		r = vu_get_device_info(&v->base, &info);
	if (r >= 0 && (info.num_regions == 0 || info.num_regions > VU_MAX_REGIONS)) {
		vgb_log(VGB_LOG_DEBUG, "%s: %u regions", v->base.name, info.num_regions);
		r = -EPROTO;
	}
	if (r >= 0) {
		v->region_fd = malloc(info.num_regions * sizeof(int));
		if (!v->region_fd)
			r = -ENOMEM;
	}
	if (r < 0) {
		/* The caller keeps @fd on failure (owns_sock is still false). */
		vgb_vfio_device_destroy(&v->base);
		return r;
	}
	for (uint32_t i = 0; i < info.num_regions; i++)
		v->region_fd[i] = -1;
	v->base.num_regions = info.num_regions;
	v->owns_sock = true;
	v->base.caps = VGB_VFIO_CAP_MMAP;
	if (info.flags & VFIO_DEVICE_FLAGS_RESET)
		v->base.caps |= VGB_VFIO_CAP_RESET;
	v->base.pci = (info.flags & VFIO_DEVICE_FLAGS_PCI) &&
		      info.num_regions > VFIO_PCI_CONFIG_REGION_INDEX;
	/* The protocol has no DMA_BUF: nothing to probe, and nothing worth saying above debug. */
	v->base.dmabuf_probe = VGB_VFIO_PROBE_NOT_RUN;
	vgb_log(VGB_LOG_DEBUG, "%s: vfio-user device, %u regions, flags %#x, %u bytes per transfer",
		v->base.name, info.num_regions, info.flags, v->max_xfer);
	*ret = &v->base;
	return 0;
}

int vgb_vfio_user_connect(const char *path, struct vgb_vfio_device **ret)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	int r;

	if (!path || !ret)
		return -EINVAL;
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	memcpy(addr.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, -errno, "vfio-user: connect %s", path);
	r = vgb_vfio_user_adopt(fd, path, ret);
	if (r < 0)
		return r;
	TAKE_FD(fd);
	return 0;
}
