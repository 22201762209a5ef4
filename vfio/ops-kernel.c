/* SPDX-License-Identifier: MIT */
/*
 * The kernel backend: a VFIO device fd, opened the legacy way (container, group, type1v2), the
 * cdev way (vfio/cdev.c, when built) or handed to us by the VMM. Every call goes through the
 * vgb_sys seam, so unit tests can stand a fake kernel at the ioctl boundary.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "kernel.h"
#include "private.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

/* vfio-pci has 9 regions plus device-specific ones (IGD OpRegion, ...): far below this. */
#define KERNEL_MAX_REGIONS 256u

struct kernel_device {
	struct vgb_vfio_device base;
	int fd;
	void (*release)(void *data);
	void *release_data;
};

static const struct vgb_vfio_device_ops kernel_ops;
/* Short enough that every path built on it fits PATH_MAX. */
static char root[1024];

void vgb_vfio_kernel_set_root(const char *r)
{
	snprintf(root, sizeof(root), "%s", r ? r : "");
}

const char *vgb_vfio_kernel_get_root(void)
{
	return root;
}

static struct kernel_device *kernel_from(struct vgb_vfio_device *dev)
{
	return dev && dev->ops == &kernel_ops ? vgb_container_of(dev, struct kernel_device, base)
					      : NULL;
}

int vgb_vfio_kernel_device_fd(struct vgb_vfio_device *dev)
{
	struct kernel_device *k = kernel_from(dev);

	return k ? k->fd : -EINVAL;
}

void *vgb_vfio_kernel_release_data(struct vgb_vfio_device *dev)
{
	struct kernel_device *k = kernel_from(dev);

	return k ? k->release_data : NULL;
}

static int k_device_feature(struct vgb_vfio_device *dev, void *arg)
{
	return vgb_ioctl(kernel_from(dev)->fd, VFIO_DEVICE_FEATURE, arg);
}

static int k_get_region_info(struct vgb_vfio_device *dev, void *arg)
{
	return vgb_ioctl(kernel_from(dev)->fd, VFIO_DEVICE_GET_REGION_INFO, arg);
}

static int k_get_device_info(struct vgb_vfio_device *dev, void *arg)
{
	return vgb_ioctl(kernel_from(dev)->fd, VFIO_DEVICE_GET_INFO, arg);
}

/* The device-fd offset of @off in region @index (the base checked the bounds). */
static int file_offset(struct vgb_vfio_device *dev, uint32_t index, uint64_t off, off_t *ret)
{
	const struct vgb_vfio_region_info *info;
	uint64_t pos;
	int r = vgb_vfio_region_info(dev, index, &info);

	if (r < 0)
		return r;
	if (__builtin_add_overflow(info->offset, off, &pos) || pos > INT64_MAX)
		return -EINVAL;
	*ret = (off_t)pos;
	return 0;
}

static ssize_t k_region_read(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			     void *buf, size_t len)
{
	off_t pos;
	int r = file_offset(dev, index, off, &pos);

	return r < 0 ? r : vgb_pread_all(kernel_from(dev)->fd, buf, len, pos);
}

static ssize_t k_region_write(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			      const void *buf, size_t len)
{
	off_t pos;
	int r = file_offset(dev, index, off, &pos);

	return r < 0 ? r : vgb_pwrite_all(kernel_from(dev)->fd, buf, len, pos);
}

static int k_region_mmap_fd(struct vgb_vfio_device *dev, uint32_t index)
{
	return kernel_from(dev)->fd;
}

static int k_reset(struct vgb_vfio_device *dev)
{
	return vgb_ioctl(kernel_from(dev)->fd, VFIO_DEVICE_RESET, NULL);
}

static void k_destroy(struct vgb_vfio_device *dev)
{
	struct kernel_device *k = kernel_from(dev);

	/* The device fd goes first: a group or iommufd cannot be released under an open device. */
	vgb_close(k->fd);
	if (k->release)
		k->release(k->release_data);
	free(k);
}

static const struct vgb_vfio_device_ops kernel_ops = {
	.name = "kernel",
	.capabilities = VGB_VFIO_CAP_DMA_BUF | VGB_VFIO_CAP_MMAP | VGB_VFIO_CAP_RESET |
			VGB_VFIO_CAP_IOMMUFD,
	.device_feature = k_device_feature,
	.get_region_info = k_get_region_info,
	.get_device_info = k_get_device_info,
	.region_read = k_region_read,
	.region_write = k_region_write,
	.region_mmap_fd = k_region_mmap_fd,
	.reset = k_reset,
	.destroy = k_destroy,
};

int vgb_vfio_kernel_wrap(int device_fd, const char *name, enum vgb_vfio_open_path path,
			 void (*release)(void *data), void *release_data,
			 struct vgb_vfio_device **ret)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct kernel_device *k;
	int r;

	if (device_fd < 0 || !ret)
		return -EINVAL;
	r = vgb_ioctl(device_fd, VFIO_DEVICE_GET_INFO, &info);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_DEVICE_GET_INFO", name);
	if (info.num_regions == 0 || info.num_regions > KERNEL_MAX_REGIONS)
		return vgb_log_errno(VGB_LOG_DEBUG, -EPROTO, "%s: %u regions", name,
				     info.num_regions);

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	vgb_vfio_device_init(&k->base, &kernel_ops, info.num_regions, name);
	k->base.path = path;
	k->base.caps = VGB_VFIO_CAP_MMAP;
	if (info.flags & VFIO_DEVICE_FLAGS_RESET)
		k->base.caps |= VGB_VFIO_CAP_RESET;
	if (path == VGB_VFIO_PATH_CDEV)
		k->base.caps |= VGB_VFIO_CAP_IOMMUFD;
	/* vfio-pci: BARs follow the memory decode bit of the config region. */
	k->base.pci = (info.flags & VFIO_DEVICE_FLAGS_PCI) &&
		      info.num_regions > VFIO_PCI_CONFIG_REGION_INDEX;
	k->fd = device_fd;
	k->release = release;
	k->release_data = release_data;
	/* Cannot fail: an odd answer only leaves the capability off. */
	vgb_vfio_probe_dmabuf(&k->base);
	*ret = &k->base;
	return 0;
}

int vgb_vfio_kernel_adopt(int fd, const char *name, struct vgb_vfio_device **ret)
{
	int r, flags;

	if (fd < 0 || !ret)
		return -EINVAL;
	r = vgb_vfio_kernel_wrap(fd, name && name[0] ? name : "adopted", VGB_VFIO_PATH_ADOPTED,
				 NULL, NULL, ret);
	if (r < 0)
		return r;
	/* We own it now; it must not leak into children we might run. */
	flags = fcntl(fd, F_GETFD);
	if (flags >= 0 && !(flags & FD_CLOEXEC))
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	return 0;
}

/* ---- the legacy path ---- */

/* The device's IOMMU group number, from the sysfs link's last component. */
static int iommu_group_of(const char *bdf, unsigned *ret)
{
	char path[PATH_MAX], link[PATH_MAX];
	unsigned long group;
	const char *base;
	char *end;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/iommu_group", root, bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0) {
		if (errno != ENOENT)
			return -errno;
		/* No such device, or a device without an IOMMU group: either way no VFIO. */
		snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s", root, bdf);
		return access(path, F_OK) == 0 ? -ENXIO : -ENODEV;
	}
	link[n] = '\0';
	base = strrchr(link, '/');
	base = base ? base + 1 : link;
	errno = 0;
	group = strtoul(base, &end, 10);
	if (errno || end == base || *end || group > INT_MAX)
		return -EPROTO;
	*ret = (unsigned)group;
	return 0;
}

struct legacy {
	int group, container;
};

static void legacy_release(void *data)
{
	struct legacy *l = data;

	vgb_close(l->group);
	vgb_close(l->container);
	free(l);
}

static int open_dev(const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/dev/vfio/%s", root, name);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENODEV : -errno;
	return fd;
}

int vgb_vfio_kernel_open_legacy(const char *bdf, struct vgb_vfio_device **ret)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	_cleanup_close_ int container = -1, group = -1, device = -1;
	_cleanup_free_ struct legacy *l = NULL;
	char name[16];
	unsigned group_nr;
	int r;

	r = iommu_group_of(bdf, &group_nr);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: IOMMU group", bdf);
	container = open_dev("vfio");
	if (container < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, container, "%s: /dev/vfio/vfio", bdf);
	r = vgb_ioctl(container, VFIO_GET_API_VERSION, NULL);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_GET_API_VERSION", bdf);
	if (r != VFIO_API_VERSION)
		return vgb_log_errno(VGB_LOG_DEBUG, -EPROTO, "%s: VFIO API version %d", bdf, r);
	r = vgb_ioctl(container, VFIO_CHECK_EXTENSION, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_CHECK_EXTENSION", bdf);
	if (r == 0)
		return vgb_log_errno(VGB_LOG_DEBUG, -EOPNOTSUPP, "%s: no type1v2 IOMMU", bdf);

	snprintf(name, sizeof(name), "%u", group_nr);
	group = open_dev(name);
	if (group < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, group, "%s: /dev/vfio/%s", bdf, name);
	r = vgb_ioctl(group, VFIO_GROUP_GET_STATUS, &status);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_GROUP_GET_STATUS", bdf);
	/* Another device of the group is bound to a host driver. */
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return vgb_log_errno(VGB_LOG_DEBUG, -EBUSY, "%s: group %s not viable", bdf, name);
	r = vgb_ioctl(group, VFIO_GROUP_SET_CONTAINER, &container);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_GROUP_SET_CONTAINER", bdf);
	r = vgb_ioctl(container, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1v2_IOMMU);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: VFIO_SET_IOMMU", bdf);
	device = vgb_ioctl(group, VFIO_GROUP_GET_DEVICE_FD, (void *)bdf);
	if (device < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, device, "%s: VFIO_GROUP_GET_DEVICE_FD", bdf);

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->group = group;
	l->container = container;
	r = vgb_vfio_kernel_wrap(device, bdf, VGB_VFIO_PATH_LEGACY, legacy_release, l, ret);
	if (r < 0)
		return r;
	/* The device owns them now. */
	TAKE_FD(device);
	TAKE_FD(group);
	TAKE_FD(container);
	TAKE_PTR(l);
	return 0;
}
