/* SPDX-License-Identifier: MIT */
/*
 * The 2D path through the 2D renderer: create, attach, transfer (read through the layout or
 * through one mapping of the backing), scanout, flush, detach, unref.
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
#include "gpu-fixture.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "vgb/util.h"
#include "fault.h"
#include "vgb/sys.h"

/* ---- 2D transfers through a mapping of the backing ---- */

static ssize_t (*prev_pread)(int fd, void *buf, size_t len, off_t off);
static unsigned n_preads;

static ssize_t counting_pread(int fd, void *buf, size_t len, off_t off)
{
	n_preads++;
	return prev_pread(fd, buf, len, off);
}

static void one_view_mmap(struct vgb_gpu_config *cfg)
{
	cfg->limits.max_view_mmaps = 1;
}

/* Full and partial transfers of a 64x64 resource over 4 scattered pages, then a flush. */
static void transfer_and_check(struct guest *g, struct vgb_gpu *gpu, struct record_sink *sink,
			       const uint64_t *addr, const char *what)
{
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(1),
	};
	struct virtio_gpu_resource_flush f = flush_cmd(1, 64, 64, 0);
	bool ok;

	draw(g, addr, 4, 64, 64, 256, 3);
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "%s: transfer all", what);
	draw(g, addr, 4, 64, 64, 256, 4);
	t.r = R(5, 7, 50, 40); /* rows that cross page edges: 256-byte rows, 16 per page */
	t.offset = htole64(7 * 256 + 5 * 4);
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "%s: partial transfer", what);
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA, "%s: flush", what);
	ok = sink->n_frames > 0 && sink->frames[sink->n_frames - 1].pixels;
	for (uint32_t y = 0; ok && y < 64; y++)
		for (uint32_t x = 0; ok && x < 64; x++) {
			const struct record_frame *fr = &sink->frames[sink->n_frames - 1];
			uint32_t v, want = (x >= 5 && x < 55 && y >= 7 && y < 47) ? px(x, y, 4)
										 : px(x, y, 3);
			memcpy(&v, fr->pixels + ((size_t)y * 64 + x) * 4, 4);
			ok = v == want;
		}
	tap_ok(ok, "%s: the frame has every transferred pixel, nothing else", what);
}

static void test_2d_mapped_backing(void)
{
	uint64_t addr[4] = { 0x80000, 0x60000, 0x90000, 0x70000 };
	uint32_t len[4] = { PG, PG, PG, PG };
	struct virtio_gpu_set_scanout ss = {
		.hdr = H(VIRTIO_GPU_CMD_SET_SCANOUT), .r = R(0, 0, 64, 64), .resource_id = htole32(1),
	};
	struct virtio_gpu_resource_detach_backing d = {
		.hdr = H(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING), .resource_id = htole32(1),
	};
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(1),
	};
	struct record_sink *sink = record_sink_create();
	struct leak_snapshot before, outer;
	struct vgb_gpu *gpu;
	struct guest g;
	unsigned bad = 0;
	int maps;

	prev_pread = vgb_sys.pread;
	vgb_sys.pread = counting_pread;
	guest_init(&g, NULL);
	sink->auto_complete = true;

	/* Within the budget: mapped once at ATTACH_BACKING, transfers never pread. */
	leak_snapshot(&outer);
	gpu = make_gpu(&g, &sink->base, NULL);
	if (create_2d(gpu, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64) != VIRTIO_GPU_RESP_OK_NODATA || SEND(gpu, ss) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("mapped backing: setup");
	leak_snapshot(&before);
	tap_is_uint(attach(gpu, 1, addr, len, 4), VIRTIO_GPU_RESP_OK_NODATA, "mapped backing: attach 4 scattered pages");
	maps = leak_count_maps();
	tap_ok(maps > before.n_maps, "  the backing is mapped (%d -> %d mappings)", before.n_maps,
	       maps);
	n_preads = 0;
	transfer_and_check(&g, gpu, sink, addr, "mapped backing");
	tap_is_uint(n_preads, 0, "  transfers copied from the mapping: no pread");
	tap_is_uint(SEND(gpu, d), VIRTIO_GPU_RESP_OK_NODATA, "  detach");
	leak_check(&before, "  detach unmaps the backing");
	/* 1000 attach / transfer / detach cycles hold nothing. */
	for (unsigned i = 0; i < 1000; i++) {
		t.r = R(0, 0, 64, 64);
		bad += attach(gpu, 1, addr, len, 4) != VIRTIO_GPU_RESP_OK_NODATA;
		bad += SEND(gpu, t) != VIRTIO_GPU_RESP_OK_NODATA;
		bad += SEND(gpu, d) != VIRTIO_GPU_RESP_OK_NODATA;
	}
	tap_is_uint(bad, 0, "  1000 attach / transfer / detach cycles");
	leak_check(&before, "  after 1000 cycles");
	/* Destroyed with a backing mapped. */
	tap_is_uint(attach(gpu, 1, addr, len, 4), VIRTIO_GPU_RESP_OK_NODATA, "  attach again");
	vgb_gpu_destroy(gpu);
	leak_check(&outer, "  destroying the gpu unmaps a mapped backing");

	/* Over the mmap budget (4 segments, 1 allowed): the old path, still right. */
	gpu = make_gpu(&g, &sink->base, one_view_mmap);
	if (create_2d(gpu, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64) != VIRTIO_GPU_RESP_OK_NODATA || SEND(gpu, ss) != VIRTIO_GPU_RESP_OK_NODATA ||
	    attach(gpu, 1, addr, len, 4) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("budget: setup");
	n_preads = 0;
	transfer_and_check(&g, gpu, sink, addr, "backing over the mmap budget");
	tap_ok(n_preads > 0, "  read through the layout (%u preads)", n_preads);
	vgb_gpu_destroy(gpu);

	vgb_sys.pread = prev_pread;
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void test_2d(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	/* 64x64 XRGB = 16 KiB: backing as 4 scattered pages, reversed. */
	uint64_t addr[4] = { 0x40000, 0x30000, 0x20000, 0x10000 };
	uint32_t len[4] = { PG, PG, PG, PG };
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(1),
	};
	struct virtio_gpu_set_scanout ss = {
		.hdr = H(VIRTIO_GPU_CMD_SET_SCANOUT), .r = R(0, 0, 64, 64), .resource_id = htole32(1),
	};
	struct virtio_gpu_resource_flush f = flush_cmd(1, 64, 64, 0);
	struct vgb_gpu_stats st;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, &sink->base, NULL);
	draw(&g, addr, 4, 64, 64, 256, 1);
	tap_is_uint(create_2d(gpu, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64),
		    VIRTIO_GPU_RESP_OK_NODATA, "2D: create 64x64 XRGB");
	tap_is_uint(attach(gpu, 1, addr, len, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "2D: attach 4 scattered pages");
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "2D: transfer all");
	tap_is_uint(SEND(gpu, ss), VIRTIO_GPU_RESP_OK_NODATA, "2D: set scanout");
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA, "2D: flush");
	tap_is_uint(sink->n_frames, 1, "2D: one frame presented");
	tap_ok(frame_is(&sink->frames[0], 64, 64, 1), "2D: the frame shows the guest's pixels");
	tap_ok(sink->frames[0].frame.fourcc == DRM_FORMAT_XRGB8888 && !sink->frames[0].had_dmabuf &&
		       sink->frames[0].memfd >= 0,
	       "2D: XRGB8888, no dmabuf, host memfd offered for zero-copy shm");

	/* Partial transfer: only rows 10..19, x 8..23, using the guest's offset convention. */
	draw(&g, addr, 4, 64, 64, 256, 2);
	t.r = R(8, 10, 16, 10);
	t.offset = htole64(10 * 256 + 8 * 4);
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "2D: partial transfer");
	f.r = R(8, 10, 16, 10);
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA, "2D: flush the damage");
	{
		const struct record_frame *fr = &sink->frames[1];
		bool ok = fr->pixels != NULL;

		for (uint32_t y = 0; ok && y < 64; y++)
			for (uint32_t x = 0; ok && x < 64; x++) {
				uint32_t v, want = (x >= 8 && x < 24 && y >= 10 && y < 20)
							   ? px(x, y, 2) : px(x, y, 1);
				memcpy(&v, fr->pixels + ((size_t)y * 64 + x) * 4, 4);
				ok = v == want;
			}
		tap_ok(ok, "2D: only the transferred rectangle changed");
		tap_ok(fr->frame.damage.x == 8 && fr->frame.damage.y == 10 &&
			       fr->frame.damage.width == 16 && fr->frame.damage.height == 10,
		       "2D: damage passed through");
		tap_ok(fr->frame.buffer_id == sink->frames[0].frame.buffer_id &&
			       fr->frame.buffer_id != 0, "2D: same buffer id across flushes");
	}
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.copies == 2 && st.bytes_copied == 64 * 64 * 4 + 16 * 10 * 4,
	       "2D: stats count the copies (%llu, %llu bytes)", (unsigned long long)st.copies,
	       (unsigned long long)st.bytes_copied);

	{
		struct virtio_gpu_resource_detach_backing d = {
			.hdr = H(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING), .resource_id = htole32(1),
		};
		struct virtio_gpu_resource_unref u = {
			.hdr = H(VIRTIO_GPU_CMD_RESOURCE_UNREF), .resource_id = htole32(1),
		};

		tap_is_uint(SEND(gpu, d), VIRTIO_GPU_RESP_OK_NODATA, "2D: detach backing");
		t.r = R(0, 0, 64, 64);
		t.offset = 0;
		tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_ERR_UNSPEC, "2D: transfer without backing");
		tap_is_uint(SEND(gpu, u), VIRTIO_GPU_RESP_OK_NODATA, "2D: unref");
		tap_ok(sink->n_disables >= 1, "2D: unref of a shown resource disables its scanout");
	}
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	fake_udmabuf_install();
	fake_udmabuf_set_absent(true);
	leak_snapshot(&before);
	gf_run("test_2d", test_2d);
	gf_run("test_2d_mapped_backing", test_2d_mapped_backing);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
