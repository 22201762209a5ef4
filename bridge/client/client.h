/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_CLIENT_H
#define VGB_BRIDGE_CLIENT_H

/*
 * A small synchronous client of the vgbridged protocol (docs/protocol.md), used by vgbctl and
 * the tests. Each call sends one request and waits for its reply.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

struct vgb_client;

struct vgb_client_reply {
	struct vgb_msg_header hdr;
	int32_t result;      /* the daemon's answer: 0 or -errno */
	const void *body;    /* bytes after struct vgb_msg_reply; valid until the next call */
	size_t body_len;
	int fds[VGB_PROTO_MAX_FDS]; /* owned by the caller; unused slots are -1 */
	unsigned n_fds;
};

/* Connects to @path (SOCK_SEQPACKET, CLOEXEC) without sending anything. Returns 0 or -errno. */
int vgb_client_connect(const char *path, struct vgb_client **ret);
/* Wraps a connected socket. Takes ownership of @fd on success. */
int vgb_client_adopt(int fd, struct vgb_client **ret);
/* Closes the socket and frees. Accepts NULL. */
void vgb_client_destroy(struct vgb_client *c);
int vgb_client_get_fd(struct vgb_client *c);

/*
 * Called before each wait for a reply, with the socket: a test that runs the daemon in the
 * same thread pumps its loop there until the socket is readable. NULL: block in recvmsg.
 */
typedef void (*vgb_client_wait_fn)(void *data, int fd);
void vgb_client_set_wait_hook(struct vgb_client *c, vgb_client_wait_fn fn, void *data);

/*
 * Sends a request (payload @p1 then @p2, @n_fds borrowed fds) and waits for the reply with the
 * same id. Meant for one request at a time: with other requests in flight (vgb_client_send),
 * their replies may come first (a fenced command answers late), and this returns -EPROTO;
 * use vgb_client_send()/vgb_client_recv() and match ids then. Returns 0 with @ret filled (ret->result is the daemon's answer; close ret->fds), or a
 * transport -errno (-ECONNRESET when the daemon closed, -EPROTO for a reply that is not one).
 */
int vgb_client_call(struct vgb_client *c, uint16_t type, const void *p1, size_t n1,
		    const void *p2, size_t n2, const int *fds, unsigned n_fds,
		    struct vgb_client_reply *ret);

/* Sends a request without waiting. Returns its id (> 0) or -errno. */
int64_t vgb_client_send(struct vgb_client *c, uint16_t type, const void *p1, size_t n1,
			const void *p2, size_t n2, const int *fds, unsigned n_fds);
/* Waits for the next reply, whatever its id. Same returns as vgb_client_call(). */
int vgb_client_recv(struct vgb_client *c, struct vgb_client_reply *ret);

/* Closes the fds of @reply. */
void vgb_client_reply_finish(struct vgb_client_reply *reply);

/*
 * Helpers: each returns the daemon's result (0 or -errno) or a transport -errno, and writes
 * its ret_* only on success.
 */
int vgb_client_hello(struct vgb_client *c, struct vgb_msg_hello_reply *ret);
/* @memfd is borrowed (the daemon gets its own copy). */
int vgb_client_add_ram(struct vgb_client *c, int memfd, uint64_t gpa, uint64_t size,
		       uint64_t offset);
/* @fd is borrowed; -1 for kinds that name a path. */
int vgb_client_add_device(struct vgb_client *c, uint32_t kind, const char *path, int fd,
			  struct vgb_msg_add_device_reply *ret);
int vgb_client_map_window(struct vgb_client *c, uint64_t gpa, uint64_t size, uint32_t device_id,
			  uint32_t region_index, uint64_t region_offset);
int vgb_client_remove_window(struct vgb_client *c, uint64_t gpa);
int vgb_client_remove_device(struct vgb_client *c, uint32_t device_id);
/*
 * Sends virtio-gpu command bytes; copies up to @resp_size response bytes to @resp and the
 * response's full length to *@ret_resp_len.
 */
int vgb_client_gpu_cmd(struct vgb_client *c, uint32_t queue, const void *cmd, size_t len,
		       void *resp, size_t resp_size, size_t *ret_resp_len);
/* *@ret_fd: the dmabuf (owned by the caller) or -1. */
int vgb_client_export_blob(struct vgb_client *c, uint32_t resource_id,
			   struct vgb_msg_export_blob_reply *ret, int *ret_fd);
/* *@ret_fd: the region's memfd when @flags has VGB_QUERY_REGION_FD and the daemon gave one,
 * else -1. @ret_fd may be NULL (the fd is closed). */
int vgb_client_query_device(struct vgb_client *c, uint32_t device_id, uint32_t region,
			    uint32_t flags, struct vgb_msg_query_device_reply *ret, int *ret_fd);
/* *@ret_clients (malloc'ed, caller frees) holds @ret_global->n_clients rows. */
int vgb_client_stats(struct vgb_client *c, uint32_t flags, struct vgb_wire_stats_global *ret_global,
		     struct vgb_wire_stats_client **ret_clients);

#endif
