/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "virtqueue.h"

/*
 * The guest can rewrite any ring byte while we read it, so every shared field is read exactly
 * once (relaxed atomic loads), then validated from the local copy.
 */
static inline uint16_t load16(const void *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static inline uint32_t load32(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED);
}

static inline uint64_t load64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline void store16(void *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

static inline void store32(void *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELAXED);
}

void vgb_vq_ring_sizes(uint32_t num, size_t *ret_desc, size_t *ret_avail, size_t *ret_used)
{
	/* avail: flags, idx, ring[num], used_event; used: flags, idx, ring[num], avail_event */
	*ret_desc = (size_t)num * sizeof(struct vring_desc);
	*ret_avail = 4 + (size_t)num * 2 + 2;
	*ret_used = 4 + (size_t)num * sizeof(struct vring_used_elem) + 2;
}

int vgb_vq_setup(struct vgb_vq *vq, uint32_t num, void *desc, void *avail, void *used,
		 uint16_t base, vgb_vq_translate_fn translate, void *translate_data)
{
	if (num == 0 || num > VGB_VQ_MAX_SIZE || (num & (num - 1)) != 0)
		return -EINVAL;
	if (!desc || !avail || !used || !translate)
		return -EINVAL;
	/* virtio 1.x 2.7: descriptor table 16-byte, avail 2-byte, used 4-byte aligned */
	if (!VGB_IS_ALIGNED((uintptr_t)desc, 16) || !VGB_IS_ALIGNED((uintptr_t)avail, 2) ||
	    !VGB_IS_ALIGNED((uintptr_t)used, 4))
		return -EINVAL;

	bool event_idx = vq->event_idx, indirect = vq->indirect;
	struct vgb_vq_stats stats = vq->stats;
	*vq = (struct vgb_vq){
		.num = (uint16_t)num,
		.desc = desc,
		.avail = avail,
		.used = used,
		.last_avail_idx = base,
		.used_idx = load16(&((struct vring_used *)used)->idx),
		.event_idx = event_idx,
		.indirect = indirect,
		.translate = translate,
		.translate_data = translate_data,
		.stats = stats,
	};
	vq->signalled_used = vq->used_idx;
	return 0;
}

static inline uint32_t ring_num(const struct vgb_vq *vq)
{
	return vq->num;
}

static inline uint16_t *avail_ring(const struct vgb_vq *vq, uint32_t i)
{
	return (uint16_t *)((char *)vq->avail + 4 + 2 * (size_t)i);
}

static inline struct vring_used_elem *used_ring(const struct vgb_vq *vq, uint32_t i)
{
	return (struct vring_used_elem *)((char *)vq->used + 4 + 8 * (size_t)i);
}

static inline uint16_t *used_event(const struct vgb_vq *vq)
{
	return avail_ring(vq, ring_num(vq));
}

static inline uint16_t *avail_event(const struct vgb_vq *vq)
{
	return (uint16_t *)used_ring(vq, ring_num(vq));
}

bool vgb_vq_has_work(const struct vgb_vq *vq)
{
	if (!vq->desc || vq->broken)
		return false;
	return load16(&vq->avail->idx) != vq->last_avail_idx;
}

/* Builds the element while walking a chain; grows its iovec array up to VGB_VQ_MAX_SG. */
struct chain {
	struct iovec *iov;
	unsigned n, cap;
	unsigned n_out, n_in;
	size_t out_len, in_len;
};

static int chain_add(struct chain *c, void *base, size_t len, bool write)
{
	if (c->n >= VGB_VQ_MAX_SG)
		return -E2BIG;
	if (c->n == c->cap) {
		unsigned cap = c->cap ? c->cap * 2 : 8;
		if (cap > VGB_VQ_MAX_SG)
			cap = VGB_VQ_MAX_SG;
		struct iovec *iov = reallocarray(c->iov, cap, sizeof(*iov));
		if (!iov)
			return -ENOMEM;
		c->iov = iov;
		c->cap = cap;
	}
	c->iov[c->n++] = (struct iovec){ .iov_base = base, .iov_len = len };
	if (write) {
		c->n_in++;
		c->in_len += len;
	} else {
		c->n_out++;
		c->out_len += len;
	}
	return 0;
}

static bool overlaps(uintptr_t a, size_t alen, uintptr_t b, size_t blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * Whether a buffer the device writes covers the descriptor table or the avail ring: our own
 * response would rewrite the ring we read next.
 */
static bool writes_ring(const struct vgb_vq *vq, const void *p, size_t len)
{
	size_t ds, as, us;

	vgb_vq_ring_sizes(ring_num(vq), &ds, &as, &us);
	return overlaps((uintptr_t)p, len, (uintptr_t)vq->desc, ds) ||
	       overlaps((uintptr_t)p, len, (uintptr_t)vq->avail, as);
}

/* Maps one buffer, splitting it where the guest's memory windows end. */
static int map_buffer(struct vgb_vq *vq, struct chain *c, uint64_t addr, uint32_t len,
		      bool write)
{
	uint64_t end;

	if (len == 0)
		return -EINVAL;
	if (__builtin_add_overflow(addr, (uint64_t)len, &end))
		return -EINVAL;
	/* A readable buffer after a writable one breaks the out-then-in layout (2.7.4.2). */
	if (!write && c->n_in > 0)
		return -EINVAL;

	while (addr < end) {
		uint64_t l = end - addr;
		void *p = vq->translate(vq->translate_data, addr, &l);
		if (!p || l == 0 || l > end - addr)
			return -EINVAL;
		if (write && writes_ring(vq, p, (size_t)l))
			return -EINVAL;
		int r = chain_add(c, p, (size_t)l, write);
		if (r < 0)
			return r;
		addr += l;
	}
	return 0;
}

static int walk_chain(struct vgb_vq *vq, uint16_t head, struct chain *c)
{
	const struct vring_desc *table = vq->desc;
	uint32_t table_size = ring_num(vq);
	uint32_t idx = head, visited = 0;
	bool in_indirect = false;

	for (;;) {
		/* A chain visits each descriptor of its table at most once: anything longer loops. */
		if (visited++ >= table_size)
			return -ELOOP;

		const struct vring_desc *d = &table[idx];
		uint64_t addr = load64(&d->addr);
		uint32_t len = load32(&d->len);
		uint16_t flags = load16(&d->flags);
		uint16_t next = load16(&d->next);

		if (flags & VRING_DESC_F_INDIRECT) {
			if (!vq->indirect || in_indirect || (flags & VRING_DESC_F_NEXT))
				return -EINVAL;
			if (len == 0 || len % sizeof(struct vring_desc) != 0 ||
			    len / sizeof(struct vring_desc) > VGB_VQ_MAX_SIZE)
				return -EINVAL;
			if (!VGB_IS_ALIGNED(addr, 16))
				return -EINVAL;
			uint64_t l = len;
			void *p = vq->translate(vq->translate_data, addr, &l);
			if (!p || l != len) /* the table must sit in one window */
				return -EINVAL;
			table = p;
			table_size = len / sizeof(struct vring_desc);
			idx = 0;
			visited = 0;
			in_indirect = true;
			continue;
		}

		int r = map_buffer(vq, c, addr, len, flags & VRING_DESC_F_WRITE);
		if (r < 0)
			return r;

		if (!(flags & VRING_DESC_F_NEXT))
			return 0;
		if (next >= table_size)
			return -EINVAL;
		idx = next;
	}
}

int vgb_vq_pop(struct vgb_vq *vq, struct vgb_vq_elem **ret_elem)
{
	if (vq->broken)
		return -EIO;
	if (!vq->desc)
		return 0;

	uint32_t num = ring_num(vq);
	uint16_t avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(avail_idx - vq->last_avail_idx);

	if (pending == 0 && vq->event_idx) {
		/* Ask for a kick at the next buffer, then look again (the guest may have raced). */
		store16(avail_event(vq), vq->last_avail_idx);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
		pending = (uint16_t)(avail_idx - vq->last_avail_idx);
	}
	if (pending == 0)
		return 0;
	if (pending > num) {
		vq->broken = true;
		vgb_log_ratelimited(VGB_LOG_WARN,
				    "virtqueue: avail index %u is %u ahead of %u (ring of %u): queue broken",
				    avail_idx, pending, vq->last_avail_idx, num);
		return -EIO;
	}

	uint16_t head = load16(avail_ring(vq, vq->last_avail_idx % num));
	vq->last_avail_idx++;
	if (vq->event_idx)
		store16(avail_event(vq), vq->last_avail_idx);

	if (head >= num) {
		/* Not a descriptor: nothing we could return to the guest. */
		vq->stats.bad_chains++;
		vgb_log_ratelimited(VGB_LOG_WARN, "virtqueue: head %u out of a ring of %u", head,
				    num);
		return -EINVAL;
	}

	struct chain c = { 0 };
	int r = walk_chain(vq, head, &c);
	if (r < 0) {
		free(c.iov);
		if (r == -ENOMEM)
			return r; /* the chain was fine: keep it for later */
		vq->stats.bad_chains++;
		vgb_log_ratelimited(VGB_LOG_WARN, "virtqueue: chain at head %u rejected: %s", head,
				    strerror(-r));
		/* Give the buffers back, untouched, so the guest does not wait on them forever. */
		struct vgb_vq_elem bad = { .head = head };
		vq->inflight++;
		vgb_vq_push(vq, &bad, 0);
		return -EINVAL;
	}

	struct vgb_vq_elem *elem = malloc(sizeof(*elem) + (size_t)c.n * sizeof(struct iovec));
	if (!elem) {
		free(c.iov);
		vq->last_avail_idx--;
		return -ENOMEM;
	}
	elem->head = head;
	elem->n_out = c.n_out;
	elem->n_in = c.n_in;
	elem->out_len = c.out_len;
	elem->in_len = c.in_len;
	if (c.n)
		memcpy(elem->iov, c.iov, (size_t)c.n * sizeof(struct iovec));
	elem->out = elem->iov;
	elem->in = elem->iov + c.n_out;
	free(c.iov);

	vq->inflight++;
	vq->stats.popped++;
	*ret_elem = elem;
	return 1;
}

void vgb_vq_push(struct vgb_vq *vq, const struct vgb_vq_elem *elem, uint32_t written)
{
	if (!vq->desc)
		return;
	uint32_t num = ring_num(vq);
	struct vring_used_elem *u = used_ring(vq, vq->used_idx % num);

	store32(&u->id, elem->head);
	store32(&u->len, written);
	vq->used_idx++;
	__atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
	if (vq->inflight)
		vq->inflight--;
}

bool vgb_vq_should_notify(struct vgb_vq *vq)
{
	if (!vq->desc)
		return false;

	/* The used index store must be visible before we read the guest's suppression state. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_used_valid;
	bool notify;

	if (old == now && valid)
		return false;
	vq->signalled_used = now;
	vq->signalled_used_valid = true;

	if (!vq->event_idx) {
		notify = !(load16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
	} else if (!valid) {
		notify = true;
	} else {
		uint16_t event = load16(used_event(vq));
		/* vring_need_event(): did we pass used_event since the last notification? */
		notify = (uint16_t)(now - event - 1) < (uint16_t)(now - old);
	}
	if (notify)
		vq->stats.notified++;
	return notify;
}

size_t vgb_iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t l = VGB_MIN(iov[i].iov_len - offset, len - done);
		memcpy((char *)buf + done, (const char *)iov[i].iov_base + offset, l);
		done += l;
		offset = 0;
	}
	return done;
}

size_t vgb_iov_from_buf(const struct iovec *iov, unsigned n, size_t offset, const void *buf,
			size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t l = VGB_MIN(iov[i].iov_len - offset, len - done);
		memcpy((char *)iov[i].iov_base + offset, (const char *)buf + done, l);
		done += l;
		offset = 0;
	}
	return done;
}
