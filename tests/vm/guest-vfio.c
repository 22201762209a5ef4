/* SPDX-License-Identifier: MIT */
/*
 * In-guest, both kernels: the project's kernel backend over real vfio-pci.
 *   - open both ivshmem devices, list their regions, BAR2's size is what qemu was given
 *   - region info comes from the cache (the ioctls are counted at the syscall seam)
 *   - the segment mapper builds a view of scattered, reordered page runs of BAR2 whose bytes
 *     are the host's pattern at the expected offsets
 *   - errors (past the BAR, unaligned, no such region, no mmap, a closed device fd): the errno,
 *     no mapping left, no fd leaked
 *   - two devices in one process: each segment reads its own device's memory
 *   - reset drops the cache
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "lab.h"
#include "leak.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE

struct run {
	uint64_t page, pages;
};

static struct vm_lab_device labdev[VM_LAB_MAX_DEVICES];
static struct vgb_vfio_device *dev[VM_LAB_MAX_DEVICES];

static void test_open(int i)
{
	int r = vgb_vfio_kernel_open(labdev[i].bdf, 0, &dev[i]);

	tap_is_int(r, 0, "%s: vgb_vfio_kernel_open", labdev[i].bdf);
	if (r < 0)
		tap_bail("cannot open %s", labdev[i].bdf);
	tap_diag("%s: path %d, %u regions, caps %#x, probe %d (%d)", dev[i]->name, dev[i]->path,
		 dev[i]->num_regions, dev[i]->caps, dev[i]->dmabuf_probe,
		 dev[i]->dmabuf_probe_errno);
	tap_ok((dev[i]->path == VGB_VFIO_PATH_LEGACY || dev[i]->path == VGB_VFIO_PATH_CDEV) &&
		       dev[i]->num_regions >= VFIO_PCI_NUM_REGIONS &&
		       vgb_vfio_device_has_cap(dev[i], VGB_VFIO_CAP_MMAP),
	       "%s: a kernel device with >= %d regions and the mmap capability", labdev[i].bdf,
	       VFIO_PCI_NUM_REGIONS);
}

/* The first query of BAR2 makes one ioctl; later ones (any region already seen) make none. */
static void test_cache(int i)
{
	const struct vgb_vfio_region_info *first = NULL, *again = NULL;
	uint64_t queries = dev[i]->region_info_queries;
	struct fault_counts c;
	int r;

	fault_install();
	r = vgb_vfio_region_info(dev[i], VFIO_PCI_BAR2_REGION_INDEX, &first);
	c = fault_get_counts();
	tap_ok(r == 0 && c.ioctl == 1 && dev[i]->region_info_queries == queries + 1,
	       "%s: the first BAR2 query makes one ioctl (r=%d, %u ioctls)", labdev[i].bdf, r,
	       c.ioctl);

	fault_reset_counts();
	for (int k = 0; k < 3 && r == 0; k++)
		r = vgb_vfio_region_info(dev[i], VFIO_PCI_BAR2_REGION_INDEX, &again);
	c = fault_get_counts();
	tap_ok(r == 0 && c.ioctl == 0 && again == first &&
		       dev[i]->region_info_queries == queries + 1,
	       "%s: three more queries come from the cache (%u ioctls, same pointer: %s)",
	       labdev[i].bdf, c.ioctl, again == first ? "yes" : "no");
	fault_remove();
}

static void test_regions(int i)
{
	const struct vgb_vfio_region_info *info;
	unsigned answered = 0, expected = 0;
	bool bar2_ok = false, cfg_ok = false;
	int r;

	for (uint32_t k = 0; k < dev[i]->num_regions; k++) {
		r = vgb_vfio_region_info(dev[i], k, &info);
		/* vfio-pci answers EINVAL for the VGA region of a device that is not VGA. */
		if (k == VFIO_PCI_VGA_REGION_INDEX && r == -EINVAL)
			continue;
		expected++;
		if (r < 0) {
			tap_diag("region %u: %d (%s)", k, r, strerror(-r));
			continue;
		}
		answered++;
		tap_diag("%s region %u: size %#" PRIx64 " offset %#" PRIx64 " flags %#x%s",
			 labdev[i].bdf, k, info->size, info->offset, info->flags,
			 info->has_sparse ? " sparse" : "");
		if (k == VFIO_PCI_BAR2_REGION_INDEX)
			bar2_ok = info->size == labdev[i].size &&
				  (info->flags & (VFIO_REGION_INFO_FLAG_READ |
						  VFIO_REGION_INFO_FLAG_WRITE |
						  VFIO_REGION_INFO_FLAG_MMAP)) == 7 &&
				  !info->has_sparse;
		if (k == VFIO_PCI_CONFIG_REGION_INDEX)
			cfg_ok = info->size >= 256 && !(info->flags & VFIO_REGION_INFO_FLAG_MMAP);
	}
	tap_ok(answered == expected && expected >= VFIO_PCI_NUM_REGIONS - 1,
	       "%s: %u of %u regions listed", labdev[i].bdf, answered, expected);
	tap_ok(bar2_ok, "%s: BAR2 is %" PRIu64 " bytes (what qemu was given), R/W/MMAP, not sparse",
	       labdev[i].bdf, labdev[i].size);
	tap_ok(cfg_ok, "%s: the config region is >= 256 bytes and not mmappable", labdev[i].bdf);
	r = vgb_vfio_region_info(dev[i], dev[i]->num_regions, &info);
	tap_is_errno(r, -EINVAL, "%s: region %u (one past the last) is -EINVAL", labdev[i].bdf,
		     dev[i]->num_regions);
}

/* Builds a view of @n runs of BAR2 pages of device @i and checks its bytes. */
static bool check_view(int i, const struct run *runs, size_t n, unsigned want_mmaps,
		       const char *what)
{
	struct vgb_segment segs[16];
	struct vgb_segmap *map = NULL;
	struct leak_snapshot before;
	uint64_t total = 0, pos = 0;
	bool ok = true;
	int r = 0;

	leak_snapshot(&before);
	for (size_t k = 0; k < n && r == 0; k++) {
		r = vgb_vfio_segment(dev[i], VFIO_PCI_BAR2_REGION_INDEX, runs[k].page * PAGE,
				     runs[k].pages * PAGE, &segs[k]);
		total += runs[k].pages * PAGE;
	}
	if (r == 0)
		r = vgb_segmap_create(segs, n, -1, &map);
	tap_ok(r == 0 && map && map->size == total && !map->via_dmabuf &&
		       (!want_mmaps || map->n_mmaps == want_mmaps),
	       "%s: %s: %zu runs, %" PRIu64 " bytes, %u mmaps (want %u) (r=%d)", labdev[i].bdf,
	       what, n, total, map ? map->n_mmaps : 0, want_mmaps, r);
	for (size_t k = 0; k < n && map; k++) {
		ok = vm_lab_pattern_ok((const char *)map->addr + pos, runs[k].page * PAGE,
				       runs[k].pages * PAGE, labdev[i].seed) &&
		     ok;
		pos += runs[k].pages * PAGE;
	}
	tap_ok(map && ok, "%s: %s: every run shows the host's pattern at its BAR2 offset",
	       labdev[i].bdf, what);
	vgb_segmap_destroy(map);
	return leak_check(&before, "view destroyed: no fd, no mapping left");
}

static void test_segmap(int i)
{
	uint64_t pages = labdev[i].size / PAGE;
	/* Scattered and out of order; {7,2} and {9,2} touch and share one mmap. The last page
	 * is left out: guest-smoke wrote it. */
	const struct run runs[] = {
		{ pages / 2 + 1, 5 }, { 3, 1 }, { pages - 10, 3 }, { 7, 2 }, { 9, 2 }, { pages / 4, 1 },
	};

	check_view(i, runs, VGB_ARRAY_SIZE(runs), 5, "scattered view");
}

/* @what, the errno it gave, and that nothing leaked. */
static void expect_error(struct leak_snapshot *before, int r, int want, const char *what)
{
	int fds = leak_count_fds(), maps = leak_count_maps();

	tap_ok(r == want && fds == before->n_fds && maps == before->n_maps,
	       "%s: %d (%s), want %d (%s); fds %d -> %d, maps %d -> %d", what, r,
	       r < 0 ? strerror(-r) : "ok", want, strerror(-want), before->n_fds, fds,
	       before->n_maps, maps);
}

static void test_errors(int i)
{
	const struct vgb_vfio_region_info *bar2;
	struct leak_snapshot before;
	struct vgb_segment seg = { .fd = -1 }, segs[2];
	struct vgb_segmap *map = NULL;
	uint64_t size = labdev[i].size;
	char what[512];
	int r, fd;

	if (vgb_vfio_region_info(dev[i], VFIO_PCI_BAR2_REGION_INDEX, &bar2) < 0)
		tap_bail("no BAR2 info");
	leak_snapshot(&before);

#define SEG_CASE(region, off, len, want, name)                                              \
	do {                                                                                \
		r = vgb_vfio_segment(dev[i], (region), (off), (len), &seg);                 \
		snprintf(what, sizeof(what), "%s: segment %s", labdev[i].bdf, (name));      \
		expect_error(&before, r, (want), what);                                     \
	} while (0)
	SEG_CASE(2, size - PAGE, 2 * PAGE, -EINVAL, "past the BAR end");
	SEG_CASE(2, size, PAGE, -EINVAL, "starting at the BAR end");
	SEG_CASE(2, 100, PAGE, -EINVAL, "at an unaligned offset");
	SEG_CASE(2, 0, PAGE + 1, -EINVAL, "of an unaligned length");
	SEG_CASE(dev[i]->num_regions + 3, 0, PAGE, -EINVAL, "of a region that does not exist");
	/* The config region (256 bytes, no mmap) is smaller than a page: outside comes first.
	 * ivshmem has no page-sized region without mmap, so -EACCES stays with the unit tests. */
	SEG_CASE(VFIO_PCI_CONFIG_REGION_INDEX, 0, PAGE, -EINVAL, "of the 256-byte config region");
#undef SEG_CASE

	/* The kernel itself refuses a mapping that runs past the BAR: the whole view unwinds. */
	r = vgb_vfio_segment(dev[i], 2, 0, 2 * PAGE, &segs[0]);
	segs[1] = segs[0];
	segs[1].offset = bar2->offset + size - PAGE;
	segs[1].length = 2 * PAGE;
	if (r == 0)
		r = vgb_segmap_create(segs, 2, -1, &map);
	snprintf(what, sizeof(what), "%s: view whose second segment runs past BAR2 (kernel mmap)",
		 labdev[i].bdf);
	expect_error(&before, r, -EINVAL, what);
	vgb_segmap_destroy(map);
	map = NULL;

	/* A closed device fd: the segment refers to an fd that is gone. */
	r = vgb_vfio_segment(dev[i], 2, 0, PAGE, &seg);
	fd = r == 0 ? fcntl(seg.fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (fd >= 0)
		close(fd);
	seg.fd = fd;
	r = fd >= 0 ? vgb_segmap_create(&seg, 1, -1, &map) : -999;
	snprintf(what, sizeof(what), "%s: view over a closed device fd", labdev[i].bdf);
	expect_error(&before, r, -EBADF, what);
	vgb_segmap_destroy(map);

	r = vgb_vfio_kernel_adopt(fd, "closed", &(struct vgb_vfio_device *){ NULL });
	expect_error(&before, r, -EBADF, "adopting a closed device fd");
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	r = vgb_vfio_kernel_adopt(fd, "null", &(struct vgb_vfio_device *){ NULL });
	close(fd);
	expect_error(&before, r, -ENOTTY, "adopting an fd that is not a VFIO device");
	r = vgb_vfio_kernel_open("0000:00:1f.7", 0, &(struct vgb_vfio_device *){ NULL });
	tap_ok(r < 0 && leak_count_fds() == before.n_fds,
	       "opening a BDF that does not exist fails (%d, %s) and leaks no fd", r,
	       strerror(-r));
}

/* One view that alternates between the two devices: each run must show its own device's
 * pattern (the seeds differ), so a lookup on the wrong device cannot pass. */
static void test_two_devices(void)
{
	struct { int d; uint64_t page, pages; } runs[] = {
		{ 1, 10, 1 }, { 0, 20, 2 }, { 1, 30, 2 }, { 0, 5, 1 }, { 1, 11, 1 },
	};
	struct vgb_segment segs[VGB_ARRAY_SIZE(runs)];
	struct vgb_segmap *map = NULL;
	struct leak_snapshot before;
	uint64_t pos = 0;
	bool ok = true;
	int r = 0;

	leak_snapshot(&before);
	for (size_t k = 0; k < VGB_ARRAY_SIZE(runs) && r == 0; k++)
		r = vgb_vfio_segment(dev[runs[k].d], 2, runs[k].page * PAGE, runs[k].pages * PAGE,
				     &segs[k]);
	tap_ok(r == 0 && segs[0].fd != segs[1].fd,
	       "two devices: segments of each device come from its own fd (%d, %d)", segs[0].fd,
	       segs[1].fd);
	if (r == 0)
		r = vgb_segmap_create(segs, VGB_ARRAY_SIZE(runs), -1, &map);
	for (size_t k = 0; k < VGB_ARRAY_SIZE(runs) && map; k++) {
		ok = vm_lab_pattern_ok((const char *)map->addr + pos, runs[k].page * PAGE,
				       runs[k].pages * PAGE, labdev[runs[k].d].seed) &&
		     ok;
		pos += runs[k].pages * PAGE;
	}
	tap_ok(r == 0 && map && ok,
	       "two devices: one view alternating between them shows each device's pattern");
	vgb_segmap_destroy(map);
	leak_check(&before, "two-device view destroyed");
}

/* Reset drops the cache: the next query asks the kernel again. Device 1 only, at the end. */
static void test_reset(int i)
{
	const struct vgb_vfio_region_info *info;
	uint32_t gen = dev[i]->generation;
	struct fault_counts c;
	unsigned char page[PAGE];
	ssize_t n;
	int r, q;

	fault_install();
	r = vgb_vfio_device_reset(dev[i]);
	tap_diag("%s: reset: %d (%s), caps %#x", labdev[i].bdf, r, r < 0 ? strerror(-r) : "ok",
		 dev[i]->caps);
	fault_reset_counts();
	q = vgb_vfio_region_info(dev[i], VFIO_PCI_BAR2_REGION_INDEX, &info);
	c = fault_get_counts();
	fault_remove();
	/* ivshmem has no reset method (no FLR, no PM reset, alone on the root bus): -EOPNOTSUPP,
	 * and the cache is dropped anyway. A real reset must also bump the generation. */
	tap_ok((r == -EOPNOTSUPP || (r == 0 && dev[i]->generation != gen)) && q == 0 &&
		       c.ioctl == 1 && info->size == labdev[i].size,
	       "%s: after reset (%d) BAR2 info is asked again (%u ioctls), generation %u -> %u",
	       labdev[i].bdf, r, c.ioctl, gen, dev[i]->generation);
	n = vgb_vfio_region_read(dev[i], 2, PAGE, page, sizeof(page));
	tap_ok(n == (ssize_t)sizeof(page) && vm_lab_pattern_ok(page, PAGE, sizeof(page),
							       labdev[i].seed),
	       "%s: BAR2 reads the host's pattern after the reset (%zd)", labdev[i].bdf, n);
}

int main(void)
{
	struct leak_snapshot start;
	int n = vm_lab_devices(labdev, VM_LAB_MAX_DEVICES);

	if (n < 2)
		tap_bail("needs the lab's two ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	tap_plan_lazy();
	leak_snapshot(&start);
	for (int i = 0; i < 2; i++) {
		test_open(i);
		test_cache(i);
		test_regions(i);
	}
	for (int i = 0; i < 2; i++) {
		test_segmap(i);
		test_errors(i);
	}
	test_two_devices();
	test_reset(1);

	vgb_vfio_device_destroy(dev[0]);
	dev[0] = NULL;
	{
		/* Device 1 is independent of device 0's lifetime. */
		const struct run runs[] = { { 40, 2 }, { 12, 1 } };

		check_view(1, runs, 2, 2, "after device 0 was destroyed");
	}
	vgb_vfio_device_destroy(dev[1]);
	dev[1] = NULL;
	leak_check(&start, "both devices destroyed: fds and mappings as at the start");
	return tap_done();
}
