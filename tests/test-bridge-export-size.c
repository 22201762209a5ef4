/* SPDX-License-Identifier: MIT */
/*
 * The planner checks the size of every dmabuf it gets (lseek SEEK_END) against the blob's:
 * the fake VFIO kernel (tests/lib/fake-vfio.h) plays a driver whose VFIO dmabuf, or a kernel
 * whose udmabuf, comes back a page short. The export is dropped without leaking its fd, the
 * failure is reported (once per blob through the gpu) and the blob falls to the next
 * strategy; the CPU view still shows the right bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "export.h"
#include "fake-vfio.h"
#include "gpu.h"
#include "leak.h"
#include "logcap.h"
#include "memmap.h"
#include "private.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PG 4096u
#define RAM_SIZE (1u << 20)
#define BAR_GPA 0x100000000ull

static struct fake_vfio *f;
static struct vgb_memmap *map;

static struct vgb_blob_layout *layout_at(uint64_t gpa, uint32_t pages)
{
	struct virtio_gpu_mem_entry e = { .addr = htole64(gpa), .length = htole32(pages * PG) };
	struct vgb_blob_layout *l;

	if (vgb_blob_translate(map, &e, 1, (uint64_t)pages * PG, 16, 1 << 30, &l) < 0)
		tap_bail("translate");
	return l;
}

static off_t fd_size(int fd)
{
	return lseek(fd, 0, SEEK_END);
}

static void fill_bar(uint64_t off, uint32_t len, uint8_t v);
static int ram_fd = -1;
static uint8_t page[PG];

static void plan_case(uint64_t gpa, enum vgb_export_strategy good, const char *what)
{
	struct vgb_blob_layout *l;
	struct vgb_export_report rep;
	struct leak_snapshot before;
	struct vgb_export *e;
	int *err = good == VGB_EXPORT_VFIO_DMABUF ? &rep.vfio_err : &rep.udmabuf_err;
	uint64_t *short_bytes = good == VGB_EXPORT_VFIO_DMABUF ? &f->dmabuf_short_bytes
							      : &f->udmabuf_short_bytes;

	if (gpa >= BAR_GPA)
		fill_bar(gpa - BAR_GPA, 4 * PG, 0x77);
	else if (pwrite(ram_fd, memset(page, 0x77, PG), PG, (off_t)gpa) != PG ||
		 pwrite(ram_fd, page, PG, (off_t)(gpa + 3 * PG)) != PG)
		tap_bail("pwrite RAM");
	l = layout_at(gpa, 4);
	tap_is_int(vgb_export_plan(l, &e, &rep), 0, "%s: plan", what);
	tap_is_uint(e->strategy, good, "  a blob of 4 pages: %s", vgb_export_strategy_name(good));
	tap_ok(e->dmabuf_fd >= 0 && fd_size(e->dmabuf_fd) == 4 * PG && !rep.unexpected,
	       "  its dmabuf is 4 pages, nothing unexpected");
	vgb_export_unref(e);

	leak_snapshot(&before);
	*short_bytes = PG;
	tap_is_int(vgb_export_plan(l, &e, &rep), 0, "%s a page short: plan", what);
	tap_is_uint(e->strategy, VGB_EXPORT_CPU_VIEW, "  falls to the CPU view");
	tap_ok(e->dmabuf_fd == -1, "  no dmabuf kept");
	tap_is_errno(*err, -EMSGSIZE, "  reported as -EMSGSIZE");
	tap_ok(rep.unexpected, "  as an unexpected failure");
	tap_is_int(vgb_export_cpu_view(e, l), 0, "  CPU view built");
	tap_ok(e->cpu && e->cpu[0] == 0x77 && e->cpu[4 * PG - 1] == 0x77,
	       "  and shows the blob's bytes");
	vgb_export_unref(e);
	leak_check(&before, "  the dropped dmabuf");
	*short_bytes = 0;
	free(l);
}

static void fill_bar(uint64_t off, uint32_t len, uint8_t v)
{
	memset(page, v, sizeof(page));
	for (uint32_t d = 0; d < len; d += PG)
		if (pwrite(f->device_fd, page, PG, (off_t)(fake_vfio_region_offset(2) + off + d)) !=
		    PG)
			tap_bail("pwrite BAR");
}

static void test_gpu_reports_once(void)
{
	struct {
		struct virtio_gpu_resource_create_blob b;
		struct virtio_gpu_mem_entry e;
	} m = { .b = { .hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
		       .resource_id = htole32(1), .blob_mem = htole32(VIRTIO_GPU_BLOB_MEM_GUEST),
		       .nr_entries = htole32(1), .size = htole64(16 * PG) },
		.e = { .addr = htole64(BAR_GPA), .length = htole32(16 * PG) } };
	struct virtio_gpu_set_scanout_blob sb = {
		.hdr.type = htole32(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB), .resource_id = htole32(1),
		.width = htole32(64), .height = htole32(64),
		.format = htole32(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM), .strides = { htole32(256) },
		.r = { 0, 0, htole32(64), htole32(64) },
	};
	struct virtio_gpu_resource_flush fl = {
		.hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_FLUSH), .resource_id = htole32(1),
		.r = { 0, 0, htole32(64), htole32(64) },
	};
	struct vgb_gpu_config cfg = { 0 };
	uint8_t resp[VGB_GPU_MAX_RESP];
	struct vgb_gpu_stats st;
	struct vgb_dmabuf buf;
	struct vgb_gpu *gpu;
	size_t n;
	uint32_t type;

	vgb_gpu_limits_init(&cfg.limits);
	if (vgb_gpu_create(map, &cfg, &gpu) < 0)
		tap_bail("gpu");
	fill_bar(0, 16 * PG, 0x5a);
	f->dmabuf_short_bytes = PG;
	logcap_start();
	vgb_gpu_process(gpu, &m, sizeof(m), resp, sizeof(resp), &n, 1);
	memcpy(&type, resp, 4);
	tap_is_uint(le32toh(type), VIRTIO_GPU_RESP_OK_NODATA, "gpu: a BAR blob whose dmabuf is short");
	vgb_gpu_process(gpu, &sb, sizeof(sb), resp, sizeof(resp), &n, 2);
	for (int i = 0; i < 3; i++) {
		vgb_gpu_process(gpu, &fl, sizeof(fl), resp, sizeof(resp), &n, 3);
		memcpy(&type, resp, 4);
		if (le32toh(type) != VIRTIO_GPU_RESP_OK_NODATA)
			break;
	}
	tap_is_uint(le32toh(type), VIRTIO_GPU_RESP_OK_NODATA, "  it is shown (3 flushes)");
	vgb_gpu_get_stats(gpu, &st);
	tap_is_uint(st.export_failures, 1, "  one export failure counted");
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_WARN), 1, "  one warning: %s",
		    logcap_last_loud());
	tap_ok(strstr(logcap_last_loud(), "blob 1") != NULL, "  naming the blob");
	logcap_stop();
	tap_is_uint(st.blobs_by_strategy[VGB_EXPORT_CPU_VIEW], 1, "  the blob is a CPU view");
	tap_is_errno(vgb_gpu_export_blob(gpu, 1, &buf, NULL), -EOPNOTSUPP,
		     "  EXPORT_BLOB: no dmabuf to hand out");
	f->dmabuf_short_bytes = 0;
	vgb_gpu_destroy(gpu);
}

int main(void)
{
	char root[] = "/tmp/vgb-export-size-XXXXXX", dev_path[128], params[128];
	struct leak_snapshot before;
	struct vgb_vfio_device *dev;
	int ram, fd;

	tap_plan_lazy();
	f = fake_vfio_create();
	if (!f || !mkdtemp(root) || fake_vfio_make_tree(f, root) < 0)
		tap_bail("fake setup failed");
	snprintf(dev_path, sizeof(dev_path), "%s/dev/udmabuf", root);
	snprintf(params, sizeof(params), "%s/sys/module/udmabuf/parameters", root);
	vgb_udmabuf_set_paths(dev_path, params);
	fake_vfio_install(f);
	leak_snapshot(&before);

	fd = fake_vfio_dup_device(f);
	if (fd < 0 || vgb_vfio_kernel_adopt(fd, "fake", &dev) < 0)
		tap_bail("adopt");
	ram = ram_fd = memfd_create("ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (ram < 0 || ftruncate(ram, RAM_SIZE) < 0 || vgb_memmap_create(&map) < 0 ||
	    vgb_memmap_add_ram(map, 0, RAM_SIZE, ram, 0, NULL) < 0 ||
	    vgb_memmap_add_vfio(map, BAR_GPA, 1 << 20, dev, 2, 0, NULL) < 0)
		tap_bail("memory map");
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), "the fake device has DMA_BUF");
	tap_ok(vgb_udmabuf_is_available(), "the fake /dev/udmabuf is there");

	plan_case(BAR_GPA + 8 * PG, VGB_EXPORT_VFIO_DMABUF, "VFIO dmabuf");
	plan_case(16 * PG, VGB_EXPORT_UDMABUF, "udmabuf");
	test_gpu_reports_once();

	vgb_memmap_destroy(map);
	vgb_vfio_device_destroy(dev);
	close(ram);
	leak_check(&before, "whole test");
	fake_vfio_remove();
	fake_vfio_destroy(f);
	vgb_udmabuf_set_paths(NULL, NULL);
	return tap_done();
}
