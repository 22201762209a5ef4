/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "export.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

const char *vgb_export_strategy_name(enum vgb_export_strategy s)
{
	switch (s) {
	case VGB_EXPORT_NONE:
		return "none";
	case VGB_EXPORT_VFIO_DMABUF:
		return "vfio-dmabuf";
	case VGB_EXPORT_UDMABUF:
		return "udmabuf";
	case VGB_EXPORT_CPU_VIEW:
		return "cpu-view";
	case VGB_EXPORT_COUNT:
		break;
	}
	return "unknown";
}

static struct vgb_export *export_new(enum vgb_export_strategy strategy, uint64_t size)
{
	struct vgb_export *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->refs = 1;
	e->strategy = strategy;
	e->size = size;
	e->dmabuf_fd = -1;
	e->copy_fd = -1;
	e->ram_memfd = -1;
	return e;
}

struct vgb_export *vgb_export_ref(struct vgb_export *e)
{
	e->refs++;
	return e;
}

static void drop_cpu_view(struct vgb_export *e)
{
	vgb_segmap_destroy(e->segmap);
	e->segmap = NULL;
	if (e->map)
		vgb_munmap(e->map, e->map_size);
	e->map = NULL;
	e->map_size = 0;
	e->copy_fd = vgb_close(e->copy_fd);
	e->ram_memfd = vgb_close(e->ram_memfd);
	free(e->ranges);
	e->ranges = NULL;
	e->n_ranges = 0;
	e->cpu = NULL;
	e->cpu_is_copy = false;
}

void vgb_export_unref(struct vgb_export *e)
{
	if (!e || --e->refs > 0)
		return;
	drop_cpu_view(e);
	vgb_close(e->dmabuf_fd);
	free(e);
}

static bool all_aligned(const struct vgb_blob_layout *layout)
{
	for (size_t i = 0; i < layout->n_segs; i++)
		if (!VGB_IS_ALIGNED(layout->segs[i].offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(layout->segs[i].length, VGB_PAGE_SIZE))
			return false;
	return true;
}

/* Errors that mean "this memory cannot be exported this way here", not "something broke". */
static bool vfio_err_is_quiet(int r)
{
	return r == -EOPNOTSUPP || r == -ENOTTY || r == -E2BIG || r == -EINVAL || r == -ENODEV;
}

static bool udmabuf_err_is_quiet(int r)
{
	return r == -ENODEV || r == -E2BIG || r == -EINVAL || r == -EBADFD || r == -ENOENT ||
	       r == -EOPNOTSUPP || r == -EACCES;
}

/* Strategy 1: one VFIO dmabuf. Returns the fd, or -errno (-EOPNOTSUPP: not this memory). */
static int try_vfio(const struct vgb_blob_layout *layout)
{
	const struct vgb_blob_segment *s0 = &layout->segs[0];
	struct vgb_vfio_range *ranges;
	int fd;

	if (s0->kind != VGB_MEMMAP_VFIO || !vgb_vfio_device_has_cap(s0->dev, VGB_VFIO_CAP_DMA_BUF))
		return -EOPNOTSUPP;
	for (size_t i = 0; i < layout->n_segs; i++) {
		const struct vgb_blob_segment *s = &layout->segs[i];

		if (s->kind != VGB_MEMMAP_VFIO || s->dev != s0->dev || s->region != s0->region)
			return -EOPNOTSUPP;
	}
	if (!all_aligned(layout))
		return -EOPNOTSUPP;
	if (layout->n_segs > VGB_VFIO_DMABUF_MAX_RANGES)
		return -E2BIG;
	ranges = calloc(layout->n_segs, sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	for (size_t i = 0; i < layout->n_segs; i++)
		ranges[i] = (struct vgb_vfio_range){ layout->segs[i].offset, layout->segs[i].length };
	fd = vgb_vfio_create_dmabuf(s0->dev, s0->region, ranges, layout->n_segs);
	free(ranges);
	return fd;
}

/* Strategy 2: one udmabuf. Returns the fd or -errno. */
static int try_udmabuf(const struct vgb_blob_layout *layout)
{
	struct vgb_udmabuf_item *items;
	int fd;

	for (size_t i = 0; i < layout->n_segs; i++)
		if (layout->segs[i].kind != VGB_MEMMAP_RAM || !layout->segs[i].udmabuf_ok)
			return -EOPNOTSUPP;
	if (!all_aligned(layout))
		return -EOPNOTSUPP;
	if (!vgb_udmabuf_is_available())
		return -ENODEV;
	items = calloc(layout->n_segs, sizeof(*items));
	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < layout->n_segs; i++)
		items[i] = (struct vgb_udmabuf_item){ layout->segs[i].memfd, layout->segs[i].offset,
						      layout->segs[i].length };
	fd = vgb_udmabuf_create(items, layout->n_segs);
	free(items);
	return fd;
}

/*
 * A dmabuf must cover the blob exactly: a kernel (or driver) that built a shorter one would
 * have the sink read past its end. Dma-buf files answer SEEK_END with their size (never 0:
 * the kernel exports no empty buffer). An fd that cannot seek, or whose files seek nowhere
 * (noop_llseek answers 0: the tests' eventfd stand-ins), cannot be checked and is taken as
 * it is. Returns @fd, or -EMSGSIZE (closed).
 */
static int check_size(int fd, uint64_t want, const char *what)
{
	off_t size;

	if (fd < 0)
		return fd;
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0) {
		vgb_log_errno(VGB_LOG_DEBUG, size < 0 ? -errno : 0, "%s: size not checkable", what);
		return fd;
	}
	lseek(fd, 0, SEEK_SET);
	if ((uint64_t)size == want)
		return fd;
	vgb_log(VGB_LOG_DEBUG, "%s of %llu bytes for a blob of %llu: dropped", what,
		(unsigned long long)size, (unsigned long long)want);
	vgb_close(fd);
	return -EMSGSIZE;
}

int vgb_export_plan(const struct vgb_blob_layout *layout, struct vgb_export **ret,
		    struct vgb_export_report *ret_report)
{
	struct vgb_export_report report = { 0 };
	enum vgb_export_strategy strategy = VGB_EXPORT_CPU_VIEW;
	struct vgb_export *e;
	int fd;

	fd = check_size(try_vfio(layout), layout->size, "vfio dmabuf");
	if (fd >= 0) {
		strategy = VGB_EXPORT_VFIO_DMABUF;
	} else {
		if (fd != -EOPNOTSUPP || layout->segs[0].kind == VGB_MEMMAP_VFIO)
			report.vfio_err = fd;
		if (!vfio_err_is_quiet(fd))
			report.unexpected = true;
		fd = check_size(try_udmabuf(layout), layout->size, "udmabuf");
		if (fd >= 0) {
			strategy = VGB_EXPORT_UDMABUF;
		} else {
			report.udmabuf_err = fd;
			if (!udmabuf_err_is_quiet(fd))
				report.unexpected = true;
		}
	}

	e = export_new(strategy, layout->size);
	if (!e) {
		vgb_close(fd);
		return -ENOMEM;
	}
	if (fd >= 0)
		e->dmabuf_fd = fd;
	if (ret_report)
		*ret_report = report;
	*ret = e;
	return 0;
}

/* A new memfd of @size bytes mapped read-write into @e (copy path and host memory). */
static int make_host_buffer(struct vgb_export *e, uint64_t size)
{
	_cleanup_close_ int fd = -1;
	uint64_t len = VGB_ALIGN_UP(size ? size : 1, VGB_PAGE_SIZE);
	void *p;
	int r;

	if (len > (uint64_t)SIZE_MAX || len > (uint64_t)INT64_MAX)
		return -E2BIG;
	fd = memfd_create("vgb-host", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0)
		return -errno;
	/* The sink may share this memfd with a compositor: it must not be able to shrink. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		return -errno;
	r = vgb_mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, &p);
	if (r < 0)
		return r;
	e->map = p;
	e->map_size = (size_t)len;
	e->copy_fd = TAKE_FD(fd);
	e->cpu = p;
	return 0;
}

int vgb_export_create_host(uint64_t size, struct vgb_export **ret)
{
	struct vgb_export *e = export_new(VGB_EXPORT_NONE, size);
	int r;

	if (!e)
		return -ENOMEM;
	r = make_host_buffer(e, size);
	if (r < 0) {
		vgb_export_unref(e);
		return r;
	}
	*ret = e;
	return 0;
}

/* Whether @b is a VFIO segment of the same device region as the VFIO segment @a. */
static bool same_vfio_region(const struct vgb_blob_segment *a, const struct vgb_blob_segment *b)
{
	return b->kind == VGB_MEMMAP_VFIO && b->dev == a->dev && b->region == a->region;
}

/*
 * A view made of whole pages works when every segment after the first starts on a page both
 * in its source and in the view (the view starts at the first segment's page offset).
 */
static int build_mapping(struct vgb_export *e, const struct vgb_blob_layout *layout,
			 bool want_memfd)
{
	uint64_t delta = layout->segs[0].offset % VGB_PAGE_SIZE;
	_cleanup_free_ struct vgb_segment *segs = NULL;
	_cleanup_free_ struct vgb_vfio_range *ranges = NULL;
	struct vgb_segmap *map;
	bool one_memfd = true;
	int r;

	for (size_t i = 1; i < layout->n_segs; i++) {
		const struct vgb_blob_segment *s = &layout->segs[i];

		if (!VGB_IS_ALIGNED(delta + s->blob_offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(s->offset, VGB_PAGE_SIZE))
			return -EINVAL;
	}
	segs = calloc(layout->n_segs, sizeof(*segs));
	ranges = calloc(layout->n_segs, sizeof(*ranges));
	if (!segs || !ranges)
		return -ENOMEM;
	for (size_t i = 0; i < layout->n_segs; i++) {
		const struct vgb_blob_segment *s = &layout->segs[i];
		uint64_t lead = i == 0 ? delta : 0;
		uint64_t start = s->offset - lead;
		uint64_t length = VGB_ALIGN_UP(lead + s->length, VGB_PAGE_SIZE);

		if (s->kind == VGB_MEMMAP_RAM) {
			segs[i] = (struct vgb_segment){ s->memfd, start, length };
			if (s->memfd != layout->segs[0].memfd)
				one_memfd = false;
		} else {
			one_memfd = false;
			ranges[i] = (struct vgb_vfio_range){ start, length };
		}
	}
	/* Each run of VFIO segments of one region is resolved at once: one decode check each. */
	for (size_t i = 0; i < layout->n_segs;) {
		const struct vgb_blob_segment *s = &layout->segs[i];
		size_t j = i + 1;

		if (s->kind != VGB_MEMMAP_VFIO) {
			i++;
			continue;
		}
		while (j < layout->n_segs && same_vfio_region(s, &layout->segs[j]))
			j++;
		r = vgb_vfio_segments(s->dev, s->region, &ranges[i], j - i, &segs[i]);
		if (r < 0)
			return r;
		i = j;
	}
	r = vgb_segmap_create(segs, layout->n_segs, e->dmabuf_fd, &map);
	if (r < 0)
		return r;

	if (one_memfd && want_memfd) {
		struct stat st;

		e->ranges = calloc(layout->n_segs, sizeof(*e->ranges));
		if (e->ranges && fstat(layout->segs[0].memfd, &st) == 0)
			e->ram_memfd = fcntl(layout->segs[0].memfd, F_DUPFD_CLOEXEC, 3);
		if (e->ram_memfd >= 0) {
			e->ram_memfd_size = (uint64_t)st.st_size;
			e->n_ranges = layout->n_segs;
			for (size_t i = 0; i < layout->n_segs; i++)
				e->ranges[i] = (struct vgb_export_range){
					layout->segs[i].blob_offset, layout->segs[i].length,
					layout->segs[i].offset
				};
		} else {
			/* Only an optimisation (zero-copy shm) is lost. */
			free(e->ranges);
			e->ranges = NULL;
		}
	}
	e->segmap = map;
	e->cpu = (const uint8_t *)map->addr + delta;
	e->cpu_is_copy = false;
	return 0;
}

int vgb_export_cpu_view_limited(struct vgb_export *e, const struct vgb_blob_layout *layout,
				size_t max_mmaps, uint64_t max_copy_bytes)
{
	int r = -E2BIG;

	if (e->cpu)
		return 0;
	if (layout->n_segs <= max_mmaps) {
		r = build_mapping(e, layout, true);
		if (r == 0)
			return 0;
		if (r == -ENOMEM)
			return r;
	}
	vgb_log_errno(VGB_LOG_DEBUG, r, "blob of %zu segments: no mapped view, copying",
		      layout->n_segs);
	drop_cpu_view(e);
	if (VGB_ALIGN_UP(layout->size, VGB_PAGE_SIZE) > max_copy_bytes)
		return -E2BIG;
	r = make_host_buffer(e, layout->size);
	if (r < 0)
		return r;
	e->cpu_is_copy = true;
	r = vgb_blob_layout_read(layout, 0, e->map, layout->size);
	if (r < 0) {
		drop_cpu_view(e);
		return r;
	}
	return 0;
}

int vgb_export_create_mapped(const struct vgb_blob_layout *layout, size_t max_mmaps,
			     struct vgb_export **ret)
{
	struct vgb_export *e;
	int r;

	if (layout->n_segs > max_mmaps)
		return -E2BIG;
	e = export_new(VGB_EXPORT_NONE, layout->size);
	if (!e)
		return -ENOMEM;
	r = build_mapping(e, layout, false);
	if (r < 0) {
		vgb_export_unref(e);
		return r;
	}
	*ret = e;
	return 0;
}

int vgb_export_cpu_view(struct vgb_export *e, const struct vgb_blob_layout *layout)
{
	return vgb_export_cpu_view_limited(e, layout, SIZE_MAX, UINT64_MAX);
}

int vgb_export_refresh(struct vgb_export *e, const struct vgb_blob_layout *layout, uint64_t off,
		       uint64_t len)
{
	if (!e->cpu_is_copy || off >= layout->size)
		return 0;
	len = VGB_MIN(len, layout->size - off);
	return vgb_blob_layout_read(layout, off, (uint8_t *)e->map + off, len);
}

bool vgb_export_memfd_range(const struct vgb_export *e, uint64_t off, uint64_t len,
			    int *ret_fd, uint64_t *ret_offset, uint64_t *ret_size)
{
	uint64_t end;

	if (__builtin_add_overflow(off, len, &end) || end > e->size)
		return false;
	if (e->copy_fd >= 0 && e->map) {
		*ret_fd = e->copy_fd;
		*ret_offset = off;
		*ret_size = e->map_size;
		return true;
	}
	if (e->ram_memfd < 0)
		return false;
	for (size_t i = 0; i < e->n_ranges; i++) {
		const struct vgb_export_range *r = &e->ranges[i];

		if (off >= r->blob_offset && end <= r->blob_offset + r->length) {
			*ret_fd = e->ram_memfd;
			*ret_offset = r->memfd_offset + (off - r->blob_offset);
			*ret_size = e->ram_memfd_size;
			return true;
		}
	}
	return false;
}
