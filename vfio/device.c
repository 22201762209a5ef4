/* SPDX-License-Identifier: MIT */
/* The device base: region-info cache, capability-chain parser, reset invalidation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "private.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

void vgb_vfio_device_init(struct vgb_vfio_device *dev, const struct vgb_vfio_device_ops *ops,
			  uint32_t num_regions, const char *name)
{
	memset(dev, 0, sizeof(*dev));
	dev->ops = ops;
	dev->num_regions = num_regions;
	snprintf(dev->name, sizeof(dev->name), "%s", name ? name : "");
}

/* Forgets every cached region (the arrays themselves stay). */
static void drop_cache(struct vgb_vfio_device *dev)
{
	if (!dev->regions)
		return;
	for (uint32_t i = 0; i < dev->num_regions; i++) {
		free((void *)dev->regions[i].sparse);
		memset(&dev->regions[i], 0, sizeof(dev->regions[i]));
		dev->region_cached[i] = false;
	}
}

void vgb_vfio_device_finish(struct vgb_vfio_device *dev)
{
	if (!dev)
		return;
	drop_cache(dev);
	free(dev->regions);
	free(dev->region_cached);
	dev->regions = NULL;
	dev->region_cached = NULL;
}

void vgb_vfio_device_destroy(struct vgb_vfio_device *dev)
{
	if (!dev)
		return;
	vgb_vfio_device_finish(dev);
	if (dev->ops && dev->ops->destroy)
		dev->ops->destroy(dev);
}

const char *vgb_vfio_region_name(uint32_t index)
{
	static const char *const names[] = {
		"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA",
	};

	return index < VGB_ARRAY_SIZE(names) ? names[index] : NULL;
}

static int parse_sparse(const uint8_t *buf, size_t len, size_t off, uint64_t region_size,
			struct vgb_vfio_sparse_area **ret, uint32_t *ret_n)
{
	struct vfio_region_info_cap_sparse_mmap cap;
	struct vgb_vfio_sparse_area *areas;

	if (len - off < sizeof(cap))
		return -EPROTO;
	memcpy(&cap, buf + off, sizeof(cap));
	if (cap.nr_areas > VGB_VFIO_MAX_SPARSE ||
	    (len - off - sizeof(cap)) / sizeof(struct vfio_region_sparse_mmap_area) < cap.nr_areas)
		return -EPROTO;

	areas = calloc(cap.nr_areas ? cap.nr_areas : 1, sizeof(*areas));
	if (!areas)
		return -ENOMEM;
	for (uint32_t i = 0; i < cap.nr_areas; i++) {
		struct vfio_region_sparse_mmap_area a;
		uint64_t end;

		memcpy(&a, buf + off + sizeof(cap) + i * sizeof(a), sizeof(a));
		if (__builtin_add_overflow(a.offset, a.size, &end) || end > region_size) {
			free(areas);
			return -EPROTO;
		}
		areas[i].offset = a.offset;
		areas[i].size = a.size;
	}
	*ret = areas;
	*ret_n = cap.nr_areas;
	return 0;
}

int vgb_vfio_parse_region_info(const void *buf, size_t len, struct vgb_vfio_region_info *ret,
			       struct vgb_vfio_sparse_area **ret_sparse)
{
	const uint8_t *p = buf;
	struct vgb_vfio_region_info out = { 0 };
	struct vgb_vfio_sparse_area *sparse = NULL;
	struct vfio_region_info info;
	uint64_t end;
	unsigned hops = 0;
	int r;

	if (len < sizeof(info))
		return -EPROTO;
	memcpy(&info, p, sizeof(info));
	if (__builtin_add_overflow(info.offset, info.size, &end))
		return -EPROTO;
	out.index = info.index;
	out.flags = info.flags;
	out.size = info.size;
	out.offset = info.offset;

	/* cap_offset 0 with FLAG_CAPS means the chain did not fit; the caller re-queries. */
	size_t off = (info.flags & VFIO_REGION_INFO_FLAG_CAPS) ? info.cap_offset : 0;
	while (off) {
		struct vfio_info_cap_header hdr;

		/* Chains only go forward (the kernel appends), which also rules out loops. */
		if (off < sizeof(info) || off % 4 || off > len - sizeof(hdr) || ++hops > 64) {
			r = -EPROTO;
			goto err;
		}
		memcpy(&hdr, p + off, sizeof(hdr));
		switch (hdr.id) {
		case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
			if (out.has_sparse) {
				r = -EPROTO;
				goto err;
			}
			r = parse_sparse(p, len, off, info.size, &sparse, &out.n_sparse);
			if (r < 0)
				goto err;
			out.has_sparse = true;
			break;
		case VFIO_REGION_INFO_CAP_TYPE: {
			struct vfio_region_info_cap_type t;

			if (len - off < sizeof(t)) {
				r = -EPROTO;
				goto err;
			}
			memcpy(&t, p + off, sizeof(t));
			out.has_type = true;
			out.type = t.type;
			out.subtype = t.subtype;
			break;
		}
		default:
			vgb_log(VGB_LOG_DEBUG, "region %u: ignoring capability %u", info.index, hdr.id);
			break;
		}
		if (hdr.next && hdr.next <= off) {
			r = -EPROTO;
			goto err;
		}
		off = hdr.next;
	}

	out.sparse = sparse;
	*ret = out;
	*ret_sparse = sparse;
	return 0;

err:
	free(sparse);
	return r;
}

static int ensure_cache(struct vgb_vfio_device *dev)
{
	if (dev->regions)
		return 0;
	dev->regions = calloc(dev->num_regions, sizeof(*dev->regions));
	dev->region_cached = calloc(dev->num_regions, sizeof(*dev->region_cached));
	if (!dev->regions || !dev->region_cached) {
		free(dev->regions);
		free(dev->region_cached);
		dev->regions = NULL;
		dev->region_cached = NULL;
		return -ENOMEM;
	}
	return 0;
}

int vgb_vfio_region_info(struct vgb_vfio_device *dev, uint32_t index,
			 const struct vgb_vfio_region_info **ret)
{
	_cleanup_free_ struct vfio_region_info *info = NULL;
	struct vgb_vfio_region_info parsed;
	struct vgb_vfio_sparse_area *sparse;
	uint32_t argsz = sizeof(*info);
	int r;

	if (!dev || index >= dev->num_regions)
		return -EINVAL;
	r = ensure_cache(dev);
	if (r < 0)
		return r;
	if (dev->region_cached[index]) {
		*ret = &dev->regions[index];
		return 0;
	}
	if (!dev->ops->get_region_info)
		return -EOPNOTSUPP;

	/* Start with the bare struct: the answer's argsz says how much the chain needs. Three
	 * rounds are plenty; a backend that keeps growing its answer is broken. */
	for (unsigned round = 0;; round++) {
		void *p;

		if (round == 3)
			return vgb_log_errno(VGB_LOG_DEBUG, -EPROTO,
					     "%s: region %u info keeps growing", dev->name, index);
		p = realloc(info, argsz);
		if (!p)
			return -ENOMEM;
		info = p;
		memset(info, 0, argsz);
		info->argsz = argsz;
		info->index = index;
		dev->region_info_queries++;
		r = dev->ops->get_region_info(dev, info);
		if (r < 0)
			return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: region %u info", dev->name,
					     index);
		if (info->argsz <= argsz)
			break;
		if (info->argsz > VGB_VFIO_REGION_INFO_MAX)
			return vgb_log_errno(VGB_LOG_DEBUG, -EPROTO,
					     "%s: region %u info wants %u bytes", dev->name,
					     index, info->argsz);
		argsz = info->argsz;
	}

	r = vgb_vfio_parse_region_info(info, argsz, &parsed, &sparse);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "%s: region %u capability chain", dev->name,
				     index);
	parsed.index = index;
	dev->regions[index] = parsed;
	dev->region_cached[index] = true;
	*ret = &dev->regions[index];
	return 0;
}

int vgb_vfio_device_reset(struct vgb_vfio_device *dev)
{
	int r;

	if (!dev)
		return -EINVAL;
	drop_cache(dev);
	if (!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_RESET) || !dev->ops->reset)
		return -EOPNOTSUPP;
	r = dev->ops->reset(dev);
	/* Even a failed reset may have revoked what was exported: treat it as one. */
	dev->generation++;
	if (r < 0)
		vgb_log_errno(VGB_LOG_DEBUG, r, "%s: reset", dev->name);
	return r;
}

/* Checks a region access against the cached info. */
static int check_access(struct vgb_vfio_device *dev, uint32_t index, uint64_t off, size_t len,
			uint32_t need_flag)
{
	const struct vgb_vfio_region_info *info;
	uint64_t end;
	int r;

	r = vgb_vfio_region_info(dev, index, &info);
	if (r < 0)
		return r;
	if (!(info->flags & need_flag))
		return -EINVAL;
	if (__builtin_add_overflow(off, (uint64_t)len, &end) || end > info->size)
		return -EINVAL;
	return 0;
}

ssize_t vgb_vfio_region_read(struct vgb_vfio_device *dev, uint32_t index, uint64_t off, void *buf,
			     size_t len)
{
	int r;

	if (!dev || (!buf && len))
		return -EINVAL;
	r = check_access(dev, index, off, len, VFIO_REGION_INFO_FLAG_READ);
	if (r < 0)
		return r;
	if (!dev->ops->region_read)
		return -EOPNOTSUPP;
	return dev->ops->region_read(dev, index, off, buf, len);
}

ssize_t vgb_vfio_region_write(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			      const void *buf, size_t len)
{
	int r;

	if (!dev || (!buf && len))
		return -EINVAL;
	r = check_access(dev, index, off, len, VFIO_REGION_INFO_FLAG_WRITE);
	if (r < 0)
		return r;
	if (!dev->ops->region_write)
		return -EOPNOTSUPP;
	return dev->ops->region_write(dev, index, off, buf, len);
}

int vgb_vfio_check_decode(struct vgb_vfio_device *dev, uint32_t region)
{
	uint8_t b[2];
	uint16_t cmd;
	ssize_t n;

	if (!dev)
		return -EINVAL;
	if (!dev->pci || region > VFIO_PCI_BAR5_REGION_INDEX)
		return 0;
	/* Read every time: the guest may flip the bit between any two of our calls. */
	n = vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, b, sizeof(b));
	if (n < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, (int)n, "%s: reading PCI_COMMAND", dev->name);
	if (n != sizeof(b))
		return vgb_log_errno(VGB_LOG_DEBUG, -EIO, "%s: short PCI_COMMAND read", dev->name);
	cmd = (uint16_t)(b[0] | b[1] << 8);
	if (!(cmd & PCI_COMMAND_MEMORY))
		return vgb_log_errno(VGB_LOG_DEBUG, -EIO,
				     "%s: memory decode is off (PCI_COMMAND %#x): BAR%u is not backed",
				     dev->name, cmd, region);
	return 0;
}
