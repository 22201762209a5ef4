/* SPDX-License-Identifier: MIT */
/*
 * The virtual device: spec parser (table-driven, with errno), region info through the cache
 * (counted backend calls, the argsz re-query, sparse and type caps), region I/O, reset
 * invalidation, capability-off paths that log nothing above debug, and unwinding on fd
 * exhaustion without leaks.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "leak.h"
#include "logcap.h"
#include "private.h"
#include "tap.h"
#include "vgb/vfio.h"

struct spec_case {
	const char *spec;
	int want;
};

#define SPARSE17 \
	"bar2=1M:sparse=0+4K;8K+4K;16K+4K;24K+4K;32K+4K;40K+4K;48K+4K;56K+4K;64K+4K;72K+4K;" \
	"80K+4K;88K+4K;96K+4K;104K+4K;112K+4K;120K+4K;128K+4K"

static const struct spec_case spec_cases[] = {
	{ "default", 0 },
	{ "default,name=other,bar2=16M", 0 },
	{ "bar2=64M", 0 },
	{ "bar0=4K:nommap,bar2=0x10000:ro", 0 },
	{ "bar2=16K:sparse=0+4K;8K+4K", 0 },
	{ "bar2=16K:sparse=", 0 }, /* a sparse cap with no areas: nothing mmappable */
	{ "bar2=16K:type=0x80001af4/7", 0 },
	{ "rom=64K", 0 },
	{ "name=vgpu-1.a:b", 0 },
	{ "dmabuf=off,reset=off,mmap=off,bar2=4K", 0 },
	{ "dmabuf=nodriver,bar2=4K", 0 },
	{ "", -EINVAL },
	{ ",", -EINVAL },
	{ "bar2=4K,", -EINVAL },
	{ "bar2=4K::ro", -EINVAL },
	{ "bar2=16K:sparse=0+4K;", -EINVAL },
	{ "bar6=4K", -EINVAL },
	{ "bar22=4K", -EINVAL },
	{ "bar2", -EINVAL },
	{ "bar2=", -EINVAL },
	{ "bar2=0", -EINVAL },
	{ "bar2=4095", -EINVAL },
	{ "bar2=-4K", -EINVAL },
	{ "bar2= 4K", -EINVAL },
	{ "bar2=4KB", -EINVAL },
	{ "bar2=8G", -EINVAL },
	{ "bar2=18446744073709551615K", -EINVAL },
	{ "bar2=99999999999999999999999", -EINVAL },
	{ "bar2=4K:sparse=0+8K", -EINVAL },
	{ "bar2=16K:sparse=1+4K", -EINVAL },
	{ "bar2=16K:sparse=0+0", -EINVAL },
	{ "bar2=16K:sparse=0", -EINVAL },
	{ "bar2=16K:sparse=18446744073709547520+8K", -EINVAL },
	{ SPARSE17, -EINVAL },
	{ "bar2=16K:nommap:sparse=0+4K", -EINVAL },
	{ "bar2=16K:type=1", -EINVAL },
	{ "bar2=16K:type=1/x", -EINVAL },
	{ "bar2=16K:type=4294967296/1", -EINVAL },
	{ "bar2=16K:bogus", -EINVAL },
	{ "name=", -EINVAL },
	{ "name=a/b", -EINVAL },
	{ "name=0123456789012345678901234567890123456789012345678901234567890123", -EINVAL },
	{ "dmabuf=maybe", -EINVAL },
	{ "reset=1", -EINVAL },
	{ "frob=1", -EINVAL },
	{ "default=1", -EINVAL },
};

static void test_spec_table(void)
{
	for (size_t i = 0; i < sizeof(spec_cases) / sizeof(spec_cases[0]); i++) {
		struct vgb_vfio_device *dev = NULL;
		int r;

		logcap_start();
		r = vgb_vfio_vdev_create(spec_cases[i].spec, &dev);
		logcap_stop();
		tap_is_errno(r, spec_cases[i].want, "spec \"%.40s\"", spec_cases[i].spec);
		tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0,
		       "spec \"%.40s\" logs nothing above debug %s", spec_cases[i].spec,
		       logcap_last_loud());
		tap_ok((r == 0) == (dev != NULL), "device returned only on success");
		vgb_vfio_device_destroy(dev);
	}

	/* dmabuf=on is a requirement: without /dev/udmabuf the device cannot be made. */
	struct vgb_vfio_device *dev = NULL;
	int r = vgb_vfio_vdev_create("dmabuf=on,bar2=4K", &dev);
	tap_is_errno(r, vgb_udmabuf_is_available() ? 0 : -ENODEV,
		     "dmabuf=on with%s /dev/udmabuf", vgb_udmabuf_is_available() ? "" : "out");
	vgb_vfio_device_destroy(dev);
}

static void test_default(void)
{
	struct vgb_vfio_device *dev = NULL;
	const struct vgb_vfio_region_info *info;
	bool udmabuf = vgb_udmabuf_is_available();
	int r;

	r = vgb_vfio_vdev_create("default", &dev);
	if (!tap_is_errno(r, 0, "default spec"))
		return;
	tap_is_str(dev->name, "vgpu0", "default name");
	tap_is_int(dev->path, VGB_VFIO_PATH_VIRTUAL, "path is virtual");
	tap_is_uint(dev->num_regions, VFIO_PCI_NUM_REGIONS, "vfio-pci's 9 regions");
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_MMAP | VGB_VFIO_CAP_RESET),
	       "mmap and reset offered");
	tap_is_int(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), udmabuf,
		   "DMA_BUF offered exactly where /dev/udmabuf exists");
	tap_is_int(dev->dmabuf_probe, udmabuf ? VGB_VFIO_PROBE_OK : VGB_VFIO_PROBE_ENOTTY,
		   "probe result recorded");
	tap_is_int(dev->dmabuf_probe_errno, udmabuf ? 0 : -ENOTTY, "probe errno recorded");

	r = vgb_vfio_region_info(dev, 2, &info);
	tap_is_errno(r, 0, "BAR2 info");
	tap_is_uint(info->size, 64u << 20, "BAR2 is 64 MiB");
	tap_is_uint(info->flags,
		    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			    VFIO_REGION_INFO_FLAG_MMAP,
		    "BAR2 read/write/mmap, no caps");
	tap_ok(!info->has_sparse && !info->has_type, "BAR2 has no sparse or type cap");
	r = vgb_vfio_region_info(dev, 0, &info);
	tap_ok(r == 0 && info->size == 4096 && !(info->flags & VFIO_REGION_INFO_FLAG_MMAP),
	       "BAR0: 4 KiB registers, not mmappable");
	r = vgb_vfio_region_info(dev, 1, &info);
	tap_ok(r == 0 && info->size == 0 && info->flags == 0, "BAR1 absent: size 0, flags 0");
	r = vgb_vfio_region_info(dev, VFIO_PCI_CONFIG_REGION_INDEX, &info);
	tap_ok(r == 0 && info->size == 256, "config space: 256 bytes");
	tap_is_errno(vgb_vfio_region_info(dev, 9, &info), -EINVAL, "index 9 is out of range");
	tap_is_errno(vgb_vfio_vdev_region_memfd(dev, 1), -ENODEV, "no memfd for an absent BAR");
	tap_ok(vgb_vfio_vdev_region_memfd(dev, 2) >= 0, "BAR2 memfd");
	vgb_vfio_device_destroy(dev);
}

static void test_cache(void)
{
	struct vgb_vfio_device *dev = NULL;
	const struct vgb_vfio_region_info *info, *again;
	uint64_t q;
	int r;

	r = vgb_vfio_vdev_create("bar0=16K,bar2=64K:sparse=32K+32K;0+16K:type=0x80001af4/7", &dev);
	if (!tap_is_errno(r, 0, "device with sparse and type caps"))
		return;
	q = dev->region_info_queries;
	r = vgb_vfio_region_info(dev, 2, &info);
	tap_is_errno(r, 0, "BAR2 info");
	tap_is_uint(dev->region_info_queries - q, 2,
		    "first query: bare struct, then a re-query with the argsz the chain needs");
	tap_ok(info->flags & VFIO_REGION_INFO_FLAG_CAPS, "FLAG_CAPS set");
	tap_ok(info->has_sparse && info->n_sparse == 2, "two sparse areas parsed");
	tap_ok(info->sparse[0].offset == 32768 && info->sparse[0].size == 32768 &&
		       info->sparse[1].offset == 0 && info->sparse[1].size == 16384,
	       "sparse areas in the backend's order and values");
	tap_ok(info->has_type && info->type == 0x80001af4u && info->subtype == 7,
	       "type cap parsed");

	q = dev->region_info_queries;
	r = vgb_vfio_region_info(dev, 2, &again);
	tap_ok(r == 0 && again == info, "second query returns the cached copy");
	tap_is_uint(dev->region_info_queries - q, 0, "second query calls no backend");

	q = dev->region_info_queries;
	r = vgb_vfio_region_info(dev, 0, &info);
	tap_is_uint(dev->region_info_queries - q, 1, "a region without caps needs one query");

	uint32_t gen = dev->generation;
	r = vgb_vfio_device_reset(dev);
	tap_is_errno(r, 0, "reset");
	tap_is_uint(dev->generation, gen + 1, "reset bumps the generation");
	q = dev->region_info_queries;
	r = vgb_vfio_region_info(dev, 2, &info);
	tap_ok(r == 0 && info->n_sparse == 2, "after reset the info is queried again");
	tap_is_uint(dev->region_info_queries - q, 2, "reset invalidated the cache");
	vgb_vfio_device_destroy(dev);
}

static void test_io(void)
{
	struct vgb_vfio_device *dev = NULL;
	uint8_t buf[64], back[64];
	uint16_t cmd = PCI_COMMAND_MEMORY, id = 0;
	int r;

	r = vgb_vfio_vdev_create("bar0=4K:nommap,bar2=64K,bar4=4K:ro", &dev);
	if (!tap_is_errno(r, 0, "device for region I/O"))
		return;
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	tap_is_int(vgb_vfio_region_write(dev, 2, 65536 - 64, buf, 64), 64, "write at BAR2's end");
	tap_is_int(pread(vgb_vfio_vdev_region_memfd(dev, 2), back, 64, 65536 - 64), 64,
		   "the memfd holds it");
	tap_is_mem(back, buf, 64, "same bytes in the memfd");
	memset(back, 0, sizeof(back));
	tap_is_int(vgb_vfio_region_read(dev, 2, 65536 - 64, back, 64), 64, "read it back");
	tap_is_mem(back, buf, 64, "same bytes through region_read");
	tap_is_errno(vgb_vfio_region_write(dev, 2, 65536 - 63, buf, 64), -EINVAL,
		     "write past the region's end");
	tap_is_errno(vgb_vfio_region_read(dev, 2, UINT64_MAX, buf, 2), -EINVAL,
		     "offset overflow");
	tap_is_errno(vgb_vfio_region_write(dev, 4, 0, buf, 4), -EINVAL, "write to a ro region");
	tap_is_errno(vgb_vfio_region_read(dev, 1, 0, buf, 4), -EINVAL, "read of an absent BAR");

	r = (int)vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_VENDOR_ID, &id, 2);
	tap_ok(r == 2 && id == 0x1af4, "config: vendor id 0x%04x", id);
	vgb_vfio_region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	cmd = 0;
	vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	tap_is_uint(cmd, PCI_COMMAND_MEMORY, "memory decode on through the config region");
	/* vfio-pci restores the config state around a reset: decode reads back as it was. */
	vgb_vfio_device_reset(dev);
	cmd = 0;
	vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	tap_is_uint(cmd, PCI_COMMAND_MEMORY, "reset keeps the command register, as vfio-pci does");
	vgb_vfio_device_destroy(dev);
}

/* Every capability-off path: the documented -errno, and not one message above debug. */
static void test_caps_off_quiet(void)
{
	struct vgb_vfio_device *dev = NULL, *dev2 = NULL;
	struct vgb_vfio_range range = { 0, 4096 };
	struct vgb_segment seg;
	int r;

	logcap_start();
	r = vgb_vfio_vdev_create("dmabuf=off,reset=off,mmap=off,bar2=64K", &dev);
	tap_is_errno(r, 0, "device with every optional capability off");
	if (r < 0) {
		logcap_stop();
		return;
	}
	tap_is_int(dev->dmabuf_probe, VGB_VFIO_PROBE_ENOTTY, "probe saw ENOTTY");
	tap_is_errno(vgb_vfio_create_dmabuf(dev, 2, &range, 1), -EOPNOTSUPP,
		     "create_dmabuf without the capability");
	tap_is_errno(vgb_vfio_device_reset(dev), -EOPNOTSUPP, "reset without the capability");
	tap_is_errno(vgb_vfio_segment(dev, 2, 0, 4096, &seg), -EACCES,
		     "segment without the mmap capability");
	r = vgb_vfio_vdev_create("dmabuf=nodriver,bar2=64K", &dev2);
	tap_ok(r == 0 && dev2->dmabuf_probe == VGB_VFIO_PROBE_EOPNOTSUPP &&
		       dev2->dmabuf_probe_errno == -EOPNOTSUPP &&
		       !vgb_vfio_device_has_cap(dev2, VGB_VFIO_CAP_DMA_BUF),
	       "probe saw EOPNOTSUPP and cleared the capability");
	tap_is_errno(vgb_vfio_create_dmabuf(dev2, 2, &range, 1), -EOPNOTSUPP,
		     "create_dmabuf on a driver without the feature");
	logcap_stop();
	tap_ok(logcap_count() > 0, "the paths did log (at debug): the capture works");
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "nothing above debug on capability-off paths %s", logcap_last_loud());
	vgb_vfio_device_destroy(dev);
	vgb_vfio_device_destroy(dev2);
}

/* Creation under fd exhaustion: every memfd step fails in turn, and nothing leaks. */
static void test_unwind_emfile(void)
{
	struct leak_snapshot before;
	struct rlimit old, lim;
	int pad[16], npad = 0, failures = 0, successes = 0;

	leak_snapshot(&before);
	getrlimit(RLIMIT_NOFILE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)leak_count_fds() + 8;
	setrlimit(RLIMIT_NOFILE, &lim);
	/* Fill every free slot, then give back one more slot per round: 0, 1, 2, ... fds. */
	while (npad < 16) {
		int fd = dup(0);

		if (fd < 0)
			break;
		pad[npad++] = fd;
	}
	for (int k = 0; k <= 4; k++) {
		struct vgb_vfio_device *dev = NULL;
		int r;

		if (k > 0 && npad > 0)
			close(pad[--npad]);
		r = vgb_vfio_vdev_create("bar0=4K,bar2=64K,bar4=4K", &dev);
		if (r == 0)
			successes++;
		else if (r == -EMFILE)
			failures++;
		else
			tap_diag("unexpected %d with %d spare fds", r, k);
		vgb_vfio_device_destroy(dev);
	}
	while (npad > 0)
		close(pad[--npad]);
	setrlimit(RLIMIT_NOFILE, &old);
	/* 3 memfds: 0, 1 and 2 spare fds fail, 3 and 4 succeed. */
	tap_is_int(failures, 3, "EMFILE at each of the 3 memfds");
	tap_is_int(successes, 2, "then success");
	leak_check(&before, "vdev creation under fd exhaustion");
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	leak_snapshot(&before);
	test_spec_table();
	test_default();
	test_cache();
	test_io();
	test_caps_off_quiet();
	test_unwind_emfile();
	leak_check(&before, "whole test");
	return tap_done();
}
