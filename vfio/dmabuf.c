/* SPDX-License-Identifier: MIT */
/* Multi-range dmabuf export (VFIO_DEVICE_FEATURE_DMA_BUF) and the DMA_BUF probe. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "private.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

void vgb_vfio_probe_dmabuf(struct vgb_vfio_device *dev)
{
	struct vfio_device_feature probe = {
		.argsz = sizeof(probe),
		.flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
			 VFIO_DEVICE_FEATURE_DMA_BUF,
	};
	int r = dev->ops->device_feature ? dev->ops->device_feature(dev, &probe) : -ENOTTY;

	dev->caps &= ~(uint32_t)VGB_VFIO_CAP_DMA_BUF;
	dev->dmabuf_probe_errno = r < 0 ? r : 0;
	if (r >= 0) {
		dev->dmabuf_probe = VGB_VFIO_PROBE_OK;
		dev->caps |= dev->ops->capabilities & VGB_VFIO_CAP_DMA_BUF;
	} else if (r == -ENOTTY) {
		dev->dmabuf_probe = VGB_VFIO_PROBE_ENOTTY;
	} else if (r == -EOPNOTSUPP) {
		dev->dmabuf_probe = VGB_VFIO_PROBE_EOPNOTSUPP;
	} else {
		dev->dmabuf_probe = VGB_VFIO_PROBE_OTHER;
	}
	vgb_log(VGB_LOG_DEBUG, "%s: DMA_BUF probe answered %d: capability %s", dev->name, r,
		vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF) ? "on" : "off");
}

size_t vgb_vfio_ranges_merge(struct vgb_vfio_range *ranges, size_t n)
{
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		struct vgb_vfio_range *last = out ? &ranges[out - 1] : NULL;
		uint64_t end, len;

		if (last && !__builtin_add_overflow(last->offset, last->length, &end) &&
		    end == ranges[i].offset &&
		    !__builtin_add_overflow(last->length, ranges[i].length, &len)) {
			last->length = len;
			continue;
		}
		ranges[out++] = ranges[i];
	}
	return out;
}

/* Everything the kernel would refuse, refused here first, with the errno we document. */
static int validate(struct vgb_vfio_device *dev, uint32_t region,
		    const struct vgb_vfio_range *ranges, size_t n)
{
	const struct vgb_vfio_region_info *info;
	uint64_t total = 0;
	int r;

	if (n == 0)
		return -EINVAL;
	if (n > VGB_VFIO_DMABUF_MAX_RANGES)
		return -E2BIG;
	if (region >= VFIO_PCI_ROM_REGION_INDEX)
		return -ENODEV;
	r = vgb_vfio_region_info(dev, region, &info);
	if (r < 0)
		return r;
	if (info->size == 0)
		return -ENODEV;
	for (size_t i = 0; i < n; i++) {
		uint64_t end;

		if (!ranges[i].length || !VGB_IS_ALIGNED(ranges[i].offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(ranges[i].length, VGB_PAGE_SIZE))
			return -EINVAL;
		if (__builtin_add_overflow(ranges[i].offset, ranges[i].length, &end) ||
		    end > info->size)
			return -EINVAL;
		if (__builtin_add_overflow(total, ranges[i].length, &total))
			return -EINVAL;
	}
	return 0;
}

int vgb_vfio_create_dmabuf(struct vgb_vfio_device *dev, uint32_t region,
			   const struct vgb_vfio_range *ranges, size_t n)
{
	_cleanup_free_ uint8_t *buf = NULL;
	struct vfio_device_feature *feature;
	struct vfio_device_feature_dma_buf *req;
	struct vgb_vfio_range *out;
	size_t head = sizeof(*feature) + sizeof(*req), argsz, m;
	int r;

	if (!dev || (!ranges && n))
		return -EINVAL;
	if (!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF) || !dev->ops->device_feature)
		return -EOPNOTSUPP;
	r = validate(dev, region, ranges, n);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: dmabuf of %zu ranges of region %u",
				     dev->name, n, region);
	/* With decode off the kernel still answers with an fd, of a dmabuf born revoked. */
	r = vgb_vfio_check_decode(dev, region);
	if (r < 0)
		return r;

	/* n <= VGB_VFIO_DMABUF_MAX_RANGES keeps this far below UINT32_MAX. */
	argsz = head + n * sizeof(struct vfio_region_dma_range);
	buf = calloc(1, argsz);
	if (!buf)
		return -ENOMEM;
	/* struct vgb_vfio_range and vfio_region_dma_range share their layout; merge in place. */
	_Static_assert(sizeof(struct vgb_vfio_range) == sizeof(struct vfio_region_dma_range),
		       "range layouts match");
	out = (struct vgb_vfio_range *)(void *)(buf + head);
	memcpy(out, ranges, n * sizeof(*out));
	m = vgb_vfio_ranges_merge(out, n);
	argsz = head + m * sizeof(struct vfio_region_dma_range);

	feature = (struct vfio_device_feature *)(void *)buf;
	feature->argsz = (uint32_t)argsz;
	feature->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req = (struct vfio_device_feature_dma_buf *)(void *)(buf + sizeof(*feature));
	req->region_index = region;
	req->open_flags = O_RDWR | O_CLOEXEC;
	req->flags = 0;
	req->nr_ranges = (uint32_t)m;

	r = dev->ops->device_feature(dev, buf);
	if (r == -ENOTTY || r == -EOPNOTSUPP) {
		/* The feature went away after the probe (driver rebound, device swapped): it is a
		 * capability, so turn it off and let callers take the other path. */
		dev->caps &= ~(uint32_t)VGB_VFIO_CAP_DMA_BUF;
		vgb_log_errno(VGB_LOG_DEBUG, r, "%s: DMA_BUF export no longer offered", dev->name);
		return -EOPNOTSUPP;
	}
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: DMA_BUF export of %zu ranges",
				     dev->name, m);
	vgb_log(VGB_LOG_DEBUG, "%s: DMA_BUF export of %zu ranges (%zu before merging) of region %u: fd %d",
		dev->name, m, n, region, r);
	return r;
}
