/* SPDX-License-Identifier: MIT */
/*
 * The export planner: which strategy each kind of memory gets, quiet fallbacks, reported
 * failures, and the CPU view (mapped, offset into the first page, or copied) byte for byte.
 * There is no /dev/udmabuf here: tests/lib/fake-udmabuf.c answers UDMABUF_CREATE_LIST at the
 * ioctl seam with the kernel's checks (the virtual device exports through it too).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "export.h"
#include "fake-udmabuf.h"
#include "fault.h"
#include "leak.h"
#include "logcap.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)
#define PG 4096ull

static uint8_t pattern(uint64_t off, unsigned seed)
{
	return (uint8_t)((off * 13) ^ (off >> 12) ^ (off >> 20) ^ (seed * 0x55));
}

static int pattern_memfd(uint64_t size, unsigned seed, unsigned seals)
{
	int fd = memfd_create("test-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint8_t buf[4096];

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		tap_bail("memfd: %m");
	for (uint64_t base = 0; base < size; base += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(base + i, seed);
		if (pwrite(fd, buf, sizeof(buf), (off_t)base) != (ssize_t)sizeof(buf))
			tap_bail("pwrite: %m");
	}
	if (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)
		tap_bail("seal: %m");
	return fd;
}

static struct virtio_gpu_mem_entry E(uint64_t addr, uint32_t len)
{
	return (struct virtio_gpu_mem_entry){ .addr = htole64(addr), .length = htole32(len) };
}

/*
 * The map:
 *   RAM A   gpa [0, 4M)          memfd A (seed 1)
 *   RAM W   gpa [4M, 5M)         memfd W, sealed F_SEAL_WRITE (seed 2)
 *   BAR2    gpa [8M, 12M)        dev (dmabuf=auto) BAR2 from 0 (seed 3)
 *   BAR2'   gpa [16M, 20M)       dev_off (dmabuf=off) BAR2
 *   sparse  gpa [24M, 28M)       dev_sp BAR2: only [0, 1M) may be mmapped
 */
static struct vgb_memmap *map;
static struct vgb_vfio_device *dev, *dev_off, *dev_sp;

static void fill_bar(struct vgb_vfio_device *d, uint64_t size, unsigned seed)
{
	for (uint64_t base = 0; base < size; base += 4096) {
		uint8_t buf[4096];

		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(base + i, seed);
		if (vgb_vfio_region_write(d, 2, base, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			tap_bail("BAR write");
	}
}

static void setup(void)
{
	fake_udmabuf_set_absent(false);
	if (vgb_memmap_create(&map) < 0 ||
	    vgb_memmap_add_ram(map, 0, 4 * MiB, pattern_memfd(4 * MiB, 1, 0), 0, NULL) < 0 ||
	    vgb_memmap_add_ram(map, 4 * MiB, MiB, pattern_memfd(MiB, 2, F_SEAL_WRITE), 0, NULL) < 0)
		tap_bail("RAM windows");
	if (vgb_vfio_vdev_create("bar2=4M,dmabuf=auto", &dev) < 0 ||
	    vgb_vfio_vdev_create("bar2=4M,dmabuf=off", &dev_off) < 0 ||
	    vgb_vfio_vdev_create("bar2=4M:sparse=0+1M,dmabuf=off", &dev_sp) < 0)
		tap_bail("virtual devices");
	fill_bar(dev, 4 * MiB, 3);
	fill_bar(dev_off, 4 * MiB, 3);
	fill_bar(dev_sp, 4 * MiB, 3);
	if (vgb_memmap_add_vfio(map, 8 * MiB, 4 * MiB, dev, 2, 0, NULL) < 0 ||
	    vgb_memmap_add_vfio(map, 16 * MiB, 4 * MiB, dev_off, 2, 0, NULL) < 0 ||
	    vgb_memmap_add_vfio(map, 24 * MiB, 4 * MiB, dev_sp, 2, 0, NULL) < 0)
		tap_bail("VFIO windows");
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF) &&
		       !vgb_vfio_device_has_cap(dev_off, VGB_VFIO_CAP_DMA_BUF),
	       "setup: dev offers DMA_BUF (fake udmabuf), dev_off does not");
}

/* The expected byte at blob offset @off for a layout, computed from the map's patterns. */
static uint8_t expected(const struct vgb_blob_layout *l, uint64_t off)
{
	for (size_t i = 0; i < l->n_segs; i++) {
		const struct vgb_blob_segment *s = &l->segs[i];

		if (off >= s->blob_offset && off < s->blob_offset + s->length) {
			uint64_t gpa = s->gpa + (off - s->blob_offset);

			if (gpa < 4 * MiB)
				return pattern(gpa, 1);
			if (gpa < 5 * MiB)
				return pattern(gpa - 4 * MiB, 2);
			return pattern(s->offset + (off - s->blob_offset), 3);
		}
	}
	return 0;
}

static bool view_matches(const struct vgb_export *e, const struct vgb_blob_layout *l)
{
	if (!e->cpu)
		return false;
	for (uint64_t off = 0; off < l->size; off++)
		if (e->cpu[off] != expected(l, off)) {
			tap_diag("byte %llu: %#x, want %#x", (unsigned long long)off, e->cpu[off],
				 expected(l, off));
			return false;
		}
	return true;
}

struct plan_case {
	const char *what;
	struct virtio_gpu_mem_entry e[4];
	uint32_t n;
	enum vgb_export_strategy want;
	bool want_copy;    /* the CPU view must be a copy */
	bool want_memfd;   /* the view can hand out one memfd for the whole blob */
};

static void run_case(const struct plan_case *c)
{
	struct vgb_export_report rep = { 0 };
	struct vgb_blob_layout *l = NULL;
	struct vgb_export *e = NULL;
	uint64_t size = 0;
	int r;

	for (uint32_t i = 0; i < c->n; i++)
		size += le32toh(c->e[i].length);
	logcap_start();
	r = vgb_blob_translate(map, c->e, c->n, size, 16384, 64 * MiB, &l);
	if (!tap_is_int(r, 0, "%s: translate", c->what))
		return;
	tap_is_int(vgb_export_plan(l, &e, &rep), 0, "%s: plan", c->what);
	tap_is_str(vgb_export_strategy_name(e->strategy), vgb_export_strategy_name(c->want),
		   "%s: strategy", c->what);
	tap_ok(!rep.unexpected, "%s: no unexpected failure", c->what);
	tap_ok((e->dmabuf_fd >= 0) == (c->want != VGB_EXPORT_CPU_VIEW), "%s: dmabuf fd iff dmabuf",
	       c->what);
	tap_is_int(vgb_export_cpu_view(e, l), 0, "%s: CPU view", c->what);
	tap_ok(view_matches(e, l), "%s: CPU view byte for byte", c->what);
	tap_ok(e->cpu_is_copy == c->want_copy, "%s: view is %s", c->what,
	       c->want_copy ? "a copy" : "a mapping");
	{
		int fd = -1;
		uint64_t o = 0, sz = 0;
		bool got = vgb_export_memfd_range(e, 0, size, &fd, &o, &sz);

		tap_ok(got == c->want_memfd, "%s: whole blob in one memfd range: %s", c->what,
		       got ? "yes" : "no");
	}
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0, "%s: nothing logged above debug",
		    c->what);
	logcap_stop();
	vgb_export_unref(e);
	free(l);
}

static void test_choices(void)
{
	const struct plan_case cases[] = {
		{ "RAM, aligned, touching", { E(0x10000, 2 * PG), E(0x12000, PG) }, 2,
		  VGB_EXPORT_UDMABUF, false, true },
		{ "RAM, scattered pages", { E(0x40000, PG), E(0x10000, PG), E(0x80000, 3 * PG) }, 3,
		  VGB_EXPORT_UDMABUF, false, false },
		{ "RAM sealed against writes", { E(4 * MiB, 2 * PG) }, 1, VGB_EXPORT_CPU_VIEW, false,
		  true },
		{ "RAM, one unaligned entry", { E(0x10010, 3 * PG) }, 1, VGB_EXPORT_CPU_VIEW, false,
		  true },
		{ "RAM, unaligned inner edge", { E(0x10000, 0x800), E(0x30000, PG) }, 2,
		  VGB_EXPORT_CPU_VIEW, true, true },
		{ "BAR, scattered pages", { E(8 * MiB + 0x5000, PG), E(8 * MiB, 2 * PG) }, 2,
		  VGB_EXPORT_VFIO_DMABUF, false, false },
		{ "BAR without DMA_BUF", { E(16 * MiB, 4 * PG) }, 1, VGB_EXPORT_CPU_VIEW, false,
		  false },
		{ "BAR, unaligned", { E(8 * MiB + 0x100, 2 * PG) }, 1, VGB_EXPORT_CPU_VIEW, false,
		  false },
		{ "RAM + BAR", { E(0, PG), E(8 * MiB, PG) }, 2, VGB_EXPORT_CPU_VIEW, false, false },
		{ "BAR outside its sparse mmap area", { E(24 * MiB + 2 * MiB, 2 * PG) }, 1,
		  VGB_EXPORT_CPU_VIEW, true, true },
		{ "BAR inside its sparse mmap area", { E(24 * MiB + PG, 2 * PG) }, 1,
		  VGB_EXPORT_CPU_VIEW, false, false },
	};

	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
}

static struct vgb_export *plan_one(const struct virtio_gpu_mem_entry *e, uint32_t n,
				   struct vgb_blob_layout **ret_l, struct vgb_export_report *rep)
{
	struct vgb_export *x = NULL;
	uint64_t size = 0;

	for (uint32_t i = 0; i < n; i++)
		size += le32toh(e[i].length);
	if (vgb_blob_translate(map, e, n, size, 16384, 64 * MiB, ret_l) < 0 ||
	    vgb_export_plan(*ret_l, &x, rep) < 0)
		tap_bail("plan_one");
	return x;
}

static void test_fallbacks(void)
{
	struct virtio_gpu_mem_entry ram[] = { E(0x100000, PG), E(0x200000, PG), E(0x300000, PG) };
	struct virtio_gpu_mem_entry bar = E(8 * MiB, 4 * PG);
	struct vgb_export_report rep;
	struct vgb_blob_layout *l;
	struct vgb_export *e;

	/* No /dev/udmabuf at all: quiet. */
	fake_udmabuf_set_absent(true);
	logcap_start();
	e = plan_one(ram, 3, &l, &rep);
	tap_ok(e->strategy == VGB_EXPORT_CPU_VIEW && rep.udmabuf_err == -ENODEV && !rep.unexpected,
	       "no udmabuf device: CPU view, ENODEV, quiet (udmabuf_err %d)", rep.udmabuf_err);
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0, "  nothing logged above debug");
	logcap_stop();
	vgb_export_unref(e);
	free(l);
	fake_udmabuf_set_absent(false);

	/* Over the module's list limit: quiet. */
	fake_udmabuf_set_param("list_limit", 2);
	e = plan_one(ram, 3, &l, &rep);
	tap_ok(e->strategy == VGB_EXPORT_CPU_VIEW && rep.udmabuf_err == -E2BIG && !rep.unexpected,
	       "3 items over list_limit 2: CPU view, E2BIG, quiet");
	vgb_export_unref(e);
	free(l);
	fake_udmabuf_set_param("list_limit", 1024);

	/* Failures injected at the ioctl boundary. */
	/* EBADFD is udmabuf's "not shmem"; from VFIO it would be news. */
	static const struct {
		int err;
		bool unexpected, vfio_unexpected;
	} inj[] = { { EINVAL, false, false }, { EBADFD, false, true }, { EIO, true, true },
		    { ENOMEM, true, true } };
	fault_install();
	for (size_t i = 0; i < VGB_ARRAY_SIZE(inj); i++) {
		fault_arm_ioctl(1, inj[i].err);
		e = plan_one(ram, 3, &l, &rep);
		tap_ok(fault_fired() && e->strategy == VGB_EXPORT_CPU_VIEW &&
			       rep.udmabuf_err == -inj[i].err && rep.unexpected == inj[i].unexpected,
		       "udmabuf ioctl failing with %s: CPU view, %s", strerror(inj[i].err),
		       inj[i].unexpected ? "reported as unexpected" : "quiet");
		tap_is_int(vgb_export_cpu_view(e, l), 0, "  CPU view still works");
		vgb_export_unref(e);
		free(l);

		fault_arm_ioctl(1, inj[i].err);
		e = plan_one(&bar, 1, &l, &rep);
		tap_ok(fault_fired() && e->strategy == VGB_EXPORT_CPU_VIEW &&
			       rep.vfio_err == -inj[i].err && rep.unexpected == inj[i].vfio_unexpected,
		       "VFIO dmabuf failing with %s: CPU view, %s (vfio_err %d)",
		       strerror(inj[i].err), inj[i].vfio_unexpected ? "unexpected" : "quiet",
		       rep.vfio_err);
		tap_ok(view_matches(e, l) || (vgb_export_cpu_view(e, l) == 0 && view_matches(e, l)),
		       "  CPU view byte for byte");
		vgb_export_unref(e);
		free(l);
	}
	fault_arm_ioctl(0, 0);

	/* mmap failing while the view is built: the copy path takes over. */
	e = plan_one(ram, 3, &l, &rep);
	fault_arm_mmap(2, EACCES);
	tap_is_int(vgb_export_cpu_view(e, l), 0, "mmap failing in the segment mapper: view built");
	tap_ok(fault_fired() && e->cpu_is_copy && view_matches(e, l),
	       "  as a copy, byte for byte");
	vgb_export_unref(e);
	free(l);
	fault_arm_mmap(0, 0);
	fault_remove();
}

static void test_budgets(void)
{
	struct virtio_gpu_mem_entry ent[] = { E(0x10000, PG), E(0x30000, PG), E(0x50000, PG) };
	struct vgb_export_report rep;
	struct vgb_blob_layout *l;
	struct vgb_export *e = plan_one(ent, 3, &l, &rep);

	tap_is_errno(vgb_export_cpu_view_limited(e, l, 2, 3 * PG - 1), -E2BIG,
		     "3 segments, 2 mmaps allowed, copy 1 byte short: E2BIG");
	tap_ok(!e->cpu, "  no view left behind");
	tap_is_int(vgb_export_cpu_view_limited(e, l, 2, 3 * PG), 0, "copy that fits: built");
	tap_ok(e->cpu_is_copy && view_matches(e, l), "  as a copy, byte for byte");
	vgb_export_unref(e);
	free(l);
	e = plan_one(ent, 3, &l, &rep);
	tap_is_int(vgb_export_cpu_view_limited(e, l, 3, 0), 0, "3 mmaps allowed: a mapping");
	tap_ok(!e->cpu_is_copy && e->segmap && e->segmap->n_mmaps <= 3, "  of at most 3 mmaps");
	vgb_export_unref(e);
	free(l);
}

static void test_copy_refresh(void)
{
	struct virtio_gpu_mem_entry ent[] = { E(0x10000, 0x800), E(0x30000, PG) };
	struct vgb_export_report rep;
	struct vgb_blob_layout *l;
	struct vgb_export *e = plan_one(ent, 2, &l, &rep);
	const struct vgb_memmap_window *w = vgb_memmap_lookup(map, 0);
	uint8_t v = 0xee;

	vgb_export_cpu_view(e, l);
	tap_ok(e->cpu_is_copy, "unaligned inner edge: copy");
	if (pwrite(w->ram.memfd, &v, 1, 0x30000 + 5) != 1)
		tap_bail("pwrite");
	tap_ok(e->cpu[0x800 + 5] != 0xee, "the copy does not see a guest write by itself");
	tap_is_int(vgb_export_refresh(e, l, 0x800, 16), 0, "refresh the damaged bytes");
	tap_is_uint(e->cpu[0x800 + 5], 0xee, "now it does");
	v = pattern(0x30000 + 5, 1);
	if (pwrite(w->ram.memfd, &v, 1, 0x30000 + 5) != 1)
		tap_bail("pwrite");
	vgb_export_unref(e);
	free(l);
}

static void test_refcount(void)
{
	struct virtio_gpu_mem_entry ent = E(0x10000, 4 * PG);
	struct vgb_export_report rep;
	struct vgb_blob_layout *l;
	struct vgb_export *e = plan_one(&ent, 1, &l, &rep), *held;
	const uint8_t *cpu;

	vgb_export_cpu_view(e, l);
	cpu = e->cpu;
	held = vgb_export_ref(e);
	vgb_export_unref(e);
	tap_ok(held->cpu == cpu && cpu[5] == pattern(0x10005, 1),
	       "a second reference keeps the view mapped");
	vgb_export_unref(held);
	free(l);

	e = NULL;
	tap_is_int(vgb_export_create_host(100 * PG + 3, &e), 0, "host buffer");
	tap_ok(e && e->copy_fd >= 0 && e->map_size == 101 * PG, "memfd-backed, page-rounded");
	memset(e->map, 0x5a, 100 * PG + 3);
	{
		int fd;
		uint64_t o, sz;

		tap_ok(vgb_export_memfd_range(e, PG, PG, &fd, &o, &sz) && fd == e->copy_fd &&
			       o == PG && sz == 101 * PG, "host buffer hands out its memfd");
	}
	vgb_export_unref(e);
	vgb_export_unref(NULL);
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	fake_udmabuf_install();
	setup();
	leak_snapshot(&before);
	test_choices();
	test_fallbacks();
	test_budgets();
	test_copy_refresh();
	test_refcount();
	leak_check(&before, "every export released its fds and mappings");

	vgb_memmap_destroy(map);
	vgb_vfio_device_destroy(dev);
	vgb_vfio_device_destroy(dev_off);
	vgb_vfio_device_destroy(dev_sp);
	fake_udmabuf_remove();
	return tap_done();
}
