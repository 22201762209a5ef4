/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"

#include "gpu.h"
#include "memmap.h"
#include "vhost-user.h"
#include "virtqueue.h"

#define DEFAULT_MAX_PENDING 64u
/* Largest command we copy out of a ring: ATTACH_BACKING / CREATE_BLOB with 16384 entries. */
#define MAX_CMD_BYTES (64u + 16384u * 16u)
#define GPU_MAX_PAYLOAD 4096u /* replies from QEMU: display info 408, EDID 1056 */

/* Virtio features we offer; the guest's acks arrive verbatim in SET_FEATURES. */
#define DEV_FEATURES                                                                      \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_RING_F_INDIRECT_DESC) |          \
	 (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VGB_VHOST_F_PROTOCOL_FEATURES) |   \
	 (1ull << VIRTIO_GPU_F_EDID))
#define DEV_PROTOCOL_FEATURES                                                             \
	((1ull << VGB_VHOST_USER_PROTOCOL_F_MQ) |                                         \
	 (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) |                                  \
	 (1ull << VGB_VHOST_USER_PROTOCOL_F_CONFIG))

/* epoll tags */
enum { TAG_SOCK = 1, TAG_KICK, TAG_GPU };
#define TAG(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

/* A framed reader for both sockets (same 12-byte header layout). */
struct rx {
	uint8_t buf[sizeof(struct vgb_vhost_user_header) + VGB_VHOST_USER_MAX_PAYLOAD];
	size_t got;
	int fds[VGB_VHOST_USER_MAX_FDS];
	unsigned n_fds;
	bool too_many_fds;
};

struct region {
	uint64_t gpa, size, qva, mmap_offset;
	void *map;      /* mmap() result */
	size_t map_len;
	uint8_t *host;  /* gpa's byte */
	uint32_t window_id;
};

struct vhost_vring {
	uint32_t num;
	uint16_t base;
	struct vgb_vhost_user_vring_addr addr;
	bool addr_set;
	int kick_fd, call_fd, err_fd;
	bool started, enabled;
	struct vgb_vq vq;
};

struct pending {
	struct pending *next;
	uint64_t cookie;
	unsigned queue;
	struct vgb_vq_elem *elem;
};

enum gpu_wait {
	GPU_IDLE = 0,
	GPU_WAIT_PROTOCOL,  /* GET_PROTOCOL_FEATURES sent */
	GPU_WAIT_CMD,       /* GET_DISPLAY_INFO / GET_EDID sent for the parked command */
	GPU_WAIT_DMABUF,    /* DMABUF_UPDATE sent, its frame not done yet */
};

/* The sink that shows frames in QEMU's UI (qemu_display). */
struct qemu_sink {
	struct vgb_display base;
	struct vgb_vhost_dev *dev;
	uint32_t width[16], height[16];
	uint64_t dmabuf_id[16];
	int32_t cursor_x, cursor_y;
	bool cursor_visible;
	vgb_frame_done_fn dmabuf_done;
	void *dmabuf_done_data;
	struct vgb_display_stats stats;
	uint8_t *px;      /* UPDATE pixels, reused: a fresh 4 MB block per frame costs page faults */
	size_t px_size;
};

struct vgb_vhost_dev {
	struct vgb_vhost_options opts;
	int sock_fd, epoll_fd;
	struct rx rx;

	uint64_t features, protocol_features;
	bool features_set, owner;

	struct region regions[VGB_VHOST_USER_MAX_REGIONS];
	unsigned n_regions;
	struct vhost_vring vrings[VGB_VHOST_QUEUES];

	struct vgb_memmap *map;
	struct vgb_gpu *gpu;
	struct virtio_gpu_config config;

	/* QEMU's display socket */
	int gpu_fd;
	struct rx gpu_rx;
	enum gpu_wait gpu_wait;
	uint32_t gpu_wait_request;
	uint64_t gpu_protocol;
	struct vgb_vq_elem *parked;      /* control command waiting for QEMU's answer */
	struct virtio_gpu_ctrl_hdr parked_hdr;
	struct qemu_sink qsink;

	struct pending *pending;
	unsigned n_pending;
	uint64_t next_cookie;
	uint8_t *cmd_buf;
	bool in_process;
	unsigned rerun; /* queues to look at again */

	struct vgb_vhost_stats stats;
};

static void vring_stop(struct vgb_vhost_dev *dev, unsigned i);
static void process_queue(struct vgb_vhost_dev *dev, unsigned q);
static int gpu_send(struct vgb_vhost_dev *dev, uint32_t request, const void *p1, size_t n1,
		    const void *p2, size_t n2, int fd);

void vgb_vhost_print_capabilities(FILE *f)
{
	/*
	 * docs/interop/vhost-user.json, VHostUserBackendCapabilitiesGPU. We take neither
	 * --render-node nor --virgl: the 2D path needs no render node.
	 */
	fprintf(f, "{\n  \"type\": \"gpu\",\n  \"features\": [\n  ]\n}\n");
}

/* ---- receiving ---- */

static void rx_drop_fds(struct rx *rx)
{
	for (unsigned i = 0; i < rx->n_fds; i++)
		vgb_close(rx->fds[i]);
	rx->n_fds = 0;
	rx->too_many_fds = false;
}

static void rx_reset(struct rx *rx)
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

/* ---- sending ---- */

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

/* ---- guest memory ---- */

/* Front-end virtual address (the rings' addresses) to our pointer, over the whole length. */
static void *qva_to_host(struct vgb_vhost_dev *dev, uint64_t qva, uint64_t len)
{
	for (unsigned i = 0; i < dev->n_regions; i++) {
		struct region *r = &dev->regions[i];
		if (qva >= r->qva && qva - r->qva < r->size && len <= r->size - (qva - r->qva))
			return r->host + (qva - r->qva);
	}
	return NULL;
}

static void *gpa_translate(void *data, uint64_t gpa, uint64_t *inout_len)
{
	struct vgb_vhost_dev *dev = data;

	for (unsigned i = 0; i < dev->n_regions; i++) {
		struct region *r = &dev->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			uint64_t left = r->size - (gpa - r->gpa);
			if (*inout_len > left)
				*inout_len = left;
			return r->host + (gpa - r->gpa);
		}
	}
	return NULL;
}

static void regions_unmap(struct vgb_vhost_dev *dev, struct region *regions, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (regions[i].window_id && dev->map)
			vgb_memmap_remove(dev->map, regions[i].window_id);
		if (regions[i].map)
			munmap(regions[i].map, regions[i].map_len);
		regions[i] = (struct region){ 0 };
	}
}

/* ---- rings ---- */

static void notify(struct vgb_vhost_dev *dev, unsigned q)
{
	struct vhost_vring *vr = &dev->vrings[q];

	if (!vgb_vq_should_notify(&vr->vq) || vr->call_fd < 0)
		return;
	uint64_t one = 1;
	if (write(vr->call_fd, &one, sizeof(one)) == sizeof(one))
		dev->stats.interrupts++;
}

/* Sets up the vq from the stored addresses; the ring stays stopped when they do not map. */
static int vring_setup(struct vgb_vhost_dev *dev, unsigned i)
{
	struct vhost_vring *vr = &dev->vrings[i];
	size_t ds, as, us;

	if (!vr->addr_set || vr->num == 0)
		return -EINVAL;
	if (vr->num > VGB_VQ_MAX_SIZE)
		return -EINVAL;
	vgb_vq_ring_sizes(vr->num, &ds, &as, &us);
	void *desc = qva_to_host(dev, vr->addr.desc_user_addr, ds);
	void *avail = qva_to_host(dev, vr->addr.avail_user_addr, as);
	void *used = qva_to_host(dev, vr->addr.used_user_addr, us);
	if (!desc || !avail || !used)
		return -EFAULT;

	vr->vq.event_idx = dev->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	vr->vq.indirect = dev->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	int r = vgb_vq_setup(&vr->vq, vr->num, desc, avail, used, vr->base, gpa_translate, dev);
	if (r < 0)
		memset(&vr->vq, 0, sizeof(vr->vq));
	return r;
}

static void epoll_del(struct vgb_vhost_dev *dev, int fd)
{
	if (fd >= 0)
		epoll_ctl(dev->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

static int epoll_add(struct vgb_vhost_dev *dev, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };
	if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

/* Drops the deferred commands of queue @q (their guest buffers are no longer ours). */
static void pending_drop_queue(struct vgb_vhost_dev *dev, unsigned q)
{
	struct pending **pp = &dev->pending;
	while (*pp) {
		struct pending *p = *pp;
		if (p->queue == q) {
			*pp = p->next;
			free(p->elem);
			free(p);
			dev->n_pending--;
		} else {
			pp = &p->next;
		}
	}
	if (q == 0 && dev->parked) {
		free(dev->parked);
		dev->parked = NULL;
	}
}

static void vring_stop(struct vgb_vhost_dev *dev, unsigned i)
{
	struct vhost_vring *vr = &dev->vrings[i];

	pending_drop_queue(dev, i);
	vr->base = vr->vq.desc ? vr->vq.last_avail_idx : vr->base;
	vr->started = false;
	memset(&vr->vq, 0, sizeof(vr->vq));
	epoll_del(dev, vr->kick_fd);
	vr->kick_fd = vgb_close(vr->kick_fd);
	vr->call_fd = vgb_close(vr->call_fd);
	vr->err_fd = vgb_close(vr->err_fd);
}

static void vrings_reset(struct vgb_vhost_dev *dev)
{
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++) {
		vring_stop(dev, i);
		dev->vrings[i] = (struct vhost_vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
	}
}

static bool vring_usable(const struct vgb_vhost_dev *dev, unsigned q)
{
	const struct vhost_vring *vr = &dev->vrings[q];
	return vr->started && vr->enabled && vr->vq.desc && !vr->vq.broken;
}

/* ---- commands ---- */

static void respond(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
		    const void *resp, size_t len)
{
	uint32_t written = 0;
	if (len)
		written = (uint32_t)vgb_iov_from_buf(elem->in, elem->n_in, 0, resp, len);
	vgb_vq_push(&dev->vrings[q].vq, elem, written);
	notify(dev, q);
}

static void respond_err(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
			const struct virtio_gpu_ctrl_hdr *cmd, uint32_t type)
{
	struct virtio_gpu_ctrl_hdr resp = { .type = type };
	if (cmd && (cmd->flags & VIRTIO_GPU_FLAG_FENCE)) {
		resp.flags = cmd->flags & (VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX);
		resp.fence_id = cmd->fence_id;
		resp.ctx_id = cmd->ctx_id;
		resp.ring_idx = cmd->ring_idx;
	}
	respond(dev, q, elem, &resp, sizeof(resp));
}

static bool pending_unlink(struct vgb_vhost_dev *dev, struct pending *p)
{
	for (struct pending **pp = &dev->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			dev->n_pending--;
			return true;
		}
	}
	return false;
}

static void fence_done(void *data, uint64_t cookie, const void *resp, size_t len)
{
	struct vgb_vhost_dev *dev = data;

	for (struct pending **pp = &dev->pending; *pp; pp = &(*pp)->next) {
		struct pending *p = *pp;
		if (p->cookie != cookie)
			continue;
		*pp = p->next;
		dev->n_pending--;
		if (dev->vrings[p->queue].vq.desc)
			respond(dev, p->queue, p->elem, resp, len);
		free(p->elem);
		free(p);
		/* Back-pressure released: look at the ring again. */
		process_queue(dev, 0);
		return;
	}
	/* A command of a ring that was stopped since: nothing to answer. */
}

static int gpu_ensure(struct vgb_vhost_dev *dev)
{
	if (dev->gpu)
		return 0;

	struct vgb_gpu_config cfg = {
		.display = dev->opts.qemu_display ? &dev->qsink.base : dev->opts.display,
		.scanout_base = dev->opts.qemu_display ? 0 : dev->opts.scanout_base,
		.fence_done = fence_done,
		.fence_data = dev,
	};
	vgb_gpu_limits_init(&cfg.limits);
	cfg.limits.num_scanouts = dev->config.num_scanouts;
	if (dev->opts.display_width)
		cfg.limits.display_width = dev->opts.display_width;
	if (dev->opts.display_height)
		cfg.limits.display_height = dev->opts.display_height;
	return vgb_gpu_create(dev->map, &cfg, &dev->gpu);
}

/* Asks QEMU for what it answers better (EDID always, display info in qemu_display mode). */
static bool forward_to_qemu(struct vgb_vhost_dev *dev, const struct virtio_gpu_ctrl_hdr *hdr)
{
	if (dev->gpu_fd < 0)
		return false;
	if (hdr->type == VIRTIO_GPU_CMD_GET_EDID)
		return dev->gpu_protocol & (1ull << VGB_VHOST_GPU_PROTOCOL_F_EDID);
	if (hdr->type == VIRTIO_GPU_CMD_GET_DISPLAY_INFO)
		return dev->opts.qemu_display;
	return false;
}

static void park_for_qemu(struct vgb_vhost_dev *dev, struct vgb_vq_elem *elem,
			  const struct virtio_gpu_ctrl_hdr *hdr, const uint8_t *cmd, size_t len)
{
	int r;

	if (hdr->type == VIRTIO_GPU_CMD_GET_EDID) {
		struct virtio_gpu_cmd_get_edid ge = { 0 };
		if (len < sizeof(ge)) {
			respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
			free(elem);
			return;
		}
		memcpy(&ge, cmd, sizeof(ge));
		if (ge.scanout >= dev->config.num_scanouts) {
			respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
			free(elem);
			return;
		}
		struct vgb_vhost_gpu_edid_request req = { .scanout_id = ge.scanout };
		r = gpu_send(dev, VGB_VHOST_GPU_GET_EDID, &req, sizeof(req), NULL, 0, -1);
		dev->gpu_wait_request = VGB_VHOST_GPU_GET_EDID;
	} else {
		r = gpu_send(dev, VGB_VHOST_GPU_GET_DISPLAY_INFO, NULL, 0, NULL, 0, -1);
		dev->gpu_wait_request = VGB_VHOST_GPU_GET_DISPLAY_INFO;
	}
	if (r < 0) {
		respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(elem);
		return;
	}
	dev->parked = elem;
	dev->parked_hdr = *hdr;
	dev->gpu_wait = GPU_WAIT_CMD;
}

static void handle_command(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem)
{
	struct virtio_gpu_ctrl_hdr hdr = { 0 };
	uint8_t resp[VGB_GPU_MAX_RESP];
	size_t len = VGB_MIN(elem->out_len, (size_t)MAX_CMD_BYTES);
	size_t resp_len = 0;

	dev->stats.commands++;
	len = vgb_iov_to_buf(elem->out, elem->n_out, 0, dev->cmd_buf, len);
	if (len < sizeof(hdr)) {
		respond_err(dev, q, elem, NULL, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
		free(elem);
		return;
	}
	memcpy(&hdr, dev->cmd_buf, sizeof(hdr));
	if (vgb_log_get_level() >= VGB_LOG_DEBUG) {
		uint32_t w[6] = { 0 };
		memcpy(w, dev->cmd_buf + sizeof(hdr), VGB_MIN(len - sizeof(hdr), sizeof(w)));
		vgb_log(VGB_LOG_DEBUG, "vhost-user: q%u cmd 0x%x flags %u fence %llu: %u %u %u %u %u %u", q,
			hdr.type, hdr.flags, (unsigned long long)hdr.fence_id, w[0], w[1], w[2], w[3], w[4], w[5]);
	}

	if (q == 0 && forward_to_qemu(dev, &hdr)) {
		park_for_qemu(dev, elem, &hdr, dev->cmd_buf, len);
		return;
	}

	int r = gpu_ensure(dev);
	if (r < 0) {
		respond_err(dev, q, elem, &hdr, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
		free(elem);
		return;
	}

	/*
	 * Registered before the call: the gpu may complete a fence from inside
	 * vgb_gpu_process() (a sink that takes the frame at once).
	 */
	struct pending *p = malloc(sizeof(*p));
	if (!p) {
		respond_err(dev, q, elem, &hdr, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
		free(elem);
		return;
	}
	*p = (struct pending){ .next = dev->pending, .cookie = ++dev->next_cookie, .queue = q,
			       .elem = elem };
	dev->pending = p;
	dev->n_pending++;

	r = vgb_gpu_process(dev->gpu, dev->cmd_buf, len, resp, sizeof(resp), &resp_len, p->cookie);
	if (r == 1) {
		dev->stats.deferred++;
		return; /* p is answered (and freed) by fence_done, maybe already */
	}
	pending_unlink(dev, p);
	free(p);
	if (r < 0) {
		respond_err(dev, q, elem, &hdr,
			    r == -EINVAL ? VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER
					 : VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(elem);
		return;
	}
	respond(dev, q, elem, resp, resp_len);
	free(elem);
}

static void drain_queue(struct vgb_vhost_dev *dev, unsigned q)
{
		/*
		 * At most one ring's worth per pass: a guest refilling as fast as we take must not
		 * keep the loop (other VMs, the compositor) waiting. Leftovers re-arm our kick.
		 */
		unsigned budget = dev->vrings[q].num;
		while (vring_usable(dev, q)) {
			if (budget-- == 0) {
				uint64_t one = 1;
				if (dev->vrings[q].kick_fd >= 0 &&
				    write(dev->vrings[q].kick_fd, &one, sizeof(one)) < 0)
					dev->rerun |= 1u << q;
				break;
			}
			/* Like QEMU's own backend, commands wait while QEMU owes us an answer. */
			if (q == 0 && (dev->parked || dev->gpu_wait != GPU_IDLE ||
				       dev->n_pending >= dev->opts.max_pending))
				break;
			struct vgb_vq_elem *elem = NULL;
			int r = vgb_vq_pop(&dev->vrings[q].vq, &elem);
			if (r == 0)
				break;
			if (r == -EINVAL) {
				dev->stats.bad_chains++;
				notify(dev, q);
				continue;
			}
			if (r < 0)
				break;
			handle_command(dev, q, elem);
		}
}

/*
 * Takes commands from queue @q. Completions (fences, QEMU's answers) can arrive while we are
 * inside the gpu: they only mark the queue for another pass instead of recursing.
 */
static void process_queue(struct vgb_vhost_dev *dev, unsigned q)
{
	dev->rerun |= 1u << q;
	if (dev->in_process)
		return;
	dev->in_process = true;
	while (dev->rerun) {
		unsigned i = (unsigned)__builtin_ctz(dev->rerun);
		dev->rerun &= ~(1u << i);
		drain_queue(dev, i);
	}
	dev->in_process = false;
}

/* ---- QEMU's display socket ---- */

static int gpu_send(struct vgb_vhost_dev *dev, uint32_t request, const void *p1, size_t n1,
		    const void *p2, size_t n2, int fd)
{
	if (dev->gpu_fd < 0)
		return -ENOTCONN;
	if (n1 + n2 > UINT32_MAX)
		return -EINVAL;
	struct vgb_vhost_user_header h = { .request = request, .size = (uint32_t)(n1 + n2) };
	struct iovec iov[3] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)p1, .iov_len = n1 },
		{ .iov_base = (void *)p2, .iov_len = n2 },
	};
	int r = send_all(dev->gpu_fd, iov, 1 + (n1 > 0) + (n2 > 0), fd);
	if (r < 0)
		return r;
	dev->stats.gpu_msgs_sent++;
	return 0;
}

static void gpu_socket_close(struct vgb_vhost_dev *dev)
{
	if (dev->gpu_fd < 0)
		return;
	epoll_del(dev, dev->gpu_fd);
	dev->gpu_fd = vgb_close(dev->gpu_fd);
	rx_reset(&dev->gpu_rx);
	if (dev->gpu_wait == GPU_WAIT_DMABUF && dev->qsink.dmabuf_done) {
		vgb_frame_done_fn done = dev->qsink.dmabuf_done;
		dev->qsink.dmabuf_done = NULL;
		done(dev->qsink.dmabuf_done_data, -EPIPE);
	}
	dev->gpu_wait = GPU_IDLE;
	dev->gpu_protocol = 0;
	if (dev->parked) {
		struct vgb_vq_elem *e = dev->parked;
		dev->parked = NULL;
		if (dev->vrings[0].vq.desc)
			respond_err(dev, 0, e, &dev->parked_hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(e);
	}
	process_queue(dev, 0);
}

static int gpu_socket_set(struct vgb_vhost_dev *dev, int fd)
{
	gpu_socket_close(dev);
	int r = epoll_add(dev, fd, TAG(TAG_GPU, 0));
	if (r < 0) {
		close(fd);
		return r;
	}
	dev->gpu_fd = fd;
	/* A stuck QEMU must not stall our loop for ever on a large UPDATE. */
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = gpu_send(dev, VGB_VHOST_GPU_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, -1);
	if (r < 0) {
		gpu_socket_close(dev);
		return r;
	}
	dev->gpu_wait = GPU_WAIT_PROTOCOL;
	return 0;
}

static void gpu_handle_reply(struct vgb_vhost_dev *dev, uint32_t request, uint32_t flags,
			     const uint8_t *payload, uint32_t size)
{
	if (!(flags & VGB_VHOST_GPU_FLAG_REPLY)) {
		vgb_log_ratelimited(VGB_LOG_DEBUG, "vhost-user-gpu: unexpected request %u", request);
		return;
	}

	switch (dev->gpu_wait) {
	case GPU_WAIT_PROTOCOL:
		if (request != VGB_VHOST_GPU_GET_PROTOCOL_FEATURES || size != sizeof(uint64_t))
			break;
		uint64_t f;
		memcpy(&f, payload, sizeof(f));
		f &= (1ull << VGB_VHOST_GPU_PROTOCOL_F_EDID) |
		     (1ull << VGB_VHOST_GPU_PROTOCOL_F_DMABUF2);
		dev->gpu_protocol = f;
		dev->gpu_wait = GPU_IDLE;
		gpu_send(dev, VGB_VHOST_GPU_SET_PROTOCOL_FEATURES, &f, sizeof(f), NULL, 0, -1);
		process_queue(dev, 0);
		return;
	case GPU_WAIT_CMD: {
		struct vgb_vq_elem *e = dev->parked;
		size_t want = request == VGB_VHOST_GPU_GET_EDID
				      ? sizeof(struct virtio_gpu_resp_edid)
				      : sizeof(struct virtio_gpu_resp_display_info);
		if (request != dev->gpu_wait_request || size != want)
			break;
		dev->parked = NULL;
		dev->gpu_wait = GPU_IDLE;
		if (e) {
			uint8_t buf[sizeof(struct virtio_gpu_resp_edid)];
			memcpy(buf, payload, size);
			struct virtio_gpu_ctrl_hdr *h = (struct virtio_gpu_ctrl_hdr *)buf;
			if (dev->parked_hdr.flags & VIRTIO_GPU_FLAG_FENCE) {
				h->flags |= VIRTIO_GPU_FLAG_FENCE;
				h->fence_id = dev->parked_hdr.fence_id;
				h->ctx_id = dev->parked_hdr.ctx_id;
			}
			if (dev->vrings[0].vq.desc)
				respond(dev, 0, e, buf, size);
			free(e);
		}
		process_queue(dev, 0);
		return;
	}
	case GPU_WAIT_DMABUF:
		if (request != VGB_VHOST_GPU_DMABUF_UPDATE)
			break;
		dev->gpu_wait = GPU_IDLE;
		if (dev->qsink.dmabuf_done) {
			vgb_frame_done_fn done = dev->qsink.dmabuf_done;
			dev->qsink.dmabuf_done = NULL;
			dev->qsink.stats.frames_presented++;
			done(dev->qsink.dmabuf_done_data, 0);
		}
		process_queue(dev, 0);
		return;
	case GPU_IDLE:
		break;
	}
	vgb_log_ratelimited(VGB_LOG_DEBUG, "vhost-user-gpu: unexpected reply %u (%u bytes)",
			    request, size);
}

static int gpu_dispatch(struct vgb_vhost_dev *dev)
{
	for (;;) {
		int r = rx_read(dev->gpu_fd, &dev->gpu_rx, GPU_MAX_PAYLOAD);
		if (r == 0)
			return 0;
		if (r < 0) {
			/* QEMU closed its display (device reset): keep serving the rings. */
			gpu_socket_close(dev);
			return 0;
		}
		struct vgb_vhost_user_header h;
		memcpy(&h, dev->gpu_rx.buf, sizeof(h));
		rx_drop_fds(&dev->gpu_rx);
		gpu_handle_reply(dev, h.request, h.flags, dev->gpu_rx.buf + sizeof(h), h.size);
		dev->gpu_rx.got = 0;
		if (dev->gpu_fd < 0)
			return 0;
	}
}

/* ---- the QEMU display sink ---- */

static struct qemu_sink *qemu_sink(struct vgb_display *d)
{
	return vgb_container_of(d, struct qemu_sink, base);
}

#define FOURCC(a, b, c, d) \
	((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))

static int qemu_present(struct vgb_display *d, const struct vgb_frame *f)
{
	struct qemu_sink *s = qemu_sink(d);
	struct vgb_vhost_dev *dev = s->dev;
	uint32_t id = f->scanout;
	int r;

	if (id >= 16)
		return -EINVAL;
	if (dev->gpu_fd < 0)
		return -ENOTCONN;
	/* QEMU's UPDATE is x8r8g8b8; both 32-bit RGB layouts pass through unchanged. */
	if (f->fourcc != FOURCC('X', 'R', '2', '4') && f->fourcc != FOURCC('A', 'R', '2', '4'))
		return -EINVAL;
	if (f->damage.x > f->width || f->damage.width > f->width - f->damage.x ||
	    f->damage.y > f->height || f->damage.height > f->height - f->damage.y)
		return -EINVAL;

	if (f->dmabuf && f->dmabuf->n_planes == 1 && f->dmabuf->fd[0] >= 0 &&
	    dev->gpu_wait == GPU_IDLE) {
		if (s->dmabuf_id[id] != f->buffer_id || !f->buffer_id || s->width[id] != f->width ||
		    s->height[id] != f->height) {
			bool v2 = dev->gpu_protocol & (1ull << VGB_VHOST_GPU_PROTOCOL_F_DMABUF2);
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
			r = gpu_send(dev, v2 ? VGB_VHOST_GPU_DMABUF_SCANOUT2 :
					       VGB_VHOST_GPU_DMABUF_SCANOUT,
				     &m, v2 ? sizeof(m) : sizeof(m) - sizeof(m.modifier), NULL, 0,
				     f->dmabuf->fd[0]);
			if (r < 0)
				return r;
			s->dmabuf_id[id] = f->buffer_id;
			s->width[id] = f->width;
			s->height[id] = f->height;
		}
		struct vgb_vhost_gpu_update u = {
			.scanout_id = id, .x = f->damage.x, .y = f->damage.y,
			.width = f->damage.width, .height = f->damage.height,
		};
		r = gpu_send(dev, VGB_VHOST_GPU_DMABUF_UPDATE, &u, sizeof(u), NULL, 0, -1);
		if (r < 0)
			return r;
		/* QEMU answers when its UI has drawn: that is when the frame is taken. */
		dev->gpu_wait = GPU_WAIT_DMABUF;
		s->dmabuf_done = f->done;
		s->dmabuf_done_data = f->done_data;
		return 0;
	}

	if (!f->cpu || !f->cpu->data)
		return -EINVAL;
	if (s->width[id] != f->width || s->height[id] != f->height || s->dmabuf_id[id]) {
		struct vgb_vhost_gpu_scanout m = { .scanout_id = id, .width = f->width,
						   .height = f->height };
		r = gpu_send(dev, VGB_VHOST_GPU_SCANOUT, &m, sizeof(m), NULL, 0, -1);
		if (r < 0)
			return r;
		s->width[id] = f->width;
		s->height[id] = f->height;
		s->dmabuf_id[id] = 0;
	}
	if (f->damage.width && f->damage.height) {
		size_t row = (size_t)f->damage.width * 4, bytes = row * f->damage.height;
		if (bytes > s->px_size) {
			uint8_t *np = realloc(s->px, bytes);
			if (!np)
				return -ENOMEM;
			s->px = np;
			s->px_size = bytes;
		}
		uint8_t *px = s->px;
		for (uint32_t y = 0; y < f->damage.height; y++)
			memcpy(px + row * y,
			       (const uint8_t *)f->cpu->data +
				       (size_t)(f->damage.y + y) * f->cpu->stride +
				       (size_t)f->damage.x * 4,
			       row);
		struct vgb_vhost_gpu_update u = {
			.scanout_id = id, .x = f->damage.x, .y = f->damage.y,
			.width = f->damage.width, .height = f->damage.height,
		};
		r = gpu_send(dev, VGB_VHOST_GPU_UPDATE, &u, sizeof(u), px, bytes, -1);
		if (r < 0)
			return r;
		dev->stats.update_bytes += bytes;
		s->stats.bytes_copied += bytes;
		s->stats.copies++;
	}
	s->stats.frames_presented++;
	s->stats.last_path = VGB_PATH_SHM_COPY;
	if (f->done)
		f->done(f->done_data, 0);
	return 0;
}

static void qemu_disable_scanout(struct vgb_display *d, uint32_t scanout)
{
	struct qemu_sink *s = qemu_sink(d);
	if (scanout >= 16)
		return;
	struct vgb_vhost_gpu_scanout m = { .scanout_id = scanout };
	gpu_send(s->dev, VGB_VHOST_GPU_SCANOUT, &m, sizeof(m), NULL, 0, -1);
	s->width[scanout] = s->height[scanout] = 0;
	s->dmabuf_id[scanout] = 0;
}

static int qemu_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			   uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y)
{
	struct qemu_sink *s = qemu_sink(d);
	if (!argb) {
		s->cursor_visible = false;
		struct vgb_vhost_gpu_cursor_pos p = { .scanout_id = scanout };
		return gpu_send(s->dev, VGB_VHOST_GPU_CURSOR_POS_HIDE, &p, sizeof(p), NULL, 0, -1);
	}
	if (w > 64 || h > 64)
		return -EINVAL;
	_cleanup_free_ struct vgb_vhost_gpu_cursor_update *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->pos = (struct vgb_vhost_gpu_cursor_pos){ scanout, (uint32_t)s->cursor_x,
						    (uint32_t)s->cursor_y };
	u->hot_x = hot_x;
	u->hot_y = hot_y;
	for (uint32_t y = 0; y < h; y++)
		memcpy(&u->data[y * 64], argb + (size_t)y * w, (size_t)w * 4);
	s->cursor_visible = true;
	return gpu_send(s->dev, VGB_VHOST_GPU_CURSOR_UPDATE, u, sizeof(*u), NULL, 0, -1);
}

static void qemu_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	struct qemu_sink *s = qemu_sink(d);
	s->cursor_x = x;
	s->cursor_y = y;
	struct vgb_vhost_gpu_cursor_pos p = { scanout, (uint32_t)x, (uint32_t)y };
	gpu_send(s->dev, s->cursor_visible ? VGB_VHOST_GPU_CURSOR_POS : VGB_VHOST_GPU_CURSOR_POS_HIDE,
		 &p, sizeof(p), NULL, 0, -1);
}

static void qemu_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct qemu_sink *s = qemu_sink(d);
	*ret = s->stats;
	ret->connected = s->dev->gpu_fd >= 0;
}

static const struct vgb_display_ops qemu_sink_ops = {
	.name = "qemu",
	.present = qemu_present,
	.disable_scanout = qemu_disable_scanout,
	.set_cursor = qemu_set_cursor,
	.move_cursor = qemu_move_cursor,
	.get_stats = qemu_get_stats,
};

/* ---- vhost-user requests ---- */

struct msg {
	uint32_t request, flags, size;
	const uint8_t *payload;
	struct rx *rx;
};

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

static void answer_all_pending(struct vgb_vhost_dev *dev)
{
	while (dev->pending) {
		struct pending *p = dev->pending;
		struct virtio_gpu_ctrl_hdr h = { 0 };
		dev->pending = p->next;
		dev->n_pending--;
		vgb_iov_to_buf(p->elem->out, p->elem->n_out, 0, &h, sizeof(h));
		if (dev->vrings[p->queue].vq.desc)
			respond_err(dev, p->queue, p->elem, &h, VIRTIO_GPU_RESP_OK_NODATA);
		free(p->elem);
		free(p);
	}
	if (dev->parked) {
		struct vgb_vq_elem *e = dev->parked;
		dev->parked = NULL;
		if (dev->vrings[0].vq.desc)
			respond_err(dev, 0, e, &dev->parked_hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(e);
	}
}

static int handle_set_mem_table(struct vgb_vhost_dev *dev, const struct msg *m)
{
	struct vgb_vhost_user_memory mem = { 0 };
	struct region fresh[VGB_VHOST_USER_MAX_REGIONS] = { 0 };
	int r;

	if (m->size < 8)
		return -EINVAL;
	memcpy(&mem, m->payload, VGB_MIN((size_t)m->size, sizeof(mem)));
	if (mem.nregions > VGB_VHOST_USER_MAX_REGIONS ||
	    m->size != 8 + mem.nregions * sizeof(struct vgb_vhost_user_region) ||
	    m->rx->n_fds != mem.nregions || m->rx->too_many_fds)
		return -EINVAL;

	unsigned n = mem.nregions;
	for (unsigned i = 0; i < n; i++) {
		const struct vgb_vhost_user_region *g = &mem.regions[i];
		uint64_t end, fend;
		struct stat st;
		int fd = m->rx->fds[i];

		if (g->memory_size == 0 || g->memory_size > SIZE_MAX / 2 ||
		    __builtin_add_overflow(g->guest_phys_addr, g->memory_size, &end) ||
		    __builtin_add_overflow(g->userspace_addr, g->memory_size, &end) ||
		    __builtin_add_overflow(g->mmap_offset, g->memory_size, &fend)) {
			r = -EINVAL;
			goto err;
		}
		/* Mapping past the file's end would SIGBUS us on first touch. */
		if (fstat(fd, &st) < 0) {
			r = -errno;
			goto err;
		}
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < fend) {
			r = -EINVAL;
			goto err;
		}
		for (unsigned j = 0; j < i; j++) {
			const struct region *o = &fresh[j];
			if (g->guest_phys_addr < o->gpa + o->size && o->gpa < end) {
				r = -EINVAL;
				goto err;
			}
		}
		uint64_t delta = g->mmap_offset % VGB_PAGE_SIZE;
		size_t len = (size_t)(g->memory_size + delta);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			       (off_t)(g->mmap_offset - delta));
		if (p == MAP_FAILED) {
			r = -errno;
			goto err;
		}
		fresh[i] = (struct region){
			.gpa = g->guest_phys_addr, .size = g->memory_size,
			.qva = g->userspace_addr, .mmap_offset = g->mmap_offset,
			.map = p, .map_len = len, .host = (uint8_t *)p + delta,
		};
	}

	/*
	 * Commands still waiting point into the old mappings: answer them now (a fence a little
	 * early is harmless; a write into an unmapped ring is not). Then the old table goes: windows
	 * may be re-added at the same addresses.
	 */
	answer_all_pending(dev);
	regions_unmap(dev, dev->regions, dev->n_regions);
	dev->n_regions = 0;
	for (unsigned i = 0; i < n; i++) {
		int dupfd = fcntl(m->rx->fds[i], F_DUPFD_CLOEXEC, 3);
		if (dupfd < 0) {
			r = -errno;
			goto err_installed;
		}
		r = vgb_memmap_add_ram(dev->map, fresh[i].gpa, fresh[i].size, dupfd,
				       fresh[i].mmap_offset, &fresh[i].window_id);
		if (r < 0) {
			close(dupfd);
			vgb_log_errno(VGB_LOG_WARN, r,
				      "vhost-user: guest RAM 0x%" PRIx64 "+0x%" PRIx64
				      " not usable for resources",
				      fresh[i].gpa, fresh[i].size);
			goto err_installed;
		}
	}
	memcpy(dev->regions, fresh, sizeof(fresh));
	dev->n_regions = n;
	for (unsigned i = 0; i < n; i++)
		vgb_log(VGB_LOG_DEBUG,
			"vhost-user: guest RAM 0x%" PRIx64 "+0x%" PRIx64 " at fd offset 0x%" PRIx64,
			fresh[i].gpa, fresh[i].size, fresh[i].mmap_offset);
	dev->stats.regions = n;

	/* Rings that run keep running on the new mappings (or stop when they moved away). */
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++) {
		struct vhost_vring *vr = &dev->vrings[i];
		if (!vr->started)
			continue;
		uint16_t last = vr->vq.last_avail_idx;
		struct vgb_vq_stats st = vr->vq.stats;
		vr->base = last;
		if (vring_setup(dev, i) < 0)
			vr->started = false;
		vr->vq.stats = st;
	}
	return 0;

err_installed:
	regions_unmap(dev, fresh, n);
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++)
		if (dev->vrings[i].started)
			vring_stop(dev, i);
	dev->stats.regions = 0;
	return r;
err:
	regions_unmap(dev, fresh, n);
	return r;
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
		vrings_reset(dev);
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
		return handle_set_mem_table(dev, m);

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
			if ((r = vring_setup(dev, a.index)) < 0) {
				vring_stop(dev, a.index);
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
		vring_stop(dev, st.index);
		struct vgb_vhost_user_vring_state reply = { st.index, vr->base };
		*replied = true;
		return send_reply(dev, m->request, &reply, sizeof(reply));
	}

	case VGB_VHOST_USER_SET_VRING_KICK: {
		if ((r = handle_vring_fd(m, &idx, &fd)) < 0)
			return r;
		struct vhost_vring *vr = &dev->vrings[idx];
		epoll_del(dev, vr->kick_fd);
		vr->kick_fd = vgb_close(vr->kick_fd);
		vr->kick_fd = fd;
		if (fd >= 0 && (r = epoll_add(dev, fd, TAG(TAG_KICK, idx))) < 0)
			return r;
		if ((r = vring_setup(dev, idx)) < 0)
			return r;
		vr->started = true;
		process_queue(dev, idx);
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
			process_queue(dev, st.index);
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
		return gpu_socket_set(dev, rx_take_fd(m->rx, 0));

	default:
		vgb_log_ratelimited(VGB_LOG_WARN, "vhost-user: unsupported request %u", m->request);
		return -EOPNOTSUPP;
	}
}

static int sock_dispatch(struct vgb_vhost_dev *dev)
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
			rx_reset(&dev->rx);
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
				rx_reset(&dev->rx);
				return -ECONNRESET;
			}
		}
		rx_reset(&dev->rx);
	}
}

/* ---- the dev ---- */

int vgb_vhost_dev_create(int fd, const struct vgb_vhost_options *opts, struct vgb_vhost_dev **ret)
{
	if (fd < 0 || !opts || !ret)
		return -EINVAL;

	struct vgb_vhost_dev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->opts = *opts;
	if (!dev->opts.max_pending)
		dev->opts.max_pending = DEFAULT_MAX_PENDING;
	dev->sock_fd = -1;
	dev->gpu_fd = -1;
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++)
		dev->vrings[i] = (struct vhost_vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
	dev->config.num_scanouts = 1;
	dev->qsink.base.ops = &qemu_sink_ops;
	dev->qsink.dev = dev;

	int r = -ENOMEM;
	dev->cmd_buf = malloc(MAX_CMD_BYTES);
	if (!dev->cmd_buf)
		goto err;
	r = vgb_memmap_create(&dev->map);
	if (r < 0)
		goto err;
	dev->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epoll_fd < 0) {
		r = -errno;
		goto err;
	}
	r = epoll_add(dev, fd, TAG(TAG_SOCK, 0));
	if (r < 0)
		goto err_epoll;
	dev->sock_fd = fd;
	*ret = dev;
	return 0;

err_epoll:
	close(dev->epoll_fd);
err:
	vgb_memmap_destroy(dev->map);
	free(dev->cmd_buf);
	free(dev);
	return r;
}

void vgb_vhost_dev_destroy(struct vgb_vhost_dev *dev)
{
	if (!dev)
		return;
	vrings_reset(dev);
	gpu_socket_close(dev);
	if (dev->qsink.dmabuf_done) {
		vgb_frame_done_fn done = dev->qsink.dmabuf_done;
		dev->qsink.dmabuf_done = NULL;
		done(dev->qsink.dmabuf_done_data, -EPIPE);
	}
	/* The gpu goes before the map it borrows, the map before the mappings it mirrors. */
	vgb_gpu_destroy(dev->gpu);
	dev->gpu = NULL;
	regions_unmap(dev, dev->regions, dev->n_regions);
	vgb_memmap_destroy(dev->map);
	free(dev->qsink.px);
	rx_reset(&dev->rx);
	rx_reset(&dev->gpu_rx);
	vgb_close(dev->sock_fd);
	vgb_close(dev->epoll_fd);
	free(dev->cmd_buf);
	free(dev);
}

int vgb_vhost_dev_get_fd(const struct vgb_vhost_dev *dev)
{
	return dev->epoll_fd;
}

int vgb_vhost_dev_dispatch(struct vgb_vhost_dev *dev)
{
	struct epoll_event evs[8];
	int n = epoll_wait(dev->epoll_fd, evs, VGB_ARRAY_SIZE(evs), 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;

	for (int i = 0; i < n; i++) {
		uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
		uint32_t idx = (uint32_t)evs[i].data.u64;
		int r;

		switch (kind) {
		case TAG_SOCK:
			r = sock_dispatch(dev);
			if (r < 0)
				return r;
			break;
		case TAG_KICK: {
			if (idx >= VGB_VHOST_QUEUES || dev->vrings[idx].kick_fd < 0)
				break;
			uint64_t cnt;
			if (read(dev->vrings[idx].kick_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
				break;
			process_queue(dev, idx);
			break;
		}
		case TAG_GPU:
			if (dev->gpu_fd >= 0)
				gpu_dispatch(dev);
			break;
		}
	}
	return 0;
}

int vgb_vhost_dev_next_timeout_ms(struct vgb_vhost_dev *dev)
{
	return dev->gpu ? vgb_gpu_next_timeout_ms(dev->gpu) : -1;
}

void vgb_vhost_dev_dispatch_timeouts(struct vgb_vhost_dev *dev)
{
	if (dev->gpu)
		vgb_gpu_dispatch_timeouts(dev->gpu);
}

void vgb_vhost_dev_get_stats(struct vgb_vhost_dev *dev, struct vgb_vhost_stats *ret)
{
	*ret = dev->stats;
	ret->pending = dev->n_pending;
	ret->gpu_socket = dev->gpu_fd >= 0;
	ret->regions = dev->n_regions;
}

struct vgb_gpu *vgb_vhost_dev_get_gpu(struct vgb_vhost_dev *dev)
{
	return dev->gpu;
}
