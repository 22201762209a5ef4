/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "vgb/util.h"

struct vgb_client {
	int fd;
	uint64_t next_id;
	uint8_t *buf; /* VGB_PROTO_MAX_MSG */
	vgb_client_wait_fn wait;
	void *wait_data;
};

int vgb_client_adopt(int fd, struct vgb_client **ret)
{
	struct vgb_client *c = calloc(1, sizeof(*c));
	int sz = 4 << 20;

	if (!c)
		return -ENOMEM;
	c->buf = malloc(VGB_PROTO_MAX_MSG);
	if (!c->buf) {
		free(c);
		return -ENOMEM;
	}
	/* Linux caps a packet by the sender's buffer: ask for room for large blob commands
	 * (the kernel clamps this to net.core.wmem_max; see docs/protocol.md). */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	c->fd = fd;
	c->next_id = 1;
	*ret = c;
	return 0;
}

int vgb_client_connect(const char *path, struct vgb_client **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	r = vgb_client_adopt(fd, ret);
	if (r < 0)
		return r;
	TAKE_FD(fd);
	return 0;
}

void vgb_client_destroy(struct vgb_client *c)
{
	if (!c)
		return;
	vgb_close(c->fd);
	free(c->buf);
	free(c);
}

int vgb_client_get_fd(struct vgb_client *c)
{
	return c->fd;
}

void vgb_client_set_wait_hook(struct vgb_client *c, vgb_client_wait_fn fn, void *data)
{
	c->wait = fn;
	c->wait_data = data;
}

void vgb_client_reply_finish(struct vgb_client_reply *reply)
{
	for (unsigned i = 0; i < VGB_PROTO_MAX_FDS; i++)
		reply->fds[i] = vgb_close(reply->fds[i]);
	reply->n_fds = 0;
}

int64_t vgb_client_send(struct vgb_client *c, uint16_t type, const void *p1, size_t n1,
			const void *p2, size_t n2, const int *fds, unsigned n_fds)
{
	uint64_t id = c->next_id++;
	int r;

	r = vgb_msg_send(c->fd, type, 0, id, p1, n1, p2, n2, fds, n_fds, 0);
	if (r < 0)
		return r;
	return (int64_t)id;
}

int vgb_client_recv(struct vgb_client *c, struct vgb_client_reply *ret)
{
	struct vgb_msg msg;
	struct vgb_msg_reply rh;
	ssize_t n;

	if (c->wait)
		c->wait(c->wait_data, c->fd);
	n = vgb_msg_recv(c->fd, c->buf, VGB_PROTO_MAX_MSG, &msg);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return n == -EBADMSG || n == -EMSGSIZE ? -EPROTO : (int)n;
	if (!(msg.hdr.flags & VGB_MSG_FLAG_REPLY) || msg.hdr.length < sizeof(rh)) {
		vgb_msg_close_fds(&msg);
		return -EPROTO;
	}
	memcpy(&rh, msg.payload, sizeof(rh));
	if (rh.n_fds != msg.n_fds) {
		vgb_msg_close_fds(&msg);
		return -EPROTO;
	}
	ret->hdr = msg.hdr;
	ret->result = rh.result;
	ret->body = (const uint8_t *)msg.payload + sizeof(rh);
	ret->body_len = msg.hdr.length - sizeof(rh);
	for (unsigned i = 0; i < VGB_PROTO_MAX_FDS; i++)
		ret->fds[i] = i < msg.n_fds ? msg.fds[i] : -1;
	ret->n_fds = msg.n_fds;
	return 0;
}

int vgb_client_call(struct vgb_client *c, uint16_t type, const void *p1, size_t n1,
		    const void *p2, size_t n2, const int *fds, unsigned n_fds,
		    struct vgb_client_reply *ret)
{
	int64_t id;
	int r;

	id = vgb_client_send(c, type, p1, n1, p2, n2, fds, n_fds);
	if (id < 0)
		return (int)id;
	r = vgb_client_recv(c, ret);
	if (r < 0)
		return r;
	if (ret->hdr.id != (uint64_t)id || ret->hdr.type != type) {
		vgb_client_reply_finish(ret);
		return -EPROTO;
	}
	return 0;
}

/* Calls and checks that a successful reply carries at least @body_size bytes. */
static int call_simple(struct vgb_client *c, uint16_t type, const void *p1, size_t n1,
		       const void *p2, size_t n2, const int *fds, unsigned n_fds, void *body,
		       size_t body_size)
{
	struct vgb_client_reply rep;
	int r;

	r = vgb_client_call(c, type, p1, n1, p2, n2, fds, n_fds, &rep);
	if (r < 0)
		return r;
	if (rep.result == 0 && body_size) {
		if (rep.body_len < body_size) {
			vgb_client_reply_finish(&rep);
			return -EPROTO;
		}
		memcpy(body, rep.body, body_size);
	}
	vgb_client_reply_finish(&rep);
	return rep.result;
}

int vgb_client_hello(struct vgb_client *c, struct vgb_msg_hello_reply *ret)
{
	struct vgb_msg_hello m = { .version = VGB_PROTO_VERSION };
	struct vgb_msg_hello_reply rep;
	int r;

	r = call_simple(c, VGB_MSG_HELLO, &m, sizeof(m), NULL, 0, NULL, 0, &rep, sizeof(rep));
	if (r == 0 && ret)
		*ret = rep;
	return r;
}

int vgb_client_add_ram(struct vgb_client *c, int memfd, uint64_t gpa, uint64_t size,
		       uint64_t offset)
{
	struct vgb_msg_add_ram m = { .n_fds = 1, .gpa = gpa, .size = size, .offset = offset };

	return call_simple(c, VGB_MSG_ADD_RAM, &m, sizeof(m), NULL, 0, &memfd, 1, NULL, 0);
}

int vgb_client_add_device(struct vgb_client *c, uint32_t kind, const char *path, int fd,
			  struct vgb_msg_add_device_reply *ret)
{
	size_t len = path ? strlen(path) : 0;
	struct vgb_msg_add_device m = {
		.n_fds = fd >= 0 ? 1 : 0,
		.kind = kind,
		.path_len = (uint32_t)len,
	};
	struct vgb_msg_add_device_reply rep = { 0 };
	int r;

	if (len > VGB_PROTO_MAX_PATH)
		return -ENAMETOOLONG;
	r = call_simple(c, VGB_MSG_ADD_VFIO_DEVICE, &m, sizeof(m), path, len, &fd, m.n_fds, &rep,
			sizeof(rep));
	if (r == 0 && ret)
		*ret = rep;
	return r;
}

int vgb_client_map_window(struct vgb_client *c, uint64_t gpa, uint64_t size, uint32_t device_id,
			  uint32_t region_index, uint64_t region_offset)
{
	struct vgb_msg_map_window m = {
		.gpa = gpa,
		.size = size,
		.device_id = device_id,
		.region_index = region_index,
		.region_offset = region_offset,
	};

	return call_simple(c, VGB_MSG_MAP_VFIO_WINDOW, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0);
}

int vgb_client_remove_window(struct vgb_client *c, uint64_t gpa)
{
	struct vgb_msg_remove_window m = { .gpa = gpa };

	return call_simple(c, VGB_MSG_REMOVE_WINDOW, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0);
}

int vgb_client_remove_device(struct vgb_client *c, uint32_t device_id)
{
	struct vgb_msg_remove_device m = { .device_id = device_id };

	return call_simple(c, VGB_MSG_REMOVE_DEVICE, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0);
}

int vgb_client_gpu_cmd(struct vgb_client *c, uint32_t queue, const void *cmd, size_t len,
		       void *resp, size_t resp_size, size_t *ret_resp_len)
{
	struct vgb_msg_gpu_cmd m = { .queue = queue };
	struct vgb_client_reply rep;
	int r;

	r = vgb_client_call(c, VGB_MSG_VIRTIO_GPU_CMD, &m, sizeof(m), cmd, len, NULL, 0, &rep);
	if (r < 0)
		return r;
	vgb_client_reply_finish(&rep);
	if (rep.result == 0) {
		if (resp)
			memcpy(resp, rep.body, VGB_MIN(resp_size, rep.body_len));
		if (ret_resp_len)
			*ret_resp_len = rep.body_len;
	}
	return rep.result;
}

/*
 * Calls; a successful reply must carry at least @size bytes, copied to @ret, and its first fd
 * (or -1) goes to *@ret_fd when @ret_fd is not NULL (closed otherwise).
 */
static int call_with_fd(struct vgb_client *c, uint16_t type, const void *req, size_t req_len,
			void *ret, size_t size, int *ret_fd)
{
	struct vgb_client_reply rep;
	int r;

	r = vgb_client_call(c, type, req, req_len, NULL, 0, NULL, 0, &rep);
	if (r < 0)
		return r;
	if (rep.result < 0) {
		vgb_client_reply_finish(&rep);
		return rep.result;
	}
	if (rep.body_len < size) {
		vgb_client_reply_finish(&rep);
		return -EPROTO;
	}
	memcpy(ret, rep.body, size);
	if (ret_fd) {
		*ret_fd = rep.fds[0];
		rep.fds[0] = -1;
	}
	vgb_client_reply_finish(&rep);
	return 0;
}

int vgb_client_export_blob(struct vgb_client *c, uint32_t resource_id,
			   struct vgb_msg_export_blob_reply *ret, int *ret_fd)
{
	struct vgb_msg_export_blob m = { .resource_id = resource_id };

	return call_with_fd(c, VGB_MSG_EXPORT_BLOB, &m, sizeof(m), ret, sizeof(*ret), ret_fd);
}

int vgb_client_query_device(struct vgb_client *c, uint32_t device_id, uint32_t region,
			    uint32_t flags, struct vgb_msg_query_device_reply *ret, int *ret_fd)
{
	struct vgb_msg_query_device m = {
		.device_id = device_id,
		.region_index = region,
		.flags = flags,
	};
	int r = call_with_fd(c, VGB_MSG_QUERY_DEVICE, &m, sizeof(m), ret, sizeof(*ret), ret_fd);

	if (r == 0)
		ret->name[sizeof(ret->name) - 1] = 0;
	return r;
}

int vgb_client_stats(struct vgb_client *c, uint32_t flags, struct vgb_wire_stats_global *ret_global,
		     struct vgb_wire_stats_client **ret_clients)
{
	struct vgb_msg_stats m = { .flags = flags };
	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows;
	struct vgb_client_reply rep;
	size_t need;
	int r;

	r = vgb_client_call(c, VGB_MSG_STATS, &m, sizeof(m), NULL, 0, NULL, 0, &rep);
	if (r < 0)
		return r;
	vgb_client_reply_finish(&rep);
	if (rep.result < 0)
		return rep.result;
	if (rep.body_len < sizeof(g))
		return -EPROTO;
	memcpy(&g, rep.body, sizeof(g));
	if (__builtin_mul_overflow((size_t)g.n_clients, sizeof(*rows), &need) ||
	    rep.body_len - sizeof(g) != need)
		return -EPROTO;
	rows = calloc(g.n_clients ? g.n_clients : 1, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	memcpy(rows, (const uint8_t *)rep.body + sizeof(g), need);
	*ret_global = g;
	*ret_clients = rows;
	return 0;
}
