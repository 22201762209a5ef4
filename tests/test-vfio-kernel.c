/* SPDX-License-Identifier: MIT */
/*
 * The kernel backend against a fake VFIO kernel at the ioctl boundary (tests/lib/fake-vfio.c):
 * the DMA_BUF probe and export down to the bytes of the ioctl, every errno the kernel documents
 * for the export, validation that never reaches the ioctl, the region-info cache counted in
 * ioctls, region I/O through pread/pwrite at the region offset, the legacy open sequence, and
 * failure injection at every ioctl with fds and mappings compared before and after.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "fake-vfio.h"
#include "fault.h"
#include "kernel.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/vfio.h"

#define PAGE 4096u

static struct fake_vfio *f;

static struct vgb_vfio_device *adopt(void)
{
	struct vgb_vfio_device *dev = NULL;
	int fd = fake_vfio_dup_device(f);
	int r = vgb_vfio_kernel_adopt(fd, "fake", &dev);

	if (r < 0) {
		close(fd);
		tap_bail("adopt: %s", strerror(-r));
	}
	return dev;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void fill_region(uint32_t region, uint64_t off, uint64_t len, uint8_t seed)
{
	uint8_t page[PAGE];

	for (uint64_t done = 0; done < len; done += PAGE) {
		for (unsigned i = 0; i < PAGE; i++)
			page[i] = (uint8_t)(seed + (off + done) / PAGE + i);
		pwrite(f->device_fd, page, PAGE, (off_t)(fake_vfio_region_offset(region) + off + done));
	}
}

static bool same_as_region(int fd_or_neg, const uint8_t *mem, uint64_t pos, uint32_t region,
			   uint64_t off, uint64_t len)
{
	uint8_t a[PAGE], b[PAGE];

	for (uint64_t done = 0; done < len; done += PAGE) {
		if (mem)
			memcpy(a, mem + pos + done, PAGE);
		else if (pread(fd_or_neg, a, PAGE, (off_t)(pos + done)) != PAGE)
			return false;
		if (pread(f->device_fd, b, PAGE,
			  (off_t)(fake_vfio_region_offset(region) + off + done)) != PAGE)
			return false;
		if (memcmp(a, b, PAGE))
			return false;
	}
	return true;
}

static void test_adopt(void)
{
	struct vgb_vfio_device *dev;
	struct fake_vfio_calls before = f->calls;

	dev = adopt();
	tap_is_int(dev->path, VGB_VFIO_PATH_ADOPTED, "adopted path");
	tap_is_str(dev->name, "fake", "adopted name");
	tap_is_uint(dev->num_regions, 9, "num_regions from VFIO_DEVICE_GET_INFO");
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF | VGB_VFIO_CAP_MMAP |
					       VGB_VFIO_CAP_RESET),
	       "DMA_BUF, mmap and reset capabilities");
	tap_ok(!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_IOMMUFD), "no iommufd on an adopted fd");
	tap_is_int(dev->dmabuf_probe, VGB_VFIO_PROBE_OK, "probe answered 0");
	tap_is_uint(f->calls.probe - before.probe, 1, "one probe at open");
	tap_is_uint(f->last_probe_argsz, 8, "probe argsz is the bare header");
	tap_is_uint(f->last_probe_flags,
		    VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | 11,
		    "probe flags PROBE|GET|11");
	tap_ok(fcntl(vgb_vfio_kernel_device_fd(dev), F_GETFD) & FD_CLOEXEC,
	       "adopted fd is CLOEXEC");
	vgb_vfio_device_destroy(dev);

	/* Not a VFIO device: the real kernel answers ENOTTY and the fd stays the caller's. */
	int memfd = memfd_create("not-vfio", MFD_CLOEXEC);
	dev = NULL;
	tap_is_errno(vgb_vfio_kernel_adopt(memfd, "x", &dev), -ENOTTY, "adopt of a non-VFIO fd");
	tap_ok(dev == NULL && fcntl(memfd, F_GETFD) >= 0, "failed adopt leaves the fd open");
	close(memfd);
	tap_is_errno(vgb_vfio_kernel_adopt(-1, "x", &dev), -EINVAL, "adopt of fd -1");
}

static void test_dmabuf_bytes(void)
{
	struct vgb_vfio_device *dev = adopt();
	const struct vgb_vfio_range ranges[] = {
		{ 0x1000, 0x2000 }, { 0x3000, 0x1000 }, /* touch: one range */
		{ 0x10000, 0x1000 },
	};
	uint8_t want[56];
	int fd;

	fill_region(2, 0, 1u << 20, 0x11);
	fd = vgb_vfio_create_dmabuf(dev, 2, ranges, 3);
	tap_ok(fd >= 0, "export of 3 ranges (2 after merging): fd %d", fd);

	/* The ioctl's bytes, written out by hand. */
	put32(want + 0, 56);                              /* argsz: 8 + 16 + 2 * 16 */
	put32(want + 4, (1u << 16) | 11);                 /* GET | DMA_BUF */
	put32(want + 8, 2);                               /* region_index */
	put32(want + 12, O_RDWR | O_CLOEXEC);             /* open_flags */
	put32(want + 16, 0);                              /* flags */
	put32(want + 20, 2);                              /* nr_ranges */
	put64(want + 24, 0x1000);
	put64(want + 32, 0x3000);
	put64(want + 40, 0x10000);
	put64(want + 48, 0x1000);
	tap_is_uint(f->last_get_len, 56, "argsz computed from the merged count");
	tap_is_mem(f->last_get, want, 56, "exact bytes: header, payload, merged ranges");
	tap_ok(!f->get_overread, "nr_ranges never claims more than argsz holds");
	if (fd >= 0) {
		tap_is_int(lseek(fd, 0, SEEK_END), 0x4000, "dmabuf size is the sum of the ranges");
		tap_ok(same_as_region(fd, NULL, 0, 2, 0x1000, 0x3000) &&
			       same_as_region(fd, NULL, 0x3000, 2, 0x10000, 0x1000),
		       "dmabuf holds the ranges' bytes in order");
		tap_ok(fcntl(fd, F_GETFD) & FD_CLOEXEC, "dmabuf fd is CLOEXEC");
		close(fd);
	}

	/* Many ranges: 128 separate pages, then 256 touching pages that merge into one. */
	struct vgb_vfio_range many[256];
	for (unsigned i = 0; i < 128; i++)
		many[i] = (struct vgb_vfio_range){ (uint64_t)i * 2 * PAGE, PAGE };
	fd = vgb_vfio_create_dmabuf(dev, 2, many, 128);
	tap_ok(fd >= 0 && f->last_get_len == 24 + 128 * 16, "128 ranges: argsz %zu",
	       f->last_get_len);
	if (fd >= 0)
		close(fd);
	for (unsigned i = 0; i < 256; i++)
		many[i] = (struct vgb_vfio_range){ (uint64_t)i * PAGE, PAGE };
	fd = vgb_vfio_create_dmabuf(dev, 2, many, 256);
	tap_ok(fd >= 0 && f->last_get_len == 40, "256 touching pages merge into one range");
	if (fd >= 0) {
		tap_is_int(lseek(fd, 0, SEEK_END), 1 << 20, "the merged export covers all of BAR2");
		close(fd);
	}
	vgb_vfio_device_destroy(dev);
}

static void test_dmabuf_validation(void)
{
	struct vgb_vfio_device *dev = adopt();
	static struct vgb_vfio_range huge[VGB_VFIO_DMABUF_MAX_RANGES + 1];
	const struct {
		const char *what;
		uint32_t region;
		struct vgb_vfio_range r[2];
		size_t n;
		int want;
	} cases[] = {
		{ "no ranges", 2, { { 0, PAGE } }, 0, -EINVAL },
		{ "ROM is not a BAR", 6, { { 0, PAGE } }, 1, -ENODEV },
		{ "config is not a BAR", 7, { { 0, PAGE } }, 1, -ENODEV },
		{ "index past the regions", 12, { { 0, PAGE } }, 1, -ENODEV },
		{ "absent BAR1", 1, { { 0, PAGE } }, 1, -ENODEV },
		{ "zero length", 2, { { 0, 0 } }, 1, -EINVAL },
		{ "unaligned offset", 2, { { 1, PAGE } }, 1, -EINVAL },
		{ "unaligned length", 2, { { 0, PAGE - 1 } }, 1, -EINVAL },
		{ "past the region", 2, { { (1u << 20) - PAGE, 2 * PAGE } }, 1, -EINVAL },
		{ "offset + length overflows", 2, { { UINT64_MAX - PAGE + 1, PAGE } }, 1, -EINVAL },
		{ "second range bad", 2, { { 0, PAGE }, { PAGE, 3 } }, 2, -EINVAL },
		{ "BAR0 whole", 0, { { 0, 16384 } }, 1, 0 },
		{ "BAR4 two ranges", 4, { { 0, PAGE }, { 8 * PAGE, PAGE } }, 2, 0 },
	};
	unsigned gets;
	int r;

	logcap_start();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		gets = f->calls.get;
		r = vgb_vfio_create_dmabuf(dev, cases[i].region, cases[i].r, cases[i].n);
		if (r >= 0) {
			tap_ok(cases[i].want == 0, "dmabuf: %s: fd", cases[i].what);
			close(r);
			continue;
		}
		tap_is_errno(r, cases[i].want, "dmabuf: %s", cases[i].what);
		tap_is_uint(f->calls.get - gets, 0, "dmabuf: %s: refused before the ioctl",
			    cases[i].what);
	}
	for (size_t i = 0; i < VGB_VFIO_DMABUF_MAX_RANGES + 1; i++)
		huge[i] = (struct vgb_vfio_range){ 0, PAGE };
	gets = f->calls.get;
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, huge, VGB_VFIO_DMABUF_MAX_RANGES + 1), -E2BIG,
		     "over VGB_VFIO_DMABUF_MAX_RANGES");
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, NULL, 1), -EINVAL, "NULL ranges");
	tap_is_uint(f->calls.get - gets, 0, "neither reached the ioctl");
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "refusals log nothing above debug %s", logcap_last_loud());
	vgb_vfio_device_destroy(dev);
}

/* Every errno vfio_pci_core_feature_dma_buf() and the ioctl path document. */
static void test_dmabuf_errnos(void)
{
	static const int errs[] = { EINVAL, ENODEV, EFAULT, ENOMEM, EOVERFLOW, EMFILE, ENFILE };
	const struct vgb_vfio_range range = { 0, PAGE };
	struct leak_snapshot before;
	struct vgb_vfio_device *dev;

	leak_snapshot(&before);
	dev = adopt();
	logcap_start();
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		f->get_errno = errs[i];
		tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -errs[i],
			     "kernel answers %s: passed on", strerror(errs[i]));
		tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
		       "%s keeps the capability", strerror(errs[i]));
	}
	f->get_errno = 0;

	/* The feature going away after the probe (driver rebound): capability off, EOPNOTSUPP. */
	f->driver_lacks_dmabuf = true;
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -EOPNOTSUPP,
		     "driver answers EOPNOTSUPP at export");
	tap_ok(!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), "capability cleared");
	unsigned features = f->calls.feature;
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -EOPNOTSUPP,
		     "next export: EOPNOTSUPP without an ioctl");
	tap_is_uint(f->calls.feature - features, 0, "no ioctl once the capability is off");
	f->driver_lacks_dmabuf = false;
	vgb_vfio_device_destroy(dev);

	/* Probed absent: the capability check alone answers, even if the kernel would now
	 * accept the call. */
	f->no_feature_ioctl = true;
	dev = adopt();
	f->no_feature_ioctl = false;
	features = f->calls.feature;
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -EOPNOTSUPP,
		     "probe said ENOTTY: export answers EOPNOTSUPP");
	tap_is_uint(f->calls.feature - features, 0, "without any ioctl");
	vgb_vfio_device_destroy(dev);

	dev = adopt();
	f->no_feature_ioctl = true;
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -EOPNOTSUPP,
		     "kernel answers ENOTTY at export: EOPNOTSUPP");
	tap_ok(!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), "capability cleared");
	f->no_feature_ioctl = false;
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "kernel errnos log nothing above debug %s", logcap_last_loud());
	vgb_vfio_device_destroy(dev);
	leak_check(&before, "no fd or mapping left by failed exports");
}

static void test_probe_answers(void)
{
	struct vgb_vfio_device *dev;

	logcap_start();
	f->no_feature_ioctl = true;
	dev = adopt();
	tap_ok(dev->dmabuf_probe == VGB_VFIO_PROBE_ENOTTY && dev->dmabuf_probe_errno == -ENOTTY &&
		       !vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
	       "kernel without DMA_BUF: ENOTTY recorded, capability off");
	vgb_vfio_device_destroy(dev);
	f->no_feature_ioctl = false;

	f->driver_lacks_dmabuf = true;
	dev = adopt();
	tap_ok(dev->dmabuf_probe == VGB_VFIO_PROBE_EOPNOTSUPP &&
		       !vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
	       "driver without DMA_BUF: EOPNOTSUPP recorded, capability off");
	vgb_vfio_device_destroy(dev);
	f->driver_lacks_dmabuf = false;

	/* Another answer (EIO injected on the probe, the second ioctl): kept as OTHER. */
	fault_install();
	fault_arm_ioctl(2, EIO);
	dev = adopt();
	fault_remove();
	tap_ok(dev->dmabuf_probe == VGB_VFIO_PROBE_OTHER && dev->dmabuf_probe_errno == -EIO &&
		       !vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
	       "probe failing with EIO: OTHER and -EIO recorded, capability off");
	vgb_vfio_device_destroy(dev);
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "probe answers log nothing above debug %s", logcap_last_loud());
}

static void test_cache(void)
{
	struct vgb_vfio_device *dev = adopt();
	const struct vgb_vfio_region_info *info, *again;
	unsigned before = f->calls.get_region_info;
	int r;

	r = vgb_vfio_region_info(dev, 4, &info);
	tap_is_errno(r, 0, "BAR4 info");
	tap_is_uint(f->calls.get_region_info - before, 2, "caps need a second ioctl with more argsz");
	tap_ok(info->has_sparse && info->n_sparse == 2 && info->sparse[1].offset == 32768 &&
		       info->sparse[1].size == 32768,
	       "sparse areas from the kernel's chain");
	tap_ok(info->has_type && info->type == 1 && info->subtype == 2, "type cap");
	tap_is_uint(info->offset, fake_vfio_region_offset(4), "region offset from the kernel");
	before = f->calls.get_region_info;
	r = vgb_vfio_region_info(dev, 4, &again);
	tap_ok(r == 0 && again == info && f->calls.get_region_info == before,
	       "cached: no ioctl, same pointer");
	r = vgb_vfio_region_info(dev, 2, &info);
	tap_is_uint(f->calls.get_region_info - before, 1, "no caps: one ioctl");

	unsigned resets = f->calls.reset;
	uint32_t gen = dev->generation;
	tap_is_errno(vgb_vfio_device_reset(dev), 0, "VFIO_DEVICE_RESET");
	tap_ok(f->calls.reset == resets + 1 && dev->generation == gen + 1,
	       "reset ioctl made, generation bumped");
	before = f->calls.get_region_info;
	vgb_vfio_region_info(dev, 4, &info);
	tap_is_uint(f->calls.get_region_info - before, 2, "reset invalidated the cache");
	f->reset_errno = EIO;
	tap_is_errno(vgb_vfio_device_reset(dev), -EIO, "a failed reset passes its errno on");
	tap_is_uint(dev->generation, gen + 2, "and still counts as a reset");
	f->reset_errno = 0;
	vgb_vfio_device_destroy(dev);

	/* A chain the kernel should never send: parsed as an error, not a crash. */
	f->regions[4].sparse[1].size = 1u << 20; /* area past the region's end */
	dev = adopt();
	tap_is_errno(vgb_vfio_region_info(dev, 4, &info), -EPROTO, "sparse area past the region");
	f->regions[4].sparse[1].size = 32768;
	vgb_vfio_device_destroy(dev);
}

static void test_region_io(void)
{
	struct vgb_vfio_device *dev = adopt();
	char back[6] = { 0 };

	tap_is_int(vgb_vfio_region_write(dev, 2, 0x100, "hello", 6), 6, "write to BAR2");
	pread(f->device_fd, back, 6, (off_t)(fake_vfio_region_offset(2) + 0x100));
	tap_is_str(back, "hello", "landed at the region offset + 0x100 of the device fd");
	memset(back, 0, sizeof(back));
	tap_is_int(vgb_vfio_region_read(dev, 2, 0x100, back, 6), 6, "read it back");
	tap_is_str(back, "hello", "read through pread at the region offset");
	tap_is_errno(vgb_vfio_region_read(dev, 0, 16384 - 2, back, 4), -EINVAL, "past BAR0's end");
	vgb_vfio_device_destroy(dev);
}

static void test_segments(void)
{
	struct vgb_vfio_device *dev;
	struct vgb_segment segs[2];
	struct vgb_segmap *map = NULL;
	struct leak_snapshot before;
	int r;

	leak_snapshot(&before);
	dev = adopt();
	fill_region(4, 0, 65536, 0x40);
	r = vgb_vfio_segment(dev, 4, 32768, 8192, &segs[0]);
	tap_ok(r == 0 && segs[0].fd == vgb_vfio_kernel_device_fd(dev) &&
		       segs[0].offset == fake_vfio_region_offset(4) + 32768,
	       "segment: the device fd at region offset + offset");
	r |= vgb_vfio_segment(dev, 4, 0, 4096, &segs[1]);
	tap_is_errno(vgb_vfio_segment(dev, 4, 16384, 4096, &(struct vgb_segment){ 0 }), -EACCES,
		     "outside the sparse areas: EACCES");
	if (r == 0)
		r = vgb_segmap_create(segs, 2, -1, &map);
	tap_is_errno(r, 0, "view of two BAR4 areas through the device fd");
	if (r == 0)
		tap_ok(same_as_region(-1, map->addr, 0, 4, 32768, 8192) &&
			       same_as_region(-1, map->addr, 8192, 4, 0, 4096),
		       "the view shows the BAR's bytes in segment order");
	vgb_segmap_destroy(map);
	map = NULL;

	/* The dmabuf first: an mmappable one is used, one that refuses mmap is not. */
	const struct vgb_vfio_range ranges[] = { { 32768, 8192 }, { 0, 4096 } };
	for (int mmappable = 1; mmappable >= 0; mmappable--) {
		int fd;

		f->dmabuf_mmappable = mmappable;
		fd = vgb_vfio_create_dmabuf(dev, 4, ranges, 2);
		r = fd < 0 ? fd : vgb_segmap_create(segs, 2, fd, &map);
		tap_ok(r == 0 && map->via_dmabuf == (bool)mmappable,
		       "dmabuf %s mmap: via_dmabuf %d", mmappable ? "with" : "without",
		       r == 0 ? map->via_dmabuf : -1);
		if (r == 0)
			tap_ok(same_as_region(-1, map->addr, 0, 4, 32768, 8192) &&
				       same_as_region(-1, map->addr, 8192, 4, 0, 4096),
			       "right bytes either way");
		vgb_segmap_destroy(map);
		map = NULL;
		if (fd >= 0)
			close(fd);
	}
	f->dmabuf_mmappable = true;
	vgb_vfio_device_destroy(dev);
	leak_check(&before, "segments over the kernel device");
}

/* ioctl N fails, N = 1, 2, ...: GET_DEVICE_INFO fails the adopt, the probe does not. */
static void test_adopt_faults(void)
{
	struct leak_snapshot before;
	unsigned n, fired = 0;
	bool ok = true;

	leak_snapshot(&before);
	logcap_start();
	fault_install();
	for (n = 1; n < 10; n++) {
		struct vgb_vfio_device *dev = NULL;
		int fd = fake_vfio_dup_device(f), r;

		fault_arm_ioctl(n, EIO);
		r = vgb_vfio_kernel_adopt(fd, "faulty", &dev);
		if (!fault_fired()) {
			ok &= r == 0;
			vgb_vfio_device_destroy(dev);
			break;
		}
		fired++;
		if (n == 1) {
			ok &= r == -EIO && !dev && fcntl(fd, F_GETFD) >= 0;
			close(fd);
		} else {
			ok &= r == 0 && dev->dmabuf_probe == VGB_VFIO_PROBE_OTHER;
			vgb_vfio_device_destroy(dev);
		}
	}
	fault_arm_ioctl(0, 0);
	fault_remove();
	logcap_stop();
	tap_ok(ok && fired == 2, "adopt under an ioctl fault at each of %u calls", fired);
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0, "faults log nothing above debug");
	leak_check(&before, "adopt under fault injection");
}

static void test_legacy(const char *root)
{
	struct vgb_vfio_device *dev = NULL;
	struct leak_snapshot before;
	struct fake_vfio_calls c0 = f->calls;
	char path[4200];
	int r;

	leak_snapshot(&before);
	logcap_start();
	r = vgb_vfio_kernel_open("0000:00:03.0", 0, &dev);
	tap_is_errno(r, 0, "legacy open by BDF (no /dev/iommu in the tree: silent fallback)");
	if (r == 0) {
		tap_is_int(dev->path, VGB_VFIO_PATH_LEGACY, "legacy path");
		tap_is_str(dev->name, "0000:00:03.0", "named by BDF");
		tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), "probe ran");
		tap_ok(f->calls.api_version == c0.api_version + 1 &&
			       f->calls.check_extension == c0.check_extension + 1 &&
			       f->calls.group_status == c0.group_status + 1 &&
			       f->calls.set_container == c0.set_container + 1 &&
			       f->calls.set_iommu == c0.set_iommu + 1 &&
			       f->calls.get_device_fd == c0.get_device_fd + 1,
		       "container, type1v2, group, device: each ioctl once");
		tap_is_int(leak_count_fds() - before.n_fds, 3, "device, group and container open");
	}
	vgb_vfio_device_destroy(dev);
	fake_vfio_legacy_reset();
	leak_check(&before, "destroy closes device, group and container");

	dev = NULL;
	r = vgb_vfio_kernel_open("00:03.0", VGB_VFIO_OPEN_LEGACY, &dev);
	tap_ok(r == 0 && strcmp(dev->name, "0000:00:03.0") == 0, "short BDF means domain 0");
	vgb_vfio_device_destroy(dev);
	fake_vfio_legacy_reset();

	dev = NULL;
	tap_is_errno(vgb_vfio_kernel_open("0000:00:03.0", VGB_VFIO_OPEN_CDEV, &dev), -ENOENT,
		     "cdev only, a kernel without iommufd (no /dev/iommu): ENOENT");
	tap_is_errno(vgb_vfio_kernel_open("0000:00:03.0", VGB_VFIO_OPEN_CDEV | VGB_VFIO_OPEN_LEGACY,
					  &dev),
		     -EINVAL, "both paths at once");
	f->group_not_viable = true;
	tap_is_errno(vgb_vfio_kernel_open("0000:00:03.0", 0, &dev), -EBUSY, "group not viable");
	f->group_not_viable = false;
	fake_vfio_legacy_reset();

	static const char *const bad[] = {
		"", "0000:00:03", "0000:00:03.8", "0000:00:20.0", "../../../etc/passwd",
		"0000:00:03.0/../x", "00000:00:03.0", "0000:00:03.0 ", "0000:0:03.0", "g000:00:03.0",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		tap_is_errno(vgb_vfio_kernel_open(bad[i], 0, &dev), -EINVAL, "BDF \"%s\"", bad[i]);
	tap_is_errno(vgb_vfio_kernel_open("0000:00:04.0", 0, &dev), -ENODEV, "no such device");
	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/0000:00:05.0", root);
	mkdir(path, 0755);
	tap_is_errno(vgb_vfio_kernel_open("0000:00:05.0", 0, &dev), -ENXIO,
		     "a device without an IOMMU group");

	r = vgb_vfio_kernel_cdev_path("0000:00:03.0", path, sizeof(path));
	char want[4200];
	snprintf(want, sizeof(want), "%s/dev/vfio/devices/vfio3", root);
	tap_ok(r == 0 && strcmp(path, want) == 0, "cdev path from sysfs vfio-dev: %s", path);
	tap_is_errno(vgb_vfio_kernel_cdev_path("0000:00:04.0", path, sizeof(path)), -ENODEV,
		     "no cdev for a missing device");
	logcap_stop();
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "open failures log nothing above debug %s", logcap_last_loud());
	leak_check(&before, "legacy opens and refusals");

	/* An ioctl fault at every step of the sequence: the errno comes back, nothing leaks. */
	unsigned n, fired = 0;
	bool ok = true;
	leak_snapshot(&before);
	fault_install();
	for (n = 1; n < 16; n++) {
		dev = NULL;
		fault_arm_ioctl(n, EIO);
		r = vgb_vfio_kernel_open("0000:00:03.0", 0, &dev);
		if (!fault_fired()) {
			ok &= r == 0;
			vgb_vfio_device_destroy(dev);
			fake_vfio_legacy_reset();
			break;
		}
		fired++;
		/* Calls 1-7 are the open sequence; 8 is the probe, which does not fail the open. */
		if (n <= 7) {
			if (r != -EIO || dev) {
				tap_diag("ioctl fault %u: r=%d", n, r);
				ok = false;
			}
		} else {
			ok &= r == 0;
		}
		vgb_vfio_device_destroy(dev);
		fake_vfio_legacy_reset();
		if (leak_count_fds() != before.n_fds) {
			tap_diag("ioctl fault %u leaked an fd", n);
			ok = false;
		}
	}
	fault_arm_ioctl(0, 0);
	fault_remove();
	tap_ok(ok && fired == 8, "legacy open under an ioctl fault at each of %u calls", fired);
	leak_check(&before, "legacy open under fault injection");
}

int main(void)
{
	struct leak_snapshot before;
	char root[] = "/tmp/vgb-fake-vfio-XXXXXX", cmd[64];

	tap_plan_lazy();
	f = fake_vfio_create();
	if (!f || !mkdtemp(root) || fake_vfio_make_tree(f, root) < 0)
		tap_bail("fake VFIO setup failed");
	vgb_vfio_kernel_set_root(root);
	fake_vfio_install(f);
	leak_snapshot(&before);

	test_adopt();
	test_dmabuf_bytes();
	test_dmabuf_validation();
	test_dmabuf_errnos();
	test_probe_answers();
	test_cache();
	test_region_io();
	test_segments();
	test_adopt_faults();
	test_legacy(root);

	leak_check(&before, "whole test");
	fake_vfio_destroy(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", root);
	return tap_done();
}
