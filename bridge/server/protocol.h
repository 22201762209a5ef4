/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_PROTOCOL_H
#define VGB_BRIDGE_PROTOCOL_H

/*
 * The vgbridged wire protocol. docs/protocol.md is the contract; this header is its C form.
 *
 * AF_UNIX SOCK_SEQPACKET: one message per packet. Every message is a 16-byte header followed by
 * `length` payload bytes. Every field is little-endian; every struct here has fixed-width fields,
 * explicit padding, and must-be-zero reserved fields, and its size and key offsets are asserted.
 * File descriptors ride in one SCM_RIGHTS control message; the payload states how many.
 *
 * Requests have flags == 0. The reply to a request carries the request's type and id, flags
 * VGB_MSG_FLAG_REPLY, and a payload that starts with struct vgb_msg_reply (result 0 or -errno,
 * number of fds attached) followed, on success, by the type's reply body.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The wire is little-endian and these structs are the wire: we only build on LE hosts. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "vgbridge wire structs assume LE");

#define VGB_PROTO_VERSION 1u
/* Largest packet (header + payload) either side sends. */
#define VGB_PROTO_MAX_MSG (1u << 20)
/* Most fds one message may carry; a packet with more is cut by the kernel (MSG_CTRUNC). */
#define VGB_PROTO_MAX_FDS 4u
/* Longest path or spec in ADD_VFIO_DEVICE. */
#define VGB_PROTO_MAX_PATH 255u

enum vgb_msg_type {
	VGB_MSG_HELLO = 1,
	VGB_MSG_ADD_RAM = 2,
	VGB_MSG_ADD_VFIO_DEVICE = 3,
	VGB_MSG_MAP_VFIO_WINDOW = 4,
	VGB_MSG_REMOVE_WINDOW = 5,
	VGB_MSG_REMOVE_DEVICE = 6,
	VGB_MSG_VIRTIO_GPU_CMD = 7,
	VGB_MSG_EXPORT_BLOB = 8,
	VGB_MSG_STATS = 9,
	VGB_MSG_QUERY_DEVICE = 10,
	VGB_MSG_TYPE_MAX_ = VGB_MSG_QUERY_DEVICE,
};

#define VGB_MSG_FLAG_REPLY 0x0001u

struct vgb_msg_header {
	uint16_t type;   /* enum vgb_msg_type */
	uint16_t flags;  /* 0 in requests, VGB_MSG_FLAG_REPLY in replies */
	uint32_t length; /* payload bytes after this header */
	uint64_t id;     /* chosen by the client, echoed in the reply */
};
_Static_assert(sizeof(struct vgb_msg_header) == 16, "header size");
_Static_assert(offsetof(struct vgb_msg_header, length) == 4, "header.length");
_Static_assert(offsetof(struct vgb_msg_header, id) == 8, "header.id");

/* Start of every reply payload. */
struct vgb_msg_reply {
	int32_t result; /* 0 or -errno (Linux errno numbers) */
	uint32_t n_fds; /* fds attached to this reply */
};
_Static_assert(sizeof(struct vgb_msg_reply) == 8, "reply size");

/* HELLO: must be the first request. */
struct vgb_msg_hello {
	uint32_t version;  /* highest version the client speaks (>= 1) */
	uint32_t reserved; /* 0 */
	uint64_t features; /* features the client wants; none are defined yet: 0 */
};
_Static_assert(sizeof(struct vgb_msg_hello) == 16, "hello size");

struct vgb_msg_hello_reply {
	uint32_t version;       /* the version both speak: min(client, daemon) */
	uint32_t n_devices;     /* daemon devices already visible as ids 1..n_devices */
	uint64_t features;      /* features granted: requested & supported */
	uint32_t max_entries;   /* entries per blob */
	uint32_t max_resources; /* resources per client */
	uint64_t max_blob_size; /* bytes per blob */
	uint32_t client_id;     /* this connection's id in STATS */
	uint32_t max_windows;   /* windows per client */
};
_Static_assert(sizeof(struct vgb_msg_hello_reply) == 40, "hello reply size");
_Static_assert(offsetof(struct vgb_msg_hello_reply, max_blob_size) == 24, "hello.max_blob_size");

/* ADD_RAM: one fd (a memfd or any mmappable file); the window is gpa..gpa+size-1. */
struct vgb_msg_add_ram {
	uint32_t n_fds;  /* 1 */
	uint32_t flags;  /* 0 */
	uint64_t gpa;
	uint64_t size;
	uint64_t offset; /* in the fd */
};
_Static_assert(sizeof(struct vgb_msg_add_ram) == 32, "add_ram size");
_Static_assert(offsetof(struct vgb_msg_add_ram, offset) == 24, "add_ram.offset");

enum vgb_device_kind {
	VGB_DEVICE_FD = 0,      /* n_fds = 1: a VFIO device fd (the VMM's); path is a label */
	VGB_DEVICE_BDF = 1,     /* path "0000:00:03.0": the daemon opens it (legacy or cdev) */
	VGB_DEVICE_CDEV = 2,    /* path "/dev/vfio/devices/vfioN" */
	VGB_DEVICE_VIRTUAL = 3, /* path is a virtual device spec (docs/virtual-device.md) */
	VGB_DEVICE_VFIO_USER = 4,    /* path is a vfio-user server's socket (docs/vfio-user.md) */
	VGB_DEVICE_VFIO_USER_FD = 5, /* n_fds = 1: a socket connected to a vfio-user server */
};

/* ADD_VFIO_DEVICE: followed by path_len bytes of path (no NUL inside, none required at end). */
struct vgb_msg_add_device {
	uint32_t n_fds;    /* 1 for VGB_DEVICE_FD and VGB_DEVICE_VFIO_USER_FD, else 0 */
	uint32_t kind;     /* enum vgb_device_kind */
	uint32_t path_len; /* <= VGB_PROTO_MAX_PATH */
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_add_device) == 16, "add_device size");

struct vgb_msg_add_device_reply {
	uint32_t device_id;
	uint32_t caps;        /* VGB_VFIO_CAP_* */
	uint32_t num_regions;
	uint32_t reserved;
};
_Static_assert(sizeof(struct vgb_msg_add_device_reply) == 16, "add_device reply size");

/* MAP_VFIO_WINDOW: gpa..gpa+size-1 -> device's region at region_offset. */
struct vgb_msg_map_window {
	uint64_t gpa;
	uint64_t size;
	uint32_t device_id;
	uint32_t region_index;
	uint64_t region_offset;
};
_Static_assert(sizeof(struct vgb_msg_map_window) == 32, "map_window size");
_Static_assert(offsetof(struct vgb_msg_map_window, region_offset) == 24, "map.region_offset");

/* REMOVE_WINDOW: the window that starts at gpa. */
struct vgb_msg_remove_window {
	uint64_t gpa;
};
_Static_assert(sizeof(struct vgb_msg_remove_window) == 8, "remove_window size");

/* REMOVE_DEVICE */
struct vgb_msg_remove_device {
	uint32_t device_id;
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_remove_device) == 8, "remove_device size");

enum vgb_gpu_queue {
	VGB_GPU_QUEUE_CONTROL = 0,
	VGB_GPU_QUEUE_CURSOR = 1,
};

/* VIRTIO_GPU_CMD: followed by the command bytes (struct virtio_gpu_ctrl_hdr + body). The reply
 * body is the virtio-gpu response bytes. */
struct vgb_msg_gpu_cmd {
	uint32_t queue;    /* enum vgb_gpu_queue */
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_gpu_cmd) == 8, "gpu_cmd size");

/* EXPORT_BLOB: a dmabuf of a blob resource. A blob with only a CPU view answers -EOPNOTSUPP. */
struct vgb_msg_export_blob {
	uint32_t resource_id;
	uint32_t flags; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_export_blob) == 8, "export_blob size");

enum vgb_wire_strategy {
	VGB_WIRE_STRATEGY_NONE = 0,
	VGB_WIRE_STRATEGY_VFIO_DMABUF = 1,
	VGB_WIRE_STRATEGY_UDMABUF = 2,
	VGB_WIRE_STRATEGY_CPU = 3,
};

struct vgb_msg_export_blob_reply {
	uint32_t strategy;   /* enum vgb_wire_strategy: 1 or 2 (a dmabuf fd is attached) */
	uint32_t reserved;   /* 0 */
	uint64_t size;       /* blob bytes (the dmabuf's size) */
	/* The scanout layout when the blob is on a scanout, else all 0. */
	uint32_t width, height;
	uint32_t fourcc;     /* DRM_FORMAT_* */
	uint32_t stride;
	uint32_t offset;
	uint32_t reserved2;  /* 0 */
	uint64_t modifier;   /* DRM_FORMAT_MOD_LINEAR (0) */
};
_Static_assert(sizeof(struct vgb_msg_export_blob_reply) == 48, "export reply size");

/* STATS */
#define VGB_STATS_SELF_ONLY 0x1u
struct vgb_msg_stats {
	uint32_t flags;    /* VGB_STATS_SELF_ONLY: only the asking client's row */
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_stats) == 8, "stats size");

struct vgb_wire_stats_global {
	uint64_t uptime_ns;
	uint64_t clients_accepted;
	uint64_t clients_rejected;     /* wrong uid or over --max-clients */
	uint32_t clients_now;
	uint32_t display_path;         /* enum vgb_present_path of the last frame */
	char display_name[16];         /* sink name, NUL padded */
	uint64_t frames_presented;
	uint64_t frames_dropped;
	uint64_t frame_copies;         /* frames that needed a CPU copy */
	uint64_t bytes_copied;
	uint64_t dmabuf_failed;
	uint64_t latency_p50_ns;       /* RESOURCE_FLUSH -> presented, from the sink */
	uint64_t latency_p99_ns;
	uint32_t display_connected;
	uint32_t n_clients;            /* rows that follow */
	/* I/O page faults of cdev-opened devices (vfio/iommufd.c) */
	uint32_t fault_queues;         /* queues being read now */
	uint32_t reserved;             /* 0 */
	uint64_t fault_groups;         /* groups read and answered, since start */
	uint64_t fault_errors;         /* refused responses, malformed or short reads, oversized */
};
_Static_assert(sizeof(struct vgb_wire_stats_global) == 136, "stats global size");
_Static_assert(offsetof(struct vgb_wire_stats_global, fault_groups) == 120, "stats.fault_groups");

#define VGB_WIRE_STATS_COMMANDS 16u

struct vgb_wire_stats_client {
	uint32_t client_id;
	int32_t pid;
	uint32_t windows;
	uint32_t devices;              /* the client's own (not the daemon's) */
	uint32_t resources;            /* live resources, 2D and blob */
	uint32_t blobs_vfio_dmabuf;    /* live blobs by strategy */
	uint32_t blobs_udmabuf;
	uint32_t blobs_cpu;
	uint64_t requests;             /* protocol requests */
	uint64_t request_errors;       /* replies with result < 0 */
	uint64_t gpu_commands;
	uint64_t gpu_errors;           /* virtio-gpu ERR_* responses */
	uint64_t exports_vfio_dmabuf;  /* export plans made, by strategy, cumulative */
	uint64_t exports_udmabuf;
	uint64_t exports_cpu;
	uint64_t export_failures;      /* unexpected export failures */
	uint64_t blob_segments;        /* segments after merging, cumulative */
	uint64_t segments_merged;      /* segments merged away, cumulative */
	uint64_t blobs_invalidated;    /* by window removal */
	uint64_t flushes;
	uint64_t frames_presented;     /* frames handed to the display */
	uint64_t copies;               /* CPU copies made by the bridge (2D, unaligned blobs) */
	uint64_t bytes_copied;
	uint64_t fences_completed;
	uint64_t fences_timed_out;     /* completed at the deadline */
	uint64_t fences_pending;
	uint64_t fence_latency_max_ns; /* fenced command received -> reply sent */
	uint64_t fence_latency_sum_ns; /* over the replies counted in fences_replied */
	uint64_t fences_replied;
	uint64_t reserved;             /* 0 */
	/* Commands received by type: 0 GET_DISPLAY_INFO, 1 RESOURCE_CREATE_2D, 2 RESOURCE_UNREF,
	 * 3 SET_SCANOUT, 4 RESOURCE_FLUSH, 5 TRANSFER_TO_HOST_2D, 6 RESOURCE_ATTACH_BACKING,
	 * 7 RESOURCE_DETACH_BACKING, 8 RESOURCE_CREATE_BLOB, 9 SET_SCANOUT_BLOB, 10 UPDATE_CURSOR,
	 * 11 MOVE_CURSOR, 12 any other; 13..15 are 0. */
	uint64_t commands[VGB_WIRE_STATS_COMMANDS];
};
_Static_assert(sizeof(struct vgb_wire_stats_client) == 336, "stats client size (docs/protocol.md)");
_Static_assert(offsetof(struct vgb_wire_stats_client, requests) == 32, "stats.requests");
_Static_assert(offsetof(struct vgb_wire_stats_client, commands) == 208, "stats.commands");

/* QUERY_DEVICE */
#define VGB_QUERY_REGION_FD 0x1u
struct vgb_msg_query_device {
	uint32_t device_id;
	uint32_t region_index;
	uint32_t flags;    /* VGB_QUERY_REGION_FD: attach the memfd behind a virtual region */
	uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct vgb_msg_query_device) == 16, "query size");

struct vgb_msg_query_device_reply {
	uint32_t caps;        /* VGB_VFIO_CAP_* */
	uint32_t num_regions;
	uint32_t region_flags; /* VFIO_REGION_INFO_FLAG_* of region_index */
	uint32_t reserved;
	uint64_t region_size;
	char name[64];        /* NUL terminated */
};
_Static_assert(sizeof(struct vgb_msg_query_device_reply) == 88, "query reply size");

/* ---- encoding and decoding (bridge/server/protocol.c) ---- */

/* Name of a message type for logs ("HELLO"), or "unknown". */
const char *vgb_msg_type_name(uint32_t type);

/* A received (or to-be-sent) message: header, payload view, and fds. */
struct vgb_msg {
	struct vgb_msg_header hdr;
	const void *payload; /* hdr.length bytes; borrowed */
	int fds[VGB_PROTO_MAX_FDS];
	unsigned n_fds;
};

/* Closes every fd @msg holds and sets n_fds to 0. */
void vgb_msg_close_fds(struct vgb_msg *msg);

/*
 * Validates a packet of @len bytes at @buf and fills @ret's header and payload view (fds are
 * left alone). Returns 0, -EBADMSG when @len is shorter than a header or disagrees with the
 * header's length, -EMSGSIZE over VGB_PROTO_MAX_MSG.
 */
int vgb_msg_parse(const void *buf, size_t len, struct vgb_msg *ret);

/*
 * Validates a request's payload against its type, before anything is allocated: the fixed part
 * must be complete, reserved fields must be 0, the fd count stated in the payload must equal
 * @msg->n_fds. Returns 0, -EOPNOTSUPP for an unknown type, -EINVAL for a request with flags or
 * non-zero reserved fields, -EBADMSG for a truncated or overlong payload or an fd count that
 * does not match, -ENAMETOOLONG for a path over VGB_PROTO_MAX_PATH.
 */
int vgb_msg_check_request(const struct vgb_msg *msg);

/*
 * Encodes a packet: header (type, flags, id, length = @n1 + @n2) then @p1 then @p2 into @buf
 * of @size bytes. Returns the packet length, or -EMSGSIZE when it does not fit @size or
 * VGB_PROTO_MAX_MSG.
 */
ssize_t vgb_msg_encode(void *buf, size_t size, uint16_t type, uint16_t flags, uint64_t id,
		       const void *p1, size_t n1, const void *p2, size_t n2);

/*
 * Sends one packet (header, @p1, @p2) with @n_fds fds (borrowed) over @sock, using
 * MSG_NOSIGNAL and @sendflags (e.g. MSG_DONTWAIT). Returns 0 or -errno (-EAGAIN when it would
 * block, -EMSGSIZE when too large).
 */
int vgb_msg_send(int sock, uint16_t type, uint16_t flags, uint64_t id, const void *p1,
		 size_t n1, const void *p2, size_t n2, const int *fds, unsigned n_fds,
		 int sendflags);

/*
 * Receives one packet into @buf (@size bytes, >= VGB_PROTO_MAX_MSG) with MSG_CMSG_CLOEXEC.
 * Every received fd is stored in @ret->fds, and @ret->hdr / payload are parsed. Returns:
 *   > 0 packet length: a valid packet (the caller owns ret->fds);
 *   0: the peer closed;
 *   -EAGAIN: nothing to read (non-blocking socket);
 *   -EBADMSG / -EMSGSIZE: a malformed or oversized packet: its fds are already closed, and
 *     @ret->hdr holds what could be read of the header (zeroed when shorter than one) so the
 *     caller may reply; -EBADMSG also for MSG_CTRUNC (too many fds) and non-SCM_RIGHTS data;
 *   other -errno from recvmsg.
 */
ssize_t vgb_msg_recv(int sock, void *buf, size_t size, struct vgb_msg *ret);

#endif
