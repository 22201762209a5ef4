/* SPDX-License-Identifier: MIT */
/*
 * In-guest, Linux 6.1 (no VFIO DMA_BUF feature, no udmabuf): the capability is absent.
 *   - the DMA_BUF probe answers ENOTTY (the kernel agrees when asked raw), the capability is
 *     cleared, and nothing above debug is logged
 *   - an export is refused with -EOPNOTSUPP without an ioctl, and the CPU view (the segment
 *     mapper over the device fd) gives the right bytes
 *   - udmabuf is absent: not available, -ENODEV, quietly
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"
#include "kernel.h"
#include "lab.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE

int main(void)
{
	struct vm_lab_device labdev[VM_LAB_MAX_DEVICES];
	struct vgb_vfio_device *dev[2] = { NULL, NULL };
	struct leak_snapshot start;
	int n = vm_lab_devices(labdev, VM_LAB_MAX_DEVICES);

	if (n < 2)
		tap_bail("needs the lab's two ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	tap_plan_lazy();
	leak_snapshot(&start);

	logcap_start();
	for (int i = 0; i < 2; i++) {
		int r = vgb_vfio_kernel_open(labdev[i].bdf, 0, &dev[i]);

		if (!tap_is_int(r, 0, "%s: vgb_vfio_kernel_open", labdev[i].bdf))
			tap_bail("cannot open %s", labdev[i].bdf);
		tap_ok(dev[i]->dmabuf_probe == VGB_VFIO_PROBE_ENOTTY &&
			       dev[i]->dmabuf_probe_errno == -ENOTTY,
		       "%s: the DMA_BUF probe answered ENOTTY (probe state %d, errno %d)",
		       labdev[i].bdf, dev[i]->dmabuf_probe, dev[i]->dmabuf_probe_errno);
		tap_ok(!vgb_vfio_device_has_cap(dev[i], VGB_VFIO_CAP_DMA_BUF),
		       "%s: VGB_VFIO_CAP_DMA_BUF is clear (caps %#x)", labdev[i].bdf, dev[i]->caps);
	}
	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0 && logcap_count() > 0,
	       "opening and probing logged nothing above debug (%u messages, %u above debug%s%s)",
	       logcap_count(), logcap_count_at_or_above(VGB_LOG_INFO),
	       *logcap_last_loud() ? ": " : "", logcap_last_loud());

	/* The kernel agrees, asked directly. */
	{
		struct vfio_device_feature probe = {
			.argsz = sizeof(probe),
			.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
				 VFIO_DEVICE_FEATURE_DMA_BUF,
		};
		int fd = vgb_vfio_kernel_device_fd(dev[0]);
		int r = fd < 0 ? fd : ioctl(fd, VFIO_DEVICE_FEATURE, &probe) < 0 ? -errno : 0;

		tap_is_errno(r, -ENOTTY, "raw VFIO_DEVICE_FEATURE PROBE of DMA_BUF: ENOTTY");
	}

	/* An export is refused before any ioctl; the CPU view gives the bytes. */
	for (int i = 0; i < 2; i++) {
		const struct vgb_vfio_range ranges[] = {
			{ 40 * PAGE, 2 * PAGE }, { 3 * PAGE, PAGE }, { 100 * PAGE, 3 * PAGE },
		};
		struct vgb_segment segs[VGB_ARRAY_SIZE(ranges)];
		struct vgb_segmap *map = NULL;
		struct leak_snapshot before;
		struct fault_counts c;
		uint64_t pos = 0;
		bool ok = true;
		int r;

		leak_snapshot(&before);
		fault_install();
		r = vgb_vfio_create_dmabuf(dev[i], 2, ranges, VGB_ARRAY_SIZE(ranges));
		c = fault_get_counts();
		fault_remove();
		tap_ok(r == -EOPNOTSUPP && c.ioctl == 0,
		       "%s: vgb_vfio_create_dmabuf: %d (want -EOPNOTSUPP) after %u ioctls (want 0)",
		       labdev[i].bdf, r, c.ioctl);

		r = 0;
		for (size_t k = 0; k < VGB_ARRAY_SIZE(ranges) && r == 0; k++)
			r = vgb_vfio_segment(dev[i], 2, ranges[k].offset, ranges[k].length,
					     &segs[k]);
		if (r == 0)
			r = vgb_segmap_create(segs, VGB_ARRAY_SIZE(ranges), -1, &map);
		for (size_t k = 0; k < VGB_ARRAY_SIZE(ranges) && map; k++) {
			ok = vm_lab_pattern_ok((const char *)map->addr + pos, ranges[k].offset,
					       ranges[k].length, labdev[i].seed) &&
			     ok;
			pos += ranges[k].length;
		}
		tap_ok(r == 0 && map && ok && !map->via_dmabuf,
		       "%s: the CPU view of the same ranges shows the host's pattern (r=%d)",
		       labdev[i].bdf, r);
		vgb_segmap_destroy(map);
		leak_check(&before, "CPU view destroyed");
	}

	/* udmabuf is absent on 6.1. */
	{
		int memfd = memfd_create("vgb-vm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		struct vgb_udmabuf_item item = { .memfd = memfd, .offset = 0, .size = 4 * PAGE };
		int r;

		tap_ok(access("/dev/udmabuf", F_OK) < 0 && !vgb_udmabuf_is_available(),
		       "udmabuf: no /dev/udmabuf, vgb_udmabuf_is_available() is false");
		if (memfd < 0 || ftruncate(memfd, 4 * PAGE) < 0 ||
		    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
			tap_bail("memfd: %s", strerror(errno));
		r = vgb_udmabuf_create(&item, 1);
		tap_is_errno(r, -ENODEV, "udmabuf: a sealed memfd item gives -ENODEV");
		close(memfd);
	}

	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0,
	       "the whole run logged nothing above debug (%u above debug%s%s)",
	       logcap_count_at_or_above(VGB_LOG_INFO), *logcap_last_loud() ? ": " : "",
	       logcap_last_loud());
	logcap_stop();

	for (int i = 0; i < 2; i++)
		vgb_vfio_device_destroy(dev[i]);
	leak_check(&start, "both devices destroyed: fds and mappings as at the start");
	return tap_done();
}
