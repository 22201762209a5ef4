/* SPDX-License-Identifier: MIT */
/*
 * The cursor queue: UPDATE_CURSOR from a 64x64 2D resource, MOVE_CURSOR, hiding it.
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
#include "logcap.h"
#include "tap.h"
#include "vgb/util.h"

static void test_cursor(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	uint64_t addr[4] = { 0x40000, 0x30000, 0x20000, 0x10000 };
	uint32_t len[4] = { PG, PG, PG, PG };
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(1),
	};

	guest_init(&g, NULL);
	gpu = make_gpu(&g, &sink->base, NULL);
	draw(&g, addr, 4, 64, 64, 256, 1);
	if (create_2d(gpu, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64) != VIRTIO_GPU_RESP_OK_NODATA ||
	    attach(gpu, 1, addr, len, 4) != VIRTIO_GPU_RESP_OK_NODATA ||
	    SEND(gpu, t) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("cursor: a 64x64 2D image");
	/* Cursor from a 64x64 2D resource. */
	{
		struct virtio_gpu_update_cursor uc = {
			.hdr = H(VIRTIO_GPU_CMD_UPDATE_CURSOR),
			.pos = { .x = htole32(100), .y = htole32(50) },
			.resource_id = htole32(1), .hot_x = htole32(3), .hot_y = htole32(4),
		};
		struct virtio_gpu_update_cursor mc = {
			.hdr = H(VIRTIO_GPU_CMD_MOVE_CURSOR),
			.pos = { .x = htole32(7), .y = htole32(9) },
		};

		tap_is_uint(SEND(gpu, uc), VIRTIO_GPU_RESP_OK_NODATA, "cursor: update");
		tap_ok(sink->cursor_visible && sink->cursor_w == 64 &&
			       sink->cursor_first_pixel == px(0, 0, 1),
		       "cursor: the sink got the 64x64 image");
		tap_is_uint(SEND(gpu, mc), VIRTIO_GPU_RESP_OK_NODATA, "cursor: move");
		tap_ok(sink->cursor_x == 7 && sink->cursor_y == 9, "cursor: moved to (7, 9)");
		uc.resource_id = 0;
		tap_is_uint(SEND(gpu, uc), VIRTIO_GPU_RESP_OK_NODATA, "cursor: hide");
		tap_ok(!sink->cursor_visible, "cursor: hidden");
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
	gf_run("test_cursor", test_cursor);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
