/* SPDX-License-Identifier: MIT */
/*
 * The virtual device: a vfio-pci-shaped device whose regions are memfds. It answers the same
 * calls the kernel does (region info with a real capability chain and argsz semantics,
 * VFIO_DEVICE_FEATURE with the kernel's errno rules), so everything above the ops table runs the
 * same code as for real hardware. The spec grammar is in docs/virtual-device.md.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "private.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define VDEV_NUM_REGIONS VFIO_PCI_NUM_REGIONS /* BAR0-5, ROM, CONFIG, VGA */
#define VDEV_MAX_SPARSE 16u
#define VDEV_MAX_REGION_SIZE (4ull << 30)
#define VDEV_CONFIG_SIZE 256u
#define VDEV_MAX_SPEC 4096u
/* Room for the largest chain we build: a sparse cap with every area, and a type cap. */
#define VDEV_MAX_CAPS \
	(sizeof(struct vfio_region_info_cap_sparse_mmap) + \
	 VDEV_MAX_SPARSE * sizeof(struct vfio_region_sparse_mmap_area) + \
	 sizeof(struct vfio_region_info_cap_type))

/* An ivshmem-like identity: the vm lab's real device is ivshmem, so the two look alike. */
#define VDEV_VENDOR 0x1af4
#define VDEV_DEVICE 0x1110

enum vdev_dmabuf {
	VDEV_DMABUF_AUTO = 0, /* offered where /dev/udmabuf exists */
	VDEV_DMABUF_ON,       /* required: creation fails without /dev/udmabuf */
	VDEV_DMABUF_OFF,      /* PROBE answers ENOTTY, as a kernel without the feature */
	VDEV_DMABUF_NODRIVER, /* PROBE answers EOPNOTSUPP, as a driver without it */
};

struct vdev_region {
	bool present;
	uint32_t flags;
	uint64_t size;
	bool has_sparse;
	uint32_t n_sparse;
	struct vgb_vfio_sparse_area sparse[VDEV_MAX_SPARSE];
	bool has_type;
	uint32_t type, subtype;
};

struct vdev_spec {
	char name[64];
	enum vdev_dmabuf dmabuf;
	bool reset, mmap;
	struct vdev_region regions[VDEV_NUM_REGIONS];
};

struct vdev {
	struct vgb_vfio_device base;
	struct vdev_spec spec;
	int memfd[VDEV_NUM_REGIONS];
	uint8_t config[VDEV_CONFIG_SIZE];
};

static const struct vgb_vfio_device_ops vdev_ops;

static struct vdev *vdev_from(struct vgb_vfio_device *dev)
{
	return dev && dev->ops == &vdev_ops ? vgb_container_of(dev, struct vdev, base) : NULL;
}

/* ---- spec parser ---- */

static int bad(const char *spec_item, const char *why)
{
	vgb_log(VGB_LOG_DEBUG, "virtual device spec: \"%s\": %s", spec_item, why);
	return -EINVAL;
}

/* "4096", "0x1000", "4K", "64M", "1G". Rejects signs, spaces and trailing junk. */
static int parse_size(const char *s, uint64_t *ret)
{
	uint64_t v, mult = 1;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = 1ull << 10; end++; break;
	case 'm': case 'M': mult = 1ull << 20; end++; break;
	case 'g': case 'G': mult = 1ull << 30; end++; break;
	default: break;
	}
	if (*end || __builtin_mul_overflow(v, mult, &v))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *ret)
{
	unsigned long long v;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* "OFF+SIZE;OFF+SIZE" (possibly empty: a sparse cap with no areas). */
static int parse_sparse(char *s, struct vdev_region *r, const char *item)
{
	r->has_sparse = true;
	r->n_sparse = 0;
	if (!*s)
		return 0;
	for (char *a; (a = strsep(&s, ";"));) {
		char *plus = strchr(a, '+');
		struct vgb_vfio_sparse_area *area;
		uint64_t end;

		if (r->n_sparse == VDEV_MAX_SPARSE)
			return bad(item, "too many sparse areas (at most 16)");
		if (!plus)
			return bad(item, "a sparse area is OFFSET+SIZE");
		*plus = '\0';
		area = &r->sparse[r->n_sparse++];
		if (parse_size(a, &area->offset) < 0 || parse_size(plus + 1, &area->size) < 0)
			return bad(item, "bad sparse area number");
		if (!area->size || !VGB_IS_ALIGNED(area->offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(area->size, VGB_PAGE_SIZE))
			return bad(item, "sparse areas are non-empty and page aligned");
		if (__builtin_add_overflow(area->offset, area->size, &end) || end > r->size)
			return bad(item, "sparse area outside the region");
	}
	return 0;
}

/* "bar2=64M:sparse=0+16M;32M+32M:type=1/2", "rom=64K", "bar0=4K:nommap:ro" */
static int parse_region(struct vdev_spec *spec, uint32_t index, char *value, const char *item)
{
	struct vdev_region r = { .present = true };
	char *size = strsep(&value, ":");
	int ret;

	r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP;
	if (index != VFIO_PCI_ROM_REGION_INDEX)
		r.flags |= VFIO_REGION_INFO_FLAG_WRITE;
	if (!size || parse_size(size, &r.size) < 0)
		return bad(item, "bad region size");
	if (!r.size || !VGB_IS_ALIGNED(r.size, VGB_PAGE_SIZE) || r.size > VDEV_MAX_REGION_SIZE)
		return bad(item, "a region size is page aligned, non-zero, at most 4G");

	for (char *o; (o = strsep(&value, ":"));) {
		if (strcmp(o, "nommap") == 0) {
			r.flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_MMAP;
		} else if (strcmp(o, "ro") == 0) {
			r.flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_WRITE;
		} else if (strncmp(o, "sparse=", 7) == 0) {
			ret = parse_sparse(o + 7, &r, item);
			if (ret < 0)
				return ret;
		} else if (strncmp(o, "type=", 5) == 0) {
			char *slash = strchr(o + 5, '/');

			if (!slash)
				return bad(item, "type is TYPE/SUBTYPE");
			*slash = '\0';
			if (parse_u32(o + 5, &r.type) < 0 || parse_u32(slash + 1, &r.subtype) < 0)
				return bad(item, "bad type number");
			r.has_type = true;
		} else {
			return bad(item, "unknown region option");
		}
	}
	if (r.has_sparse && !(r.flags & VFIO_REGION_INFO_FLAG_MMAP))
		return bad(item, "sparse areas need an mmappable region");
	spec->regions[index] = r;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct vdev_spec *)0)->name))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.:", s[i]))
			return false;
	return true;
}

static void spec_defaults(struct vdev_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	snprintf(spec->name, sizeof(spec->name), "vgpu0");
	spec->dmabuf = VDEV_DMABUF_AUTO;
	spec->reset = true;
	spec->mmap = true;
}

/* "default": an ivshmem-like virtual GPU: 4 KiB of registers and 64 MiB of memory. */
static void spec_default_regions(struct vdev_spec *spec)
{
	spec->regions[0] = (struct vdev_region){
		.present = true,
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		.size = 4096,
	};
	spec->regions[2] = (struct vdev_region){
		.present = true,
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			 VFIO_REGION_INFO_FLAG_MMAP,
		.size = 64ull << 20,
	};
}

static int parse_spec(const char *spec_str, struct vdev_spec *spec)
{
	_cleanup_free_ char *copy = NULL;
	char *rest;
	int r;

	spec_defaults(spec);
	if (!spec_str || !spec_str[0])
		return bad("", "empty spec");
	if (strlen(spec_str) > VDEV_MAX_SPEC)
		return bad("...", "spec too long");
	copy = strdup(spec_str);
	if (!copy)
		return -ENOMEM;

	rest = copy;
	for (char *item; (item = strsep(&rest, ","));) {
		char *eq = strchr(item, '=');
		const char *key = item, *value = eq ? eq + 1 : NULL;
		char shown[80];

		snprintf(shown, sizeof(shown), "%s", item);
		if (eq)
			*eq = '\0';
		if (strcmp(key, "default") == 0 && !value) {
			spec_default_regions(spec);
		} else if (!value) {
			return bad(shown, "expected KEY=VALUE");
		} else if (strcmp(key, "name") == 0) {
			if (!valid_name(value))
				return bad(shown, "a name is 1-63 of [A-Za-z0-9_.:-]");
			snprintf(spec->name, sizeof(spec->name), "%s", value);
		} else if (strcmp(key, "dmabuf") == 0) {
			if (strcmp(value, "auto") == 0)
				spec->dmabuf = VDEV_DMABUF_AUTO;
			else if (strcmp(value, "on") == 0)
				spec->dmabuf = VDEV_DMABUF_ON;
			else if (strcmp(value, "off") == 0)
				spec->dmabuf = VDEV_DMABUF_OFF;
			else if (strcmp(value, "nodriver") == 0)
				spec->dmabuf = VDEV_DMABUF_NODRIVER;
			else
				return bad(shown, "dmabuf is auto, on, off or nodriver");
		} else if (strcmp(key, "reset") == 0 || strcmp(key, "mmap") == 0) {
			bool *flag = key[0] == 'r' ? &spec->reset : &spec->mmap;

			if (strcmp(value, "on") == 0)
				*flag = true;
			else if (strcmp(value, "off") == 0)
				*flag = false;
			else
				return bad(shown, "expected on or off");
		} else if (strncmp(key, "bar", 3) == 0 && key[3] >= '0' && key[3] <= '5' &&
			   !key[4]) {
			r = parse_region(spec, (uint32_t)(key[3] - '0'), (char *)value, shown);
			if (r < 0)
				return r;
		} else if (strcmp(key, "rom") == 0) {
			r = parse_region(spec, VFIO_PCI_ROM_REGION_INDEX, (char *)value, shown);
			if (r < 0)
				return r;
		} else {
			return bad(shown, "unknown key");
		}
	}
	/* The config space is always there, as on every PCI device. */
	spec->regions[VFIO_PCI_CONFIG_REGION_INDEX] = (struct vdev_region){
		.present = true,
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		.size = VDEV_CONFIG_SIZE,
	};
	return 0;
}

/* ---- the ops ---- */

/* Builds the region's capability chain at @base_off in the info buffer; returns its length. */
static size_t build_caps(const struct vdev_region *r, uint8_t *out, uint32_t base_off)
{
	size_t len = 0;
	struct vfio_info_cap_header *prev = NULL;

	if (r->has_sparse) {
		struct vfio_region_info_cap_sparse_mmap cap = {
			.header = { .id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1 },
			.nr_areas = r->n_sparse,
		};

		memcpy(out + len, &cap, sizeof(cap));
		prev = (struct vfio_info_cap_header *)(void *)(out + len);
		len += sizeof(cap);
		for (uint32_t i = 0; i < r->n_sparse; i++) {
			struct vfio_region_sparse_mmap_area a = {
				.offset = r->sparse[i].offset,
				.size = r->sparse[i].size,
			};

			memcpy(out + len, &a, sizeof(a));
			len += sizeof(a);
		}
	}
	if (r->has_type) {
		struct vfio_region_info_cap_type cap = {
			.header = { .id = VFIO_REGION_INFO_CAP_TYPE, .version = 1 },
			.type = r->type,
			.subtype = r->subtype,
		};

		if (prev)
			prev->next = base_off + (uint32_t)len;
		memcpy(out + len, &cap, sizeof(cap));
		len += sizeof(cap);
	}
	return len;
}

/* VFIO_DEVICE_GET_REGION_INFO as vfio-pci answers it. */
static int vdev_get_region_info(struct vgb_vfio_device *dev, void *arg)
{
	struct vdev *v = vdev_from(dev);
	struct vfio_region_info *info = arg;
	_Alignas(8) uint8_t caps[VDEV_MAX_CAPS] = { 0 };
	const struct vdev_region *r;
	size_t caps_len;

	if (info->argsz < sizeof(*info) || info->index >= VDEV_NUM_REGIONS)
		return -EINVAL;
	r = &v->spec.regions[info->index];
	info->flags = r->present ? r->flags : 0;
	if (!v->spec.mmap)
		info->flags &= ~(uint32_t)VFIO_REGION_INFO_FLAG_MMAP;
	info->size = r->present ? r->size : 0;
	info->offset = 0; /* each region is its own memfd */
	info->cap_offset = 0;
	caps_len = r->present ? build_caps(r, caps, sizeof(*info)) : 0;
	if (caps_len) {
		info->flags |= VFIO_REGION_INFO_FLAG_CAPS;
		if (info->argsz < sizeof(*info) + caps_len) {
			info->argsz = (uint32_t)(sizeof(*info) + caps_len);
		} else {
			memcpy((uint8_t *)info + sizeof(*info), caps, caps_len);
			info->cap_offset = sizeof(*info);
		}
	}
	return 0;
}

static int vdev_get_device_info(struct vgb_vfio_device *dev, void *arg)
{
	struct vdev *v = vdev_from(dev);
	struct vfio_device_info *info = arg;

	if (info->argsz < offsetof(struct vfio_device_info, num_irqs) + sizeof(info->num_irqs))
		return -EINVAL;
	info->flags = VFIO_DEVICE_FLAGS_PCI | (v->spec.reset ? VFIO_DEVICE_FLAGS_RESET : 0);
	info->num_regions = VDEV_NUM_REGIONS;
	info->num_irqs = 0;
	return 0;
}

/*
 * VFIO_DEVICE_FEATURE_DMA_BUF GET, checked in the kernel's order (vfio_pci_dmabuf.c), exported
 * through udmabuf over the region memfd.
 */
static int vdev_dmabuf_get(struct vdev *v, struct vfio_device_feature *f)
{
	_cleanup_free_ struct vgb_udmabuf_item *items = NULL;
	struct vfio_device_feature_dma_buf req;
	uint64_t ranges_bytes, need, total = 0;
	const struct vdev_region *region;

	if (f->argsz < sizeof(*f) + sizeof(req))
		return -EINVAL;
	memcpy(&req, f->data, sizeof(req));
	if (!req.nr_ranges || req.flags)
		return -EINVAL;
	if (req.region_index >= VFIO_PCI_ROM_REGION_INDEX ||
	    !v->spec.regions[req.region_index].present)
		return -ENODEV;
	region = &v->spec.regions[req.region_index];
	if (__builtin_mul_overflow((uint64_t)req.nr_ranges, sizeof(struct vfio_region_dma_range),
				   &ranges_bytes))
		return -EOVERFLOW;
	/* The kernel would read past argsz; we cannot, and say so as a fault would. */
	if (__builtin_add_overflow(ranges_bytes, sizeof(*f) + sizeof(req), &need) ||
	    need > f->argsz)
		return -EFAULT;
	items = calloc(req.nr_ranges, sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (uint32_t i = 0; i < req.nr_ranges; i++) {
		struct vfio_region_dma_range rg;
		uint64_t end;

		memcpy(&rg, f->data + sizeof(req) + i * sizeof(rg), sizeof(rg));
		if (!rg.length || !VGB_IS_ALIGNED(rg.offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(rg.length, VGB_PAGE_SIZE))
			return -EINVAL;
		if (__builtin_add_overflow(total, rg.length, &total))
			return -EINVAL;
		if (__builtin_add_overflow(rg.offset, rg.length, &end))
			return -EOVERFLOW;
		if (end > region->size)
			return -EINVAL;
		items[i] = (struct vgb_udmabuf_item){
			.memfd = v->memfd[req.region_index],
			.offset = rg.offset,
			.size = rg.length,
		};
	}
	return vgb_udmabuf_create(items, req.nr_ranges);
}

static int vdev_device_feature(struct vgb_vfio_device *dev, void *arg)
{
	struct vdev *v = vdev_from(dev);
	struct vfio_device_feature *f = arg;
	uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			 VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	uint32_t get_set = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;

	if (f->argsz < sizeof(*f) || (f->flags & ~known))
		return -EINVAL;
	if (!(f->flags & VFIO_DEVICE_FEATURE_PROBE) && (f->flags & get_set) == get_set)
		return -EINVAL;
	if ((f->flags & VFIO_DEVICE_FEATURE_MASK) != VFIO_DEVICE_FEATURE_DMA_BUF)
		return -ENOTTY;

	switch (v->spec.dmabuf) {
	case VDEV_DMABUF_OFF:
		return -ENOTTY;
	case VDEV_DMABUF_NODRIVER:
		return -EOPNOTSUPP;
	default:
		if (!vgb_udmabuf_is_available())
			return -ENOTTY;
		break;
	}
	/* vfio_check_feature(): GET only; PROBE answers without touching the payload. */
	if (f->flags & VFIO_DEVICE_FEATURE_SET)
		return -EINVAL;
	if (f->flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(f->flags & VFIO_DEVICE_FEATURE_GET))
		return -EINVAL;
	return vdev_dmabuf_get(v, f);
}

/* vfio-pci's BAR access rule: memory BARs answer only while memory decode is on. */
static bool bar_decoded(const struct vdev *v, uint32_t index)
{
	return index > VFIO_PCI_BAR5_REGION_INDEX || (v->config[PCI_COMMAND] & PCI_COMMAND_MEMORY);
}

static ssize_t vdev_region_read(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
				void *buf, size_t len)
{
	struct vdev *v = vdev_from(dev);

	if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
		memcpy(buf, v->config + off, len);
		return (ssize_t)len;
	}
	if (v->memfd[index] < 0)
		return -EINVAL;
	if (!bar_decoded(v, index))
		return -EIO;
	return vgb_pread_all(v->memfd[index], buf, len, (off_t)off);
}

static ssize_t vdev_region_write(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
				 const void *buf, size_t len)
{
	struct vdev *v = vdev_from(dev);

	if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
		/* Vendor and device ids are read-only; everything else is plain storage. */
		for (size_t i = 0; i < len; i++)
			if (off + i >= PCI_COMMAND)
				v->config[off + i] = ((const uint8_t *)buf)[i];
		return (ssize_t)len;
	}
	if (v->memfd[index] < 0)
		return -EINVAL;
	if (!bar_decoded(v, index))
		return -EIO;
	return vgb_pwrite_all(v->memfd[index], buf, len, (off_t)off);
}

static int vdev_region_mmap_fd(struct vgb_vfio_device *dev, uint32_t index)
{
	struct vdev *v = vdev_from(dev);

	if (index >= VDEV_NUM_REGIONS || v->memfd[index] < 0 || !v->spec.mmap ||
	    !(v->spec.regions[index].flags & VFIO_REGION_INFO_FLAG_MMAP))
		return -EINVAL;
	return v->memfd[index];
}

/*
 * VFIO_DEVICE_RESET as vfio-pci does it: the function is reset inside a save and restore of
 * its config state (pci_try_reset_function()), and the user's view of the command register
 * is virtualised, so memory decode reads back as it was before the reset. Nothing to do for
 * memory that is a memfd; the base drops the region cache and bumps the generation.
 */
static int vdev_reset(struct vgb_vfio_device *dev)
{
	return 0;
}

static void vdev_destroy(struct vgb_vfio_device *dev)
{
	struct vdev *v = vdev_from(dev);

	for (unsigned i = 0; i < VDEV_NUM_REGIONS; i++)
		vgb_close(v->memfd[i]);
	free(v);
}

static const struct vgb_vfio_device_ops vdev_ops = {
	.name = "virtual",
	.capabilities = VGB_VFIO_CAP_DMA_BUF | VGB_VFIO_CAP_MMAP | VGB_VFIO_CAP_RESET,
	.device_feature = vdev_device_feature,
	.get_region_info = vdev_get_region_info,
	.get_device_info = vdev_get_device_info,
	.region_read = vdev_region_read,
	.region_write = vdev_region_write,
	.region_mmap_fd = vdev_region_mmap_fd,
	.reset = vdev_reset,
	.destroy = vdev_destroy,
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void init_config(struct vdev *v)
{
	put16(v->config + PCI_VENDOR_ID, VDEV_VENDOR);
	put16(v->config + PCI_DEVICE_ID, VDEV_DEVICE);
	v->config[PCI_REVISION_ID] = 1;
	put16(v->config + PCI_CLASS_DEVICE, 0x0380); /* display controller, other */
	v->config[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	put16(v->config + PCI_SUBSYSTEM_VENDOR_ID, VDEV_VENDOR);
	put16(v->config + PCI_SUBSYSTEM_ID, 0x1100);
	/* vfio-pci enables the device when it is opened (pci_enable_device()): decode is on. */
	put16(v->config + PCI_COMMAND, PCI_COMMAND_MEMORY);
}

/*
 * A shmem memfd of @size, sealed against shrinking and growing (udmabuf requires
 * F_SEAL_SHRINK and refuses F_SEAL_WRITE).
 */
static int make_memfd(uint32_t index, uint64_t size)
{
	char name[32];
	_cleanup_close_ int fd = -1;

	snprintf(name, sizeof(name), "vgb-vdev-region%u", index);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int vgb_vfio_vdev_create(const char *spec_str, struct vgb_vfio_device **ret)
{
	struct vdev *v;
	int r;

	if (!ret)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < VDEV_NUM_REGIONS; i++)
		v->memfd[i] = -1;
	/* From here on vdev_destroy() copes with whatever is half built. */
	vgb_vfio_device_init(&v->base, &vdev_ops, VDEV_NUM_REGIONS, NULL);
	v->base.path = VGB_VFIO_PATH_VIRTUAL;

	r = parse_spec(spec_str, &v->spec);
	if (r < 0)
		goto err;
	if (v->spec.dmabuf == VDEV_DMABUF_ON && !vgb_udmabuf_is_available()) {
		r = vgb_log_errno(VGB_LOG_DEBUG, -ENODEV,
				  "virtual device: dmabuf=on needs /dev/udmabuf");
		goto err;
	}
	snprintf(v->base.name, sizeof(v->base.name), "%s", v->spec.name);
	for (unsigned i = 0; i < VDEV_NUM_REGIONS; i++) {
		if (!v->spec.regions[i].present || i == VFIO_PCI_CONFIG_REGION_INDEX)
			continue;
		r = make_memfd(i, v->spec.regions[i].size);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_DEBUG, r, "virtual device: region %u memfd", i);
			goto err;
		}
		v->memfd[i] = r;
	}
	init_config(v);
	v->base.pci = true;

	if (v->spec.mmap)
		v->base.caps |= VGB_VFIO_CAP_MMAP;
	if (v->spec.reset)
		v->base.caps |= VGB_VFIO_CAP_RESET;
	vgb_vfio_probe_dmabuf(&v->base);
	*ret = &v->base;
	return 0;

err:
	vgb_vfio_device_destroy(&v->base);
	return r;
}

int vgb_vfio_vdev_region_memfd(struct vgb_vfio_device *dev, uint32_t index)
{
	struct vdev *v = vdev_from(dev);

	if (!v || index >= VDEV_NUM_REGIONS)
		return -EINVAL;
	return v->memfd[index] >= 0 ? v->memfd[index] : -ENODEV;
}
