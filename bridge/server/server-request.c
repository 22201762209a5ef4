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
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), NULL, 0);
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
	vgb_server_watch_faults(s, dev);
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), NULL, 0);
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
	vgb_server_unwatch_faults(c->server, dev);
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
		vgb_server_client_update_events(c);
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
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, resp, resp_len, NULL, 0);
	if (vgb_server_is_fenced(cmd, len, resp, resp_len))
		vgb_server_count_fence_latency(c, vgb_now_ns() - t0);
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
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), &buf.fd[0], 1);
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
		vgb_server_fault_totals(s, &g->fault_queues, &fs);
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
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, buf, sizeof(*g) + n * sizeof(*rows), NULL,
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
	vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, 0, &rep, sizeof(rep), &fd, fd >= 0 ? 1 : 0);
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

void vgb_server_handle_message(struct client *c, struct vgb_msg *msg)
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
		vgb_server_client_reply(c, msg->hdr.type, msg->hdr.id, r, NULL, 0, NULL, 0);
	/* Whatever fds the request did not consume are closed here. */
	vgb_msg_close_fds(msg);
}

void vgb_server_handle_client(struct client *c, uint32_t events)
{
	struct vgb_server *s = c->server;

	if (events & EPOLLOUT) {
		if (vgb_server_client_flush(c) < 0) {
			vgb_server_client_kill(c, "send failed");
			return;
		}
		vgb_server_client_update_events(c);
	}
	if (events & (EPOLLHUP | EPOLLERR)) {
		vgb_server_client_kill(c, "hangup");
		return;
	}
	for (int i = 0; i < BATCH && !c->dead && (c->events & EPOLLIN); i++) {
		struct vgb_msg msg;
		ssize_t n = vgb_msg_recv(c->fd, s->rxbuf, s->opts.max_msg, &msg);

		if (n == -EAGAIN)
			break;
		if (n == 0) {
			vgb_server_client_kill(c, "closed");
			break;
		}
		if (n == -EBADMSG || n == -EMSGSIZE) {
			/* The packet is dropped (its fds closed); the client may go on. */
			c->requests++;
			vgb_server_client_reply(c, msg.hdr.type, msg.hdr.id, (int32_t)n, NULL, 0, NULL, 0);
			continue;
		}
		if (n < 0) {
			vgb_server_client_kill(c, "recv failed");
			break;
		}
		vgb_server_handle_message(c, &msg);
	}
}
