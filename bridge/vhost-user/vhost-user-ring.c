/* SPDX-License-Identifier: MIT */
/*
 * The rings: set-up and teardown of the control and cursor virtqueues, and the commands taken
 * from them into the virtio-gpu processor (answered at once, after a fence, or after QEMU).
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

/* Front-end virtual address (the rings' addresses) to our pointer, over the whole length. */
void *vgb_vhost_qva_to_host(struct vgb_vhost_dev *dev, uint64_t qva, uint64_t len)
{
	for (unsigned i = 0; i < dev->n_regions; i++) {
		struct region *r = &dev->regions[i];
		if (qva >= r->qva && qva - r->qva < r->size && len <= r->size - (qva - r->qva))
			return r->host + (qva - r->qva);
	}
	return NULL;
}

void *vgb_vhost_gpa_translate(void *data, uint64_t gpa, uint64_t *inout_len)
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
int vgb_vhost_vring_setup(struct vgb_vhost_dev *dev, unsigned i)
{
	struct vhost_vring *vr = &dev->vrings[i];
	size_t ds, as, us;

	if (!vr->addr_set || vr->num == 0)
		return -EINVAL;
	if (vr->num > VGB_VQ_MAX_SIZE)
		return -EINVAL;
	vgb_vq_ring_sizes(vr->num, &ds, &as, &us);
	void *desc = vgb_vhost_qva_to_host(dev, vr->addr.desc_user_addr, ds);
	void *avail = vgb_vhost_qva_to_host(dev, vr->addr.avail_user_addr, as);
	void *used = vgb_vhost_qva_to_host(dev, vr->addr.used_user_addr, us);
	if (!desc || !avail || !used)
		return -EFAULT;

	vr->vq.event_idx = dev->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	vr->vq.indirect = dev->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
	int r = vgb_vq_setup(&vr->vq, vr->num, desc, avail, used, vr->base, vgb_vhost_gpa_translate, dev);
	if (r < 0)
		memset(&vr->vq, 0, sizeof(vr->vq));
	return r;
}

void vgb_vhost_epoll_del(struct vgb_vhost_dev *dev, int fd)
{
	if (fd >= 0)
		epoll_ctl(dev->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int vgb_vhost_epoll_add(struct vgb_vhost_dev *dev, int fd, uint64_t tag)
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

void vgb_vhost_vring_stop(struct vgb_vhost_dev *dev, unsigned i)
{
	struct vhost_vring *vr = &dev->vrings[i];

	pending_drop_queue(dev, i);
	vr->base = vr->vq.desc ? vr->vq.last_avail_idx : vr->base;
	vr->started = false;
	memset(&vr->vq, 0, sizeof(vr->vq));
	vgb_vhost_epoll_del(dev, vr->kick_fd);
	vr->kick_fd = vgb_close(vr->kick_fd);
	vr->call_fd = vgb_close(vr->call_fd);
	vr->err_fd = vgb_close(vr->err_fd);
}

void vgb_vhost_vrings_reset(struct vgb_vhost_dev *dev)
{
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++) {
		vgb_vhost_vring_stop(dev, i);
		dev->vrings[i] = (struct vhost_vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
	}
}

static bool vring_usable(const struct vgb_vhost_dev *dev, unsigned q)
{
	const struct vhost_vring *vr = &dev->vrings[q];
	return vr->started && vr->enabled && vr->vq.desc && !vr->vq.broken;
}

void vgb_vhost_respond(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
		    const void *resp, size_t len)
{
	uint32_t written = 0;
	if (len)
		written = (uint32_t)vgb_iov_from_buf(elem->in, elem->n_in, 0, resp, len);
	vgb_vq_push(&dev->vrings[q].vq, elem, written);
	notify(dev, q);
}

void vgb_vhost_respond_err(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
			const struct virtio_gpu_ctrl_hdr *cmd, uint32_t type)
{
	struct virtio_gpu_ctrl_hdr resp = { .type = type };
	if (cmd && (cmd->flags & VIRTIO_GPU_FLAG_FENCE)) {
		resp.flags = cmd->flags & (VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX);
		resp.fence_id = cmd->fence_id;
		resp.ctx_id = cmd->ctx_id;
		resp.ring_idx = cmd->ring_idx;
	}
	vgb_vhost_respond(dev, q, elem, &resp, sizeof(resp));
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
			vgb_vhost_respond(dev, p->queue, p->elem, resp, len);
		free(p->elem);
		free(p);
		/* Back-pressure released: look at the ring again. */
		vgb_vhost_process_queue(dev, 0);
		return;
	}
	/* A command of a ring that was stopped since: nothing to answer. */
}

static int gpu_ensure(struct vgb_vhost_dev *dev)
{
	if (dev->gpu)
		return 0;

	struct vgb_gpu_config cfg = {
		.display = dev->opts.qemu_display ? dev->qemu : dev->opts.display,
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
	if (!vgb_qemu_display_is_connected(dev->qemu))
		return false;
	if (hdr->type == VIRTIO_GPU_CMD_GET_EDID)
		return vgb_qemu_display_has_edid(dev->qemu);
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
			vgb_vhost_respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
			free(elem);
			return;
		}
		memcpy(&ge, cmd, sizeof(ge));
		if (ge.scanout >= dev->config.num_scanouts) {
			vgb_vhost_respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
			free(elem);
			return;
		}
		r = vgb_qemu_display_query(dev->qemu, VGB_VHOST_GPU_GET_EDID, ge.scanout);
	} else {
		r = vgb_qemu_display_query(dev->qemu, VGB_VHOST_GPU_GET_DISPLAY_INFO, 0);
	}
	if (r < 0) {
		vgb_vhost_respond_err(dev, 0, elem, hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(elem);
		return;
	}
	/* The answer comes in qemu_reply() (vhost-user.c). */
	dev->parked = elem;
	dev->parked_hdr = *hdr;
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
		vgb_vhost_respond_err(dev, q, elem, NULL, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
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
		vgb_vhost_respond_err(dev, q, elem, &hdr, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
		free(elem);
		return;
	}

	/*
	 * Registered before the call: the gpu may complete a fence from inside
	 * vgb_gpu_process() (a sink that takes the frame at once).
	 */
	struct pending *p = malloc(sizeof(*p));
	if (!p) {
		vgb_vhost_respond_err(dev, q, elem, &hdr, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
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
		vgb_vhost_respond_err(dev, q, elem, &hdr,
			    r == -EINVAL ? VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER
					 : VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(elem);
		return;
	}
	vgb_vhost_respond(dev, q, elem, resp, resp_len);
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
			if (q == 0 && (dev->parked || vgb_qemu_display_is_busy(dev->qemu) ||
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
void vgb_vhost_process_queue(struct vgb_vhost_dev *dev, unsigned q)
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

void vgb_vhost_answer_all_pending(struct vgb_vhost_dev *dev)
{
	while (dev->pending) {
		struct pending *p = dev->pending;
		struct virtio_gpu_ctrl_hdr h = { 0 };
		dev->pending = p->next;
		dev->n_pending--;
		vgb_iov_to_buf(p->elem->out, p->elem->n_out, 0, &h, sizeof(h));
		if (dev->vrings[p->queue].vq.desc)
			vgb_vhost_respond_err(dev, p->queue, p->elem, &h, VIRTIO_GPU_RESP_OK_NODATA);
		free(p->elem);
		free(p);
	}
	if (dev->parked) {
		struct vgb_vq_elem *e = dev->parked;
		dev->parked = NULL;
		if (dev->vrings[0].vq.desc)
			vgb_vhost_respond_err(dev, 0, e, &dev->parked_hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(e);
	}
}
