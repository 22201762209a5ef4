/* SPDX-License-Identifier: MIT */
/*
 * Guest blobs: window removal under a frame in flight, CPU-view budgets, VFIO export and
 * device reset, memory decode off, and an unexpected export failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <drm_fourcc.h>
#include <inttypes.h>
#include <linux/virtio_gpu.h>

#include "fake-udmabuf.h"
#include "fault.h"
#include "gpu-fixture.h"
#include "leak.h"
#include "tap.h"
#include "vgb/util.h"
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include "logcap.h"
#include "vgb/sys.h"

static void test_window_removal(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;
	struct vgb_dmabuf buf;
	enum vgb_export_strategy strat;
	struct virtio_gpu_resource_flush f = flush_cmd(5, 64, 64, 50);
	const uint8_t *held;
	uint32_t v;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, &sink->base, NULL);
	draw(&g, fb_pages, 4, 64, 64, 256, 3);
	setup_blob_scanout(&g, gpu, 5);
	n_dones = 0;
	SEND(gpu, f);
	held = sink->frames[0].cpu_data;
	tap_is_int(vgb_memmap_remove(g.map, g.ram_id), 0, "remove the RAM window under the blob");
	tap_ok(sink->n_disables == 1, "its scanout is disabled on the display");
	memcpy(&v, held, 4);
	tap_ok(v == px(0, 0, 3), "the frame the sink still holds stays readable");
	memcpy(&v, held + 63 * 256 + 63 * 4, 4);
	tap_ok(v == px(63, 63, 3), "  to its last pixel");
	f = flush_cmd(5, 64, 64, 0);
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		    "flush of the invalidated blob: INVALID_PARAMETER");
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_set_scanout_blob[]){ scanout_blob(
				      0, 5, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64, 256, 0) }),
		    VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "SET_SCANOUT_BLOB of it too");
	tap_is_errno(vgb_gpu_export_blob(gpu, 5, &buf, &strat), -ESTALE, "export: ESTALE");
	record_sink_complete(sink, 0, 0);
	tap_ok(n_dones == 1 && le64toh(dones[0].hdr.fence_id) == 50,
	       "the held frame's fence still completes");
	vgb_gpu_get_stats(gpu, &st);
	tap_is_uint(st.blobs_invalidated, 1, "stats: one blob invalidated");
	tap_is_uint(st.blobs_by_strategy[VGB_EXPORT_CPU_VIEW], 0,
		    "its export was released (no live blob counted)");
	tap_ok(sink->n_forgets >= 1 && sink->last_forget == sink->frames[0].frame.buffer_id,
	       "the display was told to forget its buffer");
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_unref[]){
				      { H(VIRTIO_GPU_CMD_RESOURCE_UNREF), htole32(5), 0 } }),
		    VIRTIO_GPU_RESP_OK_NODATA, "the invalid blob can be unreferenced");
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void few_mmaps(struct vgb_gpu_config *cfg)
{
	cfg->limits.max_view_mmaps = 3;
}

static void no_room(struct vgb_gpu_config *cfg)
{
	cfg->limits.max_view_mmaps = 3;
	cfg->limits.max_host_bytes = 8192;
}

static void test_view_budgets(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;

	guest_init(&g, NULL);
	sink->auto_complete = true;
	gpu = make_gpu(&g, &sink->base, few_mmaps);
	draw(&g, fb_pages, 4, 64, 64, 256, 6);
	setup_blob_scanout(&g, gpu, 5);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA,
		    "4 segments over a budget of 3 mmaps: the flush works");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(frame_is(&sink->frames[0], 64, 64, 6) && st.copies == 1,
	       "  through a copied view, with the right pixels");
	vgb_gpu_destroy(gpu);
	record_sink_clear(sink);

	gpu = make_gpu(&g, &sink->base, no_room);
	setup_blob_scanout(&g, gpu, 5);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
		    "no mmap budget and 8 KiB of host memory for a 16 KiB copy: OUT_OF_MEMORY");
	tap_is_uint(sink->n_frames, 0, "  nothing presented");
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void test_vfio_export_and_reset(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;
	struct vgb_dmabuf buf;
	enum vgb_export_strategy strat = VGB_EXPORT_NONE;
	/* The framebuffer in BAR pages, scattered. */
	uint64_t bar[4] = { 32 * MiB + 0x10000, 32 * MiB + 0x3000, 32 * MiB + 0x4000,
			    32 * MiB + 0x9000 };
	uint64_t ram[1] = { 0x700000 };
	uint32_t lens[4] = { PG, PG, PG, PG };
	uint64_t first_id;
	int r;

	guest_init(&g, "bar2=4M,dmabuf=auto");
	sink->auto_complete = true;
	gpu = make_gpu(&g, &sink->base, NULL);
	/* Pixels into the BAR through region writes. */
	for (uint32_t y = 0; y < 64; y++)
		for (uint32_t x = 0; x < 64; x++) {
			uint64_t off = (uint64_t)y * 256 + x * 4;
			uint32_t v = px(x, y, 4);

			vgb_vfio_region_write(g.dev, 2, bar[off / PG] - 32 * MiB + off % PG, &v, 4);
		}
	tap_is_uint(create_blob(gpu, 6, bar, lens, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "BAR blob created");
	tap_is_uint(create_blob(gpu, 7, ram, lens, 1), VIRTIO_GPU_RESP_OK_NODATA,
		    "RAM blob created");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.blobs_by_strategy[VGB_EXPORT_VFIO_DMABUF] == 1 &&
		       st.blobs_by_strategy[VGB_EXPORT_UDMABUF] == 1,
	       "planner: VFIO dmabuf for the BAR blob, udmabuf for the RAM blob");
	r = vgb_gpu_export_blob(gpu, 6, &buf, &strat);
	tap_ok(r == 0 && strat == VGB_EXPORT_VFIO_DMABUF && buf.fd[0] >= 0 && buf.n_planes == 1,
	       "EXPORT_BLOB hands out a dmabuf fd (%d)", r);
	vgb_dmabuf_finish(&buf);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_set_scanout_blob[]){ scanout_blob(
				      0, 6, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64, 256, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "scanout on the BAR blob (ARGB)");
	r = vgb_gpu_export_blob(gpu, 6, &buf, NULL);
	tap_ok(r == 0 && buf.width == 64 && buf.height == 64 && buf.stride[0] == 256 &&
		       buf.fourcc == DRM_FORMAT_ARGB8888 && buf.modifier == DRM_FORMAT_MOD_LINEAR,
	       "EXPORT_BLOB layout follows the last SET_SCANOUT_BLOB");
	vgb_dmabuf_finish(&buf);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "flush");
	tap_ok(sink->frames[0].had_dmabuf && sink->frames[0].had_cpu &&
		       frame_is(&sink->frames[0], 64, 64, 4),
	       "the frame carries the dmabuf and a CPU view with the BAR's pixels");
	first_id = sink->frames[0].frame.buffer_id;

	vgb_vfio_device_reset(g.dev);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "flush after a device reset");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.exports_dropped == 1 && st.exports_by_strategy[VGB_EXPORT_VFIO_DMABUF] == 2,
	       "the export was dropped and made again");
	tap_ok(sink->frames[1].frame.buffer_id != first_id && sink->last_forget == first_id,
	       "with a new buffer id, the old one forgotten");
	tap_is_errno(vgb_gpu_export_blob(gpu, 99, &buf, NULL), -ENOENT, "export of unknown: ENOENT");
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void set_decode(struct vgb_vfio_device *dev, bool on)
{
	uint16_t cmd = 0;

	vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
	cmd = on ? (uint16_t)(cmd | PCI_COMMAND_MEMORY) : (uint16_t)(cmd & ~PCI_COMMAND_MEMORY);
	vgb_vfio_region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, &cmd, 2);
}

/*
 * The guest owns its device's command register. With memory decode off under a BAR blob, a
 * flush fails (ERR_UNSPEC) instead of showing a revoked dmabuf or faulting on the view, the
 * export is dropped, EXPORT_BLOB refuses, and a blob can still be created; once decode is back
 * on the next flush plans a new VFIO dmabuf. A sink whose guarded copy faulted (done with
 * -EIO) makes the next flush re-plan too.
 */
static void test_decode_off(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;
	struct vgb_dmabuf buf;
	uint64_t bar[4] = { 32 * MiB + 0x10000, 32 * MiB + 0x3000, 32 * MiB + 0x4000,
			    32 * MiB + 0x9000 };
	uint32_t lens[4] = { PG, PG, PG, PG };
	uint64_t ids[2];

	guest_init(&g, "bar2=4M,dmabuf=auto");
	sink->auto_complete = true;
	gpu = make_gpu(&g, &sink->base, NULL);
	for (uint32_t y = 0; y < 64; y++)
		for (uint32_t x = 0; x < 64; x++) {
			uint64_t off = (uint64_t)y * 256 + x * 4;
			uint32_t v = px(x, y, 5);

			vgb_vfio_region_write(g.dev, 2, bar[off / PG] - 32 * MiB + off % PG, &v, 4);
		}
	tap_is_uint(create_blob(gpu, 6, bar, lens, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "decode: BAR blob created");
	SEND(gpu, *(struct virtio_gpu_set_scanout_blob[]){
			  scanout_blob(0, 6, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64, 256, 0) });
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "decode on: flush");
	tap_ok(sink->n_frames == 1 && sink->frames[0].had_dmabuf && frame_is(&sink->frames[0], 64, 64, 5),
	       "decode on: a frame with the dmabuf and the BAR's pixels");

	set_decode(g.dev, false);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_ERR_UNSPEC, "decode off: the flush fails");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(sink->n_frames == 1 && st.exports_dropped == 1 &&
		       st.blobs_by_strategy[VGB_EXPORT_VFIO_DMABUF] == 0,
	       "decode off: no frame shown, the export dropped (%u frames, %" PRIu64 " dropped)",
	       sink->n_frames, st.exports_dropped);
	tap_is_errno(vgb_gpu_export_blob(gpu, 6, &buf, NULL), -EIO,
		     "decode off: EXPORT_BLOB refuses with -EIO (no revoked dmabuf handed out)");
	tap_is_uint(create_blob(gpu, 8, bar, lens, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "decode off: a blob can still be created (planned on first use)");
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_ERR_UNSPEC, "decode off: the next flush fails too");

	set_decode(g.dev, true);
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "decode back on: flush");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(sink->n_frames == 2 && sink->frames[1].had_dmabuf &&
		       frame_is(&sink->frames[1], 64, 64, 5) &&
		       st.exports_by_strategy[VGB_EXPORT_VFIO_DMABUF] == 2,
	       "decode back on: a new VFIO dmabuf export and the BAR's pixels");
	tap_is_errno(vgb_gpu_export_blob(gpu, 8, &buf, NULL), 0,
		     "decode back on: the blob created with decode off exports");
	vgb_dmabuf_finish(&buf);

	/* The sink's copy of the view faulted (its guarded copy gave -EIO). */
	sink->auto_complete = false;
	SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) });
	ids[0] = sink->frames[2].frame.buffer_id;
	record_sink_complete(sink, 2, -EIO);
	sink->auto_complete = true;
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(6, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "after a frame failed with -EIO: flush");
	vgb_gpu_get_stats(gpu, &st);
	ids[1] = sink->frames[3].frame.buffer_id;
	tap_ok(sink->n_frames == 4 && st.exports_by_strategy[VGB_EXPORT_VFIO_DMABUF] == 4 &&
		       ids[1] != ids[0] && frame_is(&sink->frames[3], 64, 64, 5),
	       "the failed frame's export was re-made (%" PRIu64 " VFIO exports)",
	       st.exports_by_strategy[VGB_EXPORT_VFIO_DMABUF]);
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void test_unexpected_export_failure(void)
{
	struct guest g;
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;
	uint64_t ram[1] = { 0x700000 };
	uint32_t lens[1] = { PG };

	guest_init(&g, NULL);
	gpu = make_gpu(&g, NULL, NULL);
	logcap_start();
	fault_install();
	fault_arm_ioctl(1, EIO);
	tap_is_uint(create_blob(gpu, 7, ram, lens, 1), VIRTIO_GPU_RESP_OK_NODATA,
		    "udmabuf failing with EIO: the blob is still created");
	fault_remove();
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.blobs_by_strategy[VGB_EXPORT_CPU_VIEW] == 1 && st.export_failures == 1,
	       "  on its CPU view, the failure counted");
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_WARN), 1, "  and logged once as a warning");
	logcap_stop();
	vgb_gpu_destroy(gpu);
	guest_finish(&g);
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	fake_udmabuf_install();
	fake_udmabuf_set_absent(true);
	leak_snapshot(&before);
	gf_run("test_window_removal", test_window_removal);
	gf_run("test_view_budgets", test_view_budgets);
	fake_udmabuf_set_absent(false);
	gf_run("test_vfio_export_and_reset", test_vfio_export_and_reset);
	gf_run("test_decode_off", test_decode_off);
	gf_run("test_unexpected_export_failure", test_unexpected_export_failure);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
