/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user-gpu backend: one struct vgb_vhost_dev per front end, its epoll set, and the glue
 * to QEMU's display socket (display/qemu.c).
 */
#include <errno.h>
#include <poll.h>
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

void vgb_vhost_print_capabilities(FILE *f)
{
	/*
	 * docs/interop/vhost-user.json, VHostUserBackendCapabilitiesGPU. We take neither
	 * --render-node nor --virgl: the 2D path needs no render node.
	 */
	fprintf(f, "{\n  \"type\": \"gpu\",\n  \"features\": [\n  ]\n}\n");
}

/* ---- QEMU's display socket ---- */

static void qemu_watch(void *data, int fd, uint32_t events, int why)
{
	struct vgb_vhost_dev *dev = data;
	struct epoll_event ev = { .data.u64 = TAG(TAG_GPU, 0) };

	if (events & POLLIN)
		ev.events |= EPOLLIN;
	if (events & POLLOUT)
		ev.events |= EPOLLOUT;
	if (!events) {
		if (dev->qemu_fd == fd)
			vgb_vhost_epoll_del(dev, fd);
		dev->qemu_fd = -1;
		if (why == -ENOBUFS)
			vgb_log(VGB_LOG_WARN, "vhost-user: QEMU's display stopped reading its socket; "
				"closed it (the VM keeps running, its frames are no longer shown)");
		else if (why && why != -EPIPE)
			vgb_log_errno(VGB_LOG_WARN, why, "vhost-user: QEMU's display socket closed");
		return;
	}
	if (dev->qemu_fd != fd) {
		if (dev->qemu_fd >= 0)
			vgb_vhost_epoll_del(dev, dev->qemu_fd);
		dev->qemu_fd = -1;
		if (epoll_ctl(dev->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0)
			dev->qemu_fd = fd;
		return;
	}
	epoll_ctl(dev->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

static void qemu_idle(void *data)
{
	vgb_vhost_process_queue(data, 0);
}

/* QEMU's answer to the parked GET_DISPLAY_INFO / GET_EDID (or its absence). */
static void qemu_reply(void *data, uint32_t request, int status, const void *payload, size_t size)
{
	struct vgb_vhost_dev *dev = data;
	struct vgb_vq_elem *e = dev->parked;
	size_t want = request == VGB_VHOST_GPU_GET_EDID ? sizeof(struct virtio_gpu_resp_edid)
							: sizeof(struct virtio_gpu_resp_display_info);
	uint8_t buf[sizeof(struct virtio_gpu_resp_edid)];

	dev->parked = NULL;
	if (!e)
		return;
	if (!dev->vrings[0].vq.desc) {
		free(e);
		return;
	}
	if (status < 0 || size != want) {
		vgb_vhost_respond_err(dev, 0, e, &dev->parked_hdr, VIRTIO_GPU_RESP_ERR_UNSPEC);
		free(e);
		return;
	}
	memcpy(buf, payload, size);
	struct virtio_gpu_ctrl_hdr *h = (struct virtio_gpu_ctrl_hdr *)buf;
	if (dev->parked_hdr.flags & VIRTIO_GPU_FLAG_FENCE) {
		h->flags |= VIRTIO_GPU_FLAG_FENCE;
		h->fence_id = dev->parked_hdr.fence_id;
		h->ctx_id = dev->parked_hdr.ctx_id;
	}
	vgb_vhost_respond(dev, 0, e, buf, size);
	free(e);
}

static const struct vgb_qemu_display_callbacks qemu_callbacks = {
	.watch = qemu_watch,
	.idle = qemu_idle,
	.reply = qemu_reply,
};

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
	dev->qemu_fd = -1;
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++)
		dev->vrings[i] = (struct vhost_vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
	dev->config.num_scanouts = 1;

	int r = -ENOMEM;
	dev->cmd_buf = malloc(MAX_CMD_BYTES);
	if (!dev->cmd_buf)
		goto err;
	r = vgb_display_create_qemu(&qemu_callbacks, dev, &dev->qemu);
	if (r < 0)
		goto err;
	r = vgb_memmap_create(&dev->map);
	if (r < 0)
		goto err;
	dev->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (dev->epoll_fd < 0) {
		r = -errno;
		goto err;
	}
	r = vgb_vhost_epoll_add(dev, fd, TAG(TAG_SOCK, 0));
	if (r < 0)
		goto err_epoll;
	dev->sock_fd = fd;
	*ret = dev;
	return 0;

err_epoll:
	close(dev->epoll_fd);
err:
	vgb_display_destroy(dev->qemu);
	vgb_memmap_destroy(dev->map);
	free(dev->cmd_buf);
	free(dev);
	return r;
}

void vgb_vhost_dev_destroy(struct vgb_vhost_dev *dev)
{
	if (!dev)
		return;
	vgb_vhost_vrings_reset(dev);
	/* A dmabuf frame QEMU still holds completes (-EPIPE) while the gpu is there. */
	vgb_qemu_display_close(dev->qemu);
	/* The gpu goes before the map it borrows, the map before the mappings it mirrors. */
	vgb_gpu_destroy(dev->gpu);
	dev->gpu = NULL;
	vgb_vhost_regions_unmap(dev, dev->regions, dev->n_regions);
	vgb_memmap_destroy(dev->map);
	vgb_display_destroy(dev->qemu);
	vgb_vhost_rx_reset(&dev->rx);
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
			r = vgb_vhost_sock_dispatch(dev);
			if (r < 0)
				return r;
			break;
		case TAG_KICK: {
			if (idx >= VGB_VHOST_QUEUES || dev->vrings[idx].kick_fd < 0)
				break;
			uint64_t cnt;
			if (read(dev->vrings[idx].kick_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
				break;
			vgb_vhost_process_queue(dev, idx);
			break;
		}
		case TAG_GPU:
			/* Errors close the socket (see qemu_watch); the rings go on. */
			vgb_display_dispatch(dev->qemu);
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
	struct vgb_qemu_display_counters qc;

	vgb_qemu_display_get_counters(dev->qemu, &qc);
	*ret = dev->stats;
	ret->gpu_msgs_sent = qc.msgs_sent;
	ret->update_bytes = qc.update_bytes;
	ret->pending = dev->n_pending;
	ret->gpu_socket = vgb_qemu_display_is_connected(dev->qemu);
	ret->regions = dev->n_regions;
}

struct vgb_gpu *vgb_vhost_dev_get_gpu(struct vgb_vhost_dev *dev)
{
	return dev->gpu;
}
