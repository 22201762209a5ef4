/* SPDX-License-Identifier: MIT */
/*
 * In-guest, Linux >= 6.19 (trixie-backports' 7.2): the real VFIO DMA_BUF export.
 *   - the probe answers 0 and the capability is set, quietly
 *   - vgb_vfio_create_dmabuf exports N = 1, 3, 64 scattered, reordered ranges of BAR2 in one
 *     ioctl; the fd's size is the sum of the ranges; mmap of it fails and the segment mapper's
 *     fallback gives the host's bytes
 *   - the kernel's rejections (unaligned EINVAL, region 7 ENODEV, past the BAR EINVAL) are
 *     caught before any ioctl, and the kernel agrees when sent them raw
 *   - with memory decode off, an export and the CPU view fail cleanly with -EIO (Linux itself
 *     would hand out a dmabuf born revoked, and a view that dies of SIGBUS on first read); a
 *     view made before decode went off reads as -EIO through vgb_guarded_copy(), not SIGBUS;
 *     with decode back on a new export works
 *   - the second device exports its own memory
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "kernel.h"
#include "lab.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/guard.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE
#define MAX_N 64

static struct vm_lab_device labdev[VM_LAB_MAX_DEVICES];
static struct vgb_vfio_device *dev[2];

/* N ranges in 64 slots of 8 pages, visited out of order (37 is odd: a permutation of the
 * slots); lengths of 1 to 3 pages, so no two ranges touch and none are merged. */
static uint64_t make_ranges(struct vgb_vfio_range *r, size_t n)
{
	uint64_t total = 0;

	for (size_t k = 0; k < n; k++) {
		r[k].offset = ((k * 37 + 5) % 64) * 8 * PAGE;
		r[k].length = (1 + k % 3) * PAGE;
		total += r[k].length;
	}
	return total;
}

/* The CPU view of @ranges of device @i, trying @dmabuf first; checks every byte. */
static bool view_ok(int i, const struct vgb_vfio_range *ranges, size_t n, int dmabuf,
		    bool *ret_via_dmabuf, int *ret_r)
{
	struct vgb_segment segs[MAX_N];
	struct vgb_segmap *map = NULL;
	uint64_t pos = 0;
	bool ok = true;
	int r = 0;

	for (size_t k = 0; k < n && r == 0; k++)
		r = vgb_vfio_segment(dev[i], 2, ranges[k].offset, ranges[k].length, &segs[k]);
	if (r == 0)
		r = vgb_segmap_create(segs, n, dmabuf, &map);
	*ret_r = r;
	if (r < 0)
		return false;
	*ret_via_dmabuf = map->via_dmabuf;
	for (size_t k = 0; k < n; k++) {
		ok = vm_lab_pattern_ok((const char *)map->addr + pos, ranges[k].offset,
				       ranges[k].length, labdev[i].seed) &&
		     ok;
		pos += ranges[k].length;
	}
	vgb_segmap_destroy(map);
	return ok;
}

static void test_export(int i, size_t n)
{
	struct vgb_vfio_range ranges[MAX_N];
	uint64_t total = make_ranges(ranges, n);
	struct leak_snapshot before;
	struct fault_counts c;
	bool via = true;
	off_t size = -1;
	void *m;
	int fd, r, flags = 0, merr;
	bool ok;

	leak_snapshot(&before);
	fault_install();
	fd = vgb_vfio_create_dmabuf(dev[i], 2, ranges, n);
	c = fault_get_counts();
	fault_remove();
	if (fd >= 0) {
		size = lseek(fd, 0, SEEK_END);
		flags = fcntl(fd, F_GETFD);
	}
	tap_ok(fd >= 0 && c.ioctl == 1 && size == (off_t)total && (flags & FD_CLOEXEC),
	       "%s: export of %zu scattered ranges: fd %d in %u ioctl, size %lld == %" PRIu64
	       ", cloexec %s",
	       labdev[i].bdf, n, fd, c.ioctl, (long long)size, total,
	       flags & FD_CLOEXEC ? "yes" : "no");

	m = fd >= 0 ? mmap(NULL, (size_t)total, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	merr = errno;
	tap_ok(fd >= 0 && m == MAP_FAILED, "%s: mmap of the %zu-range dmabuf fails (%s)",
	       labdev[i].bdf, n, m == MAP_FAILED ? strerror(merr) : "it worked");
	if (m != MAP_FAILED)
		munmap(m, (size_t)total);

	r = -999;
	ok = fd >= 0 && view_ok(i, ranges, n, fd, &via, &r) && !via;
	tap_ok(ok, "%s: the segment mapper falls back from the dmabuf and shows the host's bytes "
	       "(r=%d)",
	       labdev[i].bdf, r);
	if (fd >= 0)
		close(fd);
	leak_check(&before, "export closed: no fd, no mapping left");
}

/* One raw VFIO_DEVICE_FEATURE DMA_BUF call. Returns the fd or -errno. */
static int raw_export(int i, uint32_t region, uint64_t off, uint64_t len)
{
	struct {
		struct vfio_device_feature f;
		struct vfio_device_feature_dma_buf d;
		struct vfio_region_dma_range r;
	} __attribute__((packed)) arg = {
		.f = { .argsz = sizeof(arg),
		       .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF },
		.d = { .region_index = region, .open_flags = O_RDWR | O_CLOEXEC, .nr_ranges = 1 },
		.r = { .offset = off, .length = len },
	};
	int fd = vgb_vfio_kernel_device_fd(dev[i]);
	int r;

	_Static_assert(sizeof(arg) == 8 + 16 + 16, "one-range DMA_BUF argument");
	if (fd < 0)
		return fd;
	r = ioctl(fd, VFIO_DEVICE_FEATURE, &arg);
	return r < 0 ? -errno : r;
}

static void test_rejections(int i)
{
	static const struct {
		const char *what;
		uint32_t region;
		uint64_t off, len; /* len 0: up to the BAR end plus a page */
		int want;
	} cases[] = {
		{ "an unaligned offset", 2, 100, PAGE, -EINVAL },
		{ "region 7 (config, not a BAR)", 7, 0, PAGE, -ENODEV },
		{ "a range past the BAR", 2, 0, 0, -EINVAL },
	};
	struct leak_snapshot before;

	leak_snapshot(&before);
	for (size_t k = 0; k < VGB_ARRAY_SIZE(cases); k++) {
		uint64_t off = cases[k].len ? cases[k].off : labdev[i].size - PAGE;
		uint64_t len = cases[k].len ? cases[k].len : 2 * PAGE;
		struct vgb_vfio_range range = { off, len };
		struct fault_counts c;
		int r;

		fault_install();
		r = vgb_vfio_create_dmabuf(dev[i], cases[k].region, &range, 1);
		c = fault_get_counts();
		fault_remove();
		tap_ok(r == cases[k].want && c.ioctl == 0,
		       "%s: %s: %d (want %d, %s) with %u ioctls (want 0)", labdev[i].bdf,
		       cases[k].what, r, cases[k].want, strerror(-cases[k].want), c.ioctl);
		r = raw_export(i, cases[k].region, off, len);
		if (r >= 0)
			close(r);
		tap_ok(r == cases[k].want, "%s: the kernel, sent %s raw, agrees: %d (%s)",
		       labdev[i].bdf, cases[k].what, r, r < 0 ? strerror(-r) : "an fd");
	}
	{
		struct vgb_vfio_range one = { 0, PAGE };
		struct fault_counts c;
		int r0, rbig;

		fault_install();
		r0 = vgb_vfio_create_dmabuf(dev[i], 2, &one, 0);
		rbig = vgb_vfio_create_dmabuf(dev[i], 2, &one, VGB_VFIO_DMABUF_MAX_RANGES + 1);
		c = fault_get_counts();
		fault_remove();
		tap_ok(r0 == -EINVAL && rbig == -E2BIG && c.ioctl == 0,
		       "%s: 0 ranges: %d (want -EINVAL), %u ranges: %d (want -E2BIG), %u ioctls",
		       labdev[i].bdf, r0, VGB_VFIO_DMABUF_MAX_RANGES + 1, rbig, c.ioctl);
	}
	leak_check(&before, "rejections leaked nothing");
}

/* Runs @fn(@i) in a child; returns its wait status (a SIGBUS must not take this process). */
static int in_child(int (*fn)(int), int i)
{
	int status = -1;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn(i));
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static const char *describe(int status, char *buf, size_t len)
{
	if (status == -1)
		snprintf(buf, len, "fork/wait failed");
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	return buf;
}

/* Exits 0 when the view of BAR2 was refused with -EIO, 2 when it read the memory (decode off:
 * it cannot), 3 for another answer; or dies by SIGBUS on the access. */
static int child_view_decode_off(int i)
{
	struct vgb_vfio_range range = { 16 * PAGE, PAGE };
	bool via;
	int r = 0;

	if (view_ok(i, &range, 1, -1, &via, &r))
		return 2;
	return r == -EIO ? 0 : 3;
}

/* A view of BAR2 built while decode was on; filled in before decode goes off. */
static struct vgb_segmap *early_view;

/* Reads the early view: exits 0 when the guarded copy gave -EIO, 2 when it read, 3 else; an
 * unguarded read here would die by SIGBUS (vfio-pci's answer to a fault with decode off). */
static int child_read_early_view(int i)
{
	static uint8_t buf[PAGE];
	int r = vgb_guarded_copy(buf, early_view->addr, PAGE);

	(void)i;
	if (r == 0)
		return 2;
	return r == -EIO ? 0 : 3;
}

/* Whether vfio-pci itself kills an unguarded read of the early view with SIGBUS: the premise
 * of the guarded copy, checked on the real kernel. */
static int child_unguarded_early_view(int i)
{
	(void)i;
	return *(volatile const uint8_t *)early_view->addr == 0xff ? 4 : 5;
}

static void test_decode(int i)
{
	struct vgb_vfio_range ranges[3];
	uint64_t total = make_ranges(ranges, 3);
	struct leak_snapshot before;
	unsigned char page[PAGE];
	uint16_t cmd = 0;
	bool via = true, ok;
	int before_fd, fd, r;
	ssize_t n;

	leak_snapshot(&before);
	before_fd = vgb_vfio_create_dmabuf(dev[i], 2, ranges, 3);
	tap_ok(before_fd >= 0, "%s: an export with memory decode on works (%d)", labdev[i].bdf,
	       before_fd);
	{
		struct vgb_segment seg;
		static uint8_t buf[PAGE];

		r = vgb_vfio_segment(dev[i], 2, 16 * PAGE, PAGE, &seg);
		if (r == 0)
			r = vgb_segmap_create(&seg, 1, -1, &early_view);
		if (r == 0)
			r = vgb_guarded_copy(buf, early_view->addr, PAGE);
		tap_ok(r == 0 && vm_lab_pattern_ok((const char *)buf, 16 * PAGE, PAGE,
						  labdev[i].seed),
		       "%s: a view of BAR2 made with decode on reads the host's bytes through "
		       "vgb_guarded_copy (%d)",
		       labdev[i].bdf, r);
	}

	r = vm_lab_set_memory_decode(dev[i], false);
	if (r == 0)
		r = vm_lab_get_command(dev[i], &cmd);
	tap_ok(r == 0 && !(cmd & 0x2),
	       "%s: memory decode turned off through the config region (command %#x)",
	       labdev[i].bdf, cmd);

	/* Linux exports a dmabuf that is born revoked when decode is off (importers then fail
	 * with ENODEV): vfio/ reads PCI_COMMAND first and refuses with -EIO, without the ioctl. */
	{
		struct fault_counts c;

		fault_install();
		fd = vgb_vfio_create_dmabuf(dev[i], 2, ranges, 3);
		c = fault_get_counts();
		fault_remove();
		tap_ok(fd == -EIO && c.ioctl == 0,
		       "%s: decode off: the export fails cleanly with -EIO and no ioctl (%d, %s; "
		       "%u ioctls)",
		       labdev[i].bdf, fd, fd < 0 ? strerror(-fd) : "got an fd of a revoked dmabuf",
		       c.ioctl);
	}
	if (fd >= 0)
		close(fd);
	n = vgb_vfio_region_read(dev[i], 2, 0, page, sizeof(page));
	tap_ok(n == -EIO, "%s: decode off: reading BAR2 fails cleanly (%zd, %s)", labdev[i].bdf, n,
	       n < 0 ? strerror((int)-n) : "read");
	{
		char d[64];
		int st = in_child(child_view_decode_off, i);

		tap_ok(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "%s: decode off: a new CPU view fails with -EIO (child %s)", labdev[i].bdf,
		       describe(st, d, sizeof(d)));
		st = early_view ? in_child(child_unguarded_early_view, i) : -1;
		tap_ok(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS,
		       "%s: decode off: vfio-pci kills an unguarded read of the earlier view by "
		       "SIGBUS (child %s)",
		       labdev[i].bdf, describe(st, d, sizeof(d)));
		st = early_view ? in_child(child_read_early_view, i) : -1;
		tap_ok(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		       "%s: decode off: vgb_guarded_copy of the earlier view gives -EIO, not SIGBUS "
		       "(child %s)",
		       labdev[i].bdf, describe(st, d, sizeof(d)));
	}

	r = vm_lab_set_memory_decode(dev[i], true);
	if (r == 0)
		r = vm_lab_get_command(dev[i], &cmd);
	tap_ok(r == 0 && (cmd & 0x2),
	       "%s: memory decode back on (command %#x)", labdev[i].bdf, cmd);
	fd = vgb_vfio_create_dmabuf(dev[i], 2, ranges, 3);
	tap_ok(fd >= 0 && fd != before_fd && lseek(fd, 0, SEEK_END) == (off_t)total,
	       "%s: decode on again: a new export works (%d, %" PRIu64 " bytes)", labdev[i].bdf, fd,
	       total);
	r = -999;
	ok = fd >= 0 && view_ok(i, ranges, 3, fd, &via, &r) && !via;
	tap_ok(ok, "%s: and its CPU view shows the host's bytes (r=%d)", labdev[i].bdf, r);
	{
		static uint8_t buf[PAGE];

		r = early_view ? vgb_guarded_copy(buf, early_view->addr, PAGE) : -999;
		tap_ok(r == 0 && vm_lab_pattern_ok((const char *)buf, 16 * PAGE, PAGE,
						  labdev[i].seed),
		       "%s: the earlier view reads again once decode is on (%d)", labdev[i].bdf,
		       r);
	}
	vgb_segmap_destroy(early_view);
	early_view = NULL;
	if (fd >= 0)
		close(fd);
	if (before_fd >= 0)
		close(before_fd);
	leak_check(&before, "decode test leaked nothing");
}

int main(void)
{
	struct leak_snapshot start;
	int n = vm_lab_devices(labdev, VM_LAB_MAX_DEVICES);

	if (n < 2)
		tap_bail("needs the lab's two ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	tap_plan_lazy();
	leak_snapshot(&start);

	logcap_start();
	for (int i = 0; i < 2; i++) {
		const struct vgb_vfio_region_info *info;
		uint16_t cmd = 0;
		int r = vgb_vfio_kernel_open(labdev[i].bdf, 0, &dev[i]);

		if (!tap_is_int(r, 0, "%s: vgb_vfio_kernel_open", labdev[i].bdf))
			tap_bail("cannot open %s", labdev[i].bdf);
		tap_ok(dev[i]->dmabuf_probe == VGB_VFIO_PROBE_OK && dev[i]->dmabuf_probe_errno == 0 &&
			       vgb_vfio_device_has_cap(dev[i], VGB_VFIO_CAP_DMA_BUF),
		       "%s: the DMA_BUF probe answered 0 and the capability is set (probe %d, "
		       "errno %d, caps %#x)",
		       labdev[i].bdf, dev[i]->dmabuf_probe, dev[i]->dmabuf_probe_errno,
		       dev[i]->caps);
		/* Fill the cache so that exports count only their own ioctl. */
		r = vgb_vfio_region_info(dev[i], 2, &info);
		if (r == 0 && info->size != labdev[i].size)
			r = -ERANGE;
		if (r == 0)
			r = vm_lab_get_command(dev[i], &cmd);
		tap_ok(r == 0 && (cmd & 0x2),
		       "%s: BAR2 is %" PRIu64 " bytes and memory decode is on (command %#x)",
		       labdev[i].bdf, labdev[i].size, cmd);
	}
	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0 && logcap_count() > 0,
	       "opening and probing logged nothing above debug (%u messages, %u above debug%s%s)",
	       logcap_count(), logcap_count_at_or_above(VGB_LOG_INFO),
	       *logcap_last_loud() ? ": " : "", logcap_last_loud());
	logcap_stop();

	test_export(0, 1);
	test_export(0, 3);
	test_export(0, 64);
	test_export(1, 3);
	test_rejections(0);
	test_decode(0);

	for (int i = 0; i < 2; i++)
		vgb_vfio_device_destroy(dev[i]);
	leak_check(&start, "both devices destroyed: fds and mappings as at the start");
	return tap_done();
}
