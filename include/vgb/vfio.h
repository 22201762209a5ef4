/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_H
#define VGB_VFIO_H

/*
 * vfio/: one device handle over pluggable io-ops backends.
 *
 * Backends: kernel (legacy container/group, cdev + iommufd, or an adopted device fd), virtual
 * device (memfd regions; the regression-test GPU and the demo's default) and vfio-user (a
 * server's socket; docs/vfio-user.md).
 * Each backend advertises what it can do as VGB_VFIO_CAP_* flags. Callers check a flag with
 * vgb_vfio_device_has_cap() and take another path when it is absent: a missing capability is
 * never an error and is never logged above debug.
 *
 * Conventions: every fallible function returns >= 0 or -errno. An `int fd` parameter is
 * borrowed unless the comment says "Takes ownership".
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vgb/mem.h"
#include <stdio.h>
#include <sys/types.h>

struct vgb_vfio_device;

enum vgb_vfio_cap {
	/* VFIO_DEVICE_FEATURE_DMA_BUF (or an equivalent, e.g. udmabuf for the virtual device). */
	VGB_VFIO_CAP_DMA_BUF = 1u << 0,
	/* Regions with VFIO_REGION_INFO_FLAG_MMAP can be mmapped through region_mmap_fd. */
	VGB_VFIO_CAP_MMAP = 1u << 1,
	/* VFIO_DEVICE_RESET works. */
	VGB_VFIO_CAP_RESET = 1u << 2,
	/* The device was opened through a VFIO cdev bound to iommufd. */
	VGB_VFIO_CAP_IOMMUFD = 1u << 3,
};

/* Why VGB_VFIO_CAP_DMA_BUF is set or not, as the probe saw it (for vfio-info). */
enum vgb_vfio_probe {
	VGB_VFIO_PROBE_NOT_RUN = 0,
	VGB_VFIO_PROBE_OK,         /* PROBE answered 0 */
	VGB_VFIO_PROBE_ENOTTY,     /* kernel lacks the feature (or VFIO_DEVICE_FEATURE itself) */
	VGB_VFIO_PROBE_EOPNOTSUPP, /* kernel has it, the driver does not */
	VGB_VFIO_PROBE_OTHER,      /* another errno: see dmabuf_probe_errno */
};

/* How a kernel device was opened. */
enum vgb_vfio_open_path {
	VGB_VFIO_PATH_NONE = 0,
	VGB_VFIO_PATH_LEGACY,  /* /dev/vfio/vfio container + group */
	VGB_VFIO_PATH_CDEV,    /* /dev/vfio/devices/vfioN + /dev/iommu */
	VGB_VFIO_PATH_ADOPTED, /* a device fd handed to us (the VMM's) */
	VGB_VFIO_PATH_VIRTUAL, /* the built-in virtual device */
	VGB_VFIO_PATH_VFIO_USER, /* a vfio-user server's socket (vfio/ops-vfio-user.c) */
};

/* "none", "legacy", "cdev", "adopted", "virtual": how vfio-info and STATS name the path. */
static inline const char *vgb_vfio_path_name(enum vgb_vfio_open_path path)
{
	switch (path) {
	case VGB_VFIO_PATH_LEGACY: return "legacy";
	case VGB_VFIO_PATH_CDEV: return "cdev";
	case VGB_VFIO_PATH_ADOPTED: return "adopted";
	case VGB_VFIO_PATH_VIRTUAL: return "virtual";
	case VGB_VFIO_PATH_VFIO_USER: return "vfio-user";
	case VGB_VFIO_PATH_NONE: break;
	}
	return "none";
}

struct vgb_vfio_sparse_area {
	uint64_t offset; /* inside the region */
	uint64_t size;
};

/*
 * One region, as the region-info cache holds it. Owned by the device: the caller neither
 * allocates nor frees it. Valid until vgb_vfio_device_reset() or vgb_vfio_device_destroy().
 */
struct vgb_vfio_region_info {
	uint32_t index;
	uint32_t flags;  /* VFIO_REGION_INFO_FLAG_* */
	uint64_t size;
	uint64_t offset; /* offset of the region in the fd that region_mmap_fd returns */
	/* VFIO_REGION_INFO_CAP_SPARSE_MMAP: only these areas may be mmapped. When has_sparse is
	 * false and FLAG_MMAP is set, the whole region may be mmapped. */
	bool has_sparse;
	uint32_t n_sparse;
	const struct vgb_vfio_sparse_area *sparse;
	/* VFIO_REGION_INFO_CAP_TYPE */
	bool has_type;
	uint32_t type, subtype;
};

/*
 * The io-ops table (QEMU's VFIODeviceIOOps is the model). Backends define one as
 * `static const`. Every callback returns >= 0 or -errno.
 */
struct vgb_vfio_device_ops {
	const char *name;
	/* What this backend can ever do; the device's runtime set is a subset (see probe). */
	uint32_t capabilities;
	/* VFIO_DEVICE_FEATURE with @arg a struct vfio_device_feature of arg->argsz bytes. */
	int (*device_feature)(struct vgb_vfio_device *dev, void *arg);
	/* VFIO_DEVICE_GET_REGION_INFO; @info is a struct vfio_region_info of info->argsz bytes.
	 * On return info->argsz may exceed the input: the caller re-queries with a larger buffer. */
	int (*get_region_info)(struct vgb_vfio_device *dev, void *info);
	/* VFIO_DEVICE_GET_INFO into a struct vfio_device_info. */
	int (*get_device_info)(struct vgb_vfio_device *dev, void *info);
	/* Returns bytes transferred or -errno. */
	ssize_t (*region_read)(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			       void *buf, size_t len);
	ssize_t (*region_write)(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
				const void *buf, size_t len);
	/* Returns the (borrowed) fd to mmap region @index from, at file offset
	 * region_info->offset + offset-in-region. */
	int (*region_mmap_fd)(struct vgb_vfio_device *dev, uint32_t index);
	/* VFIO_DEVICE_RESET. NULL when unsupported. */
	int (*reset)(struct vgb_vfio_device *dev);
	/* Releases the backend's resources and frees the struct that embeds @dev. Called by
	 * vgb_vfio_device_destroy() after vgb_vfio_device_finish() released the base's cache;
	 * must cope with a half-built device. */
	void (*destroy)(struct vgb_vfio_device *dev);
};

/* The base object, embedded as `base` in each backend's struct (wlroots style). */
struct vgb_vfio_device {
	const struct vgb_vfio_device_ops *ops;
	uint32_t caps;                     /* runtime capabilities, a subset of ops->capabilities */
	enum vgb_vfio_probe dmabuf_probe;  /* what the DMA_BUF probe saw */
	int dmabuf_probe_errno;            /* its raw result, 0 or -errno */
	enum vgb_vfio_open_path path;
	char name[64];                     /* BDF, cdev path or virtual spec name */
	uint32_t num_regions;
	/* region-info cache, see vgb_vfio_region_info() */
	struct vgb_vfio_region_info *regions;  /* num_regions slots */
	bool *region_cached;
	uint64_t region_info_queries;      /* backend get_region_info calls, for tests/stats */
	uint32_t generation;               /* bumped on reset: exports made before are stale */
	/* A PCI device with a config region (vfio-pci, the virtual device): its BARs (regions
	 * 0-5) are backed only while PCI_COMMAND_MEMORY is set; see vgb_vfio_check_decode(). */
	bool pci;
};

/* Initialises the base (zeroes it; the cache is allocated on first use, so this cannot fail).
 * For backends only. */
void vgb_vfio_device_init(struct vgb_vfio_device *dev, const struct vgb_vfio_device_ops *ops,
			  uint32_t num_regions, const char *name);
/* Frees the base's cache. For backends only. */
void vgb_vfio_device_finish(struct vgb_vfio_device *dev);

/* Destroys @dev and everything it owns. Accepts NULL. */
void vgb_vfio_device_destroy(struct vgb_vfio_device *dev);

static inline bool vgb_vfio_device_has_cap(const struct vgb_vfio_device *dev, uint32_t cap)
{
	return (dev->caps & cap) == cap;
}

/*
 * Region-info cache. The first query for @index calls the backend (re-querying with a larger
 * argsz when the capability chain does not fit) and parses the sparse-mmap and type caps;
 * later queries return the cached copy. *ret points into the device and stays valid until
 * reset or destroy; the caller neither allocates nor frees it.
 * Returns 0, -EINVAL for an index >= num_regions, or the backend's -errno.
 */
int vgb_vfio_region_info(struct vgb_vfio_device *dev, uint32_t index,
			 const struct vgb_vfio_region_info **ret);

/* Resets the device (when it can) and drops the region-info cache. Bumps dev->generation so
 * exports made before are known to be revoked. Returns 0 or -errno (-EOPNOTSUPP without
 * VGB_VFIO_CAP_RESET; the cache is dropped either way). */
int vgb_vfio_device_reset(struct vgb_vfio_device *dev);

/*
 * Memory decode. The guest owns its passed-through device's command register, and a PCI BAR
 * is backed only while PCI_COMMAND_MEMORY is set. With it clear, vfio-pci answers region reads
 * and writes with EIO, answers a fault on an mmap of the BAR with SIGBUS (for a view built
 * before, too), and exports a dmabuf that is born revoked (importers get ENODEV). So before
 * exporting or mapping a BAR, vfio/ reads PCI_COMMAND from the config region
 * (VFIO_PCI_CONFIG_REGION_INDEX, through region_read) and refuses with -EIO, the kernel's own
 * answer to CPU access of undecoded memory. Views made earlier must be read with
 * vgb_guarded_copy() (vgb/guard.h); exports made earlier are revoked by the kernel and must be
 * re-made, never cached across the change.
 * Returns 0 when @region's memory is decoded or the notion does not apply (not a BAR, not a
 * PCI device: !dev->pci), -EIO when memory decode is off, or the config read's -errno.
 */
int vgb_vfio_check_decode(struct vgb_vfio_device *dev, uint32_t region);

/* Region I/O. Return bytes transferred or -errno. A PCI BAR read or written while memory
 * decode is off gives -EIO (vfio-pci's answer; the virtual device answers the same). */
ssize_t vgb_vfio_region_read(struct vgb_vfio_device *dev, uint32_t index, uint64_t off, void *buf,
			     size_t len);
ssize_t vgb_vfio_region_write(struct vgb_vfio_device *dev, uint32_t index, uint64_t off,
			      const void *buf, size_t len);

/*
 * Prints @dev's backend, open path, capabilities, DMA_BUF probe answer and every region (size,
 * offset, flags, sparse areas, type; or the errno its query gave) to @out, as text or as one
 * JSON object (the format `vgbctl vfio-info` prints; see README.md). Queries go through the
 * region-info cache. Returns 0, -EINVAL, or -EIO when writing failed.
 */
int vgb_vfio_info_print(struct vgb_vfio_device *dev, FILE *out, bool json);

/* ---- backends ---- */

/*
 * Kernel backend, legacy path: /dev/vfio/vfio container, the device's IOMMU group, type1v2,
 * VFIO_GROUP_GET_DEVICE_FD by @bdf ("0000:00:03.0"). Tries the cdev path first when the kernel
 * has it (see vfio/cdev.c), unless @flags has VGB_VFIO_OPEN_LEGACY.
 */
#define VGB_VFIO_OPEN_LEGACY (1u << 0)
#define VGB_VFIO_OPEN_CDEV (1u << 1)
int vgb_vfio_kernel_open(const char *bdf, uint32_t flags, struct vgb_vfio_device **ret);

/* Kernel backend over a cdev path (/dev/vfio/devices/vfioN), bound to /dev/iommu. */
int vgb_vfio_kernel_open_cdev(const char *cdev_path, struct vgb_vfio_device **ret);

/*
 * Kernel backend over a device fd we were handed (the VMM passes one over the socket).
 * Takes ownership of @fd on success only. @name labels it in logs and stats.
 */
int vgb_vfio_kernel_adopt(int fd, const char *name, struct vgb_vfio_device **ret);

/*
 * The virtual device: regions backed by memfds. @spec is a comma-separated list, e.g.
 *   "bar0=16M,bar2=64M:sparse=0+16M;32M+32M,bar4=4K:nommap,dmabuf=auto|on|off,name=vgpu0"
 * or "default" (BAR0 4 KiB registers, BAR2 64 MiB mmappable memory); see
 * docs/virtual-device.md for the grammar. dmabuf=auto offers VGB_VFIO_CAP_DMA_BUF only where
 * /dev/udmabuf exists, and exports through udmabuf; dmabuf=off / nodriver make the probe answer
 * ENOTTY / EOPNOTSUPP as a kernel or driver without the feature would.
 * Returns 0, -EINVAL for a bad spec (logged at debug with the reason), -ENODEV for dmabuf=on
 * without /dev/udmabuf, or the -errno of making a memfd (-EMFILE, -ENOMEM, ...).
 */
int vgb_vfio_vdev_create(const char *spec, struct vgb_vfio_device **ret);

/* The memfd behind a virtual device's region (borrowed), or -EINVAL / -ENODEV. */
int vgb_vfio_vdev_region_memfd(struct vgb_vfio_device *dev, uint32_t index);

/*
 * vfio-user backend: a client of a vfio-user server (QEMU's docs/interop/vfio-user.rst) over
 * an AF_UNIX stream socket. Capabilities: MMAP (regions the server passes an fd for) and RESET
 * (when the server says so); never DMA_BUF, which the protocol does not have, so the export
 * planner takes the CPU view over the server's region fds. Region I/O that cannot be mapped
 * (config space, registers) is REGION_READ/WRITE.
 * Every call is synchronous: one request, then its reply within the call timeout (5 s). When
 * the server goes away, times out or breaks the protocol, the device is gone: the socket is
 * closed, dev->generation is bumped (exports made before are stale) and every later call,
 * including the one that noticed, answers -ENODEV. Views mapped before stay readable (they map
 * the server's memfds).
 *
 * vgb_vfio_user_connect() connects to the socket at @path; vgb_vfio_user_adopt() takes a
 * connected socket, and ownership of @fd on success only. Both run the VERSION handshake and
 * DEVICE_GET_INFO. Return 0, -ENODEV / -ECONNREFUSED / -ENOENT when there is no server,
 * -EPROTO for a server that breaks the protocol, -ETIMEDOUT, or another -errno.
 */
int vgb_vfio_user_connect(const char *path, struct vgb_vfio_device **ret);
int vgb_vfio_user_adopt(int fd, const char *name, struct vgb_vfio_device **ret);

/* Whether @dev is a vfio-user device whose server has gone (see above). */
bool vgb_vfio_user_is_gone(const struct vgb_vfio_device *dev);

/* ---- multi-range dmabuf ---- */

struct vgb_vfio_range {
	uint64_t offset; /* inside the region */
	uint64_t length;
};

/* The most ranges one export may carry (the kernel itself does not check nr_ranges). */
#define VGB_VFIO_DMABUF_MAX_RANGES 16384u

/*
 * Exports @n ranges of region @region as one dmabuf (VFIO_DEVICE_FEATURE_DMA_BUF).
 * Validates before any ioctl: 1 <= n <= VGB_VFIO_DMABUF_MAX_RANGES, page-aligned offsets and
 * lengths, no zero length, no overflow, every range inside the region, region <= 5 (a BAR);
 * argsz is computed from n. Touching ranges are merged first.
 * Then, on a PCI device, memory decode is checked (vgb_vfio_check_decode()): Linux would hand
 * out a dmabuf that is already revoked.
 * Returns the new dmabuf fd (O_CLOEXEC, owned by the caller), -EOPNOTSUPP without an ioctl when
 * the device lacks VGB_VFIO_CAP_DMA_BUF, -EINVAL/-ENODEV/-E2BIG for bad input, -EIO without an
 * ioctl when memory decode is off, the config read's -errno, or the kernel's -errno.
 */
int vgb_vfio_create_dmabuf(struct vgb_vfio_device *dev, uint32_t region,
			   const struct vgb_vfio_range *ranges, size_t n);

/*
 * Sorts nothing; merges ranges of @ranges that touch in order (a.offset + a.length == b.offset)
 * in place. Returns the new count.
 */
size_t vgb_vfio_ranges_merge(struct vgb_vfio_range *ranges, size_t n);

/* ---- segment mapper ---- */


/*
 * Resolves @length bytes at @offset inside VFIO region @region into a mappable segment: the
 * backend's region fd (borrowed) at region offset + @offset. A range may span touching sparse
 * areas. Returns 0, -EACCES when the range is not inside the region's mmappable (sparse) areas,
 * the region has no FLAG_MMAP or the device lacks VGB_VFIO_CAP_MMAP, -EINVAL when it is empty,
 * unaligned or outside the region, -EIO when the region is a PCI BAR whose memory decode is off
 * (a view of it would SIGBUS on first read; see vgb_vfio_check_decode()), or the region-info
 * query's or config read's -errno.
 */
int vgb_vfio_segment(struct vgb_vfio_device *dev, uint32_t region, uint64_t offset,
		     uint64_t length, struct vgb_segment *ret);

/*
 * vgb_vfio_segment() for @n ranges of one region, into @ret[0..n-1]: every range is validated
 * as there, and memory decode is checked once for all of them (one config read on the kernel
 * backend instead of one per range). A caller building one view from many ranges uses this.
 * Returns 0 or the first error, with the same codes; @ret is meaningful only on success.
 * -EINVAL also for n == 0.
 */
int vgb_vfio_segments(struct vgb_vfio_device *dev, uint32_t region,
		      const struct vgb_vfio_range *ranges, size_t n, struct vgb_segment *ret);

#endif
