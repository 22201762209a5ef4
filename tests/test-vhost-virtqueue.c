/* SPDX-License-Identifier: MIT */
/*
 * Split-virtqueue parsing on crafted rings: what a malicious or broken guest can put in the
 * descriptor table and the avail ring. Each bad case must give an error, return the head to the
 * guest when it names one, and leave the queue usable (or broken, for a bad avail index) without
 * hanging: an alarm turns a hang into a failure.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "virtqueue.h"

#define QSZ 8u
#define MEM_GPA 0x100000ull
#define MEM_SIZE (1u << 20)
/* A second window right after the first, backed by separate host memory. */
#define MEM2_GPA (MEM_GPA + MEM_SIZE)
#define MEM2_SIZE (64u << 10)

/* Ring parts at fixed guest addresses inside window 1. */
#define DESC_GPA (MEM_GPA + 0x0)
#define AVAIL_GPA (MEM_GPA + 0x1000)
#define USED_GPA (MEM_GPA + 0x2000)
#define BUF_GPA (MEM_GPA + 0x10000)
#define IND_GPA (MEM_GPA + 0x8000)

static uint8_t *mem, *mem2;
static struct vgb_vq vq;
static uint16_t avail_idx;

static void *translate(void *data, uint64_t gpa, uint64_t *inout_len)
{
	if (gpa >= MEM_GPA && gpa < MEM_GPA + MEM_SIZE) {
		uint64_t left = MEM_GPA + MEM_SIZE - gpa;
		if (*inout_len > left)
			*inout_len = left;
		return mem + (gpa - MEM_GPA);
	}
	if (gpa >= MEM2_GPA && gpa < MEM2_GPA + MEM2_SIZE) {
		uint64_t left = MEM2_GPA + MEM2_SIZE - gpa;
		if (*inout_len > left)
			*inout_len = left;
		return mem2 + (gpa - MEM2_GPA);
	}
	return NULL;
}

static struct vring_desc *desc_at(uint64_t gpa, unsigned i)
{
	return (struct vring_desc *)(mem + (gpa - MEM_GPA)) + i;
}

static struct vring_avail *avail(void)
{
	return (struct vring_avail *)(mem + (AVAIL_GPA - MEM_GPA));
}

static struct vring_used *used(void)
{
	return (struct vring_used *)(mem + (USED_GPA - MEM_GPA));
}

static void set_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc *d = desc_at(table, i);
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static void reset_ring(bool indirect, bool event_idx)
{
	memset(mem, 0, 0x10000);
	avail_idx = 0;
	memset(&vq, 0, sizeof(vq));
	vq.indirect = indirect;
	vq.event_idx = event_idx;
	int r = vgb_vq_setup(&vq, QSZ, desc_at(DESC_GPA, 0), avail(), used(), 0, translate, NULL);
	if (r < 0)
		tap_bail("setup: %d", r);
}

static void make_avail(uint16_t head)
{
	avail()->ring[avail_idx % QSZ] = head;
	avail_idx++;
	__atomic_store_n(&avail()->idx, avail_idx, __ATOMIC_RELEASE);
}

static int pop(struct vgb_vq_elem **e)
{
	*e = NULL;
	return vgb_vq_pop(&vq, e);
}

/* A rejected chain must come back to the guest as used, with nothing written. */
static void check_returned(uint16_t head, uint16_t want_used_idx, const char *what)
{
	struct vring_used *u = used();
	tap_is_uint(u->idx, want_used_idx, "%s: head returned on the used ring", what);
	tap_is_uint(u->ring[(want_used_idx - 1) % QSZ].id, head, "%s: used id is the head", what);
	tap_is_uint(u->ring[(want_used_idx - 1) % QSZ].len, 0, "%s: 0 bytes written", what);
}

static void test_good_chain(void)
{
	struct vgb_vq_elem *e;

	reset_ring(false, false);
	set_desc(DESC_GPA, 0, BUF_GPA, 24, VRING_DESC_F_NEXT, 3);
	set_desc(DESC_GPA, 3, BUF_GPA + 100, 40, VRING_DESC_F_NEXT, 5);
	set_desc(DESC_GPA, 5, BUF_GPA + 200, 24, VRING_DESC_F_WRITE, 0);
	memcpy(mem + (BUF_GPA - MEM_GPA), "0123456789abcdefghijklmn", 24);
	make_avail(0);

	tap_is_int(pop(&e), 1, "good chain pops");
	if (!e)
		return;
	tap_is_uint(e->head, 0, "head");
	tap_is_uint(e->n_out, 2, "two out buffers");
	tap_is_uint(e->n_in, 1, "one in buffer");
	tap_is_uint(e->out_len, 64, "out bytes");
	tap_is_uint(e->in_len, 24, "in bytes");
	char buf[24];
	tap_is_uint(vgb_iov_to_buf(e->out, e->n_out, 0, buf, sizeof(buf)), 24, "iov_to_buf count");
	tap_is_mem(buf, "0123456789abcdefghijklmn", 24, "out bytes read back");
	tap_is_uint(vgb_iov_from_buf(e->in, e->n_in, 0, "reply", 5), 5, "iov_from_buf count");
	tap_is_mem(mem + (BUF_GPA + 200 - MEM_GPA), "reply", 5, "reply written in guest memory");
	tap_is_uint(vq.inflight, 1, "one in flight");
	vgb_vq_push(&vq, e, 5);
	free(e);
	tap_is_uint(used()->idx, 1, "used idx advanced");
	tap_is_uint(used()->ring[0].len, 5, "used len");
	tap_is_uint(vq.inflight, 0, "none in flight");
	tap_is_int(pop(&e), 0, "ring empty afterwards");
	tap_ok(!vgb_vq_has_work(&vq), "no work left");
}

/* Table-driven bad chains in the direct table; head is descriptor 0 unless given. */
struct bad_case {
	const char *name;
	void (*build)(void);
	uint16_t head;
	int want;
};

static void build_loop(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
}

static void build_self_loop(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
}

static void build_longer_than_ring(void)
{
	/* Visits all QSZ descriptors, then asks for one more: the chain is longer than the ring. */
	for (unsigned i = 0; i < QSZ; i++)
		set_desc(DESC_GPA, i, BUF_GPA + i * 16, 16, VRING_DESC_F_NEXT, (i + 1) % QSZ);
}

static void build_next_out_of_ring(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, QSZ);
}

static void build_addr_out_of_range(void)
{
	set_desc(DESC_GPA, 0, 0x40000000ull, 16, 0, 0);
}

static void build_addr_partly_out(void)
{
	/* Starts in window 2, runs past its end. */
	set_desc(DESC_GPA, 0, MEM2_GPA + MEM2_SIZE - 8, 16, 0, 0);
}

static void build_addr_wraps(void)
{
	set_desc(DESC_GPA, 0, UINT64_MAX - 4, 16, 0, 0);
}

static void build_zero_len(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, BUF_GPA, 0, VRING_DESC_F_WRITE, 0);
}

static void build_read_after_write(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, BUF_GPA, 16, 0, 0);
}

static void build_indirect_not_negotiated(void)
{
	set_desc(IND_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(DESC_GPA, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
}

static void build_write_over_avail(void)
{
	/* The device's response would land on the avail ring it reads next. */
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, AVAIL_GPA, 16, VRING_DESC_F_WRITE, 0);
}

static void build_write_over_desc(void)
{
	set_desc(DESC_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
	set_desc(DESC_GPA, 1, DESC_GPA + 32, 64, VRING_DESC_F_WRITE, 0);
}

static const struct bad_case bad_cases[] = {
	{ "descriptor loop 0->1->0", build_loop, 0, -EINVAL },
	{ "descriptor pointing at itself", build_self_loop, 0, -EINVAL },
	{ "chain longer than the ring", build_longer_than_ring, 0, -EINVAL },
	{ "next index outside the ring", build_next_out_of_ring, 0, -EINVAL },
	{ "address outside guest memory", build_addr_out_of_range, 0, -EINVAL },
	{ "buffer running past a window's end", build_addr_partly_out, 0, -EINVAL },
	{ "address + length wraps", build_addr_wraps, 0, -EINVAL },
	{ "zero-length buffer", build_zero_len, 0, -EINVAL },
	{ "readable buffer after a writable one", build_read_after_write, 0, -EINVAL },
	{ "indirect without the feature", build_indirect_not_negotiated, 0, -EINVAL },
	{ "writable buffer over the avail ring", build_write_over_avail, 0, -EINVAL },
	{ "writable buffer over the descriptor table", build_write_over_desc, 0, -EINVAL },
};

static void test_bad_chains(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct vgb_vq_elem *e;

		reset_ring(false, false);
		c->build();
		make_avail(c->head);

		tap_is_int(pop(&e), c->want, "%s: rejected", c->name);
		tap_ok(e == NULL, "%s: no element", c->name);
		check_returned(c->head, 1, c->name);
		tap_is_uint(vq.stats.bad_chains, 1, "%s: counted", c->name);
		tap_is_uint(vq.inflight, 0, "%s: nothing in flight", c->name);
		/* A good chain after the bad one must still be served. */
		set_desc(DESC_GPA, 6, BUF_GPA + 0x800, 8, 0, 0);
		make_avail(6);
		tap_is_int(pop(&e), 1, "%s: next chain still served", c->name);
		if (e) {
			tap_is_uint(e->head, 6, "%s: next head", c->name);
			vgb_vq_push(&vq, e, 0);
			free(e);
		}
	}
}

static void test_head_out_of_ring(void)
{
	struct vgb_vq_elem *e;

	reset_ring(false, false);
	make_avail(QSZ + 3);
	tap_is_int(pop(&e), -EINVAL, "head outside the ring: rejected");
	tap_is_uint(used()->idx, 0, "head outside the ring: not echoed back");
	tap_is_int(pop(&e), 0, "head outside the ring: consumed");
}

static void test_avail_idx_runaway(void)
{
	struct vgb_vq_elem *e;

	reset_ring(false, false);
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	avail()->idx = QSZ + 1;
	tap_is_int(pop(&e), -EIO, "avail idx more than a ring ahead: ring error");
	tap_ok(vq.broken, "queue marked broken");
	tap_is_int(pop(&e), -EIO, "broken queue stays broken");
	tap_ok(!vgb_vq_has_work(&vq), "broken queue reports no work");
	tap_is_uint(used()->idx, 0, "nothing pushed");

	/* Set up again: usable. */
	reset_ring(false, false);
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	make_avail(0);
	tap_is_int(pop(&e), 1, "re-setup queue works");
	free(e);
}

static void test_split_across_windows(void)
{
	struct vgb_vq_elem *e;

	reset_ring(false, false);
	/* 32 bytes: 16 at the end of window 1, 16 at the start of window 2. */
	set_desc(DESC_GPA, 0, MEM2_GPA - 16, 32, 0, 0);
	make_avail(0);
	tap_is_int(pop(&e), 1, "buffer across two windows pops");
	if (!e)
		return;
	tap_is_uint(e->n_out, 2, "split into two iovecs");
	tap_ok(e->out[0].iov_base == mem + MEM_SIZE - 16 && e->out[0].iov_len == 16,
	       "first piece at the end of window 1");
	tap_ok(e->out[1].iov_base == mem2 && e->out[1].iov_len == 16,
	       "second piece at the start of window 2");
	free(e);
}

static void test_indirect(void)
{
	struct vgb_vq_elem *e;

	reset_ring(true, false);
	set_desc(IND_GPA, 0, BUF_GPA, 24, VRING_DESC_F_NEXT, 2);
	set_desc(IND_GPA, 2, BUF_GPA + 64, 24, VRING_DESC_F_NEXT, 1);
	set_desc(IND_GPA, 1, BUF_GPA + 128, 100, VRING_DESC_F_WRITE, 0);
	set_desc(DESC_GPA, 4, IND_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
	make_avail(4);
	tap_is_int(pop(&e), 1, "indirect chain pops");
	if (e) {
		tap_is_uint(e->head, 4, "indirect: head");
		tap_is_uint(e->n_out, 2, "indirect: two out");
		tap_is_uint(e->n_in, 1, "indirect: one in");
		tap_is_uint(e->in_len, 100, "indirect: in bytes");
		vgb_vq_push(&vq, e, 0);
		free(e);
	}

	struct {
		const char *name;
		uint64_t addr;
		uint32_t len;
		uint16_t flags;
		void (*fill)(void);
	} cases[] = {
		{ "indirect table length not a multiple of 16", IND_GPA, 20, VRING_DESC_F_INDIRECT, NULL },
		{ "indirect table of length 0", IND_GPA, 0, VRING_DESC_F_INDIRECT, NULL },
		{ "indirect with NEXT", IND_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, NULL },
		{ "indirect table outside memory", 0x7000000000ull, 64, VRING_DESC_F_INDIRECT, NULL },
		{ "indirect table misaligned", IND_GPA + 8, 32, VRING_DESC_F_INDIRECT, NULL },
		{ "indirect table larger than the maximum ring", IND_GPA, (VGB_VQ_MAX_SIZE + 1) * 16,
		  VRING_DESC_F_INDIRECT, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reset_ring(true, false);
		set_desc(IND_GPA, 0, BUF_GPA, 16, 0, 0);
		set_desc(DESC_GPA, 1, cases[i].addr, cases[i].len, cases[i].flags, 2);
		set_desc(DESC_GPA, 2, BUF_GPA, 16, 0, 0);
		make_avail(1);
		tap_is_int(pop(&e), -EINVAL, "%s: rejected", cases[i].name);
		check_returned(1, 1, cases[i].name);
	}

	/* A loop inside the indirect table. */
	reset_ring(true, false);
	for (unsigned i = 0; i < 4; i++)
		set_desc(IND_GPA, i, BUF_GPA, 16, VRING_DESC_F_NEXT, (i + 1) % 4);
	set_desc(DESC_GPA, 0, IND_GPA, 4 * 16, VRING_DESC_F_INDIRECT, 0);
	make_avail(0);
	tap_is_int(pop(&e), -EINVAL, "loop inside an indirect table: rejected");

	/* Nested indirect. */
	reset_ring(true, false);
	set_desc(IND_GPA, 0, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	set_desc(IND_GPA + 0x100, 0, BUF_GPA, 16, 0, 0);
	set_desc(DESC_GPA, 0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	make_avail(0);
	tap_is_int(pop(&e), -EINVAL, "indirect inside an indirect table: rejected");

	/* next outside the indirect table (but inside the ring size). */
	reset_ring(true, false);
	set_desc(IND_GPA, 0, BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
	set_desc(DESC_GPA, 0, IND_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
	make_avail(0);
	tap_is_int(pop(&e), -EINVAL, "next outside the indirect table: rejected");

	/* More buffers than an element may hold: a 2048-entry table of 1-byte buffers. */
	reset_ring(true, false);
	uint64_t big = MEM_GPA + 0x20000;
	for (unsigned i = 0; i < 2048; i++)
		set_desc(big, i, BUF_GPA, 1, i + 1 < 2048 ? VRING_DESC_F_NEXT : 0, i + 1);
	set_desc(DESC_GPA, 0, big, 2048 * 16, VRING_DESC_F_INDIRECT, 0);
	make_avail(0);
	tap_is_int(pop(&e), -EINVAL, "more than %u buffers in one chain: rejected", VGB_VQ_MAX_SG);
}

static void test_setup_validation(void)
{
	struct vgb_vq q = { 0 };
	void *d = desc_at(DESC_GPA, 0);

	tap_is_int(vgb_vq_setup(&q, 0, d, avail(), used(), 0, translate, NULL), -EINVAL,
		   "ring size 0");
	tap_is_int(vgb_vq_setup(&q, 6, d, avail(), used(), 0, translate, NULL), -EINVAL,
		   "ring size not a power of two");
	tap_is_int(vgb_vq_setup(&q, 65536, d, avail(), used(), 0, translate, NULL), -EINVAL,
		   "ring size above 32768");
	tap_is_int(vgb_vq_setup(&q, 8, (char *)d + 8, avail(), used(), 0, translate, NULL),
		   -EINVAL, "descriptor table misaligned");
	tap_is_int(vgb_vq_setup(&q, 8, d, (char *)avail() + 1, used(), 0, translate, NULL),
		   -EINVAL, "avail ring misaligned");
	tap_is_int(vgb_vq_setup(&q, 8, d, avail(), (char *)used() + 2, 0, translate, NULL),
		   -EINVAL, "used ring misaligned");
	tap_is_int(vgb_vq_setup(&q, 32768, d, avail(), used(), 0, translate, NULL), 0,
		   "ring size 32768 accepted");

	size_t ds, as, us;
	vgb_vq_ring_sizes(256, &ds, &as, &us);
	tap_ok(ds == 4096 && as == 518 && us == 2054, "ring sizes for 256 entries: %zu %zu %zu",
	       ds, as, us);
}

static void test_base_and_wrap(void)
{
	struct vgb_vq_elem *e;

	/* Start near the 16-bit wrap, as after GET_VRING_BASE / SET_VRING_BASE. */
	reset_ring(false, false);
	vgb_vq_setup(&vq, QSZ, desc_at(DESC_GPA, 0), avail(), used(), 65534, translate, NULL);
	avail_idx = 65534;
	avail()->idx = 65534;
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	int n = 0;
	for (int i = 0; i < 4; i++)
		make_avail(0);
	while (pop(&e) == 1) {
		vgb_vq_push(&vq, e, 0);
		free(e);
		n++;
	}
	tap_is_int(n, 4, "four chains across the avail index wrap");
	tap_is_uint(vq.last_avail_idx, 2, "last avail index wrapped");
}

static void test_notify(void)
{
	struct vgb_vq_elem *e;

	reset_ring(false, false);
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	make_avail(0);
	pop(&e);
	vgb_vq_push(&vq, e, 0);
	free(e);
	avail()->flags = VRING_AVAIL_F_NO_INTERRUPT;
	tap_ok(!vgb_vq_should_notify(&vq), "NO_INTERRUPT suppresses the notification");
	avail()->flags = 0;
	make_avail(0);
	pop(&e);
	vgb_vq_push(&vq, e, 0);
	free(e);
	tap_ok(vgb_vq_should_notify(&vq), "notification without NO_INTERRUPT");
	tap_ok(!vgb_vq_should_notify(&vq), "no second notification for the same push");

	/* EVENT_IDX: the guest asks to be told once used passes used_event. */
	reset_ring(false, true);
	set_desc(DESC_GPA, 0, BUF_GPA, 16, 0, 0);
	uint16_t *used_event = &avail()->ring[QSZ];
	*used_event = 1; /* interrupt when used idx goes past 1, i.e. after the 2nd push */
	make_avail(0);
	pop(&e);
	uint16_t *avail_event = (uint16_t *)&used()->ring[QSZ];
	tap_is_uint(*avail_event, 1, "EVENT_IDX: avail_event published");
	vgb_vq_push(&vq, e, 0);
	free(e);
	tap_ok(vgb_vq_should_notify(&vq), "EVENT_IDX: first notification always sent");
	make_avail(0);
	pop(&e);
	vgb_vq_push(&vq, e, 0);
	free(e);
	tap_ok(vgb_vq_should_notify(&vq), "EVENT_IDX: used passed used_event: notify");
	make_avail(0);
	pop(&e);
	vgb_vq_push(&vq, e, 0);
	free(e);
	tap_ok(!vgb_vq_should_notify(&vq), "EVENT_IDX: used_event not passed: no notify");
}

/* Random rings: whatever the bytes, pop terminates within the ring bound and never crashes. */
static void test_random_rings(void)
{
	unsigned seed = 12345, bad = 0, good = 0, broken = 0;
	bool bounded = true;

	for (int round = 0; round < 3000; round++) {
		reset_ring(round & 1, round & 2);
		for (unsigned i = 0; i < QSZ; i++) {
			uint64_t r = (uint64_t)rand_r(&seed) << 32 | (unsigned)rand_r(&seed);
			uint64_t addr = (r & 1) ? MEM_GPA + (r >> 8) % (MEM_SIZE + MEM2_SIZE + 64)
						: r;
			set_desc(DESC_GPA, i, addr, rand_r(&seed) % 3 ? rand_r(&seed) % 512 : 0,
				 rand_r(&seed) & 7, rand_r(&seed) % (QSZ + 2));
			set_desc(IND_GPA, i, addr ^ 0x40, rand_r(&seed) % 256,
				 rand_r(&seed) & 7, rand_r(&seed) % (QSZ + 2));
			avail()->ring[i] = rand_r(&seed) % (QSZ + 1);
		}
		avail()->idx = rand_r(&seed) % (QSZ + 3);
		unsigned pops = 0;
		for (;;) {
			struct vgb_vq_elem *e;
			int r = pop(&e);
			if (r == 0 || r == -EIO) {
				broken += r == -EIO;
				break;
			}
			if (++pops > QSZ + 2) {
				bounded = false;
				break;
			}
			if (r == 1) {
				good++;
				vgb_vq_push(&vq, e, 0);
				free(e);
			} else {
				bad++;
			}
		}
	}
	tap_ok(bounded, "random rings: every round ended within the ring bound");
	tap_diag("random rings: %u good, %u bad chains, %u broken rings", good, bad, broken);
	tap_ok(good > 0 && bad > 0 && broken > 0, "random rings exercised good, bad and broken");
}

int main(void)
{
	alarm(60);
	mem = aligned_alloc(4096, MEM_SIZE);
	mem2 = aligned_alloc(4096, MEM2_SIZE);
	if (!mem || !mem2)
		tap_bail("out of memory");
	memset(mem, 0, MEM_SIZE);
	memset(mem2, 0, MEM2_SIZE);

	tap_plan_lazy();
	test_good_chain();
	test_bad_chains();
	test_head_out_of_ring();
	test_avail_idx_runaway();
	test_split_across_windows();
	test_indirect();
	test_setup_validation();
	test_base_and_wrap();
	test_notify();
	test_random_rings();

	free(mem);
	free(mem2);
	return tap_done();
}
