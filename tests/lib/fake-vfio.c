/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/udmabuf.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "fake-vfio.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/sys.h"
#include "vgb/util.h"

struct file_id {
	dev_t dev;
	ino_t ino;
	bool set;
};

static struct fake_vfio *cur;
static struct vgb_sys saved;
/* What the fake recognises, by inode. */
static struct file_id id_device, id_container, id_group, id_udmabuf;
static char tree_root[1024];
/* The legacy container's state. */
static bool container_has_group, container_has_iommu, group_has_container;

static struct file_id file_id_of(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return (struct file_id){ 0 };
	return (struct file_id){ st.st_dev, st.st_ino, true };
}

static struct file_id file_id_at(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return (struct file_id){ 0 };
	return (struct file_id){ st.st_dev, st.st_ino, true };
}

static bool same(struct file_id a, struct file_id b)
{
	return a.set && b.set && a.dev == b.dev && a.ino == b.ino;
}

static int fail(int err)
{
	errno = err;
	return -1;
}

uint64_t fake_vfio_region_offset(uint32_t index)
{
	return (uint64_t)(index + 1) << FAKE_VFIO_REGION_SHIFT;
}

struct fake_vfio *fake_vfio_create(void)
{
	struct fake_vfio *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->device_fd = memfd_create("fake-vfio-device", MFD_CLOEXEC);
	if (f->device_fd < 0) {
		free(f);
		return NULL;
	}
	f->device_flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
	f->num_regions = VFIO_PCI_NUM_REGIONS;
	f->regions[0] = (struct fake_vfio_region){
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		.size = 16384,
	};
	f->regions[2] = (struct fake_vfio_region){
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			 VFIO_REGION_INFO_FLAG_MMAP,
		.size = 1u << 20,
	};
	f->regions[4] = (struct fake_vfio_region){
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			 VFIO_REGION_INFO_FLAG_MMAP,
		.size = 65536,
		.has_sparse = true,
		.n_sparse = 2,
		.sparse = { { 0, 16384 }, { 32768, 32768 } },
		.has_type = true,
		.type = 1,
		.subtype = 2,
	};
	f->regions[VFIO_PCI_CONFIG_REGION_INDEX] = (struct fake_vfio_region){
		.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
		.size = 256,
	};
	f->dmabuf_mmappable = true;
	snprintf(f->bdf, sizeof(f->bdf), "0000:00:03.0");
	f->group = 7;
	if (fake_vfio_layout(f) < 0 || fake_vfio_set_memory_decode(f, true) < 0) {
		fake_vfio_destroy(f);
		return NULL;
	}
	return f;
}

int fake_vfio_set_memory_decode(struct fake_vfio *f, bool on)
{
	off_t at = (off_t)(fake_vfio_region_offset(VFIO_PCI_CONFIG_REGION_INDEX) + PCI_COMMAND);
	uint8_t b[2];

	if (pread(f->device_fd, b, 2, at) != 2)
		return -EIO;
	b[0] = on ? (uint8_t)(b[0] | PCI_COMMAND_MEMORY) : (uint8_t)(b[0] & ~PCI_COMMAND_MEMORY);
	return pwrite(f->device_fd, b, 2, at) == 2 ? 0 : -EIO;
}

int fake_vfio_layout(struct fake_vfio *f)
{
	uint64_t end = fake_vfio_region_offset(0);

	for (uint32_t i = 0; i < f->num_regions && i < FAKE_VFIO_MAX_REGIONS; i++) {
		if (f->regions[i].size > (1ull << FAKE_VFIO_REGION_SHIFT))
			return -EINVAL;
		end = fake_vfio_region_offset(i) + f->regions[i].size;
	}
	return ftruncate(f->device_fd, (off_t)end) < 0 ? -errno : 0;
}

void fake_vfio_destroy(struct fake_vfio *f)
{
	if (!f)
		return;
	if (cur == f)
		fake_vfio_remove();
	close(f->device_fd);
	free(f);
}

int fake_vfio_dup_device(struct fake_vfio *f)
{
	return fcntl(f->device_fd, F_DUPFD_CLOEXEC, 3);
}

static int write_file(const char *path, const char *text)
{
	FILE *file = fopen(path, "we");

	if (!file)
		return -errno;
	fputs(text, file);
	return fclose(file) < 0 ? -errno : 0;
}

static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int fake_vfio_set_udmabuf_param(const char *root, const char *name, unsigned long value)
{
	char path[PATH_MAX], text[32];

	snprintf(path, sizeof(path), "%s/sys/module/udmabuf/parameters/%s", root, name);
	snprintf(text, sizeof(text), "%lu\n", value);
	return write_file(path, text);
}

int fake_vfio_make_tree(struct fake_vfio *f, const char *root)
{
	char path[PATH_MAX], target[PATH_MAX];
	int r;

	snprintf(tree_root, sizeof(tree_root), "%s", root);
	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s", root, f->bdf);
	if ((r = mkdirs(path)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/vfio-dev/vfio3", root, f->bdf);
	if ((r = mkdirs(path)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/sys/kernel/iommu_groups/%u", root, f->group);
	if ((r = mkdirs(path)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/iommu_group", root, f->bdf);
	snprintf(target, sizeof(target), "../../../../kernel/iommu_groups/%u", f->group);
	if (symlink(target, path) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/dev/vfio", root);
	if ((r = mkdirs(path)) < 0)
		return r;
	snprintf(path, sizeof(path), "%s/dev/vfio/vfio", root);
	if ((r = write_file(path, "")) < 0)
		return r;
	id_container = file_id_at(path);
	snprintf(path, sizeof(path), "%s/dev/vfio/%u", root, f->group);
	if ((r = write_file(path, "")) < 0)
		return r;
	id_group = file_id_at(path);
	snprintf(path, sizeof(path), "%s/dev/udmabuf", root);
	if ((r = write_file(path, "")) < 0)
		return r;
	id_udmabuf = file_id_at(path);
	snprintf(path, sizeof(path), "%s/sys/module/udmabuf/parameters", root);
	if ((r = mkdirs(path)) < 0)
		return r;
	if ((r = fake_vfio_set_udmabuf_param(root, "list_limit", 1024)) < 0)
		return r;
	return fake_vfio_set_udmabuf_param(root, "size_limit_mb", 64);
}

/* ---- device ioctls ---- */

static int region_info(struct fake_vfio *f, struct vfio_region_info *info)
{
	uint8_t caps[512];
	size_t len = 0;
	struct fake_vfio_region *r;
	uint32_t sparse_at = 0;

	f->calls.get_region_info++;
	if (info->argsz < sizeof(*info))
		return fail(EINVAL);
	if (info->index >= f->num_regions || info->index >= FAKE_VFIO_MAX_REGIONS)
		return fail(EINVAL);
	r = &f->regions[info->index];
	info->flags = r->flags;
	info->size = r->size;
	info->offset = fake_vfio_region_offset(info->index);
	info->cap_offset = 0;

	memset(caps, 0, sizeof(caps));
	if (r->has_sparse) {
		struct vfio_region_info_cap_sparse_mmap cap = {
			.header = { .id = VFIO_REGION_INFO_CAP_SPARSE_MMAP, .version = 1 },
			.nr_areas = r->n_sparse,
		};

		sparse_at = (uint32_t)len;
		memcpy(caps + len, &cap, sizeof(cap));
		len += sizeof(cap);
		for (uint32_t i = 0; i < r->n_sparse && i < FAKE_VFIO_MAX_SPARSE; i++) {
			struct vfio_region_sparse_mmap_area a = { r->sparse[i].offset,
								  r->sparse[i].size };

			memcpy(caps + len, &a, sizeof(a));
			len += sizeof(a);
		}
	}
	if (r->has_type) {
		struct vfio_region_info_cap_type cap = {
			.header = { .id = VFIO_REGION_INFO_CAP_TYPE, .version = 1 },
			.type = r->type,
			.subtype = r->subtype,
		};

		if (r->has_sparse) {
			uint32_t next = (uint32_t)(sizeof(*info) + len);
			memcpy(caps + sparse_at + offsetof(struct vfio_info_cap_header, next), &next,
			       sizeof(next));
		}
		memcpy(caps + len, &cap, sizeof(cap));
		len += sizeof(cap);
	}
	if (len) {
		info->flags |= VFIO_REGION_INFO_FLAG_CAPS;
		if (info->argsz < sizeof(*info) + len) {
			info->argsz = (uint32_t)(sizeof(*info) + len);
		} else {
			memcpy((uint8_t *)info + sizeof(*info), caps, len);
			info->cap_offset = sizeof(*info);
		}
	}
	return 0;
}

/* A stand-in for the exported dmabuf: a memfd holding a copy of the ranges, or an fd that
 * refuses mmap as Linux 6.19's VFIO dmabuf does. */
static int make_dmabuf(struct fake_vfio *f, uint32_t region, uint32_t open_flags,
		       const struct vfio_region_dma_range *ranges, uint32_t n, uint64_t total)
{
	uint8_t page[4096];
	uint64_t pos = 0;
	int fd;

	if (!f->dmabuf_mmappable)
		return eventfd(0, (open_flags & O_CLOEXEC) ? EFD_CLOEXEC : 0);
	fd = memfd_create("fake-vfio-dmabuf", (open_flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)total) < 0)
		goto err;
	for (uint32_t i = 0; i < n; i++) {
		for (uint64_t done = 0; done < ranges[i].length; done += sizeof(page)) {
			off_t src = (off_t)(fake_vfio_region_offset(region) + ranges[i].offset + done);

			if (pread(f->device_fd, page, sizeof(page), src) != (ssize_t)sizeof(page) ||
			    pwrite(fd, page, sizeof(page), (off_t)pos) != (ssize_t)sizeof(page))
				goto err;
			pos += sizeof(page);
		}
	}
	if (f->dmabuf_short_bytes &&
	    ftruncate(fd, (off_t)(total - VGB_MIN(total, f->dmabuf_short_bytes))) < 0)
		goto err;
	return fd;
err:
	close(fd);
	return fail(EIO);
}

/* drivers/vfio/pci/vfio_pci_dmabuf.c: vfio_pci_core_feature_dma_buf(), in its order. */
static int dmabuf_get(struct fake_vfio *f, struct vfio_device_feature *feat)
{
	struct vfio_device_feature_dma_buf req;
	const struct vfio_region_dma_range *ranges;
	uint64_t total = 0, need;
	struct fake_vfio_region *r;

	f->calls.get++;
	/* vfio_check_feature(flags, argsz, GET, sizeof(req)) */
	if (feat->argsz < sizeof(*feat) + sizeof(req))
		return fail(EINVAL);
	f->last_get_len = feat->argsz < sizeof(f->last_get) ? feat->argsz : sizeof(f->last_get);
	memcpy(f->last_get, feat, f->last_get_len);
	memcpy(&req, feat->data, sizeof(req));
	if (!req.nr_ranges || req.flags)
		return fail(EINVAL);
	if (req.region_index >= VFIO_PCI_ROM_REGION_INDEX || req.region_index >= f->num_regions ||
	    f->regions[req.region_index].size == 0)
		return fail(ENODEV);
	r = &f->regions[req.region_index];
	/* The kernel copies nr_ranges ranges from user memory whatever argsz says; a fake cannot
	 * read past the buffer, so it records the overread and faults. */
	need = sizeof(*feat) + sizeof(req) + (uint64_t)req.nr_ranges * sizeof(*ranges);
	if (need > feat->argsz) {
		f->get_overread = true;
		return fail(EFAULT);
	}
	ranges = (const struct vfio_region_dma_range *)(const void *)(feat->data + sizeof(req));
	/* validate_dmabuf_input() */
	for (uint32_t i = 0; i < req.nr_ranges; i++) {
		if (!ranges[i].length || ranges[i].offset % 4096 || ranges[i].length % 4096)
			return fail(EINVAL);
		if (__builtin_add_overflow(total, ranges[i].length, &total))
			return fail(EINVAL);
	}
	/* vfio_pci_core_fill_phys_vec() */
	for (uint32_t i = 0; i < req.nr_ranges; i++) {
		uint64_t end;

		if (__builtin_add_overflow(ranges[i].offset, ranges[i].length, &end))
			return fail(EOVERFLOW);
		if (end > r->size)
			return fail(EINVAL);
	}
	if (f->get_errno)
		return fail(f->get_errno);
	return make_dmabuf(f, req.region_index, req.open_flags, ranges, req.nr_ranges, total);
}

static int device_feature(struct fake_vfio *f, struct vfio_device_feature *feat)
{
	uint32_t known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET |
			 VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
	uint32_t get_set = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;

	f->calls.feature++;
	/* vfio_ioctl_device_feature() */
	if (feat->argsz < sizeof(*feat) || (feat->flags & ~known))
		return fail(EINVAL);
	if (!(feat->flags & VFIO_DEVICE_FEATURE_PROBE) && (feat->flags & get_set) == get_set)
		return fail(EINVAL);
	if (f->no_feature_ioctl ||
	    (feat->flags & VFIO_DEVICE_FEATURE_MASK) != VFIO_DEVICE_FEATURE_DMA_BUF)
		return fail(ENOTTY);
	if (feat->flags & VFIO_DEVICE_FEATURE_PROBE) {
		f->calls.probe++;
		f->last_probe_argsz = feat->argsz;
		f->last_probe_flags = feat->flags;
	}
	if (f->driver_lacks_dmabuf)
		return fail(EOPNOTSUPP);
	/* vfio_check_feature(): GET only. */
	if (feat->flags & VFIO_DEVICE_FEATURE_SET)
		return fail(EINVAL);
	if (feat->flags & VFIO_DEVICE_FEATURE_PROBE)
		return 0;
	if (!(feat->flags & VFIO_DEVICE_FEATURE_GET))
		return fail(EINVAL);
	return dmabuf_get(f, feat);
}

static int device_ioctl(struct fake_vfio *f, unsigned long request, void *arg)
{
	switch (request) {
	case VFIO_DEVICE_GET_INFO: {
		struct vfio_device_info *info = arg;

		f->calls.get_device_info++;
		if (info->argsz < offsetof(struct vfio_device_info, cap_offset))
			return fail(EINVAL);
		info->flags = f->device_flags;
		info->num_regions = f->num_regions;
		info->num_irqs = 0;
		return 0;
	}
	case VFIO_DEVICE_GET_REGION_INFO:
		return region_info(f, arg);
	case VFIO_DEVICE_FEATURE:
		return device_feature(f, arg);
	case VFIO_DEVICE_RESET:
		f->calls.reset++;
		if (!(f->device_flags & VFIO_DEVICE_FLAGS_RESET))
			return fail(EINVAL);
		return f->reset_errno ? fail(f->reset_errno) : 0;
	default:
		return fail(ENOTTY);
	}
}

/* ---- legacy container and group ---- */

static int container_ioctl(struct fake_vfio *f, unsigned long request, void *arg)
{
	switch (request) {
	case VFIO_GET_API_VERSION:
		f->calls.api_version++;
		return VFIO_API_VERSION;
	case VFIO_CHECK_EXTENSION:
		f->calls.check_extension++;
		return (unsigned long)arg == VFIO_TYPE1v2_IOMMU;
	case VFIO_SET_IOMMU:
		f->calls.set_iommu++;
		if (!container_has_group || (unsigned long)arg != VFIO_TYPE1v2_IOMMU)
			return fail(EINVAL);
		if (container_has_iommu)
			return fail(EBUSY);
		container_has_iommu = true;
		return 0;
	default:
		return fail(ENOTTY);
	}
}

static int group_ioctl(struct fake_vfio *f, unsigned long request, void *arg)
{
	switch (request) {
	case VFIO_GROUP_GET_STATUS: {
		struct vfio_group_status *st = arg;

		f->calls.group_status++;
		if (st->argsz < sizeof(*st))
			return fail(EINVAL);
		st->flags = (f->group_not_viable ? 0 : VFIO_GROUP_FLAGS_VIABLE) |
			    (group_has_container ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0);
		return 0;
	}
	case VFIO_GROUP_SET_CONTAINER: {
		const int *fd = arg;

		f->calls.set_container++;
		if (!same(file_id_of(*fd), id_container))
			return fail(EBADF);
		if (group_has_container)
			return fail(EINVAL);
		if (f->group_not_viable)
			return fail(EPERM);
		group_has_container = container_has_group = true;
		return 0;
	}
	case VFIO_GROUP_GET_DEVICE_FD: {
		f->calls.get_device_fd++;
		if (!group_has_container || !container_has_iommu)
			return fail(EINVAL);
		if (strcmp(arg, f->bdf) != 0)
			return fail(ENODEV);
		return fake_vfio_dup_device(f);
	}
	default:
		return fail(ENOTTY);
	}
}

/* ---- udmabuf ---- */

static uint64_t read_param(const char *name, uint64_t fallback)
{
	char path[PATH_MAX];
	unsigned long long v;
	FILE *file;

	snprintf(path, sizeof(path), "%s/sys/module/udmabuf/parameters/%s", tree_root, name);
	file = fopen(path, "re");
	if (!file)
		return fallback;
	if (fscanf(file, "%llu", &v) != 1)
		v = fallback;
	fclose(file);
	return v;
}

/* drivers/dma-buf/udmabuf.c: udmabuf_ioctl_create_list() and udmabuf_create(). */
static int udmabuf_create_list(struct fake_vfio *f, struct udmabuf_create_list *head)
{
	uint64_t pglimit = (read_param("size_limit_mb", 64) << 20) / 4096, pgcnt = 0, total = 0;
	uint8_t page[4096];
	int fd;

	f->calls.udmabuf++;
	if (head->count > read_param("list_limit", 1024))
		return fail(EINVAL);
	f->last_udmabuf_flags = head->flags;
	f->last_udmabuf_count = head->count;
	for (uint32_t i = 0; i < head->count && i < 64; i++) {
		f->last_udmabuf_items[i].memfd = (int)head->list[i].memfd;
		f->last_udmabuf_items[i].offset = head->list[i].offset;
		f->last_udmabuf_items[i].size = head->list[i].size;
	}
	if (head->flags & ~(uint32_t)UDMABUF_FLAGS_CLOEXEC)
		return fail(EINVAL);
	for (uint32_t i = 0; i < head->count; i++) {
		if (head->list[i].offset % 4096 || head->list[i].size % 4096)
			return fail(EINVAL);
		pgcnt += head->list[i].size / 4096;
		if (pgcnt > pglimit)
			return fail(EINVAL);
	}
	if (!pgcnt)
		return fail(EINVAL);
	for (uint32_t i = 0; i < head->count; i++) {
		int seals = fcntl((int)head->list[i].memfd, F_GET_SEALS);
		struct stat st;

		if (seals < 0)
			return fail(errno == EBADF ? EBADF : EBADFD);
		if (!(seals & F_SEAL_SHRINK) || (seals & F_SEAL_WRITE))
			return fail(EINVAL);
		if (fstat((int)head->list[i].memfd, &st) < 0 ||
		    head->list[i].offset + head->list[i].size > (uint64_t)st.st_size)
			return fail(EINVAL);
	}
	if (f->udmabuf_errno)
		return fail(f->udmabuf_errno);
	fd = memfd_create("fake-udmabuf",
			  (head->flags & UDMABUF_FLAGS_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	for (uint32_t i = 0; i < head->count; i++) {
		for (uint64_t done = 0; done < head->list[i].size; done += sizeof(page)) {
			if (pread((int)head->list[i].memfd, page, sizeof(page),
				  (off_t)(head->list[i].offset + done)) != (ssize_t)sizeof(page) ||
			    pwrite(fd, page, sizeof(page), (off_t)total) != (ssize_t)sizeof(page)) {
				close(fd);
				return fail(EIO);
			}
			total += sizeof(page);
		}
	}
	if (f->udmabuf_short_bytes &&
	    ftruncate(fd, (off_t)(total - VGB_MIN(total, f->udmabuf_short_bytes))) < 0) {
		close(fd);
		return fail(EIO);
	}
	return fd;
}

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
	struct file_id id = file_id_of(fd);

	if (cur && same(id, id_device))
		return device_ioctl(cur, request, arg);
	if (cur && same(id, id_container))
		return container_ioctl(cur, request, arg);
	if (cur && same(id, id_group))
		return group_ioctl(cur, request, arg);
	if (cur && same(id, id_udmabuf)) {
		if (request != UDMABUF_CREATE_LIST)
			return fail(ENOTTY);
		return udmabuf_create_list(cur, arg);
	}
	return saved.ioctl(fd, request, arg);
}

void fake_vfio_legacy_reset(void)
{
	container_has_group = container_has_iommu = group_has_container = false;
}

void fake_vfio_install(struct fake_vfio *f)
{
	if (!cur)
		saved = vgb_sys;
	cur = f;
	id_device = file_id_of(f->device_fd);
	container_has_group = container_has_iommu = group_has_container = false;
	vgb_sys.ioctl = fake_ioctl;
}

void fake_vfio_remove(void)
{
	if (!cur)
		return;
	vgb_sys.ioctl = saved.ioctl;
	cur = NULL;
}
