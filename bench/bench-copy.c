/* SPDX-License-Identifier: MIT */
/*
 * Bench 4: the copy path. A gather copy of the damaged rectangle from a scattered CPU view
 * (a 1920x1080 XRGB8888 blob of 64 shuffled runs, mapped by the segment mapper) into an shm
 * buffer (a memfd mapping, as a wl_shm pool is), with display/'s vgb_copy_rect(), the copier
 * the Wayland sink's shm-copy path uses (a guarded copy: a fault in the view is -EIO, not a
 * SIGBUS; that guard is part of what is timed).
 * Baseline: one plain memcpy of the same number of bytes between the same two mappings: the
 * physical limit here. Goal: at least 0.8x memcpy's throughput. Also: a 64x64 damage
 * rectangle against the full frame.
 *
 * Self-checks: the rectangle in the destination equals the blob's pixels and nothing outside
 * it was written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "bench.h"
#include "scatter.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define REGION VFIO_PCI_BAR2_REGION_INDEX
#define W 1920u
#define H 1080u
#define BPP 4u
#define STRIDE (W * BPP)

struct ctx {
	struct vgb_cpu_view view;
	uint8_t *dst;
	struct vgb_rect rect;
	uint8_t *evict;  /* EVICT_BYTES, written before each cold run */
};

/* More than the last-level cache of the machines we run on (EPYC: 32 MiB per CCX). */
#define EVICT_BYTES (96u << 20)

static int evict(void *data)
{
	struct ctx *c = data;
	static uint8_t v;

	memset(c->evict, ++v, EVICT_BYTES);
	return 0;
}

static int ours(void *data)
{
	struct ctx *c = data;

	return vgb_copy_rect(c->dst, STRIDE, &c->view, &c->rect, BPP);
}

static int base(void *data)
{
	struct ctx *c = data;
	size_t off = (size_t)c->rect.y * STRIDE + (size_t)c->rect.x * BPP;

	memcpy(c->dst + off, (const uint8_t *)c->view.data + off,
	       (size_t)c->rect.width * c->rect.height * BPP);
	return 0;
}

/* The destination holds the blob's pixels inside @r and zeros elsewhere. */
static bool check_rect(const struct ctx *c, const uint8_t *blob, const char *label)
{
	bool inside = true, outside = true;

	memset(c->dst, 0, (size_t)STRIDE * H);
	if (!tap_is_int(ours((void *)c), 0, "%s: vgb_copy_rect succeeds", label))
		return false;
	for (uint32_t y = 0; y < H; y++) {
		const uint8_t *d = c->dst + (size_t)y * STRIDE, *b = blob + (size_t)y * STRIDE;
		bool in_y = y >= c->rect.y && y < c->rect.y + c->rect.height;
		size_t x0 = in_y ? (size_t)c->rect.x * BPP : STRIDE;
		size_t x1 = in_y ? (size_t)(c->rect.x + c->rect.width) * BPP : STRIDE;

		if (memcmp(d + x0, b + x0, x1 - x0))
			inside = false;
		for (size_t i = 0; i < STRIDE; i++)
			if ((i < x0 || i >= x1) && d[i])
				outside = false;
	}
	tap_ok(inside, "%s: the rectangle equals the blob's pixels", label);
	tap_ok(outside, "%s: nothing outside the rectangle was written", label);
	return inside && outside;
}

int main(void)
{
	struct vgb_vfio_device *dev;
	struct scatter s;
	struct vgb_segment *segs;
	struct vgb_segmap *map;
	struct bench_stat full_o, full_b, small_o, small_b, cold_o, cold_b;
	struct ctx c;
	int before_fds = bench_count_fds(), before_vmas, r, shm;
	size_t size = (size_t)STRIDE * H;
	bool ok;

	tap_plan_lazy();
	bench_print_machine();
	r = vgb_vfio_vdev_create("default", &dev);
	if (r < 0)
		tap_bail("vdev: %s", strerror(-r));
	before_vmas = bench_count_vmas();
	r = scatter_init(&s, (uint32_t)(size / VGB_PAGE_SIZE), 64, 64ull << 20, 0x51a7e);
	if (r < 0 || (r = scatter_fill(&s, vgb_vfio_vdev_region_memfd(dev, REGION), 0)) < 0)
		tap_bail("scatter: %s", strerror(-r));
	segs = calloc(s.n_pages, sizeof(*segs));
	if (!segs)
		tap_bail("oom");
	for (uint32_t i = 0; i < s.n_pages; i++)
		if ((r = vgb_vfio_segment(dev, REGION, s.page_off[i], VGB_PAGE_SIZE, &segs[i])) < 0)
			tap_bail("segment: %s", strerror(-r));
	r = vgb_segmap_create(segs, s.n_pages, -1, &map);
	if (!tap_is_int(r, 0, "the scattered CPU view builds"))
		return tap_done();
	tap_is_uint(map->n_mmaps, 64, "the view has 64 runs");
	tap_ok(memcmp(map->addr, s.expected, size) == 0, "the view equals the blob");

	shm = memfd_create("bench-shm", MFD_CLOEXEC);
	if (shm < 0 || ftruncate(shm, (off_t)size) < 0)
		tap_bail("memfd: %m");
	c = (struct ctx){ .view = { .data = map->addr, .stride = STRIDE, .memfd = -1 } };
	c.dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
	if (c.dst == MAP_FAILED)
		tap_bail("mmap: %m");

	c.rect = (struct vgb_rect){ 0, 0, W, H };
	ok = check_rect(&c, s.expected, "full frame");
	r = ok ? bench_pair(ours, base, &c, 5, 101, &full_o, &full_b) : -EIO;
	tap_is_int(r, 0, "full frame: timed runs");
	c.evict = malloc(EVICT_BYTES);
	if (!c.evict)
		tap_bail("oom");
	r = ok ? bench_pair_prep(ours, base, evict, &c, 2, 31, &cold_o, &cold_b) : -EIO;
	tap_is_int(r, 0, "full frame, caches evicted: timed runs");
	free(c.evict);
	c.rect = (struct vgb_rect){ 928, 508, 64, 64 };
	ok &= check_rect(&c, s.expected, "64x64");
	r = ok ? bench_pair(ours, base, &c, 50, 2001, &small_o, &small_b) : -EIO;
	tap_is_int(r, 0, "64x64: timed runs");

	if (ok && tap_failures() == 0) {
		struct bench_row row = { .bench = "copy", .goal = "x >= 0.8" };

		row.name = "gather 1920x1080 (8.3 MB) from 64 runs";
		bench_fmt_rate(row.ours, sizeof(row.ours), (double)size, full_o.median_ns, "B/s");
		bench_fmt_rate(row.base, sizeof(row.base), (double)size, full_b.median_ns, "B/s");
		row.ratio = (double)full_b.median_ns / (double)full_o.median_ns;
		row.met = bench_goal_at_least(row.ratio, 0.8);
		snprintf(row.notes, sizeof(row.notes),
			 "cache-warm; baseline one memcpy of the same bytes; n=%zu; p99 %.2f vs %.2f ms",
			 full_o.n, (double)full_o.p99_ns / 1e6, (double)full_b.p99_ns / 1e6);
		bench_report(&row);

		row.name = "same, caches evicted first";
		bench_fmt_rate(row.ours, sizeof(row.ours), (double)size, cold_o.median_ns, "B/s");
		bench_fmt_rate(row.base, sizeof(row.base), (double)size, cold_b.median_ns, "B/s");
		row.ratio = (double)cold_b.median_ns / (double)cold_o.median_ns;
		row.met = bench_goal_at_least(row.ratio, 0.8);
		snprintf(row.notes, sizeof(row.notes),
			 "96 MiB written before each run; n=%zu; p99 %.2f vs %.2f ms",
			 cold_o.n, (double)cold_o.p99_ns / 1e6, (double)cold_b.p99_ns / 1e6);
		bench_report(&row);

		row.name = "gather 64x64 (16 KiB)";
		bench_fmt_rate(row.ours, sizeof(row.ours), 64.0 * 64 * BPP, small_o.median_ns, "B/s");
		bench_fmt_rate(row.base, sizeof(row.base), 64.0 * 64 * BPP, small_b.median_ns, "B/s");
		row.ratio = (double)small_b.median_ns / (double)small_o.median_ns;
		row.met = bench_goal_at_least(row.ratio, 0.8);
		snprintf(row.notes, sizeof(row.notes),
			 "64 rows of 256 B vs one 16 KiB memcpy (cache-warm); n=%zu; p99 %llu vs %llu ns",
			 small_o.n, (unsigned long long)small_o.p99_ns,
			 (unsigned long long)small_b.p99_ns);
		bench_report(&row);

		row = (struct bench_row){ .bench = "copy", .name = "64x64 damage vs full frame",
					  .met = BENCH_GOAL_NONE };
		bench_fmt_stat(row.ours, sizeof(row.ours), &small_o);
		bench_fmt_stat(row.base, sizeof(row.base), &full_o);
		row.ratio = (double)full_o.median_ns / (double)small_o.median_ns;
		snprintf(row.notes, sizeof(row.notes),
			 "time per flush, damage-only copy vs whole-frame copy (%ux fewer bytes)",
			 (W * H) / (64 * 64));
		bench_report(&row);
	}

	munmap(c.dst, size);
	close(shm);
	vgb_segmap_destroy(map);
	free(segs);
	scatter_finish(&s);
	bench_check_vmas(before_vmas, "no mapping left behind");
	vgb_vfio_device_destroy(dev);
	tap_is_int(bench_count_fds(), before_fds, "no fd left behind");
	return tap_done();
}
