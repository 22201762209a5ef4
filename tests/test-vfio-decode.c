/* SPDX-License-Identifier: MIT */
/*
 * Memory decode (PCI_COMMAND_MEMORY) gates every BAR export and mapping:
 *   - the virtual device: decode on after create (as vfio-pci's open), reads and writes of a
 *     BAR give -EIO while it is off, a reset keeps it; exports and segments are refused with
 *     -EIO and no backend call, and work again once the guest turns decode back on
 *   - the kernel backend against the fake kernel: the same, counting DMA_BUF GETs; many
 *     segments of one region check decode once (one config read) and still refuse; a device
 *     that is not PCI is not gated; a config read that fails passes its errno on
 *   - the order of answers: capability, then validation, then decode
 *   - nothing above debug is logged, nothing leaks
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "fake-vfio.h"
#include "fault.h"
#include "kernel.h"
#include "leak.h"
#include "logcap.h"
#include "private.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE

static struct fake_vfio *f;

static int set_decode(struct vgb_vfio_device *dev, bool on)
{
	uint8_t b[2];
	ssize_t n = vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, b, 2);

	if (n != 2)
		return n < 0 ? (int)n : -EIO;
	b[0] = on ? (uint8_t)(b[0] | PCI_COMMAND_MEMORY) : (uint8_t)(b[0] & ~PCI_COMMAND_MEMORY);
	n = vgb_vfio_region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, b, 2);
	return n == 2 ? 0 : n < 0 ? (int)n : -EIO;
}

/* An export of @n ranges; returns its result and the ioctls it made. */
static int export(struct vgb_vfio_device *dev, uint32_t region,
		  const struct vgb_vfio_range *ranges, size_t n, unsigned *ret_ioctls)
{
	struct fault_counts c;
	int fd;

	fault_install();
	fd = vgb_vfio_create_dmabuf(dev, region, ranges, n);
	c = fault_get_counts();
	fault_remove();
	*ret_ioctls = c.ioctl;
	return fd;
}

static void test_vdev(void)
{
	const struct vgb_vfio_range ranges[] = { { 4 * PAGE, PAGE }, { 0, 2 * PAGE } };
	const struct vgb_vfio_range unaligned = { 100, PAGE };
	struct vgb_vfio_device *dev = NULL;
	struct vgb_segment seg;
	struct leak_snapshot before;
	uint8_t buf[16] = { 0 };
	unsigned ioctls = 0;
	uint16_t cmd = 0;
	int r, fd;

	leak_snapshot(&before);
	logcap_start();
	r = vgb_vfio_vdev_create("dmabuf=on,bar0=4K,bar2=64K,rom=4K", &dev);
	if (!tap_is_errno(r, 0, "virtual device with DMA_BUF (fake /dev/udmabuf)")) {
		logcap_stop();
		return;
	}
	vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	tap_ok(dev->pci && (cmd & PCI_COMMAND_MEMORY),
	       "a PCI device with memory decode on from the start (command %#x)", cmd);
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd >= 0 && ioctls == 1, "decode on: export works (%d, %u ioctl)", fd, ioctls);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), 0, "decode on: a segment resolves");

	tap_is_errno(set_decode(dev, false), 0, "the guest turns memory decode off");
	tap_is_errno(vgb_vfio_check_decode(dev, 2), -EIO, "check_decode(BAR2): -EIO");
	tap_is_errno(vgb_vfio_check_decode(dev, 0), -EIO, "check_decode(BAR0): -EIO");
	tap_is_errno(vgb_vfio_check_decode(dev, VFIO_PCI_ROM_REGION_INDEX), 0,
		     "check_decode(ROM): not a BAR, not gated");
	tap_is_errno(vgb_vfio_check_decode(dev, VFIO_PCI_CONFIG_REGION_INDEX), 0,
		     "check_decode(CONFIG): not gated");
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd == -EIO && ioctls == 0, "decode off: export refused with -EIO (%d) and no ioctl (%u)",
	       fd, ioctls);
	vgb_close(fd);
	fd = export(dev, 2, &unaligned, 1, &ioctls);
	tap_ok(fd == -EINVAL && ioctls == 0,
	       "decode off: bad input is still -EINVAL (%d): validation comes first", fd);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), -EIO, "decode off: segment -EIO");
	tap_is_errno(vgb_vfio_segment(dev, 2, 100, PAGE, &seg), -EINVAL,
		     "decode off: an unaligned segment is still -EINVAL");
	tap_is_int(vgb_vfio_region_read(dev, 2, 0, buf, sizeof(buf)), -EIO,
		   "decode off: BAR2 read -EIO (vfio-pci's answer)");
	tap_is_int(vgb_vfio_region_write(dev, 2, 0, buf, sizeof(buf)), -EIO,
		   "decode off: BAR2 write -EIO");
	tap_is_int(vgb_vfio_region_read(dev, VFIO_PCI_ROM_REGION_INDEX, 0, buf, sizeof(buf)),
		   (int)sizeof(buf), "decode off: the ROM still reads");
	tap_is_errno(vgb_vfio_device_reset(dev), 0, "reset");
	tap_is_errno(vgb_vfio_check_decode(dev, 2), -EIO,
		     "a reset does not turn decode back on (vfio-pci restores the command register)");

	tap_is_errno(set_decode(dev, true), 0, "the guest turns memory decode back on");
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd >= 0 && ioctls == 1, "decode on again: a new export works (%d)", fd);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), 0, "and segments resolve again");
	tap_is_int(vgb_vfio_region_read(dev, 2, 0, buf, sizeof(buf)), (int)sizeof(buf),
		   "and BAR2 reads again");
	tap_is_errno(vgb_vfio_device_reset(dev), 0, "reset with decode on");
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd >= 0, "after a reset decode is still on: export works (%d)", fd);
	vgb_close(fd);
	vgb_vfio_device_destroy(dev);
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "decode refusals logged nothing above debug %s", logcap_last_loud());
	leak_check(&before, "virtual device decode test");
}

static int adopt(struct vgb_vfio_device **ret)
{
	int fd = fake_vfio_dup_device(f);
	int r = fd < 0 ? -errno : vgb_vfio_kernel_adopt(fd, "fake", ret);

	if (r < 0 && fd >= 0)
		close(fd);
	return r;
}

static ssize_t (*real_pread)(int, void *, size_t, off_t);
static off_t fail_at = -1;
static unsigned config_reads;

static ssize_t counting_pread(int fd, void *buf, size_t len, off_t off)
{
	if (off == (off_t)(fake_vfio_region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND))
		config_reads++;
	return real_pread(fd, buf, len, off);
}

/* vgb_vfio_segments() of @n ranges; returns its result and the PCI_COMMAND reads it made. */
static int segments(struct vgb_vfio_device *dev, const struct vgb_vfio_range *ranges, size_t n,
		    struct vgb_segment *segs, unsigned *ret_reads)
{
	int r;

	real_pread = vgb_sys.pread;
	vgb_sys.pread = counting_pread;
	config_reads = 0;
	r = vgb_vfio_segments(dev, 2, ranges, n, segs);
	vgb_sys.pread = real_pread;
	*ret_reads = config_reads;
	return r;
}

static ssize_t failing_pread(int fd, void *buf, size_t len, off_t off)
{
	if (off == fail_at) {
		errno = ENXIO;
		return -1;
	}
	return real_pread(fd, buf, len, off);
}

static void test_kernel(void)
{
	const struct vgb_vfio_range ranges[] = { { 0, PAGE }, { 8 * PAGE, 3 * PAGE } };
	struct vgb_vfio_device *dev = NULL;
	struct leak_snapshot before;
	struct vgb_segment seg;
	unsigned ioctls = 0, gets;
	int r, fd;

	leak_snapshot(&before);
	r = adopt(&dev);
	if (!tap_is_errno(r, 0, "kernel backend over the fake vfio-pci device"))
		return;
	tap_ok(dev->pci && vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
	       "a PCI device with DMA_BUF");
	/* Fill the region-info cache, so that exports count only their own ioctl. */
	vgb_vfio_check_decode(dev, 2);
	vgb_vfio_segment(dev, 2, 0, PAGE, &seg);
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd >= 0 && ioctls == 1, "decode on: export (%d)", fd);
	vgb_close(fd);

	tap_is_errno(fake_vfio_set_memory_decode(f, false), 0, "decode off in the device");
	gets = f->calls.get;
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd == -EIO && ioctls == 0 && f->calls.get == gets,
	       "decode off: -EIO (%d) before any DMA_BUF GET (%u ioctls, %u GETs)", fd, ioctls,
	       f->calls.get - gets);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), -EIO, "decode off: segment -EIO");
	tap_is_errno(vgb_vfio_segment(dev, 4, 0, PAGE, &seg), -EIO,
		     "decode off: a sparse BAR's segment -EIO");
	tap_is_errno(vgb_vfio_segment(dev, 4, 16384, PAGE, &seg), -EACCES,
		     "decode off: outside the sparse areas is still -EACCES");

	tap_is_errno(fake_vfio_set_memory_decode(f, true), 0, "decode on again");
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd >= 0 && f->calls.get == gets + 1, "decode on: export works again (%d)", fd);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), 0, "and the segment");

	/* Many ranges of one region: decode is still checked, once for all of them. */
	{
		const struct vgb_vfio_range many[] = { { 5 * PAGE, PAGE }, { 0, PAGE },
						       { 9 * PAGE, 2 * PAGE }, { 2 * PAGE, PAGE } };
		const struct vgb_vfio_range bad[] = { { 0, PAGE }, { PAGE + 100, PAGE } };
		struct vgb_segment segs[VGB_ARRAY_SIZE(many)];
		unsigned reads;

		r = segments(dev, many, VGB_ARRAY_SIZE(many), segs, &reads);
		tap_ok(r == 0 && reads == 1, "segments: 4 ranges resolve with one config read (%d, %u)",
		       r, reads);
		tap_ok(r == 0 && segs[2].offset == fake_vfio_region_offset(2) + 9 * PAGE &&
			       segs[2].length == 2 * PAGE,
		       "segments: each range lands at its region offset");
		tap_is_errno(fake_vfio_set_memory_decode(f, false), 0, "decode off");
		r = segments(dev, many, VGB_ARRAY_SIZE(many), segs, &reads);
		tap_ok(r == -EIO && reads == 1, "segments: decode off is -EIO (%d, %u reads)", r,
		       reads);
		r = segments(dev, bad, VGB_ARRAY_SIZE(bad), segs, &reads);
		tap_ok(r == -EINVAL && reads == 0,
		       "segments: an unaligned range is -EINVAL before any config read (%d, %u)", r,
		       reads);
		tap_is_errno(fake_vfio_set_memory_decode(f, true), 0, "decode on");
		tap_is_errno(vgb_vfio_segments(dev, 2, many, 0, segs), -EINVAL,
			     "segments: n == 0 is -EINVAL");
	}

	/* A config read that fails: refuse with its errno rather than guess. */
	real_pread = vgb_sys.pread;
	fail_at = (off_t)(fake_vfio_region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND);
	vgb_sys.pread = failing_pread;
	fd = export(dev, 2, ranges, 2, &ioctls);
	tap_ok(fd == -ENXIO && ioctls == 0, "config read fails: its errno (%d), no export", fd);
	vgb_close(fd);
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, PAGE, &seg), -ENXIO,
		     "config read fails: segment gets its errno");
	vgb_sys.pread = real_pread;
	vgb_vfio_device_destroy(dev);
	dev = NULL;

	/* Not a PCI device (vfio-platform, say): there is no command register to honour. */
	f->device_flags &= ~(uint32_t)VFIO_DEVICE_FLAGS_PCI;
	fake_vfio_set_memory_decode(f, false);
	r = adopt(&dev);
	if (tap_is_errno(r, 0, "a non-PCI device")) {
		tap_ok(!dev->pci, "not marked PCI");
		fd = export(dev, 2, ranges, 2, &ioctls);
		tap_ok(fd >= 0, "its export is not gated by a PCI_COMMAND it does not have (%d)", fd);
		vgb_close(fd);
		tap_is_errno(vgb_vfio_check_decode(dev, 2), 0, "check_decode: 0");
	}
	vgb_vfio_device_destroy(dev);
	f->device_flags |= VFIO_DEVICE_FLAGS_PCI;
	fake_vfio_set_memory_decode(f, true);
	tap_is_errno(vgb_vfio_check_decode(NULL, 2), -EINVAL, "check_decode(NULL): -EINVAL");
	leak_check(&before, "kernel backend decode test");
}

int main(void)
{
	char root[] = "/tmp/vgb-decode-XXXXXX", dev[128], params[128], cmd[64];

	tap_plan_lazy();
	f = fake_vfio_create();
	if (!f || !mkdtemp(root) || fake_vfio_make_tree(f, root) < 0)
		tap_bail("fake VFIO setup failed");
	snprintf(dev, sizeof(dev), "%s/dev/udmabuf", root);
	snprintf(params, sizeof(params), "%s/sys/module/udmabuf/parameters", root);
	vgb_udmabuf_set_paths(dev, params);
	fake_vfio_install(f);

	test_vdev();
	test_kernel();

	fake_vfio_remove();
	vgb_udmabuf_set_paths(NULL, NULL);
	fake_vfio_destroy(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", root);
	return tap_done();
}
