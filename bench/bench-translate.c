/* SPDX-License-Identifier: MIT */
/*
 * Bench 1: translation. Lookups per second from a guest-physical address to its window in a
 * client's memory map (bridge/core/memmap.c, a binary search), with 1, 64 and 1024 windows.
 * Baseline: a linear walk over the same windows in the order they were added, as a VMM walks
 * its RAM block list.
 *
 * The windows are VFIO windows over the virtual device's 64 MiB BAR2 (no fd per window),
 * equally sized, with a gap as large as each window between them, added in shuffled order.
 * 65536 random addresses inside the windows are looked up per timed run.
 *
 * Self-checks: every address resolves to the window it was drawn from in both, gap addresses
 * resolve to none in both, and each timed run's checksum of window ids is the expected one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "bench.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define REGION VFIO_PCI_BAR2_REGION_INDEX
#define REGION_SIZE (64ull << 20)
#define GPA_BASE (4ull << 30)
#define N_ADDRS 65536u

struct block {
	uint64_t gpa, size;
	uint32_t id;
};

struct ctx {
	struct vgb_memmap *map;
	struct block *list;  /* the baseline's block list, in the order added */
	uint32_t n;
	uint64_t *addrs;
	uint64_t want_sum, sum_ours, sum_base;
};

static const struct block *list_lookup(const struct ctx *c, uint64_t gpa)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (gpa >= c->list[i].gpa && gpa - c->list[i].gpa < c->list[i].size)
			return &c->list[i];
	return NULL;
}

static int ours(void *data)
{
	struct ctx *c = data;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < N_ADDRS; i++) {
		const struct vgb_memmap_window *w = vgb_memmap_lookup(c->map, c->addrs[i]);

		sum += w ? w->id : 0;
	}
	c->sum_ours = sum;
	return sum == c->want_sum ? 0 : -EIO;
}

static int base(void *data)
{
	struct ctx *c = data;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < N_ADDRS; i++) {
		const struct block *b = list_lookup(c, c->addrs[i]);

		sum += b ? b->id : 0;
	}
	c->sum_base = sum;
	return sum == c->want_sum ? 0 : -EIO;
}

static void run_case(struct vgb_vfio_device *dev, uint32_t n, unsigned reps)
{
	uint64_t size = REGION_SIZE / n, seed = 0xdecafbad + n;
	_cleanup_free_ uint32_t *order = calloc(n, sizeof(*order));
	_cleanup_free_ uint32_t *id_of = calloc(n, sizeof(*id_of));
	_cleanup_free_ uint32_t *want = calloc(N_ADDRS, sizeof(*want));
	struct ctx c = { .n = n };
	struct bench_stat so, sb;
	struct bench_row row = { .bench = "translate", .met = BENCH_GOAL_NONE };
	char name[64];
	bool ok = true;
	int r;

	c.list = calloc(n, sizeof(*c.list));
	c.addrs = calloc(N_ADDRS, sizeof(*c.addrs));
	if (!order || !id_of || !want || !c.list || !c.addrs)
		tap_bail("oom");
	if ((r = vgb_memmap_create(&c.map)) < 0)
		tap_bail("memmap: %s", strerror(-r));
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	bench_shuffle(order, n, &seed);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = order[k], id;
		uint64_t gpa = GPA_BASE + (uint64_t)i * 2 * size;

		r = vgb_memmap_add_vfio(c.map, gpa, size, dev, REGION, (uint64_t)i * size, &id);
		if (r < 0)
			tap_bail("add window %u: %s", i, strerror(-r));
		c.list[k] = (struct block){ gpa, size, id };
		id_of[i] = id;
	}
	for (uint32_t a = 0; a < N_ADDRS; a++) {
		uint32_t i = (uint32_t)(bench_rand(&seed) % n);

		c.addrs[a] = GPA_BASE + (uint64_t)i * 2 * size + bench_rand(&seed) % size;
		want[a] = id_of[i];
		c.want_sum += id_of[i];
	}
	snprintf(name, sizeof(name), "%u window%s", n, n > 1 ? "s" : "");
	for (uint32_t a = 0; a < N_ADDRS && ok; a++) {
		const struct vgb_memmap_window *w = vgb_memmap_lookup(c.map, c.addrs[a]);
		const struct block *b = list_lookup(&c, c.addrs[a]);

		ok = w && w->id == want[a] && b && b->id == want[a];
	}
	tap_ok(ok, "%s: every address resolves to its window in both", name);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t gap = GPA_BASE + (uint64_t)i * 2 * size + size;

		if (vgb_memmap_lookup(c.map, gap) || list_lookup(&c, gap) ||
		    vgb_memmap_lookup(c.map, gap + size - 1))
			ok = false;
	}
	ok &= !vgb_memmap_lookup(c.map, GPA_BASE - 1);
	tap_ok(ok, "%s: gap addresses resolve to no window in both", name);
	r = ok ? bench_pair(ours, base, &c, 2, reps, &so, &sb) : -EIO;
	tap_is_int(r, 0, "%s: timed runs resolve every address (checksums %llu, %llu, want %llu)",
		   name, (unsigned long long)c.sum_ours, (unsigned long long)c.sum_base,
		   (unsigned long long)c.want_sum);
	if (r == 0) {
		row.name = name;
		bench_fmt_rate(row.ours, sizeof(row.ours), N_ADDRS, so.median_ns, "lookups/s");
		bench_fmt_rate(row.base, sizeof(row.base), N_ADDRS, sb.median_ns, "lookups/s");
		row.ratio = (double)sb.median_ns / (double)so.median_ns;
		snprintf(row.notes, sizeof(row.notes),
			 "binary search vs linear walk; %u random lookups per run, n=%zu; "
			 "p99 of a run %.2f vs %.2f ms", N_ADDRS, so.n, (double)so.p99_ns / 1e6,
			 (double)sb.p99_ns / 1e6);
		bench_report(&row);
	}
	vgb_memmap_destroy(c.map);
	free(c.list);
	free(c.addrs);
}

int main(void)
{
	struct vgb_vfio_device *dev;
	int r, before_fds = bench_count_fds();

	tap_plan_lazy();
	bench_print_machine();
	r = vgb_vfio_vdev_create("default", &dev);
	if (r < 0)
		tap_bail("vdev: %s", strerror(-r));
	run_case(dev, 1, 41);
	run_case(dev, 64, 41);
	run_case(dev, 1024, 21);
	vgb_vfio_device_destroy(dev);
	tap_is_int(bench_count_fds(), before_fds, "no fd left behind");
	return tap_done();
}
