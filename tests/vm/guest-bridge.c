/* SPDX-License-Identifier: MIT */
/*
 * In-guest, both kernels: the bridge's memory map, blob translation and export planner over
 * real vfio-pci BARs and real memfds.
 *   guest-bridge --dmabuf      (a kernel with VFIO DMA_BUF and udmabuf: 7.2)
 *   guest-bridge --no-dmabuf   (a kernel without either: 6.1)
 * The expectation comes from the command line, never from what the kernel turns out to have.
 *
 * Windows: RAM (a memfd with a pattern of its own), BAR2 of device 0 and BAR2 of device 1 at
 * distinct guest addresses. Blobs:
 *   A  scattered, reordered pages of device 0's window: VFIO dmabuf, or the CPU view
 *   B  pages of device 1's window: the planner must look them up on device 1
 *   C  entries mixing the RAM window and device 0's window: no single dmabuf can hold it, so
 *      the CPU view, quietly; its bytes come from both sources
 *   D  several ranges of the RAM window: udmabuf, or the CPU view
 *   E  list_limit + 1 separate RAM pages: over udmabuf's limit, the CPU view, quietly
 * Each: the planner's choice, the dmabuf's size, every byte of the CPU view, nothing logged
 * above debug, nothing leaked.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/virtio_gpu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "blob.h"
#include "export.h"
#include "lab.h"
#include "leak.h"
#include "logcap.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE
#define RAM_GPA 0x40000000ull
#define RAM_PAGES 4096ull /* 16 MiB */
#define RAM_SEED 0x0badf00du
#define BAR_GPA(i) (0x100000000ull + (uint64_t)(i) * 0x10000000ull)

static struct vm_lab_device labdev[VM_LAB_MAX_DEVICES];
static struct vgb_vfio_device *dev[2];
static struct vgb_memmap *mm;
static bool want_dmabuf;

/* Where a guest address's byte comes from, for the expected pattern. */
static uint32_t seed_of(uint64_t gpa, uint64_t *ret_off)
{
	for (int i = 0; i < 2; i++)
		if (gpa >= BAR_GPA(i) && gpa < BAR_GPA(i) + labdev[i].size) {
			*ret_off = gpa - BAR_GPA(i);
			return labdev[i].seed;
		}
	*ret_off = gpa - RAM_GPA;
	return RAM_SEED;
}

struct piece {
	uint64_t gpa, len;
};

static bool bytes_ok(const uint8_t *view, const struct piece *p, size_t n)
{
	uint64_t pos = 0;
	bool ok = true;

	for (size_t k = 0; k < n; k++) {
		uint64_t off;
		uint32_t seed = seed_of(p[k].gpa, &off);

		ok = vm_lab_pattern_ok(view + pos, off, p[k].len, seed) && ok;
		pos += p[k].len;
	}
	return ok;
}

/*
 * Translates @n pieces as a blob, plans it, checks the strategy against @want, the dmabuf's
 * size, and the CPU view's bytes. @what names the case.
 */
static void check_blob(const char *what, const struct piece *p, size_t n,
		       enum vgb_export_strategy want)
{
	struct virtio_gpu_mem_entry *entries = calloc(n, sizeof(*entries));
	struct vgb_blob_layout *layout = NULL;
	struct vgb_export *e = NULL;
	struct vgb_export_report report = { 0 };
	struct leak_snapshot before;
	uint64_t total = 0;
	off_t size = -1;
	int r;

	if (!entries)
		tap_bail("calloc");
	for (size_t k = 0; k < n; k++) {
		entries[k].addr = htole64(p[k].gpa);
		entries[k].length = htole32((uint32_t)p[k].len);
		total += p[k].len;
	}
	leak_snapshot(&before);
	logcap_start();
	r = vgb_blob_translate(mm, entries, (uint32_t)n, total, VGB_BLOB_DEFAULT_MAX_ENTRIES,
			       VGB_BLOB_DEFAULT_MAX_BYTES, &layout);
	if (r == 0)
		r = vgb_export_plan(layout, &e, &report);
	if (r == 0 && e->dmabuf_fd >= 0)
		size = lseek(e->dmabuf_fd, 0, SEEK_END);
	tap_ok(r == 0 && e->strategy == want &&
		       (want == VGB_EXPORT_CPU_VIEW ? e->dmabuf_fd < 0 : size == (off_t)total) &&
		       !report.unexpected,
	       "%s: %zu entries, %zu segments: planner chose %s (want %s), dmabuf size %lld, "
	       "vfio %d, udmabuf %d, unexpected %d",
	       what, n, layout ? layout->n_segs : 0,
	       e ? vgb_export_strategy_name(e->strategy) : "-", vgb_export_strategy_name(want),
	       (long long)size, report.vfio_err, report.udmabuf_err, report.unexpected);

	if (e && want == VGB_EXPORT_UDMABUF && e->dmabuf_fd >= 0) {
		void *m = mmap(NULL, total, PROT_READ, MAP_SHARED, e->dmabuf_fd, 0);

		tap_ok(m != MAP_FAILED && bytes_ok(m, p, n), "%s: the udmabuf's mmap shows the bytes",
		       what);
		if (m != MAP_FAILED)
			munmap(m, total);
	}
	r = e ? vgb_export_cpu_view(e, layout) : -1;
	tap_ok(r == 0 && e->cpu && bytes_ok(e->cpu, p, n),
	       "%s: the CPU view (%s) shows every byte from its source (r=%d)", what,
	       e && e->cpu_is_copy ? "copy" : "mapping", r);
	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0,
	       "%s: nothing logged above debug (%u%s%s)", what,
	       logcap_count_at_or_above(VGB_LOG_INFO), *logcap_last_loud() ? ": " : "",
	       logcap_last_loud());
	logcap_stop();
	vgb_export_unref(e);
	free(layout);
	free(entries);
	leak_check(&before, "export dropped: no fd, no mapping left");
}

int main(int argc, char **argv)
{
	struct leak_snapshot start;
	enum vgb_export_strategy vfio_want, udmabuf_want;
	int n = vm_lab_devices(labdev, VM_LAB_MAX_DEVICES), r, ram;
	char buf[32];
	unsigned long long limit = 1024;

	if (argc != 2 || (strcmp(argv[1], "--dmabuf") && strcmp(argv[1], "--no-dmabuf")))
		tap_bail("usage: guest-bridge --dmabuf|--no-dmabuf");
	want_dmabuf = strcmp(argv[1], "--dmabuf") == 0;
	vfio_want = want_dmabuf ? VGB_EXPORT_VFIO_DMABUF : VGB_EXPORT_CPU_VIEW;
	udmabuf_want = want_dmabuf ? VGB_EXPORT_UDMABUF : VGB_EXPORT_CPU_VIEW;
	if (n < 2)
		tap_bail("needs the lab's two ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	tap_plan_lazy();
	leak_snapshot(&start);

	for (int i = 0; i < 2; i++)
		if (vgb_vfio_kernel_open(labdev[i].bdf, 0, &dev[i]) < 0)
			tap_bail("cannot open %s", labdev[i].bdf);
	ram = vm_lab_make_ram("vgb-vm-guest-ram", RAM_PAGES * PAGE, RAM_SEED);
	r = vgb_memmap_create(&mm);
	if (r == 0)
		r = vgb_memmap_add_ram(mm, RAM_GPA, RAM_PAGES * PAGE, ram, 0, NULL);
	for (int i = 0; i < 2 && r == 0; i++)
		r = vgb_memmap_add_vfio(mm, BAR_GPA(i), labdev[i].size, dev[i], 2, 0, NULL);
	tap_ok(r == 0 && vgb_memmap_count(mm) == 3,
	       "memory map: a RAM window and both devices' BAR2 windows (r=%d)", r);
	if (r < 0)
		tap_bail("no memory map");

	{
		/* A: scattered, reordered pages of device 0 (the last page is guest-smoke's). */
		const struct piece a[] = {
			{ BAR_GPA(0) + 300 * PAGE, 2 * PAGE }, { BAR_GPA(0) + 4 * PAGE, PAGE },
			{ BAR_GPA(0) + 2000 * PAGE, 3 * PAGE }, { BAR_GPA(0) + 9 * PAGE, PAGE },
		};
		check_blob("A: device 0's BAR2", a, VGB_ARRAY_SIZE(a), vfio_want);
	}
	{
		/* B: device 1 (different size and seed): a lookup on device 0 reads wrong bytes. */
		const struct piece b[] = {
			{ BAR_GPA(1) + 50 * PAGE, PAGE }, { BAR_GPA(1) + 7 * PAGE, 2 * PAGE },
			{ BAR_GPA(1) + 1500 * PAGE, PAGE },
		};
		check_blob("B: device 1's BAR2", b, VGB_ARRAY_SIZE(b), vfio_want);
	}
	{
		/* C: RAM and BAR2 mixed: only the CPU view can hold it. */
		const struct piece c[] = {
			{ RAM_GPA + 10 * PAGE, 2 * PAGE }, { BAR_GPA(0) + 100 * PAGE, PAGE },
			{ RAM_GPA + 3 * PAGE, PAGE }, { BAR_GPA(0) + 40 * PAGE, 2 * PAGE },
		};
		check_blob("C: RAM and BAR2 mixed", c, VGB_ARRAY_SIZE(c), VGB_EXPORT_CPU_VIEW);
	}
	{
		/* D: several ranges of the RAM window. */
		const struct piece d[] = {
			{ RAM_GPA + 64 * PAGE, 4 * PAGE }, { RAM_GPA + 8 * PAGE, PAGE },
			{ RAM_GPA + 200 * PAGE, 2 * PAGE },
		};
		check_blob("D: RAM ranges", d, VGB_ARRAY_SIZE(d), udmabuf_want);
	}
	{
		/* E: one item more than udmabuf's list_limit, every other page so none merge. */
		struct piece *e;

		if (vm_lab_read_file("/sys/module/udmabuf/parameters/list_limit", buf,
				     sizeof(buf)) > 0)
			limit = strtoull(buf, NULL, 10);
		if (limit + 1 > RAM_PAGES / 2)
			tap_bail("list_limit %llu is more than this test's RAM window holds", limit);
		e = calloc(limit + 1, sizeof(*e));
		if (!e)
			tap_bail("calloc");
		for (unsigned long long k = 0; k <= limit; k++)
			e[k] = (struct piece){ RAM_GPA + 2 * k * PAGE, PAGE };
		check_blob("E: RAM, list_limit + 1 pages", e, limit + 1, VGB_EXPORT_CPU_VIEW);
		free(e);
	}

	vgb_memmap_destroy(mm);
	for (int i = 0; i < 2; i++)
		vgb_vfio_device_destroy(dev[i]);
	leak_check(&start, "map and devices destroyed: fds and mappings as at the start");
	return tap_done();
}
