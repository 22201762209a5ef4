/* SPDX-License-Identifier: MIT */
/*
 * The segment mapper: validation table, vgb_vfio_segment against sparse areas, reordered and
 * scattered memfd segments assembled into the right bytes with touching runs merged, the dmabuf
 * mmap attempt, and an mmap failure injected at every call with fds and mappings compared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE 4096u

/* A memfd of @pages pages, page i filled with (tag, i). */
static int tagged_memfd(uint8_t tag, unsigned pages)
{
	int fd = memfd_create("segmap-test", MFD_CLOEXEC);
	uint8_t buf[PAGE];

	if (fd < 0)
		tap_bail("memfd_create: %s", strerror(errno));
	for (unsigned i = 0; i < pages; i++) {
		for (unsigned j = 0; j < PAGE; j += 2) {
			buf[j] = tag;
			buf[j + 1] = (uint8_t)i;
		}
		if (pwrite(fd, buf, PAGE, (off_t)i * PAGE) != PAGE)
			tap_bail("pwrite: %s", strerror(errno));
	}
	return fd;
}

/* Whether the view's page @vpage shows (tag, page). */
static bool page_is(const uint8_t *view, unsigned vpage, uint8_t tag, unsigned page)
{
	const uint8_t *p = view + (size_t)vpage * PAGE;

	for (unsigned j = 0; j < PAGE; j += 2)
		if (p[j] != tag || p[j + 1] != (uint8_t)page)
			return false;
	return true;
}

/* The permissions /proc/self/maps shows for @addr ("r--s"), or "". */
static void perms_of(const void *addr, char out[5])
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];

	out[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[5];

		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && (unsigned long)addr >= lo &&
		    (unsigned long)addr < hi) {
			memcpy(out, perms, 5);
			break;
		}
	}
	fclose(f);
}

static void test_validation(int fd)
{
	const struct {
		const char *what;
		struct vgb_segment segs[2];
		size_t n;
		int want;
	} cases[] = {
		{ "no segments", { { fd, 0, PAGE } }, 0, -EINVAL },
		{ "fd -1", { { -1, 0, PAGE } }, 1, -EINVAL },
		{ "zero length", { { fd, 0, 0 } }, 1, -EINVAL },
		{ "unaligned offset", { { fd, 1, PAGE } }, 1, -EINVAL },
		{ "unaligned length", { { fd, 0, PAGE + 1 } }, 1, -EINVAL },
		{ "offset + length overflows", { { fd, UINT64_MAX - PAGE + 1, PAGE } }, 1, -EINVAL },
		{ "offset past off_t", { { fd, 1ull << 63, PAGE } }, 1, -EINVAL },
		{ "total too large", { { fd, 0, 1ull << 62 }, { fd, 0, 1ull << 62 } }, 2, -ENOMEM },
		{ "second segment bad", { { fd, 0, PAGE }, { fd, PAGE, 0 } }, 2, -EINVAL },
		{ "one page", { { fd, 0, PAGE } }, 1, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vgb_segmap *map = NULL;
		int r = vgb_segmap_create(cases[i].segs, cases[i].n, -1, &map);

		tap_is_errno(r, cases[i].want, "segmap: %s", cases[i].what);
		tap_ok((r == 0) == (map != NULL), "segmap: %s: map only on success", cases[i].what);
		vgb_segmap_destroy(map);
	}
	tap_is_errno(vgb_segmap_create(NULL, 1, -1, &(struct vgb_segmap *){ NULL }), -EINVAL,
		     "segmap: NULL segments");
}

static void test_reorder(void)
{
	int a = tagged_memfd('A', 16), b = tagged_memfd('B', 16);
	/* Out of order, scattered over two files; A0-1 and A2-3 touch and merge. */
	const struct vgb_segment segs[] = {
		{ b, 5 * PAGE, 3 * PAGE },
		{ a, 0, 2 * PAGE },
		{ a, 2 * PAGE, 2 * PAGE },
		{ b, 0, PAGE },
		{ a, 9 * PAGE, PAGE },
	};
	const struct { uint8_t tag; unsigned page; } want[] = {
		{ 'B', 5 }, { 'B', 6 }, { 'B', 7 }, { 'A', 0 }, { 'A', 1 }, { 'A', 2 },
		{ 'A', 3 }, { 'B', 0 }, { 'A', 9 },
	};
	struct vgb_segmap *map = NULL;
	bool all = true;
	char perms[5];
	int r;

	r = vgb_segmap_create(segs, 5, -1, &map);
	if (!tap_is_errno(r, 0, "map 5 reordered segments of 2 memfds"))
		goto out;
	tap_is_uint(map->size, 9 * PAGE, "view size is the sum");
	tap_is_uint(map->n_mmaps, 4, "touching A0-1 + A2-3 merged: 4 mmaps for 5 segments");
	tap_ok(!map->via_dmabuf, "no dmabuf given");
	for (unsigned i = 0; i < 9; i++) {
		if (!page_is(map->addr, i, want[i].tag, want[i].page)) {
			tap_diag("view page %u is not %c%u", i, want[i].tag, want[i].page);
			all = false;
		}
	}
	tap_ok(all, "every page of the view shows the right segment's bytes");
	perms_of(map->addr, perms);
	tap_is_str(perms, "r--s", "the view is read-only and shared");

	/* It is a live view: a write through the file shows up. */
	pwrite(a, "zz", 2, 9 * PAGE);
	tap_ok(((const uint8_t *)map->addr)[8 * PAGE] == 'z', "writes to the memfd show in the view");
	vgb_segmap_destroy(map);
out:
	close(a);
	close(b);
}

static void test_dmabuf_first(void)
{
	int a = tagged_memfd('A', 4), dmabuf = tagged_memfd('D', 2);
	int efd = eventfd(0, EFD_CLOEXEC);
	const struct vgb_segment segs[] = { { a, 2 * PAGE, PAGE }, { a, 0, PAGE } };
	struct vgb_segmap *map = NULL;
	int r;

	r = vgb_segmap_create(segs, 2, dmabuf, &map);
	tap_ok(r == 0 && map->via_dmabuf && map->n_mmaps == 0,
	       "an mmappable dmabuf is used directly");
	if (r == 0)
		tap_ok(page_is(map->addr, 0, 'D', 0) && page_is(map->addr, 1, 'D', 1),
		       "the view shows the dmabuf");
	vgb_segmap_destroy(map);
	map = NULL;

	/* An fd that refuses mmap stands for a VFIO dmabuf (EINVAL on 6.19). */
	logcap_start();
	r = vgb_segmap_create(segs, 2, efd, &map);
	logcap_stop();
	tap_ok(r == 0 && !map->via_dmabuf && map->n_mmaps == 2,
	       "a dmabuf that cannot be mmapped falls back to the segments");
	if (r == 0)
		tap_ok(page_is(map->addr, 0, 'A', 2) && page_is(map->addr, 1, 'A', 0),
		       "fallback view shows the segments");
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0, "the fallback logs only at debug");
	vgb_segmap_destroy(map);
	close(a);
	close(dmabuf);
	close(efd);
}

static void test_vfio_segment(void)
{
	struct vgb_vfio_device *dev = NULL;
	const struct {
		uint32_t region;
		uint64_t off, len;
		int want;
	} cases[] = {
		{ 2, 0, 16 * 1024, 0 },
		{ 2, 0, 32 * 1024, -EACCES },      /* runs past the first area */
		{ 2, 16 * 1024, PAGE, -EACCES },   /* in the hole */
		{ 2, 32 * 1024, 32 * 1024, 0 },
		{ 2, 60 * 1024, 2 * PAGE, -EINVAL }, /* past the region */
		{ 2, 1, PAGE, -EINVAL },
		{ 2, 0, 0, -EINVAL },
		{ 2, UINT64_MAX - PAGE + 1, PAGE, -EINVAL },
		{ 0, 0, PAGE, -EACCES },            /* nommap */
		{ 1, 0, PAGE, -EINVAL },            /* absent */
		{ 4, 0, 32 * 1024, 0 },             /* touching sparse areas form one run */
		{ 4, 0, 48 * 1024, -EACCES },
		{ 9, 0, PAGE, -EINVAL },
	};
	int r = vgb_vfio_vdev_create("bar0=16K:nommap,bar2=64K:sparse=0+16K;32K+32K,"
				     "bar4=64K:sparse=16K+16K;0+16K",
				     &dev);

	if (!tap_is_errno(r, 0, "sparse virtual device"))
		return;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vgb_segment seg = { -1, 0, 0 };

		r = vgb_vfio_segment(dev, cases[i].region, cases[i].off, cases[i].len, &seg);
		tap_is_errno(r, cases[i].want, "segment region %u +%#llx len %#llx", cases[i].region,
			     (unsigned long long)cases[i].off, (unsigned long long)cases[i].len);
		if (r == 0)
			tap_ok(seg.fd == vgb_vfio_vdev_region_memfd(dev, cases[i].region) &&
				       seg.offset == cases[i].off && seg.length == cases[i].len,
			       "segment names the region's fd at region offset + offset");
	}

	/* A view of two sparse areas of BAR2, reversed, plus a memfd segment. */
	int bar2 = vgb_vfio_vdev_region_memfd(dev, 2), m = tagged_memfd('M', 1);
	uint8_t pat[PAGE];
	struct vgb_segment segs[3];
	struct vgb_segmap *map = NULL;

	memset(pat, 0x5a, sizeof(pat));
	pwrite(bar2, pat, PAGE, 40 * 1024);
	memset(pat, 0xa5, sizeof(pat));
	pwrite(bar2, pat, PAGE, 4 * 1024);
	r = vgb_vfio_segment(dev, 2, 40 * 1024, PAGE, &segs[0]);
	r |= vgb_vfio_segment(dev, 2, 4 * 1024, PAGE, &segs[1]);
	segs[2] = (struct vgb_segment){ m, 0, PAGE };
	if (r == 0)
		r = vgb_segmap_create(segs, 3, -1, &map);
	tap_is_errno(r, 0, "view over BAR2 areas and a memfd");
	if (r == 0) {
		const uint8_t *v = map->addr;
		tap_ok(v[0] == 0x5a && v[PAGE - 1] == 0x5a && v[PAGE] == 0xa5 &&
			       page_is(v, 2, 'M', 0),
		       "BAR2 +40K, BAR2 +4K, memfd: right bytes in order");
	}
	vgb_segmap_destroy(map);
	close(m);
	vgb_vfio_device_destroy(dev);
}

/* mmap fails at call N, N = 1, 2, ...: each unwind path runs, and nothing stays behind. */
static void test_fault_injection(void)
{
	struct leak_snapshot before;
	unsigned n, paths = 0;
	bool ok = true;

	leak_snapshot(&before);
	int a = tagged_memfd('A', 8), b = tagged_memfd('B', 8), dmabuf = tagged_memfd('D', 4);
	const struct vgb_segment segs[] = {
		{ a, 0, PAGE }, { b, 0, PAGE }, { a, 4 * PAGE, 2 * PAGE }, { b, 7 * PAGE, PAGE },
	};
	fault_install();
	for (int with_dmabuf = 0; with_dmabuf < 2; with_dmabuf++) {
		for (n = 1; n < 16; n++) {
			struct vgb_segmap *map = NULL;
			int r;

			fault_arm_mmap(n, ENOMEM);
			r = vgb_segmap_create(segs, 4, with_dmabuf ? dmabuf : -1, &map);
			if (!fault_fired()) {
				ok &= r == 0 && map;
				vgb_segmap_destroy(map);
				break;
			}
			paths++;
			/* With a dmabuf, failing its mmap (call 1) is not an error: fallback. */
			if (with_dmabuf && n == 1) {
				ok &= r == 0 && map && !map->via_dmabuf;
				vgb_segmap_destroy(map);
				continue;
			}
			if (r != -ENOMEM || map) {
				tap_diag("mmap fault %u (dmabuf %d): r=%d", n, with_dmabuf, r);
				ok = false;
			}
			vgb_segmap_destroy(map);
		}
	}
	fault_arm_mmap(0, 0);
	fault_remove();
	tap_ok(ok, "an mmap failure at each of %u calls unwinds with -ENOMEM", paths);
	tap_ok(paths >= 6, "all %u injection points were reached", paths);
	close(a);
	close(b);
	close(dmabuf);
	leak_check(&before, "segmap under mmap fault injection");

	/* A real failure, not an injected one: a pipe cannot be mmapped (ENODEV). */
	struct vgb_segmap *map = NULL;
	int p[2], m;

	leak_snapshot(&before);
	m = tagged_memfd('M', 2);
	if (pipe2(p, O_CLOEXEC) == 0) {
		const struct vgb_segment bad[] = { { m, 0, PAGE }, { p[0], 0, PAGE } };

		tap_is_errno(vgb_segmap_create(bad, 2, -1, &map), -ENODEV,
			     "the kernel's mmap errno comes back");
		close(p[0]);
		close(p[1]);
	}
	close(m);
	leak_check(&before, "segmap after a real mmap failure");
}

int main(void)
{
	struct leak_snapshot before;
	int fd;

	tap_plan_lazy();
	leak_snapshot(&before);
	fd = tagged_memfd('V', 1);
	test_validation(fd);
	close(fd);
	test_reorder();
	test_dmabuf_first();
	test_vfio_segment();
	test_fault_injection();
	leak_check(&before, "whole test");
	return tap_done();
}
