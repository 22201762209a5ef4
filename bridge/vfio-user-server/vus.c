/* SPDX-License-Identifier: MIT */
/*
 * The vfio-user server's connection handling and commands (see vus.h). Message framing is
 * incremental (header, then payload) on a non-blocking socket; replies go through a queue that
 * is flushed when the socket takes them. The device is a virtual device (vfio/ops-vdev.c): its
 * memfds back the BARs, its region-info answer (with the kernel's capability chain) is the
 * wire answer; the PCI config space is ours (pci-config.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "pci-config.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio-user.h"
#include "vgb/vfio.h"
#include "vus.h"

#define VUS_NUM_REGIONS VFIO_PCI_NUM_REGIONS
#define VUS_NUM_IRQS VFIO_PCI_NUM_IRQS
#define VUS_FD_LIMIT 64u
/* Room for the VERSION JSON and the fixed parts in front of a transfer's data. */
#define VUS_SLACK (VGB_VFIO_USER_MAX_JSON + 64u)
#define VUS_REGION_INFO_MAX 4096u

enum { TAG_LISTEN = 1, TAG_CONN = 2 };

struct out {
	struct out *next;
	size_t len, off;
	int fd; /* borrowed (a region memfd), sent with the first byte; -1 for none */
	uint8_t buf[];
};

struct dma {
	uint64_t addr, size, offset;
	uint32_t flags;
	int fd;
};

struct conn {
	int fd;
	bool versioned;
	bool closing; /* drop once the queued replies are out */
	bool no_reply; /* handling a NO_REPLY request: its answer is not sent */
	struct vgb_vfio_user_caps peer;
	/* input: one message at a time */
	struct vgb_vfio_user_hdr hdr;
	size_t hdr_got, payload_got;
	uint8_t *payload; /* max_data_xfer_size + VUS_SLACK */
	int fds[VUS_FD_LIMIT];
	size_t n_fds;
	bool bad_fds;
	/* output */
	struct out *out_head, *out_tail;
	uint64_t out_bytes;
	/* device state this client set up */
	struct dma *dma;
	uint32_t n_dma;
	int intx_trigger, intx_unmask, msi_trigger;
	bool intx_masked;
};

struct vgb_vus {
	struct vgb_vus_options opts;
	struct vgb_vfio_device *dev;
	struct vgb_pci_config cfg;
	struct vgb_pci_bar bars[7];
	int ep, listen_fd;
	struct conn *conn;
	struct vgb_vus_stats stats;
	uint32_t epoll_events; /* what the connection is registered for */
};

/* ---- output ---- */

static int queue_reply(struct conn *c, const struct vgb_vfio_user_hdr *req, int error,
		       const void *a, size_t a_len, const void *b, size_t b_len, int fd)
{
	struct vgb_vfio_user_hdr h = {
		.id = req->id,
		.cmd = req->cmd,
		.flags = VGB_VFIO_USER_F_REPLY,
	};
	size_t len = sizeof(h) + (error ? 0 : a_len + b_len);
	struct out *o;

	if (c->no_reply)
		return 0;
	if (error) {
		h.flags |= VGB_VFIO_USER_F_ERROR;
		h.error = (uint32_t)error;
		fd = -1;
	}
	h.size = (uint32_t)len;
	o = malloc(sizeof(*o) + len);
	if (!o)
		return -ENOMEM;
	o->next = NULL;
	o->len = len;
	o->off = 0;
	o->fd = fd;
	memcpy(o->buf, &h, sizeof(h));
	if (!error) {
		if (a_len)
			memcpy(o->buf + sizeof(h), a, a_len);
		if (b_len)
			memcpy(o->buf + sizeof(h) + a_len, b, b_len);
	}
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->out_bytes += len;
	return 0;
}

/* Sends what the socket takes. Returns 0, or -errno when the client is to be dropped. */
static int flush_out(struct conn *c)
{
	while (c->out_head) {
		struct out *o = c->out_head;
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct iovec iov = { o->buf + o->off, o->len - o->off };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (o->off == 0 && o->fd >= 0) {
			struct cmsghdr *cm;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &o->fd, sizeof(int));
		}
		n = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		o->off += (size_t)n;
		if (o->off < o->len)
			continue;
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_bytes -= o->len;
		free(o);
	}
	return 0;
}

/* ---- connection lifetime ---- */

static void close_conn_fds(struct conn *c)
{
	for (size_t i = 0; i < c->n_fds; i++)
		c->fds[i] = vgb_close(c->fds[i]);
	c->n_fds = 0;
}

static void conn_free(struct vgb_vus *s, struct conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	close_conn_fds(c);
	for (uint32_t i = 0; i < c->n_dma; i++)
		vgb_close(c->dma[i].fd);
	free(c->dma);
	vgb_close(c->intx_trigger);
	vgb_close(c->intx_unmask);
	vgb_close(c->msi_trigger);
	while (c->out_head) {
		struct out *o = c->out_head;

		c->out_head = o->next;
		free(o);
	}
	free(c->payload);
	free(c);
}

static void drop_client(struct vgb_vus *s, int why)
{
	if (!s->conn)
		return;
	vgb_log_errno(VGB_LOG_DEBUG, why, "vfio-user server: client gone");
	if (why != -ECONNRESET && why != 0)
		s->stats.dropped++;
	conn_free(s, s->conn);
	s->conn = NULL;
	s->epoll_events = 0;
}

static void count_fds(const struct vgb_vus *s, struct vgb_vus_stats *st)
{
	const struct conn *c = s->conn;

	st->dma_maps = st->irq_fds = st->dma_fds = 0;
	st->connected = c != NULL;
	if (!c)
		return;
	st->dma_maps = c->n_dma;
	for (uint32_t i = 0; i < c->n_dma; i++)
		st->dma_fds += c->dma[i].fd >= 0;
	st->irq_fds = (c->intx_trigger >= 0) + (c->intx_unmask >= 0) + (c->msi_trigger >= 0);
}

void vgb_vus_get_stats(const struct vgb_vus *s, struct vgb_vus_stats *ret)
{
	*ret = s->stats;
	count_fds(s, ret);
}

/* ---- commands ---- */

static int cmd_version(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
		       const uint8_t *p, size_t len)
{
	struct vgb_vfio_user_version ver;
	char json[160];
	int n;

	if (c->versioned || len < sizeof(ver))
		return -EINVAL;
	memcpy(&ver, p, sizeof(ver));
	if (ver.major != VGB_VFIO_USER_MAJOR) {
		c->closing = true; /* the spec: a server that cannot speak the major closes */
		return -ENOTSUP;
	}
	vgb_vfio_user_caps_default(&c->peer);
	if (len > sizeof(ver) &&
	    vgb_vfio_user_parse_caps((const char *)p + sizeof(ver), len - sizeof(ver), &c->peer) < 0)
		return -EINVAL;
	ver.minor = VGB_VFIO_USER_MINOR;
	/* No "migration": we do not migrate. No write_multiple: we take one write a message. */
	n = snprintf(json, sizeof(json),
		     "{\"capabilities\":{\"max_msg_fds\":%u,\"max_data_xfer_size\":%u,"
		     "\"max_dma_maps\":%u,\"pgsizes\":%u}}",
		     s->opts.max_msg_fds, s->opts.max_data_xfer_size, s->opts.max_dma_maps,
		     VGB_PAGE_SIZE);
	c->versioned = true;
	return queue_reply(c, h, 0, &ver, sizeof(ver), json, (size_t)n + 1, -1);
}

static int cmd_device_info(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			   const uint8_t *p, size_t len)
{
	struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
	struct vgb_vfio_user_device_info req, rep;
	int r;

	if (len < sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.argsz < sizeof(rep))
		return -EINVAL;
	r = s->dev->ops->get_device_info(s->dev, &dinfo);
	if (r < 0)
		return r;
	rep = (struct vgb_vfio_user_device_info){
		.argsz = sizeof(rep),
		.flags = dinfo.flags & (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET),
		.num_regions = VUS_NUM_REGIONS,
		.num_irqs = VUS_NUM_IRQS,
	};
	return queue_reply(c, h, 0, &rep, sizeof(rep), NULL, 0, -1);
}

static int cmd_region_info(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			   const uint8_t *p, size_t len)
{
	_Alignas(8) uint8_t buf[VUS_REGION_INFO_MAX];
	struct vfio_region_info req, *info = (struct vfio_region_info *)(void *)buf;
	size_t out_len;
	int r, fd = -1;

	if (len < sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.argsz < sizeof(req) || req.index >= VUS_NUM_REGIONS)
		return -EINVAL;
	memset(buf, 0, sizeof(buf));
	info->argsz = (uint32_t)VGB_MIN(req.argsz, sizeof(buf));
	info->index = req.index;
	r = s->dev->ops->get_region_info(s->dev, info);
	if (r < 0)
		return r;
	if (info->argsz > req.argsz) {
		/* The chain does not fit: say how much it needs and send none of it (a chain
		 * flag without a chain is an error to QEMU's client). */
		info->flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_CAPS;
		info->cap_offset = 0;
		out_len = sizeof(*info);
	} else {
		out_len = info->argsz;
	}
	if (info->flags & VFIO_REGION_INFO_FLAG_MMAP) {
		fd = vgb_vfio_vdev_region_memfd(s->dev, req.index);
		if (fd < 0)
			return fd;
	}
	return queue_reply(c, h, 0, buf, out_len, NULL, 0, fd);
}

/* INTx and MSI have one vector each; MSI-X, ERR and REQ none. */
static uint32_t irq_count(uint32_t index)
{
	return index == VFIO_PCI_INTX_IRQ_INDEX || index == VFIO_PCI_MSI_IRQ_INDEX ? 1 : 0;
}

static int cmd_irq_info(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			const uint8_t *p, size_t len)
{
	struct vgb_vfio_user_irq_info req, rep;

	if (len < sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.argsz < sizeof(rep) || req.index >= VUS_NUM_IRQS)
		return -EINVAL;
	rep = (struct vgb_vfio_user_irq_info){
		.argsz = sizeof(rep),
		.index = req.index,
		.count = irq_count(req.index),
	};
	if (req.index == VFIO_PCI_INTX_IRQ_INDEX)
		rep.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE |
			    VFIO_IRQ_INFO_AUTOMASKED;
	else if (req.index == VFIO_PCI_MSI_IRQ_INDEX)
		rep.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE;
	return queue_reply(c, h, 0, &rep, sizeof(rep), NULL, 0, -1);
}

static int signal_fd(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	uint64_t one = 1;

	if (fd < 0)
		return -ENOENT;
	/* The client owns the eventfd and could fill its counter: a write would then block the
	 * loop. Only write when it will not (the interrupt is dropped otherwise). */
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
		return -EAGAIN;
	return write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one) ? 0 : -errno;
}

/* Whether @fd is an eventfd: anything else could block a write or mean something else. */
static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static int trigger(struct conn *c, uint32_t index)
{
	int r;

	if (index == VFIO_PCI_MSI_IRQ_INDEX)
		return signal_fd(c->msi_trigger);
	if (c->intx_masked)
		return -EAGAIN;
	r = signal_fd(c->intx_trigger);
	if (r >= 0)
		c->intx_masked = true; /* automasked until the client unmasks */
	return r;
}

int vgb_vus_trigger_irq(struct vgb_vus *s, uint32_t index)
{
	if (!s->conn)
		return -ENOTCONN;
	if (index != VFIO_PCI_INTX_IRQ_INDEX && index != VFIO_PCI_MSI_IRQ_INDEX)
		return -EINVAL;
	return trigger(s->conn, index);
}

static int cmd_set_irqs(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			const uint8_t *p, size_t len)
{
	const uint32_t data_mask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL |
				   VFIO_IRQ_SET_DATA_EVENTFD;
	const uint32_t action_mask = VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK |
				     VFIO_IRQ_SET_ACTION_TRIGGER;
	struct vgb_vfio_user_irq_set req;
	uint32_t data, action, end;
	int *slot = NULL;

	if (len < sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	data = req.flags & data_mask;
	action = req.flags & action_mask;
	if (req.argsz < sizeof(req) || (req.flags & ~(data_mask | action_mask)) ||
	    __builtin_popcount(data) != 1 || __builtin_popcount(action) != 1 ||
	    req.index >= VUS_NUM_IRQS)
		return -EINVAL;
	if (data != VFIO_IRQ_SET_DATA_EVENTFD && c->n_fds)
		return -EINVAL;

	/* count 0 with DATA_NONE: disable every interrupt of the index. */
	if (data == VFIO_IRQ_SET_DATA_NONE && req.count == 0) {
		if (req.start || action != VFIO_IRQ_SET_ACTION_TRIGGER)
			return -EINVAL;
		if (req.index == VFIO_PCI_INTX_IRQ_INDEX) {
			c->intx_trigger = vgb_close(c->intx_trigger);
			c->intx_unmask = vgb_close(c->intx_unmask);
		} else if (req.index == VFIO_PCI_MSI_IRQ_INDEX) {
			c->msi_trigger = vgb_close(c->msi_trigger);
		}
		return queue_reply(c, h, 0, NULL, 0, NULL, 0, -1);
	}
	if (!req.count || __builtin_add_overflow(req.start, req.count, &end) ||
	    end > irq_count(req.index))
		return -EINVAL;
	/* Only INTx masks. */
	if (action != VFIO_IRQ_SET_ACTION_TRIGGER && req.index != VFIO_PCI_INTX_IRQ_INDEX)
		return -EINVAL;

	switch (data) {
	case VFIO_IRQ_SET_DATA_EVENTFD:
		if (len != sizeof(req) || (c->n_fds != req.count && c->n_fds != 0))
			return -EINVAL;
		for (size_t i = 0; i < c->n_fds; i++)
			if (!is_eventfd(c->fds[i]))
				return -EINVAL;
		if (action == VFIO_IRQ_SET_ACTION_TRIGGER)
			slot = req.index == VFIO_PCI_INTX_IRQ_INDEX ? &c->intx_trigger
								     : &c->msi_trigger;
		else if (action == VFIO_IRQ_SET_ACTION_UNMASK)
			slot = &c->intx_unmask;
		else
			return -EINVAL; /* no mask eventfd */
		if (c->n_fds) {
			vgb_fd_move(slot, &c->fds[0]);
			c->n_fds = 0;
		} else {
			*slot = vgb_close(*slot); /* no fd: de-assign */
		}
		break;
	case VFIO_IRQ_SET_DATA_BOOL:
	case VFIO_IRQ_SET_DATA_NONE:
		if (data == VFIO_IRQ_SET_DATA_BOOL) {
			if (len != sizeof(req) + req.count)
				return -EINVAL;
			if (!p[sizeof(req)])
				break; /* one vector, and its bool says no */
		} else if (len != sizeof(req)) {
			return -EINVAL;
		}
		if (action == VFIO_IRQ_SET_ACTION_MASK)
			c->intx_masked = true;
		else if (action == VFIO_IRQ_SET_ACTION_UNMASK)
			c->intx_masked = false;
		else
			trigger(c, req.index); /* a loopback the client asked for; no fd is fine */
		break;
	}
	return queue_reply(c, h, 0, NULL, 0, NULL, 0, -1);
}

/* Checks a region access against the device's region info and memory decode. */
static int check_region(struct vgb_vus *s, uint32_t region, uint64_t off, uint32_t count,
			uint32_t need, const struct vgb_vfio_region_info **ret)
{
	const struct vgb_vfio_region_info *info;
	uint64_t end;
	int r;

	if (region >= VUS_NUM_REGIONS || count > s->opts.max_data_xfer_size)
		return -EINVAL;
	r = vgb_vfio_region_info(s->dev, region, &info);
	if (r < 0)
		return r;
	if (!info->size || !(info->flags & need) || __builtin_add_overflow(off, count, &end) ||
	    end > info->size)
		return -EINVAL;
	/* vfio-pci: a BAR is backed only while memory decode is on. */
	if (region <= VFIO_PCI_BAR5_REGION_INDEX && !vgb_pci_config_memory_enabled(&s->cfg))
		return -EIO;
	*ret = info;
	return 0;
}

static int cmd_region_read(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			   const uint8_t *p, size_t len)
{
	const struct vgb_vfio_region_info *info;
	struct vgb_vfio_user_region_rw req;
	_cleanup_free_ uint8_t *data = NULL;
	int r;

	if (len != sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	r = check_region(s, req.region, req.offset, req.count, VFIO_REGION_INFO_FLAG_READ, &info);
	if (r < 0)
		return r;
	data = malloc(req.count ? req.count : 1);
	if (!data)
		return -ENOMEM;
	if (req.region == VFIO_PCI_CONFIG_REGION_INDEX) {
		vgb_pci_config_read(&s->cfg, (uint32_t)req.offset, data, req.count);
	} else {
		ssize_t n = vgb_pread_all(vgb_vfio_vdev_region_memfd(s->dev, req.region), data,
					  req.count, (off_t)req.offset);

		if (n < 0)
			return (int)n;
		req.count = (uint32_t)n;
	}
	return queue_reply(c, h, 0, &req, sizeof(req), data, req.count, -1);
}

static int cmd_region_write(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			    const uint8_t *p, size_t len)
{
	const struct vgb_vfio_region_info *info;
	struct vgb_vfio_user_region_rw req;
	int r;

	if (len < sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.count != len - sizeof(req))
		return -EINVAL;
	r = check_region(s, req.region, req.offset, req.count, VFIO_REGION_INFO_FLAG_WRITE, &info);
	if (r < 0)
		return r;
	if (req.region == VFIO_PCI_CONFIG_REGION_INDEX) {
		vgb_pci_config_write(&s->cfg, (uint32_t)req.offset, p + sizeof(req), req.count);
	} else {
		ssize_t n = vgb_pwrite_all(vgb_vfio_vdev_region_memfd(s->dev, req.region),
					   p + sizeof(req), req.count, (off_t)req.offset);

		if (n < 0)
			return (int)n;
		req.count = (uint32_t)n;
	}
	return queue_reply(c, h, 0, &req, sizeof(req), NULL, 0, -1);
}

static int cmd_dma_map(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
		       const uint8_t *p, size_t len)
{
	struct vgb_vfio_user_dma_map req;
	struct dma *d;
	uint64_t end;

	if (len != sizeof(req) || c->n_fds > 1)
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.argsz < sizeof(req) ||
	    (req.flags & ~(VGB_VFIO_USER_DMA_READ_FLAG | VGB_VFIO_USER_DMA_WRITE_FLAG)) ||
	    !req.size || !VGB_IS_ALIGNED(req.addr, VGB_PAGE_SIZE) ||
	    !VGB_IS_ALIGNED(req.size, VGB_PAGE_SIZE) || !VGB_IS_ALIGNED(req.offset, VGB_PAGE_SIZE) ||
	    __builtin_add_overflow(req.addr, req.size, &end) || (!c->n_fds && req.offset))
		return -EINVAL;
	for (uint32_t i = 0; i < c->n_dma; i++)
		if (req.addr < c->dma[i].addr + c->dma[i].size && c->dma[i].addr < end)
			return -EEXIST;
	if (c->n_dma >= s->opts.max_dma_maps)
		return -ENOSPC;
	d = realloc(c->dma, (c->n_dma + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	c->dma = d;
	d[c->n_dma] = (struct dma){ req.addr, req.size, req.offset, req.flags, -1 };
	if (c->n_fds) {
		d[c->n_dma].fd = c->fds[0];
		c->fds[0] = -1;
		c->n_fds = 0;
	}
	c->n_dma++;
	return queue_reply(c, h, 0, NULL, 0, NULL, 0, -1);
}

static int cmd_dma_unmap(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			 const uint8_t *p, size_t len)
{
	struct vgb_vfio_user_dma_unmap req;
	uint32_t i;

	if (len != sizeof(req))
		return -EINVAL;
	memcpy(&req, p, sizeof(req));
	if (req.argsz < sizeof(req) || (req.flags & ~VGB_VFIO_USER_UNMAP_ALL))
		return -EINVAL;
	if (req.flags & VGB_VFIO_USER_UNMAP_ALL) {
		if (req.addr || req.size)
			return -EINVAL;
		for (i = 0; i < c->n_dma; i++)
			vgb_close(c->dma[i].fd);
		c->n_dma = 0;
	} else {
		for (i = 0; i < c->n_dma; i++)
			if (c->dma[i].addr == req.addr && c->dma[i].size == req.size)
				break;
		if (i == c->n_dma)
			return -ENOENT;
		vgb_close(c->dma[i].fd);
		c->dma[i] = c->dma[--c->n_dma];
	}
	return queue_reply(c, h, 0, &req, sizeof(req), NULL, 0, -1);
}

static int cmd_reset(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
		     const uint8_t *p, size_t len)
{
	int r;

	if (len)
		return -EINVAL;
	/* vfio-pci restores config space around a function reset: only the device resets. */
	r = vgb_vfio_device_reset(s->dev);
	if (r < 0)
		return r;
	c->intx_masked = false;
	s->stats.resets++;
	return queue_reply(c, h, 0, NULL, 0, NULL, 0, -1);
}

static int dispatch_cmd(struct vgb_vus *s, struct conn *c, const struct vgb_vfio_user_hdr *h,
			const uint8_t *p, size_t len)
{
	if (h->cmd != VGB_VFIO_USER_VERSION && !c->versioned)
		return -EPROTO;
	/* Only these two take fds; anything else carrying one is malformed. */
	if (c->n_fds && h->cmd != VGB_VFIO_USER_DMA_MAP && h->cmd != VGB_VFIO_USER_DEVICE_SET_IRQS)
		return -EINVAL;
	switch (h->cmd) {
	case VGB_VFIO_USER_VERSION: return cmd_version(s, c, h, p, len);
	case VGB_VFIO_USER_DMA_MAP: return cmd_dma_map(s, c, h, p, len);
	case VGB_VFIO_USER_DMA_UNMAP: return cmd_dma_unmap(s, c, h, p, len);
	case VGB_VFIO_USER_DEVICE_GET_INFO: return cmd_device_info(s, c, h, p, len);
	case VGB_VFIO_USER_DEVICE_GET_REGION_INFO: return cmd_region_info(s, c, h, p, len);
	case VGB_VFIO_USER_DEVICE_GET_IRQ_INFO: return cmd_irq_info(s, c, h, p, len);
	case VGB_VFIO_USER_DEVICE_SET_IRQS: return cmd_set_irqs(s, c, h, p, len);
	case VGB_VFIO_USER_REGION_READ: return cmd_region_read(s, c, h, p, len);
	case VGB_VFIO_USER_REGION_WRITE: return cmd_region_write(s, c, h, p, len);
	case VGB_VFIO_USER_DEVICE_RESET: return cmd_reset(s, c, h, p, len);
	default: return -EOPNOTSUPP;
	}
}

/* One whole message is in c->hdr / c->payload. */
static void handle_message(struct vgb_vus *s, struct conn *c)
{
	const struct vgb_vfio_user_hdr *h = &c->hdr;
	size_t len = h->size - sizeof(*h);
	bool no_reply = h->flags & VGB_VFIO_USER_F_NO_REPLY;
	int r;

	s->stats.messages++;
	c->no_reply = no_reply;
	r = c->bad_fds ? -EINVAL : dispatch_cmd(s, c, h, c->payload, len);
	c->no_reply = false;
	if (r < 0) {
		s->stats.errors++;
		vgb_log_errno(VGB_LOG_DEBUG, r, "vfio-user server: %s (%u bytes)",
			      vgb_vfio_user_cmd_name(h->cmd), h->size);
		if (!no_reply && queue_reply(c, h, -r, NULL, 0, NULL, 0, -1) < 0)
			c->closing = true;
	}
	/* Fds the command did not take. */
	close_conn_fds(c);
	c->bad_fds = false;
	c->hdr_got = c->payload_got = 0;
}

/* Receives into @buf; fds go to the connection (too many: bad_fds). */
static ssize_t recv_some(struct vgb_vus *s, struct conn *c, void *buf, size_t len)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(VUS_FD_LIMIT * sizeof(int))];
	} ctl;
	struct iovec iov = { buf, len };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n;

	do {
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			c->bad_fds = true;
			continue;
		}
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			/* Fds belong to a message's first byte: later ones are malformed. */
			if (c->hdr_got || c->n_fds >= s->opts.max_msg_fds) {
				close(fd);
				c->bad_fds = true;
			} else {
				c->fds[c->n_fds++] = fd;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		c->bad_fds = true;
	return n;
}

/* Reads and handles messages until the socket is empty or replies pile up. Returns 0, or
 * -errno when the client is to be dropped. */
static int conn_read(struct vgb_vus *s, struct conn *c)
{
	size_t max_payload = s->opts.max_data_xfer_size + VUS_SLACK;

	while (!c->closing && c->out_bytes < s->opts.max_out_bytes) {
		ssize_t n;

		if (c->hdr_got < sizeof(c->hdr)) {
			n = recv_some(s, c, (uint8_t *)&c->hdr + c->hdr_got,
				      sizeof(c->hdr) - c->hdr_got);
			if (n == -EAGAIN)
				return 0;
			if (n < 0)
				return (int)n;
			if (n == 0)
				return -ECONNRESET;
			c->hdr_got += (size_t)n;
			if (c->hdr_got < sizeof(c->hdr))
				continue;
			if (c->hdr.size < sizeof(c->hdr) ||
			    (c->hdr.flags & VGB_VFIO_USER_F_TYPE_MASK) != VGB_VFIO_USER_F_REQUEST) {
				vgb_log(VGB_LOG_DEBUG,
					"vfio-user server: garbage header (size %u, flags %#x)",
					c->hdr.size, c->hdr.flags);
				return -EBADMSG;
			}
			if (c->hdr.size - sizeof(c->hdr) > max_payload) {
				/* We cannot skip it cheaply and will not buffer it: say so, go. */
				if (!(c->hdr.flags & VGB_VFIO_USER_F_NO_REPLY))
					queue_reply(c, &c->hdr, E2BIG, NULL, 0, NULL, 0, -1);
				s->stats.errors++;
				close_conn_fds(c);
				c->closing = true;
				return 0;
			}
			c->payload_got = 0;
		}
		if (c->payload_got < c->hdr.size - sizeof(c->hdr)) {
			n = recv_some(s, c, c->payload + c->payload_got,
				      c->hdr.size - sizeof(c->hdr) - c->payload_got);
			if (n == -EAGAIN)
				return 0;
			if (n < 0)
				return (int)n;
			if (n == 0)
				return -ECONNRESET;
			c->payload_got += (size_t)n;
			if (c->payload_got < c->hdr.size - sizeof(c->hdr))
				continue;
		}
		handle_message(s, c);
	}
	return 0;
}

static void update_epoll(struct vgb_vus *s)
{
	struct conn *c = s->conn;
	struct epoll_event ev = { .data.u32 = TAG_CONN };

	if (!c)
		return;
	if (!c->closing && c->out_bytes < s->opts.max_out_bytes)
		ev.events |= EPOLLIN;
	if (c->out_head)
		ev.events |= EPOLLOUT;
	if (ev.events != s->epoll_events) {
		epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
		s->epoll_events = ev.events;
	}
}

static void conn_event(struct vgb_vus *s, uint32_t events)
{
	struct conn *c = s->conn;
	int r = 0;

	if (!c)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		r = conn_read(s, c);
	if (r >= 0)
		r = flush_out(c);
	if (r >= 0 && c->closing && !c->out_head)
		r = -ECONNABORTED;
	if (r >= 0 && !c->closing && c->out_bytes < s->opts.max_out_bytes && (events & EPOLLHUP) &&
	    !(events & EPOLLIN))
		r = -ECONNRESET;
	if (r < 0) {
		drop_client(s, r);
		return;
	}
	update_epoll(s);
}

/* ---- public ---- */

int vgb_vus_attach(struct vgb_vus *s, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_CONN };
	struct conn *c;
	int flags;

	if (fd < 0)
		return -EINVAL;
	if (s->conn) {
		s->stats.refused++;
		close(fd);
		return -EBUSY;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->payload = malloc(s->opts.max_data_xfer_size + VUS_SLACK);
	if (!c || !c->payload) {
		if (c)
			free(c);
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->intx_trigger = c->intx_unmask = c->msi_trigger = -1;
	if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;

		conn_free(s, c);
		return r;
	}
	/* vfio-pci resets a function when it is opened: a new client sees power-on config. */
	vgb_pci_config_init(&s->cfg, s->bars);
	s->conn = c;
	s->epoll_events = ev.events;
	s->stats.clients++;
	return 0;
}

static void accept_clients(struct vgb_vus *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			return; /* EAGAIN, or a connection that went away first */
		vgb_vus_attach(s, fd);
	}
}

int vgb_vus_dispatch(struct vgb_vus *s, int timeout_ms)
{
	struct epoll_event evs[4];
	int n;

	do {
		n = epoll_wait(s->ep, evs, VGB_ARRAY_SIZE(evs), timeout_ms);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u32 == TAG_LISTEN)
			accept_clients(s);
		else
			conn_event(s, evs[i].events);
	}
	return 0;
}

int vgb_vus_listen(struct vgb_vus *s, int listen_fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = TAG_LISTEN };
	int flags;

	if (listen_fd < 0 || s->listen_fd >= 0) {
		vgb_close(listen_fd);
		return -EINVAL;
	}
	flags = fcntl(listen_fd, F_GETFL);
	if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
	    epoll_ctl(s->ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		int r = -errno;

		close(listen_fd);
		return r;
	}
	s->listen_fd = listen_fd;
	return 0;
}

int vgb_vus_get_fd(const struct vgb_vus *s)
{
	return s->ep;
}

struct vgb_vfio_device *vgb_vus_device(struct vgb_vus *s)
{
	return s->dev;
}

void vgb_vus_destroy(struct vgb_vus *s)
{
	if (!s)
		return;
	drop_client(s, 0);
	vgb_close(s->listen_fd);
	vgb_close(s->ep);
	vgb_vfio_device_destroy(s->dev);
	free(s);
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int vgb_vus_create(const char *spec, const struct vgb_vus_options *opts, struct vgb_vus **ret)
{
	struct vgb_vus *s;
	int r;

	if (!spec || !ret)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ep = s->listen_fd = -1;
	if (opts)
		s->opts = *opts;
	if (!s->opts.max_data_xfer_size)
		s->opts.max_data_xfer_size = VGB_VFIO_USER_DEFAULT_MAX_XFER;
	if (!s->opts.max_msg_fds)
		s->opts.max_msg_fds = 8;
	if (!s->opts.max_dma_maps)
		s->opts.max_dma_maps = 1024;
	if (!s->opts.max_out_bytes)
		s->opts.max_out_bytes = 4u << 20;
	if (s->opts.max_data_xfer_size > (64u << 20) || s->opts.max_msg_fds > VUS_FD_LIMIT ||
	    s->opts.max_dma_maps > VGB_VFIO_USER_DEFAULT_MAX_DMA_MAPS) {
		r = -EINVAL;
		goto err;
	}
	r = vgb_vfio_vdev_create(spec, &s->dev);
	if (r < 0)
		goto err;
	for (uint32_t i = 0; i <= VFIO_PCI_ROM_REGION_INDEX; i++) {
		const struct vgb_vfio_region_info *info;

		r = vgb_vfio_region_info(s->dev, i, &info);
		if (r < 0)
			goto err;
		if (!info->size)
			continue;
		if (!is_pow2(info->size) || info->size > (2ull << 30)) {
			vgb_log(VGB_LOG_DEBUG,
				"vfio-user server: region %u is %llu bytes: a PCI BAR is a power of two, at most 2G",
				i, (unsigned long long)info->size);
			r = -EINVAL;
			goto err;
		}
		s->bars[i] = (struct vgb_pci_bar){
			.size = info->size,
			.prefetch = i < 6 && (info->flags & VFIO_REGION_INFO_FLAG_MMAP),
			.rom = i == VFIO_PCI_ROM_REGION_INDEX,
		};
	}
	vgb_pci_config_init(&s->cfg, s->bars);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->ep < 0) {
		r = -errno;
		goto err;
	}
	*ret = s;
	return 0;
err:
	vgb_vus_destroy(s);
	return r;
}
