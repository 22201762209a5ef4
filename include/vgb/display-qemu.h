/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_QEMU_H
#define VGB_DISPLAY_QEMU_H

/*
 * The QEMU display sink (display/qemu.c): frames go to QEMU's UI over the vhost-user-gpu socket
 * that a vhost-user front end hands its backend with VHOST_USER_GPU_SET_SOCKET (QEMU's
 * docs/interop/vhost-user-gpu.rst). Besides frames and the cursor, the same socket answers
 * GET_DISPLAY_INFO and GET_EDID: the backend asks through vgb_qemu_display_query() and gets the
 * answer in a callback.
 *
 * Nothing here blocks: messages go out through a per-socket queue that the backend's loop
 * drains when the socket is writable (get_fd / dispatch of the sink). The queue is bounded:
 * - a new frame replaces the UPDATE of the same scanout that is still waiting in the queue
 *   (latest frame wins; counted in frames_dropped), and a new cursor image replaces a queued one;
 * - a queue that still holds more than VGB_QEMU_DISPLAY_MAX_QUEUED messages or
 *   VGB_QEMU_DISPLAY_MAX_QUEUED_BYTES bytes means QEMU stopped reading: the socket is closed
 *   (the backend keeps serving its rings; frames then fail with -ENOTCONN).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vgb/display.h"

/* ---- wire: vhost-user-gpu (backend <-> QEMU's display), QEMU_PACKED in QEMU ---- */

enum vgb_vhost_gpu_request {
	VGB_VHOST_GPU_GET_PROTOCOL_FEATURES = 1,
	VGB_VHOST_GPU_SET_PROTOCOL_FEATURES = 2,
	VGB_VHOST_GPU_GET_DISPLAY_INFO = 3,
	VGB_VHOST_GPU_CURSOR_POS = 4,
	VGB_VHOST_GPU_CURSOR_POS_HIDE = 5,
	VGB_VHOST_GPU_CURSOR_UPDATE = 6,
	VGB_VHOST_GPU_SCANOUT = 7,
	VGB_VHOST_GPU_UPDATE = 8,
	VGB_VHOST_GPU_DMABUF_SCANOUT = 9,
	VGB_VHOST_GPU_DMABUF_UPDATE = 10,
	VGB_VHOST_GPU_GET_EDID = 11,
	VGB_VHOST_GPU_DMABUF_SCANOUT2 = 12,
};

/* Same layout as the vhost-user header: request, flags, size of the payload that follows. */
struct vgb_vhost_gpu_header {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
};
_Static_assert(sizeof(struct vgb_vhost_gpu_header) == 12, "vhost-user-gpu header");

#define VGB_VHOST_GPU_FLAG_REPLY (1u << 2)
#define VGB_VHOST_GPU_PROTOCOL_F_EDID 0
#define VGB_VHOST_GPU_PROTOCOL_F_DMABUF2 1

struct vgb_vhost_gpu_cursor_pos {
	uint32_t scanout_id, x, y;
} __attribute__((packed));

struct vgb_vhost_gpu_cursor_update {
	struct vgb_vhost_gpu_cursor_pos pos;
	uint32_t hot_x, hot_y;
	uint32_t data[64 * 64];
} __attribute__((packed));
_Static_assert(sizeof(struct vgb_vhost_gpu_cursor_update) == 20 + 16384, "cursor update");

struct vgb_vhost_gpu_scanout {
	uint32_t scanout_id, width, height;
} __attribute__((packed));

struct vgb_vhost_gpu_update {
	uint32_t scanout_id, x, y, width, height;
	/* followed by width * height * 4 bytes, x8r8g8b8, rows width * 4 apart */
} __attribute__((packed));
_Static_assert(sizeof(struct vgb_vhost_gpu_update) == 20, "update");

struct vgb_vhost_gpu_dmabuf_scanout {
	uint32_t scanout_id, x, y, width, height;
	uint32_t fd_width, fd_height, fd_stride, fd_flags;
	int32_t fd_drm_fourcc;
	uint64_t modifier; /* DMABUF_SCANOUT2 only */
} __attribute__((packed));
_Static_assert(sizeof(struct vgb_vhost_gpu_dmabuf_scanout) == 48, "dmabuf scanout2");

struct vgb_vhost_gpu_edid_request {
	uint32_t scanout_id;
} __attribute__((packed));

/* ---- the sink ---- */

#define VGB_QEMU_DISPLAY_MAX_QUEUED 256u
#define VGB_QEMU_DISPLAY_MAX_QUEUED_BYTES (64u << 20)

struct vgb_qemu_display_callbacks {
	/*
	 * Poll @fd for @events (POLLIN, POLLOUT of <poll.h>) from now on; 0: stop polling it, it is
	 * about to be closed, and @why says why (0: replaced or closed on request; -EPIPE: QEMU hung
	 * up; -EPROTO: QEMU broke the framing; -ENOBUFS: QEMU stopped reading and the queue filled;
	 * other -errno: a write failed). May be NULL.
	 */
	void (*watch)(void *data, int fd, uint32_t events, int why);
	/*
	 * The sink stopped waiting on QEMU (handshake done, a query answered, a dmabuf frame
	 * drawn, or the socket gone): work held back for vgb_qemu_display_is_busy() may go on.
	 * May be NULL. Like every callback here it may run inside any call into the sink
	 * (present included): do not re-enter the work it releases.
	 */
	void (*idle)(void *data);
	/*
	 * The answer to vgb_qemu_display_query(): @status 0 with QEMU's payload (@size bytes, a
	 * virtio-gpu response), or -errno (-EPIPE: the socket went first; -EPROTO: a malformed
	 * answer) with no payload. Called exactly once per accepted query.
	 */
	void (*reply)(void *data, uint32_t request, int status, const void *payload, size_t size);
};

struct vgb_qemu_display_counters {
	uint64_t msgs_sent;     /* messages written whole to QEMU */
	uint64_t update_bytes;  /* pixel bytes queued in UPDATE messages */
	uint64_t disconnects;   /* sockets closed because QEMU stopped reading or broke framing */
};

/*
 * Creates the sink with no socket yet (frames fail with -ENOTCONN until one is set). @cb is
 * copied; @data is passed to every callback. Returns 0 or -ENOMEM.
 */
int vgb_display_create_qemu(const struct vgb_qemu_display_callbacks *cb, void *data,
			    struct vgb_display **ret);

/*
 * Uses the connected vhost-user-gpu socket @fd from now on (closing the previous one) and
 * starts the handshake (GET_PROTOCOL_FEATURES). Takes ownership of @fd, on failure too.
 * Returns 0 or -errno. @d must come from vgb_display_create_qemu().
 */
int vgb_qemu_display_set_socket(struct vgb_display *d, int fd);

/* Closes the socket (no-op without one); outstanding waits end as the callbacks say. */
void vgb_qemu_display_close(struct vgb_display *d);

/* Whether a socket is set. */
bool vgb_qemu_display_is_connected(struct vgb_display *d);

/*
 * Whether the sink waits for QEMU (the handshake, a query's answer, a dmabuf frame): a backend
 * holds its control queue meanwhile, as QEMU's own backend does.
 */
bool vgb_qemu_display_is_busy(struct vgb_display *d);

/* Whether QEMU agreed to answer GET_EDID (protocol feature EDID). */
bool vgb_qemu_display_has_edid(struct vgb_display *d);

/*
 * Asks QEMU VGB_VHOST_GPU_GET_DISPLAY_INFO (@scanout ignored) or VGB_VHOST_GPU_GET_EDID; the
 * answer comes through the reply callback. Returns 0, -EBUSY (already waiting), -ENOTCONN,
 * -EINVAL (another request) or -errno; the callback is not called on failure.
 */
int vgb_qemu_display_query(struct vgb_display *d, uint32_t request, uint32_t scanout);

void vgb_qemu_display_get_counters(struct vgb_display *d, struct vgb_qemu_display_counters *ret);

#endif
