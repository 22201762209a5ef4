/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_VIRTQUEUE_H
#define VGB_BRIDGE_VIRTQUEUE_H

/*
 * Split virtqueues (virtio 1.x, 2.7) as a device sees them, for the vhost-user backend.
 *
 * The rings and every buffer live in guest memory, which the guest may change at any moment:
 * each descriptor is copied out once and validated (index in range, address translatable,
 * length bounded, chain no longer than the ring or the indirect table, no loop) before use.
 * A malformed chain costs its head (it is returned to the guest with 0 bytes written) and an
 * -EINVAL; a malformed ring (avail index running more than the ring size ahead) marks the queue
 * broken until it is set up again. Nothing the guest writes can make these functions loop for
 * longer than O(ring size + indirect table size) per element, crash, or touch memory outside the
 * translated windows.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_ring.h>

/* Largest ring we accept (the spec's maximum is 32768; QEMU's queues are at most 1024). */
#define VGB_VQ_MAX_SIZE 32768u
/* Most buffers (descriptors after splitting at window edges) in one element. */
#define VGB_VQ_MAX_SG 1024u

/*
 * Translates guest-physical @gpa to a host pointer. Sets *@inout_len to how many bytes are
 * contiguous there (at most the value passed in). Returns NULL when @gpa is not mapped.
 */
typedef void *(*vgb_vq_translate_fn)(void *data, uint64_t gpa, uint64_t *inout_len);

struct vgb_vq_stats {
	uint64_t popped;      /* elements handed out */
	uint64_t bad_chains;  /* chains rejected (loop, range, length, flags) */
	uint64_t notified;    /* interrupts the guest asked for */
};

struct vgb_vq {
	/* Ring in host memory: set by vgb_vq_setup(). */
	uint16_t num;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;

	uint16_t last_avail_idx; /* next avail entry to read */
	uint16_t used_idx;       /* next used entry to write */
	uint16_t signalled_used;
	bool signalled_used_valid;
	bool event_idx;          /* VIRTIO_RING_F_EVENT_IDX negotiated */
	bool indirect;           /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	bool broken;
	unsigned inflight;       /* popped and not yet pushed */

	vgb_vq_translate_fn translate;
	void *translate_data;
	struct vgb_vq_stats stats;
};

/* A popped chain: driver-written (out) buffers first, then device-writable (in) buffers. */
struct vgb_vq_elem {
	uint16_t head;
	unsigned n_out, n_in;
	size_t out_len, in_len;  /* byte totals */
	struct iovec *out, *in;  /* into iov[] */
	struct iovec iov[];
};

/*
 * Sets up @vq for a ring of @num entries (a power of two, 1..VGB_VQ_MAX_SIZE) whose three parts
 * are at host addresses @desc, @avail, @used (already translated and checked to be mapped for
 * their whole size: vgb_vq_ring_sizes() gives the sizes). Starts at avail index @base.
 * Returns 0 or -EINVAL.
 */
int vgb_vq_setup(struct vgb_vq *vq, uint32_t num, void *desc, void *avail, void *used,
		 uint16_t base, vgb_vq_translate_fn translate, void *translate_data);

/* Bytes of the descriptor table, the avail ring and the used ring for @num entries. */
void vgb_vq_ring_sizes(uint32_t num, size_t *ret_desc, size_t *ret_avail, size_t *ret_used);

/* Whether the guest has made buffers available that we have not popped. */
bool vgb_vq_has_work(const struct vgb_vq *vq);

/*
 * Takes the next available chain.
 * Returns 1 and *@ret_elem (free() it after vgb_vq_push()), 0 when the ring is empty, -EINVAL
 * for a malformed chain (already returned to the guest; call again for the next one), -EIO
 * when the ring itself is malformed (the queue is now broken), -ENOMEM.
 */
int vgb_vq_pop(struct vgb_vq *vq, struct vgb_vq_elem **ret_elem);

/* Returns @elem's chain to the guest with @written bytes written into its in buffers. */
void vgb_vq_push(struct vgb_vq *vq, const struct vgb_vq_elem *elem, uint32_t written);

/*
 * Whether the guest wants an interrupt for what was pushed since the last call that answered
 * true (honours VRING_AVAIL_F_NO_INTERRUPT or, with EVENT_IDX, used_event).
 */
bool vgb_vq_should_notify(struct vgb_vq *vq);

/* Copies up to @len bytes at @offset of @iov[0..n) into @buf / from @buf. Returns the count. */
size_t vgb_iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len);
size_t vgb_iov_from_buf(const struct iovec *iov, unsigned n, size_t offset, const void *buf,
			size_t len);

#endif
