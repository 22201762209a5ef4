/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_KERNEL_H
#define VGB_VFIO_KERNEL_H

/*
 * Private to vfio/: the kernel backend's construction seam. The legacy path (ops-kernel.c), the
 * adopted-fd path and the cdev + iommufd path (vfio/cdev.c) all end in vgb_vfio_kernel_wrap(),
 * so the device probe (GET_DEVICE_INFO, the DMA_BUF probe) is written once.
 */

#include "vgb/vfio.h"

/*
 * Wraps an open VFIO device fd in a kernel-backend device: VFIO_DEVICE_GET_INFO for the region
 * count and reset flag, then the DMA_BUF probe (PROBE|GET|11: 0 sets VGB_VFIO_CAP_DMA_BUF;
 * ENOTTY and EOPNOTSUPP clear it silently; the answer is kept in dev->dmabuf_probe).
 * Takes ownership of @device_fd on success only. @release (may be NULL) runs with
 * @release_data in vgb_vfio_device_destroy(), after the device fd is closed: the legacy path
 * closes its group and container there, the cdev path its iommufd. On failure @release is not
 * called: the caller still owns what @release_data holds.
 * Returns 0 or -errno (-ENOTTY when @device_fd is not a VFIO device).
 */
int vgb_vfio_kernel_wrap(int device_fd, const char *name, enum vgb_vfio_open_path path,
			 void (*release)(void *data), void *release_data,
			 struct vgb_vfio_device **ret);

/* The device fd of a kernel-backend device (borrowed), or -EINVAL for another backend. */
int vgb_vfio_kernel_device_fd(struct vgb_vfio_device *dev);

/* Test hook: prefix every /sys and /dev path of the legacy open with @root ("" or NULL: the
 * real ones). The cdev path (vfio/cdev.c) uses it too, for /dev/iommu. */
void vgb_vfio_kernel_set_root(const char *root);
/* The current prefix ("" for the real paths). */
const char *vgb_vfio_kernel_get_root(void);

/* The @release_data given to vgb_vfio_kernel_wrap() (borrowed), or NULL for another backend.
 * Which type it is follows from dev->path. */
void *vgb_vfio_kernel_release_data(struct vgb_vfio_device *dev);

/*
 * The legacy open of canonical PCI address @bdf ("0000:00:03.0"): its IOMMU group, a
 * type1v2 container, the group's device fd, wrapped. Returns 0 or -errno (-ENODEV when the
 * device or its group is absent, -EBUSY when the group is not viable).
 */
int vgb_vfio_kernel_open_legacy(const char *bdf, struct vgb_vfio_device **ret);

/*
 * The cdev of PCI device @bdf: /sys/bus/pci/devices/<bdf>/vfio-dev/vfioN names
 * /dev/vfio/devices/vfioN, written into @buf. Returns 0, -EINVAL for a bad address, -ENODEV
 * when the device has no VFIO cdev (not bound to vfio-pci, or a kernel without cdevs).
 */
int vgb_vfio_kernel_cdev_path(const char *bdf, char *buf, size_t size);

/*
 * Whether this build has the cdev + iommufd open path (vfio/cdev.c). Without it,
 * VGB_VFIO_OPEN_CDEV answers -EOPNOTSUPP: the capability is absent, which is not an error.
 */
#ifndef VGB_VFIO_HAVE_CDEV
#define VGB_VFIO_HAVE_CDEV 0
#endif

#endif
