/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cdev.h"
#include "kernel.h"
#include "uapi/linux/vfio-cdev.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"

const char *vgb_vfio_cdev_iommu_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/dev/iommu", vgb_vfio_kernel_get_root());
	return buf;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int vgb_vfio_parse_uuid(const char *s, uint8_t ret[16])
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	uint8_t out[16];
	unsigned b = 0;

	if (!s || strlen(s) != sizeof(shape) - 1)
		return -EINVAL;
	for (size_t i = 0; shape[i];) {
		if (shape[i] == '-') {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[b++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	memcpy(ret, out, sizeof(out));
	return 0;
}

int vgb_vfio_cdev_bind(int device_fd, int iommufd, const uint8_t *vf_token, uint32_t *ret_dev_id)
{
	/* Since 6.17 the kernel checks that bytes past what it knows are zero, and kernels from
	 * 6.6 read only the first 16: sending the full 24 bytes with a zero pointer is right for
	 * every version. */
	struct vfio_device_bind_iommufd bind = {
		.argsz = sizeof(bind),
		.iommufd = iommufd,
	};
	int r;

	if (vf_token) {
		bind.flags |= VFIO_DEVICE_BIND_FLAG_TOKEN;
		bind.token_uuid_ptr = (uintptr_t)vf_token;
	}
	r = vgb_ioctl(device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "vfio: BIND_IOMMUFD%s",
				     vf_token ? " (with VF token)" : "");
	*ret_dev_id = bind.out_devid;
	return 0;
}

int vgb_vfio_cdev_attach(int device_fd, uint32_t pt_id, uint32_t *ret_hwpt_id)
{
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach),
		.pt_id = pt_id,
	};
	int r;

	r = vgb_ioctl(device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "vfio: ATTACH_IOMMUFD_PT %u", pt_id);
	if (ret_hwpt_id)
		*ret_hwpt_id = attach.pt_id;
	return 0;
}

int vgb_vfio_cdev_detach(int device_fd)
{
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	int r;

	r = vgb_ioctl(device_fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "vfio: DETACH_IOMMUFD_PT");
	return 0;
}

/* A fault queue, an HWPT over the IOAS that reports to it, and the attach. Any refusal is the
 * capability being absent: undo and let the caller attach to the IOAS. */
static int attach_with_faults(struct vgb_vfio_cdev *c)
{
	uint32_t hwpt, attached;
	int r;

	r = vgb_iommufd_fault_queue_create(c->iommufd, 0, &c->faults);
	if (r < 0)
		return r;
	r = vgb_iommufd_fault_queue_hwpt_alloc(c->faults, c->dev_id, c->ioas_id, &hwpt);
	if (r >= 0)
		r = vgb_vfio_cdev_attach(c->device_fd, hwpt, &attached);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "vfio: no I/O page faults for dev %u", c->dev_id);
		vgb_iommufd_fault_queue_destroy(c->faults);
		c->faults = NULL;
		return r;
	}
	c->hwpt_id = attached;
	return 0;
}

int vgb_vfio_cdev_open(const char *cdev_path, const uint8_t *vf_token,
		       struct vgb_vfio_cdev **ret)
{
	char iommu_path[512];
	struct vgb_vfio_cdev *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->device_fd = open(cdev_path, O_RDWR | O_CLOEXEC);
	if (c->device_fd < 0) {
		r = vgb_log_errno(VGB_LOG_DEBUG, -errno, "vfio: open %s", cdev_path);
		goto err_free;
	}
	r = vgb_iommufd_open(vgb_vfio_cdev_iommu_path(iommu_path, sizeof(iommu_path)), &c->iommufd);
	if (r < 0)
		goto err_close;
	r = vgb_vfio_cdev_bind(c->device_fd, c->iommufd->fd, vf_token, &c->dev_id);
	if (r < 0)
		goto err_close;
	r = vgb_iommufd_ioas_alloc(c->iommufd, &c->ioas_id);
	if (r < 0)
		goto err_close;
	if (attach_with_faults(c) < 0) {
		r = vgb_vfio_cdev_attach(c->device_fd, c->ioas_id, &c->hwpt_id);
		if (r < 0)
			goto err_close;
	}
	*ret = c;
	return 0;

err_close:
	/* vgb_vfio_cdev_close() undoes exactly what was done: it skips what is still 0 / -1. */
	vgb_vfio_cdev_close(c);
	return r;
err_free:
	free(c);
	return r;
}

void vgb_vfio_cdev_close(struct vgb_vfio_cdev *c)
{
	if (!c)
		return;
	/* Closing the device fd unbinds it, which detaches it and drops the HWPT the kernel made
	 * for the IOAS; only then can the IOAS go. */
	c->device_fd = vgb_close(c->device_fd);
	vgb_iommufd_fault_queue_destroy(c->faults);
	if (c->iommufd && c->ioas_id)
		vgb_iommufd_destroy(c->iommufd, c->ioas_id);
	vgb_iommufd_close(c->iommufd);
	free(c);
}

/* ---- the kernel backend over a cdev ---- */

static void cdev_release(void *data)
{
	/* The device fd is already closed (wrap took it): this drops the fault queue, the IOAS
	 * and the iommufd, in that order. */
	vgb_vfio_cdev_close(data);
}

int vgb_vfio_kernel_open_cdev(const char *cdev_path, struct vgb_vfio_device **ret)
{
	struct vgb_vfio_cdev *c;
	int r;

	if (!cdev_path || !ret)
		return -EINVAL;
	r = vgb_vfio_cdev_open(cdev_path, NULL, &c);
	if (r < 0)
		return r;
	r = vgb_vfio_kernel_wrap(c->device_fd, cdev_path, VGB_VFIO_PATH_CDEV, cdev_release, c, ret);
	if (r < 0) {
		vgb_vfio_cdev_close(c);
		return r;
	}
	c->device_fd = -1; /* the device owns it now */
	return 0;
}

struct vgb_iommufd_fault_queue *vgb_vfio_device_fault_queue(struct vgb_vfio_device *dev)
{
	struct vgb_vfio_cdev *c;

	if (!dev || dev->path != VGB_VFIO_PATH_CDEV)
		return NULL;
	c = vgb_vfio_kernel_release_data(dev);
	return c ? c->faults : NULL;
}
