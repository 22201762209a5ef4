/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_VHOST_USER_PRIVATE_H
#define VGB_BRIDGE_VHOST_USER_PRIVATE_H

/*
 * What the files of the vhost-user-gpu backend share: the connection struct and the calls
 * between vhost-user.c (the dev and its loop), vhost-user-msg.c (transport and requests),
 * vhost-user-mem.c (guest memory) and vhost-user-ring.c (virtqueues and commands).
 * Single-threaded.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_gpu.h>

#include "gpu.h"
#include "memmap.h"
#include "vhost-user.h"
#include "virtqueue.h"

#define DEFAULT_MAX_PENDING 64u

/* Largest command we copy out of a ring: ATTACH_BACKING / CREATE_BLOB with 16384 entries. */
#define MAX_CMD_BYTES (64u + 16384u * 16u)


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

	/* QEMU's display socket (display/qemu.c): queries, and frames with qemu_display */
	struct vgb_display *qemu;
	int qemu_fd;                     /* registered in epoll_fd, or -1 */
	struct vgb_vq_elem *parked;      /* control command waiting for QEMU's answer */
	struct virtio_gpu_ctrl_hdr parked_hdr;

	struct pending *pending;
	unsigned n_pending;
	uint64_t next_cookie;
	uint8_t *cmd_buf;
	bool in_process;
	unsigned rerun; /* queues to look at again */

	struct vgb_vhost_stats stats;
};

/* A request as handle_message() sees it; its fds stay in @rx until taken. */
struct msg {
	uint32_t request, flags, size;
	const uint8_t *payload;
	struct rx *rx;
};

/* ---- vhost-user-msg.c ---- */

/* Forgets the current message: closes the fds nobody took, empties the buffer. */
void vgb_vhost_rx_reset(struct rx *rx);
/* Reads and handles the front end's requests. Returns 0, or -ECONNRESET / -EPROTO: drop the dev. */
int vgb_vhost_sock_dispatch(struct vgb_vhost_dev *dev);

/* ---- vhost-user-mem.c ---- */

void vgb_vhost_regions_unmap(struct vgb_vhost_dev *dev, struct region *regions, unsigned n);
int vgb_vhost_handle_set_mem_table(struct vgb_vhost_dev *dev, const struct msg *m);

/* ---- vhost-user-ring.c ---- */

/* Front-end virtual address (the rings' addresses) to our pointer over @len bytes, or NULL. */
void *vgb_vhost_qva_to_host(struct vgb_vhost_dev *dev, uint64_t qva, uint64_t len);
/* The virtqueue's translator: guest physical to our pointer, clamped to the region. */
void *vgb_vhost_gpa_translate(void *data, uint64_t gpa, uint64_t *inout_len);

void vgb_vhost_epoll_del(struct vgb_vhost_dev *dev, int fd);
int vgb_vhost_epoll_add(struct vgb_vhost_dev *dev, int fd, uint64_t tag);
/* Sets up ring @i from the stored addresses; it stays stopped when they do not map. */
int vgb_vhost_vring_setup(struct vgb_vhost_dev *dev, unsigned i);
/* Stops ring @i: its deferred commands are dropped, its fds closed, its base kept. */
void vgb_vhost_vring_stop(struct vgb_vhost_dev *dev, unsigned i);
void vgb_vhost_vrings_reset(struct vgb_vhost_dev *dev);
/* Takes commands from queue @q (re-entrant calls only mark the queue for another pass). */
void vgb_vhost_process_queue(struct vgb_vhost_dev *dev, unsigned q);
/* Answers every deferred and parked command now (their guest memory is about to go). */
void vgb_vhost_answer_all_pending(struct vgb_vhost_dev *dev);
/* Answers @elem (and frees nothing) with a bare header of @type, fence fields copied from @cmd. */
void vgb_vhost_respond_err(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
			   const struct virtio_gpu_ctrl_hdr *cmd, uint32_t type);
void vgb_vhost_respond(struct vgb_vhost_dev *dev, unsigned q, struct vgb_vq_elem *elem,
		       const void *resp, size_t len);

#endif
