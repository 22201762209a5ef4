/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_CDEV_H
#define VGB_VFIO_CDEV_H

/*
 * Private to vfio/: opening a device through its VFIO cdev (/dev/vfio/devices/vfioN, Linux 6.6)
 * bound to an iommufd context. The kernel backend (vgb_vfio_kernel_open_cdev() and the cdev
 * attempt of vgb_vfio_kernel_open()) is built on these; tests drive them against a fake sysfs
 * tree (vgb_vfio_kernel_set_root()) and the fake iommufd at the ioctl boundary.
 */

#include <stddef.h>
#include <stdint.h>

#include "vgb/iommufd.h"

/* /dev/iommu under the kernel backend's root (vgb_vfio_kernel_set_root()). The cdev node
 * itself comes from vgb_vfio_kernel_cdev_path(). */
const char *vgb_vfio_cdev_iommu_path(char *buf, size_t len);

/*
 * Parses a VF token UUID ("bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3") into the 16 bytes the kernel
 * compares (string order). Returns 0 or -EINVAL.
 */
int vgb_vfio_parse_uuid(const char *s, uint8_t ret[16]);

/*
 * VFIO_DEVICE_BIND_IOMMUFD. @vf_token (16 bytes, may be NULL) sets VFIO_DEVICE_BIND_FLAG_TOKEN
 * (Linux 6.17; older kernels answer EINVAL to the flag). Returns 0 and the device's id in the
 * iommufd context, or the kernel's -errno.
 */
int vgb_vfio_cdev_bind(int device_fd, int iommufd, const uint8_t *vf_token, uint32_t *ret_dev_id);

/* VFIO_DEVICE_ATTACH_IOMMUFD_PT to IOAS or HWPT @pt_id. *ret_hwpt_id (may be NULL) is the HWPT
 * the kernel attached (made by the kernel when @pt_id is an IOAS). */
int vgb_vfio_cdev_attach(int device_fd, uint32_t pt_id, uint32_t *ret_hwpt_id);

/* VFIO_DEVICE_DETACH_IOMMUFD_PT: back to blocking DMA. */
int vgb_vfio_cdev_detach(int device_fd);

/* A device opened by cdev, bound and attached to a fresh, empty IOAS. */
struct vgb_vfio_cdev {
	int device_fd;
	struct vgb_iommufd *iommufd;
	uint32_t dev_id;
	uint32_t ioas_id;
	uint32_t hwpt_id; /* the attached HWPT: the fault-capable one, or the kernel's for the IOAS */
	/* The I/O page-fault queue, when the device takes a fault-capable HWPT (PRI/IOPF); NULL
	 * otherwise (kernel before 6.11, or a device/IOMMU without I/O page faults). */
	struct vgb_iommufd_fault_queue *faults;
};

/*
 * Opens @cdev_path O_RDWR|O_CLOEXEC and the iommu node, binds (with @vf_token, may be NULL),
 * allocates an IOAS and attaches to it: first through an HWPT with a fault queue, so a device
 * issuing page requests has them read and answered; when the kernel or the device refuses any
 * step of that (no IOMMU_FAULT_QUEUE_ALLOC before 6.11, no I/O page faults on the device), the
 * fault objects are dropped and the device is attached to the IOAS itself. On failure
 * everything is undone.
 * Returns 0, -ENOENT when the cdev or /dev/iommu is absent, or the first -errno.
 */
int vgb_vfio_cdev_open(const char *cdev_path, const uint8_t *vf_token,
		       struct vgb_vfio_cdev **ret);

/*
 * Undoes vgb_vfio_cdev_open(): closes the device fd unless it was taken (set to -1), which
 * unbinds and detaches, then destroys the fault queue (HWPT, fault fd, fault object), the IOAS,
 * and closes the iommufd. Accepts NULL.
 */
void vgb_vfio_cdev_close(struct vgb_vfio_cdev *c);

#endif
