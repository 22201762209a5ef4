/* SPDX-License-Identifier: MIT */
/*
 * Bench 2: the CPU view of a scattered blob.
 *
 * Ours: vgb_vfio_segments() over the guest entries (the region info comes from the cache, memory
 * decode is checked once per build, as bridge/core/export.c does per run of one region) and
 * vgb_segmap_create(), which reserves the range once and maps each run of touching segments
 * with one MAP_FIXED mmap; then vgb_segmap_destroy().
 * Baseline: the reference implementation's strategy: per entry, a region-info query to the
 * backend (uncached) and one mmap of that page; then one munmap of the whole range (kinder than
 * the per-entry munmaps it did). It maps into a PROT_NONE reservation too, so both produce the
 * same contiguous view and are checked the same way.
 *
 * Self-checks (TAP; a failure fails the bench): both views equal the blob byte for byte, ours
 * makes 1 + runs mmap calls, adds exactly `runs` VMAs to /proc/self/maps, and both give back
 * every VMA on teardown.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "bench.h"
#include "fake-vfio.h"
#include "scatter.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define REGION VFIO_PCI_BAR2_REGION_INDEX

struct ctx {
	struct vgb_vfio_device *dev;
	const struct scatter *s;
	struct vgb_segment *segs;
	struct vgb_vfio_range *ranges;
	size_t size;
	/* the view of the last build, for the checks */
	struct vgb_segmap *map;
	void *base_view;
	uint64_t base_queries; /* region-info queries the baseline made */
};

/* ---- ours ---- */

static int ours_build(struct ctx *c)
{
	int r;

	for (uint32_t i = 0; i < c->s->n_pages; i++)
		c->ranges[i] = (struct vgb_vfio_range){ c->s->page_off[i], VGB_PAGE_SIZE };
	r = vgb_vfio_segments(c->dev, REGION, c->ranges, c->s->n_pages, c->segs);
	if (r < 0)
		return r;
	return vgb_segmap_create(c->segs, c->s->n_pages, -1, &c->map);
}

static void ours_teardown(struct ctx *c)
{
	vgb_segmap_destroy(c->map);
	c->map = NULL;
}

static int ours(void *data)
{
	struct ctx *c = data;
	int r = ours_build(c);

	if (r < 0)
		return r;
	ours_teardown(c);
	return 0;
}

/* ---- baseline ---- */

static int base_build(struct ctx *c)
{
	struct vgb_vfio_device *dev = c->dev;
	void *base, *addr;
	int r;

	r = vgb_mmap(NULL, c->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
		     &base);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < c->s->n_pages; i++) {
		struct {
			struct vfio_region_info info;
			uint8_t caps[512];
		} q = { .info = { .argsz = sizeof(q), .index = REGION } };
		int fd;

		r = dev->ops->get_region_info(dev, &q.info);
		c->base_queries++;
		if (r >= 0 && (q.info.argsz > sizeof(q) || !(q.info.flags & VFIO_REGION_INFO_FLAG_MMAP)))
			r = -EACCES;
		if (r >= 0)
			r = fd = dev->ops->region_mmap_fd(dev, REGION);
		if (r >= 0)
			r = vgb_mmap((uint8_t *)base + (size_t)i * VGB_PAGE_SIZE, VGB_PAGE_SIZE,
				     PROT_READ, MAP_SHARED | MAP_FIXED, fd,
				     (off_t)(q.info.offset + c->s->page_off[i]), &addr);
		if (r < 0) {
			vgb_munmap(base, c->size);
			return r;
		}
	}
	c->base_view = base;
	return 0;
}

static void base_teardown(struct ctx *c)
{
	vgb_munmap(c->base_view, c->size);
	c->base_view = NULL;
}

static int base(void *data)
{
	struct ctx *c = data;
	int r = base_build(c);

	if (r < 0)
		return r;
	base_teardown(c);
	return 0;
}

/* ---- checks ---- */

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static unsigned n_mmap, n_pread;

/* Region reads (the kernel backend's config-space reads, e.g. PCI_COMMAND) are syscalls too. */
static ssize_t count_pread(int fd, void *buf, size_t len, off_t off)
{
	n_pread++;
	return real_pread(fd, buf, len, off);
}

static void *count_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	n_mmap++;
	return real_mmap(addr, len, prot, flags, fd, off);
}

struct observed {
	unsigned mmaps, preads;
	int vmas_added;
	uint64_t queries;
};

/* Builds once with mmap counting, checks the view and the teardown. Returns whether all held. */
static bool check(struct ctx *c, bool is_ours, const char *label, struct observed *ret)
{
	int before = bench_count_vmas(), during, after, r;
	uint64_t q0 = is_ours ? c->dev->region_info_queries : c->base_queries;
	const void *view;
	bool ok = true;

	real_mmap = vgb_sys.mmap;
	real_pread = vgb_sys.pread;
	vgb_sys.mmap = count_mmap;
	vgb_sys.pread = count_pread;
	n_mmap = n_pread = 0;
	r = is_ours ? ours_build(c) : base_build(c);
	vgb_sys.mmap = real_mmap;
	vgb_sys.pread = real_pread;
	if (!tap_is_int(r, 0, "%s: %s builds", label, is_ours ? "ours" : "baseline"))
		return false;
	during = bench_count_vmas();
	view = is_ours ? c->map->addr : c->base_view;
	ok &= tap_ok(memcmp(view, c->s->expected, c->size) == 0, "%s: %s view equals the blob",
		     label, is_ours ? "ours" : "baseline");
	*ret = (struct observed){ .mmaps = n_mmap, .preads = n_pread, .vmas_added = during - before,
				  .queries = (is_ours ? c->dev->region_info_queries : c->base_queries) - q0 };
	if (is_ours) {
		ok &= tap_is_uint(n_mmap, 1u + c->s->n_runs,
				  "%s: ours makes one reservation and one mmap per run", label);
		ok &= tap_is_uint(c->map->n_mmaps, c->s->n_runs, "%s: segmap reports runs", label);
		ok &= tap_ok(n_pread <= 1, "%s: ours reads the command register at most once (%u)",
			     label, n_pread);
		ok &= tap_is_int(during - before, (long long)c->s->n_runs,
				 "%s: ours adds one VMA per run", label);
		ours_teardown(c);
	} else {
		ok &= tap_is_uint(n_mmap, 1u + c->s->n_pages,
				  "%s: baseline makes one mmap per entry", label);
		base_teardown(c);
	}
	after = bench_count_vmas();
	ok &= tap_is_int(after, before, "%s: %s gives back every VMA", label,
			 is_ours ? "ours" : "baseline");
	return ok;
}

struct bcase {
	const char *name;
	uint32_t width, height, runs; /* runs 0: one page per run */
	unsigned reps;
};

static void run_case(struct vgb_vfio_device *dev, int fill_fd, uint64_t fill_base,
		     uint64_t capacity, const struct bcase *bc, const char *backend)
{
	uint64_t size = (uint64_t)bc->width * bc->height * 4;
	uint32_t pages = (uint32_t)(VGB_ALIGN_UP(size, VGB_PAGE_SIZE) / VGB_PAGE_SIZE);
	struct scatter s;
	struct ctx c = { .dev = dev, .s = &s };
	struct observed oo = { 0 }, ob = { 0 };
	struct bench_stat so, sb;
	struct bench_row row = { .bench = "cpu-view", .goal = "x >= 10, VMAs == runs" };
	char label[96];
	bool ok;
	int r;

	snprintf(label, sizeof(label), "%s, %s", bc->name, backend);
	r = scatter_init(&s, pages, bc->runs ? bc->runs : pages, capacity, 0x9e3779b97f4a7c15ull);
	if (r < 0)
		tap_bail("%s: scatter: %s", label, strerror(-r));
	c.size = (size_t)pages * VGB_PAGE_SIZE;
	c.segs = calloc(pages, sizeof(*c.segs));
	c.ranges = calloc(pages, sizeof(*c.ranges));
	if (!c.segs || !c.ranges)
		tap_bail("oom");
	r = scatter_fill(&s, fill_fd, fill_base);
	if (r < 0)
		tap_bail("%s: fill: %s", label, strerror(-r));
	tap_diag("%s: %u entries of 4 KiB in %u runs, shuffled", label, pages, s.n_runs);

	ok = check(&c, true, label, &oo);
	ok &= check(&c, false, label, &ob);
	if (!ok) {
		tap_diag("%s: self-check failed, not timed", label);
		goto out;
	}
	r = bench_pair(ours, base, &c, 2, bc->reps, &so, &sb);
	if (!tap_is_int(r, 0, "%s: timed runs succeed", label))
		goto out;
	row.name = label;
	bench_fmt_stat(row.ours, sizeof(row.ours), &so);
	bench_fmt_stat(row.base, sizeof(row.base), &sb);
	row.ratio = (double)sb.median_ns / (double)(so.median_ns ? so.median_ns : 1);
	row.met = bench_goal_at_least(row.ratio, 10) && oo.vmas_added == (int)s.n_runs
			  ? BENCH_GOAL_MET : BENCH_GOAL_NOT_MET;
	snprintf(row.notes, sizeof(row.notes),
		 "build+teardown, n=%zu; mmaps %u vs %u; VMAs +%d vs +%d (runs %u); "
		 "region-info queries %llu vs %llu; region reads %u vs %u",
		 so.n, oo.mmaps, ob.mmaps, oo.vmas_added, ob.vmas_added, s.n_runs,
		 (unsigned long long)oo.queries, (unsigned long long)ob.queries, oo.preads, ob.preads);
	bench_report(&row);
out:
	free(c.segs);
	free(c.ranges);
	scatter_finish(&s);
}

static const struct bcase cases[] = {
	{ "1920x1080 XRGB8888, 64 runs", 1920, 1080, 64, 61 },
	{ "3840x2160 XRGB8888, 64 runs", 3840, 2160, 64, 31 },
	{ "1920x1080, 1 page per run", 1920, 1080, 0, 31 },
};

int main(void)
{
	struct vgb_vfio_device *dev;
	struct fake_vfio *f;
	int r, before_fds = bench_count_fds(), before_vmas;

	tap_plan_lazy();
	bench_print_machine();

	/* The virtual device: BAR2 is a 64 MiB memfd. Its region-info query is a function call,
	 * where a real VFIO device costs a syscall: the baseline is kinder here than on hardware. */
	r = vgb_vfio_vdev_create("default", &dev);
	if (r < 0)
		tap_bail("vdev: %s", strerror(-r));
	before_vmas = bench_count_vmas();
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++)
		run_case(dev, vgb_vfio_vdev_region_memfd(dev, REGION), 0, 64ull << 20, &cases[i],
			 "virtual device");
	bench_check_vmas(before_vmas, "virtual device: no mapping left behind");
	vgb_vfio_device_destroy(dev);

	/* The kernel backend over the fake VFIO kernel: each baseline query is an ioctl through
	 * the seam (the fake identifies the fd with fstat, a real syscall). Its regions are at
	 * most 16 MiB, so only the 1080p cases fit. */
	f = fake_vfio_create();
	if (!f)
		tap_bail("fake vfio");
	f->regions[REGION].size = 1u << FAKE_VFIO_REGION_SHIFT;
	if ((r = fake_vfio_layout(f)) < 0)
		tap_bail("fake layout: %s", strerror(-r));
	fake_vfio_install(f);
	r = vgb_vfio_kernel_adopt(fake_vfio_dup_device(f), "fake", &dev);
	if (r < 0)
		tap_bail("adopt: %s", strerror(-r));
	run_case(dev, f->device_fd, fake_vfio_region_offset(REGION), 1u << FAKE_VFIO_REGION_SHIFT,
		 &cases[0], "kernel backend, fake VFIO");
	tap_diag("fake VFIO: %u GET_REGION_INFO ioctls in all", f->calls.get_region_info);
	vgb_vfio_device_destroy(dev);
	fake_vfio_remove();
	fake_vfio_destroy(f);
	tap_is_int(bench_count_fds(), before_fds, "no fd left behind");
	return tap_done();
}
