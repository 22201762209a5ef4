/* SPDX-License-Identifier: MIT */
/*
 * Fences: completion when the display takes a frame, order within a timeline, the deadline,
 * a display that completes inside present, no display, and destroy with frames held.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
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
#include "logcap.h"

static void test_blob_fences(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct virtio_gpu_resource_flush f;
	struct vgb_gpu_stats st;
	uint64_t c1, c2;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, &sink->base, NULL);
	logcap_start();
	draw(&g, fb_pages, 4, 64, 64, 256, 1);
	setup_blob_scanout(&g, gpu, 5);
	n_dones = 0;

	f = flush_cmd(5, 64, 64, 100);
	c1 = next_cookie;
	tap_is_int(SEND(gpu, f), 0, "fenced flush is deferred while the sink holds the frame");
	tap_ok(last.rc == 1 && n_dones == 0, "  no completion yet");
	tap_ok(sink->n_frames == 1 && frame_is(&sink->frames[0], 64, 64, 1),
	       "  the frame shows the guest's pixels (gathered from 4 pages)");
	tap_ok(sink->frames[0].frame.fourcc == DRM_FORMAT_XRGB8888 &&
		       sink->frames[0].frame.buffer_id != 0, "  XRGB8888 with a buffer id");
	tap_ok(vgb_gpu_next_timeout_ms(gpu) >= 0, "  a fence deadline is pending");
	record_sink_complete(sink, 0, 0);
	tap_ok(n_dones == 1 && dones[0].cookie == c1, "completing the frame completes the fence");
	tap_ok(le32toh(dones[0].hdr.type) == VIRTIO_GPU_RESP_OK_NODATA &&
		       (le32toh(dones[0].hdr.flags) & VIRTIO_GPU_FLAG_FENCE) &&
		       le64toh(dones[0].hdr.fence_id) == 100 && dones[0].len == 24,
	       "  OK_NODATA with the fence flag and fence_id 100");
	tap_is_int(vgb_gpu_next_timeout_ms(gpu), -1, "  no deadline left");

	/* Order: the second frame completes first; nothing may complete before fence 101. */
	draw(&g, fb_pages, 4, 64, 64, 256, 2);
	f = flush_cmd(5, 64, 64, 101);
	c1 = next_cookie;
	SEND(gpu, f);
	f = flush_cmd(5, 64, 64, 102);
	c2 = next_cookie;
	SEND(gpu, f);
	{
		struct virtio_gpu_update_cursor mc = {
			.hdr = HF(VIRTIO_GPU_CMD_MOVE_CURSOR, 103),
		};
		struct virtio_gpu_update_cursor mc2 = { .hdr = H(VIRTIO_GPU_CMD_MOVE_CURSOR) };

		tap_is_int(SEND(gpu, mc), 0, "a fenced command behind pending fences waits");
		tap_is_uint(SEND(gpu, mc2), VIRTIO_GPU_RESP_OK_NODATA,
			    "an unfenced command answers at once");
	}
	tap_ok(frame_is(&sink->frames[1], 64, 64, 2), "the new frame shows the new pixels");
	tap_ok(sink->frames[2].frame.buffer_id == sink->frames[1].frame.buffer_id,
	       "same blob, same buffer id");
	n_dones = 0;
	record_sink_complete(sink, 2, 0);
	tap_is_uint(n_dones, 0, "the later frame's completion waits for the earlier fence");
	record_sink_complete(sink, 1, -ECANCELED);
	tap_ok(n_dones == 3 && dones[0].cookie == c1 && dones[1].cookie == c2 &&
		       le64toh(dones[2].hdr.fence_id) == 103,
	       "then all three complete in order (101, 102, 103)");

	/* Deadline: the sink never completes; the fence completes at the deadline. */
	n_dones = 0;
	f = flush_cmd(5, 64, 64, 104);
	SEND(gpu, f);
	{
		int ms = vgb_gpu_next_timeout_ms(gpu);
		struct timespec ts = { 0, 25 * 1000000 };

		tap_ok(ms >= 0 && ms <= 20, "deadline within the 20 ms default (%d ms)", ms);
		nanosleep(&ts, NULL);
	}
	vgb_gpu_dispatch_timeouts(gpu);
	tap_ok(n_dones == 1 && le64toh(dones[0].hdr.fence_id) == 104,
	       "a frame the sink never takes: the fence completes at its deadline");
	record_sink_complete(sink, 3, 0);
	tap_is_uint(n_dones, 1, "the late completion does not complete it twice");

	/* Ring timelines: fences on different rings do not wait for each other. */
	n_dones = 0;
	f = flush_cmd(5, 64, 64, 105);
	f.hdr.flags = htole32(VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX);
	f.hdr.ring_idx = 1;
	f.hdr.ctx_id = htole32(3);
	SEND(gpu, f);
	{
		struct virtio_gpu_update_cursor mc = { .hdr = HF(VIRTIO_GPU_CMD_MOVE_CURSOR, 106) };
		struct virtio_gpu_ctrl_hdr h;

		tap_is_uint(SEND(gpu, mc), VIRTIO_GPU_RESP_OK_NODATA,
			    "a fence on another timeline answers at once");
		record_sink_complete(sink, 4, 0);
		tap_ok(n_dones == 1, "the ring-1 fence completes with its frame");
		h = dones[0].hdr;
		tap_ok(le32toh(h.flags) == (VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX) &&
			       h.ring_idx == 1 && le32toh(h.ctx_id) == 3 &&
			       le64toh(h.fence_id) == 105,
		       "  its response echoes fence_id, ctx_id and ring_idx");
	}

	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.commands[VGB_GPU_STAT_RESOURCE_FLUSH] == 5 &&
		       st.commands[VGB_GPU_STAT_RESOURCE_CREATE_BLOB] == 1 &&
		       st.commands[VGB_GPU_STAT_MOVE_CURSOR] == 3,
	       "stats: commands by type");
	tap_ok(st.fences_timed_out == 1 && st.fences_completed == 7,
	       "stats: 7 fences completed, 1 at its deadline (%llu, %llu)",
	       (unsigned long long)st.fences_completed, (unsigned long long)st.fences_timed_out);
	tap_ok(st.blobs_by_strategy[VGB_EXPORT_CPU_VIEW] == 1 && st.errors == 0 &&
		       st.blob_segments == 4 && st.resources == 1,
	       "stats: one cpu-view blob of 4 segments, no errors");
	tap_is_uint(logcap_count_at_or_above(VGB_LOG_INFO), 0,
		    "the whole blob path logs nothing above debug");
	logcap_stop();
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void test_sync_and_no_display(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct virtio_gpu_resource_flush f = flush_cmd(5, 64, 64, 7);

	guest_init(&g, NULL);
	sink->auto_complete = true;
	gpu = make_gpu(&g, &sink->base, two_scanouts);
	setup_blob_scanout(&g, gpu, 5);
	n_dones = 0;
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA,
		    "a sink that completes inside present: the fenced flush answers at once");
	tap_ok(n_dones == 0 && (le32toh(((struct virtio_gpu_ctrl_hdr *)last.buf)->flags) &
				VIRTIO_GPU_FLAG_FENCE), "  with the fence flag, not via the callback");
	sink->present_result = -EPIPE;
	f.hdr.fence_id = htole64(8);
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA,
		    "a sink that refuses the frame: the flush still answers OK");
	vgb_gpu_destroy(gpu);

	gpu = make_gpu(&g, NULL, NULL);
	setup_blob_scanout(&g, gpu, 5);
	tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_NODATA, "no display: fenced flush answers OK");
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

static void test_destroy_with_frames_held(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct leak_snapshot before;

	guest_init(&g, NULL);
	leak_snapshot(&before);
	for (int round = 0; round < 20; round++) {
		gpu = make_gpu(&g, &sink->base, NULL);
		setup_blob_scanout(&g, gpu, 5);
		n_dones = 0;
		SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 9) });
		/* The client goes away with a fenced frame still in the sink. */
		vgb_gpu_destroy(gpu);
		record_sink_complete_all(sink, -ECANCELED);
		if (n_dones != 0)
			break;
		record_sink_clear(sink);
	}
	tap_is_uint(n_dones, 0, "no fence completion after destroy");
	leak_check(&before, "20 clients destroyed with frames in flight");
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
	gf_run("test_blob_fences", test_blob_fences);
	gf_run("test_sync_and_no_display", test_sync_and_no_display);
	gf_run("test_destroy_with_frames_held", test_destroy_with_frames_held);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
