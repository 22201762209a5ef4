/* SPDX-License-Identifier: MIT */
/*
 * GET_DISPLAY_INFO and GET_EDID: the modes and the generated EDID a guest parses.
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

static void test_display_info(void)
{
	struct guest g;
	struct virtio_gpu_ctrl_hdr c = H(VIRTIO_GPU_CMD_GET_DISPLAY_INFO);
	struct virtio_gpu_resp_display_info info;
	struct vgb_gpu *gpu;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, NULL, NULL);
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_OK_DISPLAY_INFO, "GET_DISPLAY_INFO");
	memcpy(&info, last.buf, sizeof(info));
	tap_is_uint(last.len, sizeof(info), "  response is the full display info");
	tap_ok(le32toh(info.pmodes[0].r.width) == 1280 && le32toh(info.pmodes[0].r.height) == 800 &&
		       le32toh(info.pmodes[0].enabled) == 1 && le32toh(info.pmodes[1].enabled) == 0,
	       "  scanout 0 enabled at 1280x800, scanout 1 absent");
	{
		size_t got = 0;
		uint8_t small[24];

		tap_is_errno(vgb_gpu_process(gpu, &c, sizeof(c), small, sizeof(small), &got, 1),
			     -ENOBUFS, "  a response buffer of 24 bytes is too small for it");
		tap_is_errno(vgb_gpu_process(gpu, &c, 23, small, sizeof(small), &got, 1), -EINVAL,
			     "  23 bytes are not a command header");
	}
	vgb_gpu_destroy(gpu);
	guest_finish(&g);
}

static void three_scanouts_1920x1080(struct vgb_gpu_config *cfg)
{
	cfg->limits.num_scanouts = 3;
	cfg->limits.display_width = 1920;
	cfg->limits.display_height = 1080;
}

static void huge_display(struct vgb_gpu_config *cfg)
{
	cfg->limits.display_width = 5120;
}

/* Decodes what a guest's EDID parser reads from a base block. */
static void check_edid(const uint8_t *e, uint32_t want_w, uint32_t want_h, const char *what)
{
	static const uint8_t header[8] = { 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0 };
	const uint8_t *dtd = e + 54;
	uint8_t sum = 0;
	uint32_t w, h, hblank, vblank, clock;
	bool named = false;

	for (unsigned i = 0; i < 128; i++)
		sum = (uint8_t)(sum + e[i]);
	tap_is_uint(sum, 0, "  %s: the 128 bytes sum to 0 mod 256", what);
	tap_ok(memcmp(e, header, 8) == 0, "  %s: EDID header", what);
	tap_ok(e[18] == 1 && e[19] == 4 && (e[20] & 0x80) && e[126] == 0,
	       "  %s: version 1.4, digital input, no extensions", what);
	clock = (uint32_t)dtd[0] | (uint32_t)dtd[1] << 8;
	w = dtd[2] | (uint32_t)(dtd[4] >> 4) << 8;
	hblank = dtd[3] | (uint32_t)(dtd[4] & 0xf) << 8;
	h = dtd[5] | (uint32_t)(dtd[7] >> 4) << 8;
	vblank = dtd[6] | (uint32_t)(dtd[7] & 0xf) << 8;
	tap_ok(clock != 0 && (e[24] & 0x02), "  %s: first descriptor is a timing, preferred",
	       what);
	tap_ok(w == want_w && h == want_h, "  %s: preferred mode decodes to %ux%u (got %ux%u)",
	       what, want_w, want_h, w, h);
	{
		/* refresh = clock / (htotal * vtotal), from what the descriptor says */
		double hz = clock * 10000.0 / ((double)(w + hblank) * (h + vblank));
		tap_ok(hz > 59.0 && hz < 61.0, "  %s: about 60 Hz (%.2f)", what, hz);
	}
	for (unsigned d = 72; d < 126; d += 18)
		if (e[d] == 0 && e[d + 1] == 0 && e[d + 3] == 0xfc &&
		    memcmp(e + d + 5, "vgbridge\n", 9) == 0)
			named = true;
	tap_ok(named, "  %s: a monitor name descriptor \"vgbridge\"", what);
}

static void test_edid(void)
{
	struct virtio_gpu_cmd_get_edid c = { .hdr = H(VIRTIO_GPU_CMD_GET_EDID) };
	struct virtio_gpu_resp_edid r;
	uint8_t first[128];
	struct vgb_gpu *gpu;
	struct guest g;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, NULL, NULL);
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_OK_EDID, "GET_EDID of scanout 0");
	tap_is_uint(last.len, sizeof(r), "  response is a full virtio_gpu_resp_edid");
	memcpy(&r, last.buf, sizeof(r));
	tap_is_uint(le32toh(r.size), 128, "  one 128-byte base block");
	check_edid(r.edid, 1280, 800, "default 1280x800");
	c.scanout = htole32(1);
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
		    "GET_EDID of scanout 1 with one scanout: ERR_INVALID_SCANOUT_ID");
	tap_is_uint(last.len, sizeof(struct virtio_gpu_ctrl_hdr), "  a header only");
	c.scanout = 0;
	tap_is_uint(gf_send(gpu, &c, sizeof(c) - 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		    "GET_EDID of 31 bytes: ERR_INVALID_PARAMETER");
	{
		size_t got = 0;
		uint8_t small[sizeof(struct virtio_gpu_resp_edid) - 1];

		tap_is_errno(vgb_gpu_process(gpu, &c, sizeof(c), small, sizeof(small), &got, 1),
			     -ENOBUFS, "  a buffer one byte short of the EDID response: -ENOBUFS");
	}
	{
		struct virtio_gpu_cmd_get_edid f = c;

		f.hdr = HF(VIRTIO_GPU_CMD_GET_EDID, 7);
		tap_is_uint(SEND(gpu, f), VIRTIO_GPU_RESP_OK_EDID, "fenced GET_EDID answers at once");
		memcpy(&r, last.buf, sizeof(r));
		tap_ok(le64toh(r.hdr.fence_id) == 7 && le32toh(r.size) == 128,
		       "  with its fence id and the block");
	}
	vgb_gpu_destroy(gpu);

	gpu = make_gpu(&g, NULL, three_scanouts_1920x1080);
	for (uint32_t s = 0; s < 3; s++) {
		char what[32];

		c.scanout = htole32(s);
		snprintf(what, sizeof(what), "scanout %u of 3", s);
		tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_OK_EDID, "GET_EDID of %s", what);
		memcpy(&r, last.buf, sizeof(r));
		check_edid(r.edid, 1920, 1080, what);
		if (s == 0)
			memcpy(first, r.edid, 128);
		else
			tap_ok(memcmp(first + 12, r.edid + 12, 4) != 0,
			       "  serial differs from scanout 0's");
	}
	c.scanout = htole32(3);
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, "GET_EDID of scanout 3");
	c.scanout = htole32(0xffffffffu);
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
		    "GET_EDID of scanout 0xffffffff");
	vgb_gpu_destroy(gpu);

	/* A size a timing descriptor cannot hold: the guest falls back to the display info. */
	gpu = make_gpu(&g, NULL, huge_display);
	c.scanout = 0;
	tap_is_uint(SEND(gpu, c), VIRTIO_GPU_RESP_ERR_UNSPEC,
		    "5120 wide (over 4095): ERR_UNSPEC, not a wrong EDID");
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
	gf_run("test_display_info", test_display_info);
	gf_run("test_edid", test_edid);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
