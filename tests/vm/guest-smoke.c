/* SPDX-License-Identifier: MIT */
/*
 * In-guest smoke test of the lab itself, with raw VFIO ioctls (no project code under test):
 * every ivshmem device is bound to vfio-pci, its IOMMU group has a /dev/vfio node, BAR2's size
 * in sysfs and in VFIO's region info is what qemu was given, the host's pattern reads back
 * through the device fd (pread and mmap), and a page the guest writes reaches the host file
 * (the lab checks that after the run).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lab.h"
#include "tap.h"
#include "vgb/util.h"

#define TESTS_PER_DEVICE 12

static int sysfs_bar2_size(const char *bdf, uint64_t *ret)
{
	char path[128], buf[1024], *line;
	unsigned long long start, end, flags;
	int r;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	r = vm_lab_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	line = buf;
	for (int i = 0; i < 2 && line; i++) {
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!line || sscanf(line, "%llx %llx %llx", &start, &end, &flags) != 3 || end < start)
		return -EINVAL;
	*ret = end - start + 1;
	return 0;
}

static void test_device(int idx, const struct vm_lab_device *d)
{
	char path[128], name[64];
	struct stat st;
	int group_id = -1;
	_cleanup_close_ int container = -1, group = -1, device = -1;
	struct vfio_group_status status = { .argsz = sizeof(status) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_region_info bar2 = { .argsz = sizeof(bar2), .index = VFIO_PCI_BAR2_REGION_INDEX };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint64_t size = 0;
	uint16_t cmd = 0;
	int r;

	tap_diag("device %d: %s, BAR2 %" PRIu64 " bytes, seed %#" PRIx32, idx, d->bdf, d->size,
		 d->seed);

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", d->bdf);
	r = vm_lab_link_name(path, name, sizeof(name));
	tap_is_str(r < 0 ? "(none)" : name, "vfio-pci", "%s: bound to vfio-pci", d->bdf);

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", d->bdf);
	r = vm_lab_link_name(path, name, sizeof(name));
	if (r >= 0)
		group_id = atoi(name);
	snprintf(path, sizeof(path), "/dev/vfio/%d", group_id);
	tap_ok(group_id >= 0 && stat(path, &st) == 0 && S_ISCHR(st.st_mode),
	       "%s: IOMMU group %d has a character device %s", d->bdf, group_id, path);

	r = sysfs_bar2_size(d->bdf, &size);
	tap_ok(r == 0 && size == d->size, "%s: sysfs BAR2 size %" PRIu64 " == %" PRIu64, d->bdf,
	       size, d->size);

	container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	tap_ok(container >= 0 && ioctl(container, VFIO_GET_API_VERSION) == VFIO_API_VERSION &&
		       ioctl(container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1,
	       "container: API version %d, type1v2", VFIO_API_VERSION);

	group = open(path, O_RDWR | O_CLOEXEC);
	r = group < 0 ? -errno : ioctl(group, VFIO_GROUP_GET_STATUS, &status) < 0 ? -errno : 0;
	tap_ok(r == 0 && (status.flags & VFIO_GROUP_FLAGS_VIABLE), "%s: group viable (r=%d)",
	       d->bdf, r);

	r = ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) < 0 ||
			    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0
		    ? -errno
		    : 0;
	device = r < 0 ? -1 : ioctl(group, VFIO_GROUP_GET_DEVICE_FD, d->bdf);
	tap_ok(device >= 0, "%s: device fd through container + group (%s)", d->bdf,
	       device >= 0 ? "ok" : strerror(errno));
	if (device < 0) {
		tap_bail("no device fd, the remaining checks cannot run");
	}

	r = ioctl(device, VFIO_DEVICE_GET_INFO, &info);
	tap_ok(r == 0 && (info.flags & VFIO_DEVICE_FLAGS_PCI) &&
		       info.num_regions >= VFIO_PCI_NUM_REGIONS,
	       "%s: a PCI device with %u regions", d->bdf, info.num_regions);

	r = ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &bar2);
	tap_ok(r == 0 && bar2.size == d->size &&
		       (bar2.flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
				      VFIO_REGION_INFO_FLAG_MMAP)) == 7,
	       "%s: VFIO region 2 is %llu bytes (want %" PRIu64 "), flags %#x", d->bdf,
	       (unsigned long long)bar2.size, d->size, bar2.flags);

	/* Memory decode must be on for BAR access; vfio-pci enables the device on open. */
	r = ioctl(device, VFIO_DEVICE_GET_REGION_INFO, &cfg);
	if (r == 0 && pread(device, &cmd, sizeof(cmd), (off_t)cfg.offset + PCI_COMMAND) == 2 &&
	    !(cmd & PCI_COMMAND_MEMORY)) {
		uint16_t on = cmd | PCI_COMMAND_MEMORY;

		tap_diag("%s: memory decode was off (command %#x): turning it on", d->bdf, cmd);
		if (pwrite(device, &on, sizeof(on), (off_t)cfg.offset + PCI_COMMAND) != 2)
			tap_diag("pwrite of PCI_COMMAND: %s", strerror(errno));
	}

	/* pread: the first page and one in the middle. */
	{
		unsigned char page[4096];
		uint64_t mid = VGB_ALIGN_UP(d->size / 2 + 12345, 4096);
		bool ok = pread(device, page, sizeof(page), (off_t)bar2.offset) == sizeof(page) &&
			  vm_lab_mismatch(page, 0, sizeof(page), d->seed) < 0 &&
			  pread(device, page, sizeof(page), (off_t)(bar2.offset + mid)) ==
				  sizeof(page) &&
			  vm_lab_mismatch(page, mid, sizeof(page), d->seed) < 0;

		tap_ok(ok, "%s: pread of BAR2 pages 0 and %#" PRIx64 " gives the host's pattern",
		       d->bdf, mid);
	}

	/* mmap: every byte, then write the last page and read it back through pread. */
	{
		void *p = MAP_FAILED;
		long long bad = -2;
		uint64_t last = d->size - 4096;
		uint32_t gseed = d->seed ^ 0xffffffffu;
		unsigned char page[4096], want[4096];

		if (bar2.size == d->size)
			p = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, device,
				 (off_t)bar2.offset);
		if (p != MAP_FAILED)
			bad = vm_lab_mismatch(p, 0, d->size, d->seed);
		tap_ok(p != MAP_FAILED && bad < 0, "%s: mmap of BAR2 shows the host's pattern (%s)",
		       d->bdf,
		       p == MAP_FAILED ? strerror(errno) : bad < 0 ? "all bytes" : "mismatch");
		if (bad >= 0)
			tap_diag("first mismatch at byte %#llx", bad);

		if (p != MAP_FAILED) {
			vm_lab_fill(want, last, sizeof(want), gseed);
			memcpy((char *)p + last, want, sizeof(want));
			vm_lab_declare_write(idx, last, sizeof(want), gseed);
			munmap(p, d->size);
		}
		tap_ok(p != MAP_FAILED &&
			       pread(device, page, sizeof(page), (off_t)(bar2.offset + last)) ==
				       sizeof(page) &&
			       memcmp(page, want, sizeof(page)) == 0,
		       "%s: a page written through mmap reads back through pread", d->bdf);
	}

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", d->bdf);
	r = vm_lab_read_file(path, name, sizeof(name));
	tap_is_str(r < 0 ? "" : name, "0x1af4", "%s: vendor is Red Hat (ivshmem)", d->bdf);
}

int main(void)
{
	struct vm_lab_device devs[VM_LAB_MAX_DEVICES];
	int n = vm_lab_devices(devs, VM_LAB_MAX_DEVICES);
	struct stat st;

	if (n < 1)
		tap_bail("not run by scripts/vm-lab (VGB_IVSHMEM_* missing)");
	tap_plan(2 + (unsigned)n * TESTS_PER_DEVICE);
	tap_ok(stat("/sys/module/vfio_iommu_type1", &st) == 0 &&
		       stat("/sys/module/vfio_pci", &st) == 0,
	       "vfio_iommu_type1 and vfio_pci are loaded");
	tap_ok(stat("/dev/vfio/vfio", &st) == 0 && S_ISCHR(st.st_mode),
	       "/dev/vfio/vfio is a character device");
	for (int i = 0; i < n; i++)
		test_device(i, &devs[i]);
	return tap_done();
}
