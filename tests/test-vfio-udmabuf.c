/* SPDX-License-Identifier: MIT */
/*
 * udmabuf: validation (table, with errno), merging of touching items, the module's limits read
 * from sysfs (over them: -E2BIG before any ioctl), the kernel's errnos passed on, and the
 * virtual device exporting DMA_BUF through udmabuf, all against the fake /dev/udmabuf of
 * tests/lib/fake-vfio.c. An ioctl fault at each call leaves no fd behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/udmabuf.h>

#include "fake-vfio.h"
#include "fault.h"
#include "leak.h"
#include "logcap.h"
#include "private.h"
#include "tap.h"
#include "vgb/vfio.h"

#define PAGE 4096u

static struct fake_vfio *f;
static char root[] = "/tmp/vgb-fake-udmabuf-XXXXXX";

/* A shmem memfd of @pages pages (page i filled with tag + i), sealed as udmabuf wants. */
static int sealed_memfd(uint8_t tag, unsigned pages, int seals)
{
	int fd = memfd_create("udmabuf-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint8_t buf[PAGE];

	for (unsigned i = 0; i < pages; i++) {
		memset(buf, tag + i, sizeof(buf));
		pwrite(fd, buf, PAGE, (off_t)i * PAGE);
	}
	if (seals)
		fcntl(fd, F_ADD_SEALS, seals);
	return fd;
}

static bool page_is(int fd, unsigned page, uint8_t want)
{
	uint8_t buf[PAGE];

	if (pread(fd, buf, PAGE, (off_t)page * PAGE) != PAGE)
		return false;
	for (unsigned i = 0; i < PAGE; i++)
		if (buf[i] != want)
			return false;
	return true;
}

static void test_validation(int a)
{
	const struct {
		const char *what;
		struct vgb_udmabuf_item items[2];
		size_t n;
		int want;
	} cases[] = {
		{ "no items", { { a, 0, PAGE } }, 0, -EINVAL },
		{ "fd -1", { { -1, 0, PAGE } }, 1, -EINVAL },
		{ "zero size", { { a, 0, 0 } }, 1, -EINVAL },
		{ "unaligned offset", { { a, 100, PAGE } }, 1, -EINVAL },
		{ "unaligned size", { { a, 0, 100 } }, 1, -EINVAL },
		{ "offset + size overflows", { { a, UINT64_MAX - PAGE + 1, PAGE } }, 1, -EINVAL },
		{ "second item bad", { { a, 0, PAGE }, { a, PAGE, 1 } }, 2, -EINVAL },
	};
	unsigned calls = f->calls.udmabuf;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tap_is_errno(vgb_udmabuf_create(cases[i].items, cases[i].n), cases[i].want,
			     "udmabuf: %s", cases[i].what);
	tap_is_errno(vgb_udmabuf_create(NULL, 1), -EINVAL, "udmabuf: NULL items");
	tap_is_uint(f->calls.udmabuf - calls, 0, "none reached the ioctl");
}

static void test_create(int a, int b)
{
	/* a1-2 and a3 touch; b0 is another file. */
	const struct vgb_udmabuf_item items[] = {
		{ a, PAGE, 2 * PAGE }, { a, 3 * PAGE, PAGE }, { b, 0, PAGE },
	};
	int fd = vgb_udmabuf_create(items, 3);

	tap_ok(fd >= 0, "udmabuf of 3 items from 2 memfds: fd %d", fd);
	tap_is_uint(f->last_udmabuf_count, 2, "touching items of one memfd merged: 2 items sent");
	tap_is_uint(f->last_udmabuf_flags, UDMABUF_FLAGS_CLOEXEC, "UDMABUF_FLAGS_CLOEXEC");
	tap_ok(f->last_udmabuf_items[0].memfd == a && f->last_udmabuf_items[0].offset == PAGE &&
		       f->last_udmabuf_items[0].size == 3 * PAGE &&
		       f->last_udmabuf_items[1].memfd == b && f->last_udmabuf_items[1].offset == 0 &&
		       f->last_udmabuf_items[1].size == PAGE,
	       "the items' exact fields");
	if (fd >= 0) {
		tap_ok(page_is(fd, 0, 'a' + 1) && page_is(fd, 2, 'a' + 3) && page_is(fd, 3, 'b'),
		       "the dmabuf holds the pages in order");
		close(fd);
	}
}

static void test_limits(int a, int b)
{
	const struct vgb_udmabuf_item two[] = { { a, 0, PAGE }, { b, 0, PAGE } };
	const struct vgb_udmabuf_item touching[] = { { a, 0, PAGE }, { a, PAGE, PAGE } };
	const struct vgb_udmabuf_item big[] = { { a, 0, 8 * PAGE } };
	unsigned calls;
	int fd;

	fake_vfio_set_udmabuf_param(root, "list_limit", 1);
	calls = f->calls.udmabuf;
	tap_is_errno(vgb_udmabuf_create(two, 2), -E2BIG, "2 items over list_limit 1: E2BIG");
	tap_is_uint(f->calls.udmabuf - calls, 0, "refused before the ioctl");
	fd = vgb_udmabuf_create(touching, 2);
	tap_ok(fd >= 0, "2 touching items merge into 1: under the limit");
	if (fd >= 0)
		close(fd);
	fake_vfio_set_udmabuf_param(root, "list_limit", 1024);

	/* size_limit_mb is in MiB: 0 makes every buffer too large. */
	fake_vfio_set_udmabuf_param(root, "size_limit_mb", 0);
	tap_is_errno(vgb_udmabuf_create(big, 1), -E2BIG, "over size_limit_mb: E2BIG");
	fake_vfio_set_udmabuf_param(root, "size_limit_mb", 64);
	fd = vgb_udmabuf_create(big, 1);
	tap_ok(fd >= 0, "32 KiB under 64 MiB");
	if (fd >= 0)
		close(fd);
}

static void test_kernel_errnos(int a)
{
	int unsealed = sealed_memfd('u', 2, 0);
	int writesealed = sealed_memfd('w', 2, F_SEAL_SHRINK | F_SEAL_WRITE);
	int p[2];
	struct leak_snapshot before;

	leak_snapshot(&before);
	logcap_start();
	tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ unsealed, 0, PAGE }, 1),
		     -EINVAL, "kernel: memfd without F_SEAL_SHRINK");
	tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ writesealed, 0, PAGE }, 1),
		     -EINVAL, "kernel: memfd with F_SEAL_WRITE");
	if (pipe2(p, O_CLOEXEC) == 0) {
		tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ p[0], 0, PAGE }, 1),
			     -EBADFD, "kernel: not a shmem file");
		close(p[0]);
		close(p[1]);
	}
	tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ a, 64 * PAGE, PAGE }, 1),
		     -EINVAL, "kernel: pages past the memfd's end");
	f->udmabuf_errno = ENOMEM;
	tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ a, 0, PAGE }, 1), -ENOMEM,
		     "kernel: ENOMEM passed on");
	f->udmabuf_errno = 0;
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0, "nothing above debug");
	close(unsealed);
	close(writesealed);
	/* Closing unsealed/writesealed (made before the snapshot) leaves two fewer. */
	tap_is_int(leak_count_fds(), before.n_fds - 2, "no fd left by failed creates");
}

static void test_absent(int a)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/dev/no-udmabuf", root);
	vgb_udmabuf_set_paths(path, NULL);
	tap_ok(!vgb_udmabuf_is_available(), "no /dev/udmabuf: not available");
	tap_is_errno(vgb_udmabuf_create(&(struct vgb_udmabuf_item){ a, 0, PAGE }, 1), -ENODEV,
		     "no /dev/udmabuf: ENODEV");
}

/* The virtual device's DMA_BUF, through udmabuf over its region memfd. */
static void test_vdev(void)
{
	struct vgb_vfio_device *dev = NULL;
	const struct vgb_vfio_range ranges[] = { { 8 * PAGE, 2 * PAGE }, { 0, PAGE } };
	uint8_t buf[PAGE];
	int r, fd, bar2;

	r = vgb_vfio_vdev_create("dmabuf=on,bar2=64K", &dev);
	if (!tap_is_errno(r, 0, "dmabuf=on with a (fake) /dev/udmabuf"))
		return;
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF) &&
		       dev->dmabuf_probe == VGB_VFIO_PROBE_OK,
	       "DMA_BUF offered, probe answered 0");
	bar2 = vgb_vfio_vdev_region_memfd(dev, 2);
	for (unsigned i = 0; i < 16; i++) {
		memset(buf, 0x30 + i, sizeof(buf));
		pwrite(bar2, buf, PAGE, (off_t)i * PAGE);
	}
	fd = vgb_vfio_create_dmabuf(dev, 2, ranges, 2);
	tap_ok(fd >= 0, "export of 2 BAR2 ranges: fd %d", fd);
	tap_ok(f->last_udmabuf_count == 2 && f->last_udmabuf_items[0].memfd == bar2 &&
		       f->last_udmabuf_items[0].offset == 8 * PAGE &&
		       f->last_udmabuf_items[1].offset == 0,
	       "udmabuf items over the BAR2 memfd at the range offsets");
	if (fd >= 0) {
		tap_ok(page_is(fd, 0, 0x38) && page_is(fd, 1, 0x39) && page_is(fd, 2, 0x30),
		       "the export holds BAR2's pages in range order");
		close(fd);
	}
	vgb_vfio_device_destroy(dev);
	dev = NULL;

	/* The memfds are sealed as udmabuf needs: a real kernel would take them too. */
	r = vgb_vfio_vdev_create("dmabuf=auto,bar2=64K", &dev);
	if (r == 0) {
		int seals = fcntl(vgb_vfio_vdev_region_memfd(dev, 2), F_GET_SEALS);
		tap_ok((seals & F_SEAL_SHRINK) && !(seals & F_SEAL_WRITE),
		       "region memfds: F_SEAL_SHRINK, not F_SEAL_WRITE");
		tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
		       "dmabuf=auto offers DMA_BUF where udmabuf exists");
	}
	vgb_vfio_device_destroy(dev);
}

static void test_faults(int a)
{
	const struct vgb_udmabuf_item item = { a, 0, PAGE };
	struct leak_snapshot before;
	int r;

	leak_snapshot(&before);
	fault_install();
	fault_arm_ioctl(1, EIO);
	r = vgb_udmabuf_create(&item, 1);
	tap_ok(fault_fired() && r == -EIO, "ioctl fault: -EIO");
	fault_arm_ioctl(0, 0);
	fault_remove();
	leak_check(&before, "the /dev/udmabuf fd is closed on failure");
}

int main(void)
{
	struct leak_snapshot before;
	char dev[4200], params[4200], cmd[128];
	int a, b;

	tap_plan_lazy();
	f = fake_vfio_create();
	if (!f || !mkdtemp(root) || fake_vfio_make_tree(f, root) < 0)
		tap_bail("fake setup failed");
	snprintf(dev, sizeof(dev), "%s/dev/udmabuf", root);
	snprintf(params, sizeof(params), "%s/sys/module/udmabuf/parameters", root);
	vgb_udmabuf_set_paths(dev, params);
	fake_vfio_install(f);
	leak_snapshot(&before);
	a = sealed_memfd('a', 8, F_SEAL_SHRINK);
	b = sealed_memfd('b', 2, F_SEAL_SHRINK);

	tap_ok(vgb_udmabuf_is_available(), "fake /dev/udmabuf is available");
	test_validation(a);
	test_create(a, b);
	test_limits(a, b);
	test_kernel_errnos(a);
	test_vdev();
	test_faults(a);
	test_absent(a);

	close(a);
	close(b);
	leak_check(&before, "whole test");
	vgb_udmabuf_set_paths(NULL, NULL);
	fake_vfio_destroy(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", root);
	return tap_done();
}
