/* SPDX-License-Identifier: MIT */
/* Blob translation: validation, splitting at window edges, VFIO offsets, merging, reads. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "leak.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)
#define PG 4096ull

static struct virtio_gpu_mem_entry E(uint64_t addr, uint32_t len)
{
	return (struct virtio_gpu_mem_entry){ .addr = htole64(addr), .length = htole32(len) };
}

static uint8_t pattern(uint64_t off, unsigned seed)
{
	/* Depends on the page and MiB numbers too, so a wrong page shows up. */
	return (uint8_t)((off * 7) ^ (off >> 12) ^ (off >> 20) ^ (seed * 0x55));
}

/* A memfd whose byte i is pattern(i, seed). */
static int pattern_memfd(uint64_t size, unsigned seed)
{
	int fd = memfd_create("test-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint8_t *p;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		tap_bail("memfd: %m");
	p = mmap(NULL, size, PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		tap_bail("mmap: %m");
	for (uint64_t i = 0; i < size; i++)
		p[i] = pattern(i, seed);
	munmap(p, size);
	return fd;
}

/*
 * Layout used by most tests:
 *   RAM A: gpa [0, 1M)         memfd A from offset 0
 *   RAM B: gpa [1M, 2M)        memfd B from offset 64K   (touches A: a split point)
 *   hole:  [2M, 3M)
 *   VFIO:  gpa [3M, 5M)        BAR2 from region offset 1M
 */
static struct vgb_memmap *map;
static struct vgb_vfio_device *dev;
static uint32_t id_a, id_b, id_v;

static void setup(void)
{
	int a = pattern_memfd(MiB, 1), b = pattern_memfd(2 * MiB, 2);

	if (vgb_memmap_create(&map) < 0 || vgb_memmap_add_ram(map, 0, MiB, a, 0, &id_a) < 0 ||
	    vgb_memmap_add_ram(map, MiB, MiB, b, 64 * 1024, &id_b) < 0)
		tap_bail("setup RAM");
	if (vgb_vfio_vdev_create("bar2=4M,dmabuf=off", &dev) < 0 ||
	    vgb_memmap_add_vfio(map, 3 * MiB, 2 * MiB, dev, 2, MiB, &id_v) < 0)
		tap_bail("setup VFIO");
	/* Fill BAR2 with a pattern through the region write path, in small pieces (a large
	 * malloc would stay mapped in ASan's quarantine and look like a leaked mapping). */
	for (uint64_t base = 0; base < 4 * MiB; base += 4096) {
		uint8_t buf[4096];

		for (uint64_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(base + i, 3);
		if (vgb_vfio_region_write(dev, 2, base, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			tap_bail("BAR2 write");
	}
}

static int translate(const struct virtio_gpu_mem_entry *e, uint32_t n, uint64_t size,
		     struct vgb_blob_layout **ret)
{
	return vgb_blob_translate(map, e, n, size, VGB_BLOB_DEFAULT_MAX_ENTRIES,
				  VGB_BLOB_DEFAULT_MAX_BYTES, ret);
}

static void test_validation(void)
{
	struct virtio_gpu_mem_entry one = E(0, PG);
	struct virtio_gpu_mem_entry *many;
	struct vgb_blob_layout *l = (void *)0x1;
	const struct {
		struct virtio_gpu_mem_entry e[2];
		uint32_t n;
		uint64_t size;
		int want;
		const char *what;
	} cases[] = {
		{ { { 0 } }, 0, 0, -EINVAL, "no entries" },
		{ { { .addr = 0, .length = 0 } }, 1, 0, -EINVAL, "a zero-length entry" },
		{ { { .addr = 0, .length = htole32(PG) }, { .addr = 0, .length = 0 } }, 2, 0, -EINVAL,
		  "a zero-length second entry" },
		{ { { .addr = htole64(UINT64_MAX - 100), .length = htole32(PG) } }, 1, 0, -EOVERFLOW,
		  "addr + length wraps" },
		{ { { .addr = htole64(2 * MiB), .length = htole32(PG) } }, 1, 0, -EFAULT,
		  "entry in the hole" },
		{ { { .addr = htole64(2 * MiB - PG), .length = htole32(2 * PG) } }, 1, 0, -EFAULT,
		  "entry running from RAM into the hole" },
		{ { { .addr = htole64(5 * MiB - PG), .length = htole32(2 * PG) } }, 1, 0, -EFAULT,
		  "entry running past the last window" },
		{ { { .addr = htole64(0), .length = htole32(PG) } }, 1, 2 * PG, -EINVAL,
		  "entries shorter than the declared size" },
		{ { { .addr = htole64(0), .length = htole32(2 * PG) } }, 1, PG, -EINVAL,
		  "entries longer than the declared size" },
		{ { { .addr = htole64(0), .length = htole32(PG) } }, 1, PG, 0, "a valid entry" },
	};

	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		l = NULL;
		tap_is_errno(translate(cases[i].e, cases[i].n, cases[i].size, &l), cases[i].want,
			     "%s", cases[i].what);
		if (cases[i].want < 0)
			tap_ok(l == NULL, "  nothing returned for: %s", cases[i].what);
		free(l);
	}

	tap_is_errno(vgb_blob_translate(map, &one, 1, 0, 16, PG - 1, &l), -E2BIG,
		     "total over the byte cap");
	many = calloc(17, sizeof(*many));
	for (int i = 0; i < 17; i++)
		many[i] = E((uint64_t)i * PG, PG);
	tap_is_errno(vgb_blob_translate(map, many, 17, 0, 16, MiB, &l), -E2BIG,
		     "17 entries over a cap of 16");
	l = NULL;
	tap_is_int(vgb_blob_translate(map, many, 16, 0, 16, MiB, &l), 0, "16 entries at the cap");
	tap_ok(l && l->n_segs == 1 && l->merged == 15, "16 touching pages merge into one segment");
	free(l);
	free(many);

	/* The total overflows 64 bits only with a huge cap: many entries of 4 GiB - 1. */
	{
		uint32_t n = 5;
		struct virtio_gpu_mem_entry *big = calloc(n, sizeof(*big));

		for (uint32_t i = 0; i < n; i++)
			big[i] = E(0, UINT32_MAX);
		tap_is_errno(vgb_blob_translate(map, big, n, 0, 16, UINT64_MAX, &l), -EFAULT,
			     "huge entries still need coverage");
		free(big);
	}
}

static void test_split_and_offsets(void)
{
	struct vgb_blob_layout *l = NULL;
	/* One entry from A's last page across into B's first two pages. */
	struct virtio_gpu_mem_entry e1 = E(MiB - PG, 3 * PG);
	/* One entry inside the VFIO window. */
	struct virtio_gpu_mem_entry e2 = E(3 * MiB + 5 * PG, 2 * PG);

	tap_is_int(translate(&e1, 1, 3 * PG, &l), 0, "entry spanning two RAM windows");
	if (l) {
		tap_is_uint(l->n_segs, 2, "split at the window edge");
		tap_ok(l->segs[0].window_id == id_a && l->segs[0].offset == MiB - PG &&
			       l->segs[0].length == PG && l->segs[0].blob_offset == 0,
		       "first piece: A's last page");
		tap_ok(l->segs[1].window_id == id_b && l->segs[1].offset == 64 * 1024 &&
			       l->segs[1].length == 2 * PG && l->segs[1].blob_offset == PG,
		       "second piece: B from its memfd offset (64K)");
		tap_is_uint(l->merged, 0, "nothing merged across windows");
	}
	free(l);
	l = NULL;
	tap_is_int(translate(&e2, 1, 0, &l), 0, "entry inside the VFIO window");
	if (l) {
		tap_ok(l->n_segs == 1 && l->segs[0].kind == VGB_MEMMAP_VFIO &&
			       l->segs[0].dev == dev && l->segs[0].region == 2,
		       "one VFIO segment on BAR2");
		tap_is_uint(l->segs[0].offset, MiB + 5 * PG,
			    "region offset = region_offset + (gpa - window.gpa)");
	}
	free(l);
}

static void test_merge(void)
{
	struct vgb_blob_layout *l = NULL;
	/* Scattered page runs like a 6.1 guest's dumb buffer: runs touch in pairs. */
	struct virtio_gpu_mem_entry e[] = {
		E(0x10000, PG), E(0x11000, PG),        /* touch: merge */
		E(0x40000, 2 * PG), E(0x42000, PG),    /* touch: merge */
		E(0x30000, PG),                        /* backwards: no merge */
		E(0x21000, 0x800), E(0x21800, 0x800),  /* unaligned halves that touch: merge */
		E(3 * MiB, PG), E(3 * MiB + PG, PG),   /* VFIO, touching */
		E(MiB - PG, PG), E(MiB, PG),           /* touch in gpa, but two windows: no merge */
	};
	uint64_t size = 0;

	for (size_t i = 0; i < VGB_ARRAY_SIZE(e); i++)
		size += le32toh(e[i].length);
	tap_is_int(translate(e, VGB_ARRAY_SIZE(e), size, &l), 0, "11 scattered entries");
	if (!l)
		return;
	tap_is_uint(l->n_pieces, 11, "11 pieces before merging");
	tap_is_uint(l->n_segs, 7, "7 segments after merging");
	tap_is_uint(l->merged, 4, "4 merged away");
	tap_ok(l->segs[0].offset == 0x10000 && l->segs[0].length == 2 * PG, "first run merged");
	tap_ok(l->segs[3].offset == 0x21000 && l->segs[3].length == PG,
	       "unaligned touching halves merged");
	tap_ok(l->segs[4].kind == VGB_MEMMAP_VFIO && l->segs[4].length == 2 * PG,
	       "VFIO pages merged");
	tap_is_uint(l->size, size, "size is the sum of the entries");
	{
		uint64_t off = 0;
		bool ordered = true;

		for (size_t i = 0; i < l->n_segs; i++) {
			ordered &= l->segs[i].blob_offset == off;
			off += l->segs[i].length;
		}
		tap_ok(ordered && off == size, "segments tile the blob in order");
	}
	free(l);
}

static void test_read(void)
{
	struct virtio_gpu_mem_entry e[] = {
		E(0x3000, 0x123),            /* A, unaligned */
		E(MiB + 0x10, 0x2000),       /* B, unaligned, from memfd offset 64K + 0x10 */
		E(3 * MiB + 0x777, 0x1001),  /* VFIO, unaligned */
	};
	struct vgb_blob_layout *l = NULL;
	uint64_t size = 0x123 + 0x2000 + 0x1001;
	uint8_t *buf = malloc(size), *want = malloc(size);
	uint64_t o = 0;

	for (uint64_t i = 0; i < 0x123; i++)
		want[o++] = pattern(0x3000 + i, 1);
	for (uint64_t i = 0; i < 0x2000; i++)
		want[o++] = pattern(64 * 1024 + 0x10 + i, 2);
	for (uint64_t i = 0; i < 0x1001; i++)
		want[o++] = pattern(MiB + 0x777 + i, 3);

	tap_is_int(translate(e, 3, size, &l), 0, "unaligned blob over three windows");
	if (l) {
		tap_is_int(vgb_blob_layout_read(l, 0, buf, size), 0, "read all of it");
		tap_is_mem(buf, want, size, "bytes match each window's source");
		tap_is_int(vgb_blob_layout_read(l, 0x100, buf, 0x2100), 0, "read across two edges");
		tap_is_mem(buf, want + 0x100, 0x2100, "bytes match across the edges");
		tap_is_errno(vgb_blob_layout_read(l, size - 1, buf, 2), -EINVAL,
			     "reading past the blob fails");
		tap_ok(vgb_blob_layout_is_valid(l, map), "layout valid while its windows exist");
		tap_ok(vgb_blob_layout_uses_window(l, id_v) && vgb_blob_layout_uses_window(l, id_a),
		       "uses A and the VFIO window");
	}
	free(l);
	free(buf);
	free(want);
}

static void test_invalidation(void)
{
	struct virtio_gpu_mem_entry e = E(MiB, PG);
	struct vgb_blob_layout *l = NULL;

	translate(&e, 1, 0, &l);
	tap_ok(l && vgb_blob_layout_is_valid(l, map), "layout over B is valid");
	vgb_memmap_remove(map, id_b);
	tap_ok(l && !vgb_blob_layout_is_valid(l, map), "invalid once B is removed");
	tap_is_errno(translate(&e, 1, 0, &l), -EFAULT, "B's range now fails coverage");
	free(l);
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	leak_snapshot(&before);
	setup();
	test_validation();
	test_split_and_offsets();
	test_merge();
	test_read();
	test_invalidation();
	vgb_memmap_destroy(map);
	vgb_vfio_device_destroy(dev);
	leak_check(&before, "translation tests");
	return tap_done();
}
