/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_VHOST_USER_H
#define VGB_BRIDGE_VHOST_USER_H

/*
 * The vhost-user-gpu backend: one struct vgb_vhost_dev per connected front end (QEMU's
 * vhost-user-gpu-pci). It speaks the vhost-user protocol (QEMU docs/interop/vhost-user.rst) on
 * the front end's socket and the vhost-user-gpu display protocol (vhost-user-gpu.rst) on the
 * socket QEMU hands over with VHOST_USER_GPU_SET_SOCKET.
 *
 * Guest RAM arrives as memfds in SET_MEM_TABLE. Each region is mapped once for the rings and
 * added as a RAM window to the connection's memory map (bridge/core/memmap.h), so the virtio-gpu
 * processor (bridge/core/gpu.h) translates this front end's guest addresses with the same code as
 * our own protocol's. The control and cursor queues are split virtqueues (bridge/vhost-user/virtqueue.h)
 * feeding vgb_gpu_process(); fenced commands complete when the display has taken the frame.
 *
 * Display: frames go to the display sink given in the options (the Wayland compositor in
 * vgbridged), or, with qemu_display, to QEMU's UI over the vhost-user-gpu socket: the QEMU
 * display sink (display/qemu.c, vgb/display-qemu.h) owns that socket either way. GET_EDID is
 * asked of QEMU when it offers it; GET_DISPLAY_INFO in qemu_display mode (else it is answered
 * from the sink's limits).
 *
 * Each dev has its own epoll fd holding its sockets and kick eventfds: the caller's loop polls
 * that fd and calls vgb_vhost_dev_dispatch(). Single-threaded.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vgb/display-qemu.h" /* the vhost-user-gpu wire */

struct vgb_display;
struct vgb_vhost_dev;

/* ---- wire: vhost-user (front end <-> backend) ---- */

enum vgb_vhost_user_request {
	VGB_VHOST_USER_GET_FEATURES = 1,
	VGB_VHOST_USER_SET_FEATURES = 2,
	VGB_VHOST_USER_SET_OWNER = 3,
	VGB_VHOST_USER_RESET_OWNER = 4,
	VGB_VHOST_USER_SET_MEM_TABLE = 5,
	VGB_VHOST_USER_SET_LOG_BASE = 6,
	VGB_VHOST_USER_SET_LOG_FD = 7,
	VGB_VHOST_USER_SET_VRING_NUM = 8,
	VGB_VHOST_USER_SET_VRING_ADDR = 9,
	VGB_VHOST_USER_SET_VRING_BASE = 10,
	VGB_VHOST_USER_GET_VRING_BASE = 11,
	VGB_VHOST_USER_SET_VRING_KICK = 12,
	VGB_VHOST_USER_SET_VRING_CALL = 13,
	VGB_VHOST_USER_SET_VRING_ERR = 14,
	VGB_VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VGB_VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VGB_VHOST_USER_GET_QUEUE_NUM = 17,
	VGB_VHOST_USER_SET_VRING_ENABLE = 18,
	VGB_VHOST_USER_GET_CONFIG = 24,
	VGB_VHOST_USER_SET_CONFIG = 25,
	VGB_VHOST_USER_GPU_SET_SOCKET = 33,
	VGB_VHOST_USER_RESET_DEVICE = 34,
};

#define VGB_VHOST_USER_VERSION 0x1u
#define VGB_VHOST_USER_VERSION_MASK 0x3u
#define VGB_VHOST_USER_FLAG_REPLY (1u << 2)
#define VGB_VHOST_USER_FLAG_NEED_REPLY (1u << 3)

/* Virtio feature bits of the device (GET_FEATURES). */
#define VGB_VHOST_F_PROTOCOL_FEATURES 30
/* Protocol feature bits (GET_PROTOCOL_FEATURES). */
#define VGB_VHOST_USER_PROTOCOL_F_MQ 0
#define VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VGB_VHOST_USER_PROTOCOL_F_CONFIG 9

#define VGB_VHOST_USER_MAX_REGIONS 8u  /* VHOST_MEMORY_BASELINE_NREGIONS */
#define VGB_VHOST_USER_MAX_FDS 8u
#define VGB_VHOST_USER_MAX_PAYLOAD 4096u /* larger than any request we accept */
#define VGB_VHOST_USER_MAX_CONFIG 256u
#define VGB_VHOST_USER_VRING_IDX_MASK 0xffu
#define VGB_VHOST_USER_VRING_NOFD (1u << 8)
#define VGB_VHOST_QUEUES 2u /* control, cursor */

struct vgb_vhost_user_header {
	uint32_t request;
	uint32_t flags;
	uint32_t size; /* of the payload that follows */
};
_Static_assert(sizeof(struct vgb_vhost_user_header) == 12, "vhost-user header");

struct vgb_vhost_user_vring_state {
	uint32_t index;
	uint32_t num;
};
_Static_assert(sizeof(struct vgb_vhost_user_vring_state) == 8, "vring state");

struct vgb_vhost_user_vring_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_user_addr;
	uint64_t used_user_addr;
	uint64_t avail_user_addr;
	uint64_t log_guest_addr;
};
_Static_assert(sizeof(struct vgb_vhost_user_vring_addr) == 40, "vring addr");

struct vgb_vhost_user_region {
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t mmap_offset;
};
_Static_assert(sizeof(struct vgb_vhost_user_region) == 32, "memory region");

struct vgb_vhost_user_memory {
	uint32_t nregions;
	uint32_t padding;
	struct vgb_vhost_user_region regions[VGB_VHOST_USER_MAX_REGIONS];
};
_Static_assert(sizeof(struct vgb_vhost_user_memory) == 8 + 8 * 32, "memory table");

struct vgb_vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t region[VGB_VHOST_USER_MAX_CONFIG];
};
_Static_assert(sizeof(struct vgb_vhost_user_config) == 12 + 256, "config");

/* ---- the backend ---- */

struct vgb_vhost_options {
	/*
	 * Where frames go when @qemu_display is false. Borrowed, may be NULL (flushes complete at
	 * once); must outlive the dev.
	 */
	struct vgb_display *display;
	bool qemu_display;      /* send frames to QEMU's UI over the GPU socket instead */
	uint32_t scanout_base;  /* guest scanout N is display scanout base + N */
	uint32_t display_width, display_height; /* GET_DISPLAY_INFO (default 1280x800) */
	uint32_t max_pending;   /* deferred (fenced) commands before the control queue waits;
				 * default 64 */
};

struct vgb_vhost_stats {
	uint64_t messages;        /* vhost-user requests handled */
	uint64_t bad_messages;    /* rejected (nacked or ignored) */
	uint64_t commands;        /* virtio-gpu commands taken from the rings */
	uint64_t deferred;        /* of which completed later (fences) */
	uint64_t bad_chains;      /* malformed descriptor chains */
	uint64_t interrupts;      /* call eventfd writes */
	uint64_t gpu_msgs_sent;   /* messages to QEMU's display */
	uint64_t update_bytes;    /* pixel bytes sent in UPDATE messages */
	uint32_t regions;         /* guest RAM regions mapped now */
	uint32_t pending;         /* deferred commands now */
	bool gpu_socket;          /* QEMU's display socket connected */
};

/* Writes the --print-capabilities JSON (docs/interop/vhost-user.json) to @f. */
void vgb_vhost_print_capabilities(FILE *f);

/*
 * Creates a backend on the connected vhost-user socket @fd (SOCK_STREAM). Takes ownership of
 * @fd on success only. Returns 0, -EINVAL or -errno.
 */
int vgb_vhost_dev_create(int fd, const struct vgb_vhost_options *opts, struct vgb_vhost_dev **ret);

/* Unmaps guest memory and closes every fd of the connection. Accepts NULL. */
void vgb_vhost_dev_destroy(struct vgb_vhost_dev *dev);

/* The dev's epoll fd: when readable, call vgb_vhost_dev_dispatch(). */
int vgb_vhost_dev_get_fd(const struct vgb_vhost_dev *dev);

/*
 * Handles whatever is ready (messages, kicks, QEMU's display replies) without blocking.
 * Returns 0, -ECONNRESET when the front end hung up, or -EPROTO when it broke the protocol
 * framing: in both cases destroy the dev.
 */
int vgb_vhost_dev_dispatch(struct vgb_vhost_dev *dev);

/* Milliseconds until a fence deadline of this dev (0: now), -1 when none. */
int vgb_vhost_dev_next_timeout_ms(struct vgb_vhost_dev *dev);
/* Completes fences whose deadline passed. */
void vgb_vhost_dev_dispatch_timeouts(struct vgb_vhost_dev *dev);

void vgb_vhost_dev_get_stats(struct vgb_vhost_dev *dev, struct vgb_vhost_stats *ret);

/* The dev's virtio-gpu processor (for its stats), NULL before the first use. */
struct vgb_gpu *vgb_vhost_dev_get_gpu(struct vgb_vhost_dev *dev);

/*
 * The daemon entry point: `vgbridged --vhost-user ...` and vgbridge-vhost-user-gpu. Parses
 * QEMU's backend conventions (--socket-path, --fd, --print-capabilities) and ours, runs until
 * SIGTERM/SIGINT. Returns the process exit status.
 */
int vgb_vhost_user_main(int argc, char **argv);

#endif
