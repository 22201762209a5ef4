/* SPDX-License-Identifier: MIT */
/*
 * The VFIO device cdev ioctls (/dev/vfio/devices/vfioN, Linux 6.6), written from the layouts the
 * kernel documents in include/uapi/linux/vfio.h. Include after <linux/vfio.h>.
 *
 * The structs grew after 6.6: bind gained token_uuid_ptr with VFIO_DEVICE_BIND_FLAG_TOKEN (6.17),
 * attach/detach gained pasid with VFIO_DEVICE_{ATTACH,DETACH}_PASID (6.13). Each kernel reads
 * only the part it knows unless a flag asks for more (bind, since 6.17, also requires bytes past
 * what it knows to be zero), so the newest layout is safe to send everywhere with the flags 0.
 * When the system header has an older layout of a struct, ours is defined under a private tag
 * (the #define below) so the code always sees the newest one.
 */
#ifndef VGB_UAPI_LINUX_VFIO_CDEV_H
#define VGB_UAPI_LINUX_VFIO_CDEV_H

#include <linux/types.h>
#include <linux/vfio.h>
#include <stddef.h>

#ifndef VFIO_DEVICE_BIND_FLAG_TOKEN
#define VFIO_DEVICE_BIND_FLAG_TOKEN (1 << 0)
#ifdef VFIO_DEVICE_BIND_IOMMUFD
#define vfio_device_bind_iommufd vgb_uapi_vfio_device_bind_iommufd
#endif
/*
 * VFIO_DEVICE_BIND_IOMMUFD: binds the device to @iommufd; returns @out_devid, the device's id in
 * that iommufd (for IOMMU_HWPT_ALLOC). With VFIO_DEVICE_BIND_FLAG_TOKEN, @token_uuid_ptr points to
 * the 16-byte VF token. Unbound by closing the device fd.
 */
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
	__aligned_u64 token_uuid_ptr;
};
#endif

#ifndef VFIO_DEVICE_BIND_IOMMUFD
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif

#ifndef VFIO_DEVICE_ATTACH_PASID
#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
#ifdef VFIO_DEVICE_ATTACH_IOMMUFD_PT
#define vfio_device_attach_iommufd_pt vgb_uapi_vfio_device_attach_iommufd_pt
#endif
/*
 * VFIO_DEVICE_ATTACH_IOMMUFD_PT: attaches to IOAS or HWPT @pt_id; on return @pt_id is the HWPT
 * actually attached (the kernel makes one for an IOAS). @pasid only with VFIO_DEVICE_ATTACH_PASID.
 */
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pt_id;
	__u32 pasid;
};
#endif

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif

#ifndef VFIO_DEVICE_DETACH_PASID
#define VFIO_DEVICE_DETACH_PASID (1 << 0)
#ifdef VFIO_DEVICE_DETACH_IOMMUFD_PT
#define vfio_device_detach_iommufd_pt vgb_uapi_vfio_device_detach_iommufd_pt
#endif
/* VFIO_DEVICE_DETACH_IOMMUFD_PT: back to blocking DMA. @pasid only with VFIO_DEVICE_DETACH_PASID. */
struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
	__u32 pasid;
};
#endif

#ifndef VFIO_DEVICE_DETACH_IOMMUFD_PT
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

_Static_assert(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76, "VFIO_DEVICE_BIND_IOMMUFD");
_Static_assert(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
_Static_assert(VFIO_DEVICE_DETACH_IOMMUFD_PT == 0x3b78, "VFIO_DEVICE_DETACH_IOMMUFD_PT");

_Static_assert(sizeof(struct vfio_device_bind_iommufd) == 24, "vfio_device_bind_iommufd");
_Static_assert(offsetof(struct vfio_device_bind_iommufd, iommufd) == 8, "bind.iommufd");
_Static_assert(offsetof(struct vfio_device_bind_iommufd, out_devid) == 12, "bind.out_devid");
_Static_assert(offsetof(struct vfio_device_bind_iommufd, token_uuid_ptr) == 16,
	       "bind.token_uuid_ptr");

_Static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 16, "vfio_device_attach_iommufd_pt");
_Static_assert(offsetof(struct vfio_device_attach_iommufd_pt, pt_id) == 8, "attach.pt_id");
_Static_assert(offsetof(struct vfio_device_attach_iommufd_pt, pasid) == 12, "attach.pasid");

_Static_assert(sizeof(struct vfio_device_detach_iommufd_pt) == 12, "vfio_device_detach_iommufd_pt");
_Static_assert(offsetof(struct vfio_device_detach_iommufd_pt, pasid) == 8, "detach.pasid");

/* The smallest argsz each kernel accepts (offsetofend of the last field 6.6 knew). */
#define VGB_VFIO_BIND_IOMMUFD_MINSZ 16u
#define VGB_VFIO_ATTACH_IOMMUFD_PT_MINSZ 12u
#define VGB_VFIO_DETACH_IOMMUFD_PT_MINSZ 8u

#endif
