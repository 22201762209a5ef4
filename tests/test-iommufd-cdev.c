/* SPDX-License-Identifier: MIT */
/*
 * The VFIO cdev path against a fake sysfs tree in a temp dir and the fake kernel: finding
 * /dev/vfio/devices/vfioN from a BDF, bind (with and without a VF token), attach to an IOAS or
 * HWPT, detach, the whole open/close, the kernel backend choosing the cdev path
 * (vgb_vfio_kernel_open) and falling back, and leaks over 1000 open/close cycles.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdev.h"
#include "kernel.h"
#include "fake-iommufd.h"
#include "fault.h"
#include "leak.h"
#include "tap.h"
#include "tmpdir.h"
#include "vgb/iommufd.h"
#include "vgb/vfio.h"

static char root[256], dev_root[300], iommu_path[512];
static char cdev7[512], cdev9[512];

static const uint8_t token[16] = { 0xbd, 0x8d, 0x9d, 0x2b, 0x5a, 0x5f, 0x4f, 0x5a,
				   0xa2, 0x11, 0xf5, 0x91, 0x51, 0x4b, 0xa1, 0xf3 };

static void make_tree(void)
{
	if (tmpdir_create(root, sizeof(root)) < 0)
		tap_bail("tmpdir");
	snprintf(dev_root, sizeof(dev_root), "%s/dev", root);
	/* 0000:00:03.0: bound to vfio-pci with cdev vfio7 (sysfs also has a stray file there). */
	if (tmpdir_mkdirs(root, "sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio7") < 0 ||
	    tmpdir_touch(root, "sys/bus/pci/devices/0000:00:03.0/vfio-dev/uevent", NULL, 0) < 0 ||
	    /* 0000:00:04.0: a VF, cdev vfio9, needs the VF token */
	    tmpdir_mkdirs(root, "sys/bus/pci/devices/0000:00:04.0/vfio-dev/vfio9") < 0 ||
	    /* 0000:00:05.0: bound to vfio-pci on a kernel without cdevs (no vfio-dev) */
	    tmpdir_mkdirs(root, "sys/bus/pci/devices/0000:00:05.0/driver") < 0 ||
	    tmpdir_touch(root, "dev/iommu", iommu_path, sizeof(iommu_path)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio7", cdev7, sizeof(cdev7)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio9", cdev9, sizeof(cdev9)) < 0)
		tap_bail("fake sysfs tree");
	vgb_vfio_kernel_set_root(root);
}

static void test_find(void)
{
	static const struct {
		const char *bdf;
		int want;
		const char *node;
	} cases[] = {
		{ "0000:00:03.0", 0, "vfio7" },
		{ "0000:00:04.0", 0, "vfio9" },
		{ "0000:00:05.0", -ENODEV, NULL }, /* vfio-pci, kernel without cdevs */
		{ "0000:00:07.0", -ENODEV, NULL },
		{ "../../../etc", -EINVAL, NULL },
	};
	char buf[512], want[512];

	/* vgb_vfio_kernel_cdev_path() is the vfio issue's; these cases pin what the cdev open
	 * relies on in this tree. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = vgb_vfio_kernel_cdev_path(cases[i].bdf, buf, sizeof(buf));
		tap_is_errno(r, cases[i].want, "cdev of \"%s\"", cases[i].bdf);
		if (cases[i].node && r == 0) {
			snprintf(want, sizeof(want), "%s/vfio/devices/%s", dev_root, cases[i].node);
			tap_is_str(buf, want, "... node path");
		}
	}
}

static void test_uuid(void)
{
	uint8_t u[16];

	tap_is_int(vgb_vfio_parse_uuid("bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3", u), 0, "uuid parses");
	tap_is_mem(u, token, 16, "uuid bytes in string order");
	tap_is_errno(vgb_vfio_parse_uuid("bd8d9d2b5a5f-4f5a-a211-f591514ba1f3-", u), -EINVAL,
		     "misplaced dash");
	tap_is_errno(vgb_vfio_parse_uuid("bd8d9d2b-5a5f-4f5a-a211-f591514ba1fz", u), -EINVAL,
		     "non-hex digit");
	tap_is_errno(vgb_vfio_parse_uuid("bd8d9d2b", u), -EINVAL, "short");
}

static void test_bind_attach(void)
{
	struct vgb_iommufd *ctx;
	uint32_t dev, ioas, hwpt, attached;
	int fd;

	if (vgb_iommufd_open(iommu_path, &ctx) < 0)
		tap_bail("iommufd");
	fd = open(cdev7, O_RDWR | O_CLOEXEC);
	tap_is_errno(vgb_vfio_cdev_attach(fd, 1, NULL), -EINVAL, "attach before bind: EINVAL");
	tap_is_errno(vgb_vfio_cdev_bind(fd, ctx->fd, token, &dev), -EINVAL,
		     "a VF token for a device that is not a VF: EINVAL");
	tap_is_int(vgb_vfio_cdev_bind(fd, ctx->fd, NULL, &dev), 0, "bind");
	tap_ok(dev != 0, "bind returns a device id");
	tap_is_int(vgb_iommufd_ioas_alloc(ctx, &ioas), 0, "ioas");
	tap_is_int(vgb_vfio_cdev_attach(fd, ioas, &attached), 0, "attach to an IOAS");
	tap_ok(attached != ioas && attached != 0, "the kernel made an HWPT for the IOAS (%u)",
	       attached);
	tap_is_int(vgb_iommufd_hwpt_alloc(ctx, dev, ioas, 0, 0, &hwpt), 0, "explicit HWPT");
	tap_is_int(vgb_vfio_cdev_attach(fd, hwpt, &attached), 0, "attach to the HWPT (replace)");
	tap_is_uint(attached, hwpt, "attached to the HWPT itself");
	tap_is_errno(vgb_iommufd_destroy(ctx, hwpt), -EBUSY, "attached HWPT cannot be destroyed");
	tap_is_int(vgb_vfio_cdev_detach(fd), 0, "detach");
	tap_is_int(vgb_iommufd_destroy(ctx, hwpt), 0, "detached HWPT can be destroyed");
	tap_is_int(vgb_iommufd_destroy(ctx, ioas), 0, "and the IOAS (the auto HWPT went on replace)");
	close(fd);

	fd = open(cdev9, O_RDWR | O_CLOEXEC);
	tap_is_errno(vgb_vfio_cdev_bind(fd, ctx->fd, NULL, &dev), -EACCES,
		     "a VF without its token: EACCES");
	uint8_t wrong[16];
	memcpy(wrong, token, 16);
	wrong[15] ^= 1;
	tap_is_errno(vgb_vfio_cdev_bind(fd, ctx->fd, wrong, &dev), -EACCES, "a wrong token: EACCES");
	tap_is_int(vgb_vfio_cdev_bind(fd, ctx->fd, token, &dev), 0, "the VF with its token");
	close(fd);

	fd = open(cdev7, O_RDWR | O_CLOEXEC);
	tap_is_errno(vgb_vfio_cdev_bind(fd, fd, NULL, &dev), -EBADFD,
		     "binding to an fd that is not an iommufd: EBADFD");
	close(fd);
	vgb_iommufd_close(ctx);
}

static void test_open_close(void)
{
	struct vgb_vfio_cdev *c;
	struct fake_iommufd_counts fk;
	char path[512];

	tap_is_int(vgb_vfio_kernel_cdev_path("0000:00:03.0", path, sizeof(path)), 0, "find");
	tap_is_int(vgb_vfio_cdev_open(path, NULL, &c), 0, "open by cdev: bind + IOAS + attach");
	tap_ok(c->dev_id && c->ioas_id && c->hwpt_id, "ids: dev %u ioas %u hwpt %u", c->dev_id,
	       c->ioas_id, c->hwpt_id);
	tap_ok(c->faults == NULL, "a device without I/O page faults gets no fault queue");
	fake_iommufd_get_counts(&fk);
	tap_is_uint(fk.bound_devices, 1, "the device is bound");
	vgb_vfio_cdev_close(c);
	fake_iommufd_get_counts(&fk);
	tap_is_uint(fk.bound_devices, 0, "closing unbinds");
	tap_is_uint(fk.live_objects, 0, "and leaves no object");

	tap_is_errno(vgb_vfio_cdev_open(cdev9, NULL, &c), -EACCES,
		     "open of a VF without its token fails with the kernel's errno");
	tap_is_int(vgb_vfio_cdev_open(cdev9, token, &c), 0, "and works with it");
	vgb_vfio_cdev_close(c);
	snprintf(path, sizeof(path), "%s/vfio/devices/vfio42", dev_root);
	tap_is_errno(vgb_vfio_cdev_open(path, NULL, &c), -ENOENT, "missing node: ENOENT");

	vgb_vfio_kernel_set_root("/nonexistent");
	tap_is_errno(vgb_vfio_cdev_open(cdev7, NULL, &c), -ENOENT, "no /dev/iommu: ENOENT");
	vgb_vfio_kernel_set_root(root);
	fake_iommufd_get_counts(&fk);
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0, "failed opens leave nothing behind");
}

static void test_open_with_faults(void)
{
	struct vgb_vfio_cdev *c;
	struct fake_iommufd_counts fk;
	struct fake_fault_counts fc;
	struct iommu_hwpt_pgfault rec = { .perm = IOMMU_PGFAULT_PERM_WRITE, .addr = 0x1000 };
	char want[256];

	fake_iommufd_cdev_set_iopf(cdev7, true);
	tap_is_int(vgb_vfio_cdev_open(cdev7, NULL, &c), 0, "open a device that takes page faults");
	tap_ok(c->faults != NULL, "it gets a fault queue");
	if (!c->faults) {
		vgb_vfio_cdev_close(c);
		fake_iommufd_cdev_set_iopf(cdev7, false);
		return;
	}
	uint32_t fid = vgb_iommufd_fault_queue_id(c->faults);
	rec.dev_id = c->dev_id;
	fake_iommufd_fault_emit(fid, &rec, 1);
	tap_is_int(vgb_iommufd_fault_queue_dispatch(c->faults), 1, "its page request is answered");
	fake_iommufd_fault_get_counts(fid, &fc);
	tap_ok(fc.responses_invalid == 1 && fc.outstanding == 0, "... INVALID, once");
	fake_iommufd_fault_emit(fid, &rec, 1); /* left unread: the kernel answers it on teardown */
	uint32_t hwpt = c->hwpt_id, ioas = c->ioas_id, dev = c->dev_id;
	fake_iommufd_log_clear();
	vgb_vfio_cdev_close(c);
	fake_iommufd_get_counts(&fk);
	snprintf(want, sizeof(want),
		 "unbind dev %u; destroy hwpt %u; fault %u fd closed; destroy fault %u; "
		 "destroy ioas %u",
		 dev, hwpt, fid, fid, ioas);
	tap_is_str(fake_iommufd_log(), want,
		   "close: unbind, HWPT, fault fd, fault object, IOAS");
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0, "nothing left");
	fake_iommufd_fault_get_counts(fid, &fc);
	tap_is_uint(fc.auto_invalid, 1, "the unread group was answered by the kernel");
	fake_iommufd_cdev_set_iopf(cdev7, false);
}

static void test_kernel_backend(void)
{
	struct vgb_vfio_device *dev = NULL;
	struct fake_iommufd_counts fk;
	struct leak_snapshot snap;
	char moved[600];
	int r;

	leak_snapshot(&snap);
	r = vgb_vfio_kernel_open("0000:00:03.0", 0, &dev);
	tap_is_errno(r, 0, "kernel backend opens by BDF");
	if (r == 0) {
		tap_is_int(dev->path, VGB_VFIO_PATH_CDEV, "through the cdev, the kernel having it");
		tap_is_str(vgb_vfio_path_name(dev->path), "cdev", "the path's name for vfio-info");
		tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_IOMMUFD), "IOMMUFD capability");
		tap_is_str(dev->name, "0000:00:03.0", "named by BDF");
		tap_is_uint(dev->num_regions, 9, "device info came through the bound cdev");
		tap_ok(vgb_vfio_device_fault_queue(dev) == NULL,
		       "no fault queue for a device without page faults");
		char *text = NULL, *json = NULL;
		size_t tlen = 0, jlen = 0;
		FILE *ft = open_memstream(&text, &tlen), *fj = open_memstream(&json, &jlen);
		int rt = vgb_vfio_info_print(dev, ft, false), rj = vgb_vfio_info_print(dev, fj, true);
		fclose(ft);
		fclose(fj);
		tap_ok(rt == 0 && text && strstr(text, "opened: cdev"),
		       "vfio-info (text) shows the cdev path");
		tap_ok(rj == 0 && json && strstr(json, "\"path\": \"cdev\""),
		       "vfio-info (JSON) shows the cdev path");
		if (text && !strstr(text, "opened: cdev"))
			tap_diag("%s", text);
		free(text);
		free(json);
		vgb_vfio_device_destroy(dev);
	}
	fake_iommufd_get_counts(&fk);
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0, "destroy undoes the cdev open");
	leak_check(&snap, "kernel backend over the cdev");

	fake_iommufd_cdev_set_iopf(cdev7, true);
	dev = NULL;
	r = vgb_vfio_kernel_open("0000:00:03.0", VGB_VFIO_OPEN_CDEV, &dev);
	tap_ok(r == 0 && vgb_vfio_device_fault_queue(dev) != NULL,
	       "a device with page faults: its fault queue is there for the service loop");
	vgb_vfio_device_destroy(dev);
	fake_iommufd_cdev_set_iopf(cdev7, false);
	fake_iommufd_get_counts(&fk);
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0, "destroy drops the fault queue too");

	/* A kernel without iommufd: no /dev/iommu. Asked for the cdev only, that is ENOENT; the
	 * default falls back to the legacy path (which this tree does not have either). */
	snprintf(moved, sizeof(moved), "%s.away", iommu_path);
	rename(iommu_path, moved);
	dev = NULL;
	tap_is_errno(vgb_vfio_kernel_open("0000:00:03.0", VGB_VFIO_OPEN_CDEV, &dev), -ENOENT,
		     "cdev only, no /dev/iommu: ENOENT");
	tap_is_errno(vgb_vfio_kernel_open("0000:00:03.0", 0, &dev), -ENXIO,
		     "default: falls back to the legacy path (this tree has no IOMMU group: ENXIO)");
	rename(moved, iommu_path);
	tap_is_int(vgb_vfio_kernel_open("0000:00:05.0", VGB_VFIO_OPEN_CDEV, &dev), -ENODEV,
		   "cdev only, device without a cdev: ENODEV");
	leak_check(&snap, "refused opens");
}

/* An ioctl failure at every step of the kernel backend's cdev open: a step the open needs gives
 * its errno back; a step of the optional page-fault attach falls back to the plain IOAS attach;
 * either way nothing is left open or allocated. */
static void test_open_faults(void)
{
	struct leak_snapshot snap;
	struct fake_iommufd_counts fk;
	unsigned n, fired = 0, failed = 0, fell_back = 0;
	bool ok = true;

	fake_iommufd_cdev_set_iopf(cdev7, true);
	leak_snapshot(&snap);
	fault_install();
	for (n = 1; n < 64; n++) {
		struct vgb_vfio_device *dev = NULL;

		fault_arm_ioctl(n, EIO);
		int r = vgb_vfio_kernel_open("0000:00:03.0", VGB_VFIO_OPEN_CDEV, &dev);
		bool hit = fault_fired();
		fault_arm_ioctl(0, 0);
		if (!hit) {
			ok &= r == 0 && vgb_vfio_device_fault_queue(dev) != NULL;
			vgb_vfio_device_destroy(dev);
			break;
		}
		fired++;
		if (r == -EIO) {
			failed++;
			ok &= dev == NULL;
		} else if (r == 0) {
			fell_back++;
			ok &= dev->path == VGB_VFIO_PATH_CDEV;
		} else {
			tap_diag("ioctl fault %u: r=%d", n, r);
			ok = false;
		}
		vgb_vfio_device_destroy(dev);
		fake_iommufd_get_counts(&fk);
		if (leak_count_fds() != snap.n_fds || fk.live_objects || fk.bound_devices) {
			tap_diag("ioctl fault %u: fds %d -> %d, objects %u, bound %u", n, snap.n_fds,
				 leak_count_fds(), fk.live_objects, fk.bound_devices);
			ok = false;
		}
	}
	fault_remove();
	fake_iommufd_cdev_set_iopf(cdev7, false);
	tap_ok(ok && fired >= 6, "cdev open under an ioctl fault at each of %u calls", fired);
	tap_ok(failed >= 2 && fell_back >= 3,
	       "needed steps fail the open (%u), page-fault steps fall back (%u)", failed, fell_back);
	leak_check(&snap, "cdev open under fault injection");
}

static void test_no_leak(void)
{
	struct leak_snapshot snap;
	struct fake_iommufd_counts fk;
	bool ok = true;

	leak_snapshot(&snap);
	for (int i = 0; i < 1000 && ok; i++) {
		struct vgb_vfio_cdev *c;
		if (vgb_vfio_cdev_open(cdev7, NULL, &c) < 0)
			ok = false;
		else
			vgb_vfio_cdev_close(c);
	}
	tap_ok(ok, "1000 cdev open/close cycles");
	leak_check(&snap, "1000 cdev cycles");
	fake_iommufd_get_counts(&fk);
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0, "no object or binding left");
	tap_is_uint(fk.strict_violations, 0, "every struct sent was byte-exact");
}

int main(void)
{
	struct leak_snapshot snap;

	tap_plan_lazy();
	make_tree();
	fake_iommufd_install(iommu_path);
	if (fake_iommufd_add_cdev(cdev7, NULL) < 0 || fake_iommufd_add_cdev(cdev9, token) < 0)
		tap_bail("fake cdevs");
	leak_snapshot(&snap);
	test_find();
	test_uuid();
	test_bind_attach();
	test_open_close();
	test_open_with_faults();
	test_kernel_backend();
	test_open_faults();
	test_no_leak();
	fake_iommufd_remove();
	leak_check(&snap, "whole test");
	vgb_vfio_kernel_set_root(NULL);
	tmpdir_remove(root);
	return tap_done();
}
