/* SPDX-License-Identifier: MIT */
/*
 * The virtio-gpu command processor: the 2D and blob paths end to end into a recording sink,
 * fences (display completion, order, deadline), a table of malformed commands with the
 * response each must get, window removal under a frame in flight, device reset, isolation
 * between two clients, and fd/mapping leak checks.
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
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <linux/virtio_gpu.h>

#include "fake-udmabuf.h"
#include "fault.h"
#include "gpu.h"
#include "leak.h"
#include "logcap.h"
#include "memmap.h"
#include "record-sink.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)
#define PG 4096u

/* ---- a guest: RAM [0, 16M) and a BAR window [32M, 36M) ---- */

struct guest {
	struct vgb_memmap *map;
	struct vgb_vfio_device *dev;
	uint8_t *ram; /* our own view of guest RAM, to write "guest" pixels */
	uint32_t ram_id, bar_id;
};

static void guest_init(struct guest *g, const char *vdev_spec)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, 16 * MiB) < 0)
		tap_bail("memfd: %m");
	g->ram = mmap(NULL, 16 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g->ram == MAP_FAILED)
		tap_bail("mmap: %m");
	if (vgb_memmap_create(&g->map) < 0 ||
	    vgb_memmap_add_ram(g->map, 0, 16 * MiB, fd, 0, &g->ram_id) < 0)
		tap_bail("guest map");
	g->dev = NULL;
	if (vdev_spec) {
		if (vgb_vfio_vdev_create(vdev_spec, &g->dev) < 0 ||
		    vgb_memmap_add_vfio(g->map, 32 * MiB, 4 * MiB, g->dev, 2, 0, &g->bar_id) < 0)
			tap_bail("guest BAR");
	}
}

static void guest_finish(struct guest *g)
{
	vgb_memmap_destroy(g->map);
	vgb_vfio_device_destroy(g->dev);
	munmap(g->ram, 16 * MiB);
}

/* ---- fence completions ---- */

struct done_rec {
	uint64_t cookie;
	struct virtio_gpu_ctrl_hdr hdr;
	size_t len;
};
static struct done_rec dones[64];
static unsigned n_dones;

static void on_fence(void *data, uint64_t cookie, const void *resp, size_t len)
{
	if (n_dones < VGB_ARRAY_SIZE(dones)) {
		dones[n_dones].cookie = cookie;
		memcpy(&dones[n_dones].hdr, resp, sizeof(dones[n_dones].hdr));
		dones[n_dones].len = len;
	}
	n_dones++;
}

static struct vgb_gpu *make_gpu(struct guest *g, struct vgb_display *d,
				void (*tweak)(struct vgb_gpu_config *))
{
	struct vgb_gpu_config cfg = { .display = d, .fence_done = on_fence };
	struct vgb_gpu *gpu;

	vgb_gpu_limits_init(&cfg.limits);
	if (tweak)
		tweak(&cfg);
	if (vgb_gpu_create(g->map, &cfg, &gpu) < 0)
		tap_bail("gpu create");
	return gpu;
}

/* ---- command builders ---- */

static struct virtio_gpu_ctrl_hdr H(uint32_t type)
{
	return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type) };
}

static struct virtio_gpu_ctrl_hdr HF(uint32_t type, uint64_t fence)
{
	return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type),
					     .flags = htole32(VIRTIO_GPU_FLAG_FENCE),
					     .fence_id = htole64(fence) };
}

static struct virtio_gpu_rect R(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	return (struct virtio_gpu_rect){ htole32(x), htole32(y), htole32(w), htole32(h) };
}

static uint64_t next_cookie = 1000;
static struct {
	int rc;
	uint32_t type;
	size_t len;
	uint8_t buf[VGB_GPU_MAX_RESP];
} last;

/* Sends @len bytes; returns the response type (0 when deferred, -errno on a call error). */
static long send(struct vgb_gpu *gpu, const void *cmd, size_t len)
{
	memset(&last, 0, sizeof(last));
	last.rc = vgb_gpu_process(gpu, cmd, len, last.buf, sizeof(last.buf), &last.len,
				  next_cookie++);
	if (last.rc < 0)
		return last.rc;
	if (last.rc == 1)
		return 0;
	memcpy(&last.type, last.buf, 4);
	return le32toh(last.type);
}
#define SEND(gpu, ...) send((gpu), &(__VA_ARGS__), sizeof(__VA_ARGS__))

static long create_2d(struct vgb_gpu *gpu, uint32_t id, uint32_t fmt, uint32_t w, uint32_t h)
{
	struct virtio_gpu_resource_create_2d c = {
		.hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D), .resource_id = htole32(id),
		.format = htole32(fmt), .width = htole32(w), .height = htole32(h),
	};
	return SEND(gpu, c);
}

/* Command structs followed by up to 64 entries. */
struct attach_msg {
	struct virtio_gpu_resource_attach_backing attach;
	struct virtio_gpu_mem_entry e[64];
};
struct blob_msg {
	struct virtio_gpu_resource_create_blob blob;
	struct virtio_gpu_mem_entry e[64];
};

static long attach(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr, const uint32_t *len,
		   uint32_t n)
{
	struct attach_msg m = { .attach = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
					      .resource_id = htole32(id),
					      .nr_entries = htole32(n) } };

	for (uint32_t i = 0; i < n; i++)
		m.e[i] = (struct virtio_gpu_mem_entry){ htole64(addr[i]), htole32(len[i]), 0 };
	return send(gpu, &m, sizeof(m.attach) + n * sizeof(m.e[0]));
}

static long create_blob(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr,
			const uint32_t *len, uint32_t n)
{
	struct blob_msg m = { .blob = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
					    .resource_id = htole32(id),
					    .blob_mem = htole32(VIRTIO_GPU_BLOB_MEM_GUEST),
					    .blob_flags = htole32(VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE),
					    .nr_entries = htole32(n) } };
	uint64_t size = 0;

	for (uint32_t i = 0; i < n; i++) {
		m.e[i] = (struct virtio_gpu_mem_entry){ htole64(addr[i]), htole32(len[i]), 0 };
		size += len[i];
	}
	m.blob.size = htole64(size);
	return send(gpu, &m, sizeof(m.blob) + n * sizeof(m.e[0]));
}

static struct virtio_gpu_set_scanout_blob scanout_blob(uint32_t s, uint32_t id, uint32_t fmt,
						       uint32_t w, uint32_t h, uint32_t stride,
						       uint32_t offset)
{
	return (struct virtio_gpu_set_scanout_blob){
		.hdr = H(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB), .r = R(0, 0, w, h),
		.scanout_id = htole32(s), .resource_id = htole32(id), .width = htole32(w),
		.height = htole32(h), .format = htole32(fmt), .strides = { htole32(stride) },
		.offsets = { htole32(offset) },
	};
}

static struct virtio_gpu_resource_flush flush_cmd(uint32_t id, uint32_t w, uint32_t h,
						  uint64_t fence)
{
	return (struct virtio_gpu_resource_flush){
		.hdr = fence ? HF(VIRTIO_GPU_CMD_RESOURCE_FLUSH, fence)
			     : H(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
		.r = R(0, 0, w, h), .resource_id = htole32(id),
	};
}

/* Pixel value of the guest pattern at (x, y) of frame @n. */
static uint32_t px(uint32_t x, uint32_t y, uint32_t n)
{
	return (x * 0x01010101u) ^ (y << 8) ^ (n * 0x00330000u) ^ 0xff000000u;
}

/* Writes a w x h frame @n, rows @stride apart, into blob pages @addr (each PG long). */
static void draw(struct guest *g, const uint64_t *addr, uint32_t n_pages, uint32_t w, uint32_t h,
		 uint32_t stride, uint32_t n)
{
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			uint64_t off = (uint64_t)y * stride + x * 4u;
			uint32_t v = px(x, y, n);

			if (off / PG < n_pages)
				memcpy(g->ram + addr[off / PG] + off % PG, &v, 4);
		}
}

static bool frame_is(const struct record_frame *f, uint32_t w, uint32_t h, uint32_t n)
{
	if (!f->pixels || f->frame.width != w || f->frame.height != h)
		return false;
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++) {
			uint32_t v;

			memcpy(&v, f->pixels + ((size_t)y * w + x) * 4, 4);
			if (v != px(x, y, n)) {
				tap_diag("(%u,%u) = %#x, want %#x", x, y, v, px(x, y, n));
				return false;
			}
		}
	return true;
}

/* ---- tests ---- */

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

/* ---- GET_EDID ---- */

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
	tap_is_uint(send(gpu, &c, sizeof(c) - 1), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		    "GET_EDID of 31 bytes: ERR_INVALID_PARAMETER");
	{
		size_t got = 0;
		uint8_t small[VGB_GPU_MAX_RESP - 1];

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

/* A Linux 6.1 dumb framebuffer: 64x64 XRGB in 4 scattered pages. */
static const uint64_t fb_pages[4] = { 0x123000, 0x200000, 0x1ff000, 0x345000 };
static const uint32_t fb_lens[4] = { PG, PG, PG, PG };

static void setup_blob_scanout(struct guest *g, struct vgb_gpu *gpu, uint32_t id)
{
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr = H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .r = R(0, 0, 64, 64),
		.resource_id = htole32(id),
	};
	struct virtio_gpu_set_scanout_blob sb =
		scanout_blob(0, id, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 64, 256, 0);

	tap_is_uint(create_blob(gpu, id, fb_pages, fb_lens, 4), VIRTIO_GPU_RESP_OK_NODATA,
		    "blob %u: create (4 scattered pages)", id);
	tap_is_uint(SEND(gpu, t), VIRTIO_GPU_RESP_OK_NODATA, "blob %u: TRANSFER_TO_HOST_2D is OK",
		    id);
	tap_is_uint(SEND(gpu, sb), VIRTIO_GPU_RESP_OK_NODATA, "blob %u: SET_SCANOUT_BLOB", id);
}

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

static void sync_sink(struct vgb_gpu_config *cfg)
{
	cfg->limits.num_scanouts = 2;
}

static void test_sync_and_no_display(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct virtio_gpu_resource_flush f = flush_cmd(5, 64, 64, 7);

	guest_init(&g, NULL);
	sink->auto_complete = true;
	gpu = make_gpu(&g, &sink->base, sync_sink);
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

/* ---- malformed commands ---- */

struct bad_case {
	const char *what;
	uint8_t bytes[sizeof(struct blob_msg)];
	size_t len;
	uint32_t want;
};

#define BAD(cases, n, desc, cmd, l, w)                                        \
	do {                                                              \
		__typeof__(cmd) _c_ = (cmd);                               \
		struct bad_case *_b_ = &(cases)[(n)++];                      \
		_b_->what = (desc);                                        \
		memset(_b_->bytes, 0, sizeof(_b_->bytes));                 \
		memcpy(_b_->bytes, &_c_, sizeof(_c_));                     \
		_b_->len = (l) ? (size_t)(l) : sizeof(_c_);                \
		_b_->want = (w);                                           \
	} while (0)

static struct attach_msg at_cmd(uint32_t id, uint32_t nr)
{
	struct attach_msg w;

	memset(&w, 0, sizeof(w));
	w.attach = (struct virtio_gpu_resource_attach_backing){
		H(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING), htole32(id), htole32(nr) };
	w.e[0] = (struct virtio_gpu_mem_entry){ htole64(0x500000), htole32(PG), 0 };
	return w;
}

static struct blob_msg cb_cmd(uint32_t id, uint32_t mem, uint32_t flags, uint32_t nr,
			       uint64_t sz)
{
	struct blob_msg w;

	memset(&w, 0, sizeof(w));
	w.blob = (struct virtio_gpu_resource_create_blob){
		.hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB), .resource_id = htole32(id),
		.blob_mem = htole32(mem), .blob_flags = htole32(flags),
		.nr_entries = htole32(nr), .size = htole64(sz) };
	w.e[0] = (struct virtio_gpu_mem_entry){ htole64(0x600000), htole32(PG), 0 };
	return w;
}

static void test_malformed(void)
{
	enum {
		UNSPEC = VIRTIO_GPU_RESP_ERR_UNSPEC,
		OOM = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
		SCANOUT = VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
		RESID = VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
		PARAM = VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		OK = VIRTIO_GPU_RESP_OK_NODATA,
	};
	static struct bad_case cases[96];
	unsigned n = 0, failures = 0;
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct vgb_gpu_stats st;
	const uint32_t XRGB = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
	struct virtio_gpu_resource_create_2d c2;
	struct virtio_gpu_resource_unref un;
	struct virtio_gpu_resource_detach_backing det;
	struct virtio_gpu_transfer_to_host_2d t2;
	struct virtio_gpu_set_scanout ss;
	struct virtio_gpu_set_scanout_blob sb;
	struct virtio_gpu_resource_flush fl;
	struct virtio_gpu_update_cursor cu;
	struct attach_msg we;
	struct blob_msg wb;

	guest_init(&g, NULL);
	gpu = make_gpu(&g, &sink->base, NULL);
	sink->auto_complete = true;
	/* State: 2D 1 (64x64, backed), blob 2 (4 pages), 2D 3 (64x64, no backing), 2D 4 (128x128). */
	{
		uint64_t a[4] = { 0x400000, 0x401000, 0x402000, 0x403000 };
		uint32_t l[4] = { PG, PG, PG, PG };

		if (create_2d(gpu, 1, XRGB, 64, 64) != OK || attach(gpu, 1, a, l, 4) != OK ||
		    create_blob(gpu, 2, fb_pages, fb_lens, 4) != OK ||
		    create_2d(gpu, 3, XRGB, 64, 64) != OK || create_2d(gpu, 4, XRGB, 128, 128) != OK)
			tap_bail("malformed: setup");
	}

	/* unknown and unsupported commands */
	BAD(cases, n, "type 0", H(0), 0, UNSPEC);
	BAD(cases, n, "CTX_CREATE (3D)", H(VIRTIO_GPU_CMD_CTX_CREATE), 0, UNSPEC);
	BAD(cases, n, "SUBMIT_3D", H(VIRTIO_GPU_CMD_SUBMIT_3D), 0, UNSPEC);
	BAD(cases, n, "GET_CAPSET_INFO", H(VIRTIO_GPU_CMD_GET_CAPSET_INFO), 0, UNSPEC);
	/* GET_EDID is supported: only its own mistakes are errors */
	BAD(cases, n, "GET_EDID of 24 bytes (needs 32)", H(VIRTIO_GPU_CMD_GET_EDID), 0, PARAM);
	BAD(cases, n, "GET_EDID of scanout 1 (of 1)",
	    ((struct virtio_gpu_cmd_get_edid){ H(VIRTIO_GPU_CMD_GET_EDID), htole32(1), 0 }), 0,
	    SCANOUT);
	BAD(cases, n, "RESOURCE_MAP_BLOB", H(VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB), 0, UNSPEC);
	BAD(cases, n, "a response type as a command", H(VIRTIO_GPU_RESP_OK_NODATA), 0, UNSPEC);
	BAD(cases, n, "type 0xffffffff", H(0xffffffffu), 0, UNSPEC);

	/* RESOURCE_CREATE_2D */
#define C2(id, fmt, w, h)                                                                 \
	(c2 = (struct virtio_gpu_resource_create_2d){ H(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D),  \
						      htole32(id), htole32(fmt), htole32(w), \
						      htole32(h) })
	BAD(cases, n, "create_2d truncated", C2(9, XRGB, 64, 64), 28, PARAM);
	BAD(cases, n, "create_2d id 0", C2(0, XRGB, 64, 64), 0, RESID);
	BAD(cases, n, "create_2d existing id", C2(1, XRGB, 64, 64), 0, RESID);
	BAD(cases, n, "create_2d existing blob id", C2(2, XRGB, 64, 64), 0, RESID);
	BAD(cases, n, "create_2d format 0", C2(9, 0, 64, 64), 0, PARAM);
	BAD(cases, n, "create_2d format 999", C2(9, 999, 64, 64), 0, PARAM);
	BAD(cases, n, "create_2d width 0", C2(9, XRGB, 0, 64), 0, PARAM);
	BAD(cases, n, "create_2d height 0", C2(9, XRGB, 64, 0), 0, PARAM);
	BAD(cases, n, "create_2d 65536x65536", C2(9, XRGB, 65536, 65536), 0, OOM);
	BAD(cases, n, "create_2d width*4 overflows", C2(9, XRGB, 0x40000000, 1), 0, OOM);

	/* RESOURCE_UNREF */
	un = (struct virtio_gpu_resource_unref){ H(VIRTIO_GPU_CMD_RESOURCE_UNREF), htole32(77), 0 };
	BAD(cases, n, "unref unknown", un, 0, RESID);
	un.resource_id = 0;
	BAD(cases, n, "unref id 0", un, 0, RESID);
	BAD(cases, n, "unref truncated", un, 24, PARAM);

	/* RESOURCE_ATTACH_BACKING */
#define AT(id, nr) (we = at_cmd((id), (nr)))
	BAD(cases, n, "attach to unknown", AT(77, 1), sizeof(we.attach) + 16, RESID);
	BAD(cases, n, "attach to blob", AT(2, 1), sizeof(we.attach) + 16, PARAM);
	BAD(cases, n, "attach twice", AT(1, 1), sizeof(we.attach) + 16, UNSPEC);
	BAD(cases, n, "attach with 2 entries, 1 sent", AT(3, 2), sizeof(we.attach) + 16, PARAM);
	BAD(cases, n, "attach nr_entries 0xffffffff", AT(3, 0xffffffffu), sizeof(we.attach) + 16,
	    PARAM);
	BAD(cases, n, "attach nr_entries 16385", AT(3, 16385), sizeof(we), PARAM);
	BAD(cases, n, "attach nr_entries 0", AT(3, 0), sizeof(we.attach), PARAM);
	AT(3, 1);
	we.e[0].addr = htole64(20 * MiB);
	BAD(cases, n, "attach entry outside guest memory", we, sizeof(we.attach) + 16, PARAM);
	we.e[0].addr = htole64(16 * MiB - PG);
	we.e[0].length = htole32(2 * PG);
	BAD(cases, n, "attach entry running off the end of RAM", we, sizeof(we.attach) + 16,
	    PARAM);
	we.e[0].addr = htole64(0x500000);
	we.e[0].length = 0;
	BAD(cases, n, "attach zero-length entry", we, sizeof(we.attach) + 16, PARAM);
	we.e[0].addr = htole64(UINT64_MAX - 10);
	we.e[0].length = htole32(PG);
	BAD(cases, n, "attach entry wrapping around", we, sizeof(we.attach) + 16, PARAM);
	BAD(cases, n, "attach truncated header", AT(3, 1), 28, PARAM);

	/* RESOURCE_DETACH_BACKING */
	det = (struct virtio_gpu_resource_detach_backing){
		H(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING), htole32(77), 0 };
	BAD(cases, n, "detach from unknown", det, 0, RESID);
	det.resource_id = htole32(3);
	BAD(cases, n, "detach without backing", det, 0, UNSPEC);
	det.resource_id = htole32(2);
	BAD(cases, n, "detach from blob", det, 0, PARAM);

	/* TRANSFER_TO_HOST_2D */
#define T2(id, x, y, w, h, off)                                                            \
	(t2 = (struct virtio_gpu_transfer_to_host_2d){ H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), \
						       R(x, y, w, h), htole64(off),          \
						       htole32(id), 0 })
	BAD(cases, n, "transfer to unknown", T2(77, 0, 0, 64, 64, 0), 0, RESID);
	BAD(cases, n, "transfer without backing", T2(3, 0, 0, 64, 64, 0), 0, UNSPEC);
	BAD(cases, n, "transfer rect past the width", T2(1, 1, 0, 64, 64, 0), 0, PARAM);
	BAD(cases, n, "transfer rect past the height", T2(1, 0, 60, 64, 8, 0), 0, PARAM);
	BAD(cases, n, "transfer x + width wraps", T2(1, 0xffffffffu, 0, 2, 2, 0), 0, PARAM);
	BAD(cases, n, "transfer offset past the backing", T2(1, 0, 0, 64, 64, 4), 0, PARAM);
	BAD(cases, n, "transfer offset 2^64-1", T2(1, 0, 0, 1, 1, UINT64_MAX), 0, PARAM);
	BAD(cases, n, "transfer truncated", T2(1, 0, 0, 64, 64, 0), 50, PARAM);
	BAD(cases, n, "transfer to a blob is a no-op", T2(2, 0, 0, 64, 64, 0), 0, OK);

	/* RESOURCE_CREATE_BLOB */
#define CB(id, mem, flags, nr, sz) (wb = cb_cmd((id), (mem), (flags), (nr), (sz)))
	const uint32_t GUEST = VIRTIO_GPU_BLOB_MEM_GUEST, SH = VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE;
	const size_t CBL = sizeof(wb.blob) + 16;
	BAD(cases, n, "blob id 0", CB(0, GUEST, SH, 1, PG), CBL, RESID);
	BAD(cases, n, "blob existing id", CB(1, GUEST, SH, 1, PG), CBL, RESID);
	BAD(cases, n, "blob_mem 0", CB(9, 0, SH, 1, PG), CBL, PARAM);
	BAD(cases, n, "blob_mem HOST3D", CB(9, VIRTIO_GPU_BLOB_MEM_HOST3D, SH, 1, PG), CBL, PARAM);
	BAD(cases, n, "blob_mem 99", CB(9, 99, SH, 1, PG), CBL, PARAM);
	BAD(cases, n, "blob unknown flag bits", CB(9, GUEST, 0x100, 1, PG), CBL, PARAM);
	BAD(cases, n, "blob size 0", CB(9, GUEST, SH, 1, 0), CBL, PARAM);
	BAD(cases, n, "blob size larger than its entries", CB(9, GUEST, SH, 1, 2 * PG), CBL, PARAM);
	BAD(cases, n, "blob size smaller than its entries", CB(9, GUEST, SH, 1, 100), CBL, PARAM);
	BAD(cases, n, "blob with no entries", CB(9, GUEST, SH, 0, PG), sizeof(wb.blob), PARAM);
	BAD(cases, n, "blob entries truncated", CB(9, GUEST, SH, 2, 2 * PG), CBL, PARAM);
	BAD(cases, n, "blob 16385 entries (over the cap)", CB(9, GUEST, SH, 16385, PG), CBL, PARAM);
	CB(9, GUEST, SH, 1, PG);
	wb.e[0].addr = htole64(17 * MiB);
	BAD(cases, n, "blob entry outside guest memory", wb, CBL, PARAM);
	CB(9, GUEST, SH, 1, PG);
	wb.e[0].length = 0;
	wb.blob.size = 0;
	BAD(cases, n, "blob zero-length entry", wb, CBL, PARAM);
	BAD(cases, n, "blob truncated header", CB(9, GUEST, SH, 1, PG), 40, PARAM);

	/* SET_SCANOUT */
#define SS(s, id, x, y, w, h)                                                      \
	(ss = (struct virtio_gpu_set_scanout){ H(VIRTIO_GPU_CMD_SET_SCANOUT),         \
					       R(x, y, w, h), htole32(s), htole32(id) })
	BAD(cases, n, "set_scanout scanout 1 of 1", SS(1, 1, 0, 0, 64, 64), 0, SCANOUT);
	BAD(cases, n, "set_scanout scanout 0xffffffff", SS(0xffffffffu, 1, 0, 0, 64, 64), 0,
	    SCANOUT);
	BAD(cases, n, "set_scanout unknown resource", SS(0, 77, 0, 0, 64, 64), 0, RESID);
	BAD(cases, n, "set_scanout 15 wide", SS(0, 1, 0, 0, 15, 64), 0, PARAM);
	BAD(cases, n, "set_scanout 15 high", SS(0, 1, 0, 0, 64, 15), 0, PARAM);
	BAD(cases, n, "set_scanout rect past the resource", SS(0, 1, 8, 0, 64, 64), 0, PARAM);
	BAD(cases, n, "set_scanout y + height wraps", SS(0, 1, 0, 0xfffffff0u, 64, 32), 0, PARAM);
	BAD(cases, n, "set_scanout of a blob", SS(0, 2, 0, 0, 64, 64), 0, PARAM);
	BAD(cases, n, "set_scanout truncated", SS(0, 1, 0, 0, 64, 64), 44, PARAM);

	/* SET_SCANOUT_BLOB */
	BAD(cases, n, "scanout_blob scanout 1 of 1", scanout_blob(1, 2, XRGB, 64, 64, 256, 0), 0,
	    SCANOUT);
	BAD(cases, n, "scanout_blob of a 2D resource", scanout_blob(0, 1, XRGB, 64, 64, 256, 0), 0,
	    RESID);
	BAD(cases, n, "scanout_blob unknown resource", scanout_blob(0, 77, XRGB, 64, 64, 256, 0),
	    0, RESID);
	BAD(cases, n, "scanout_blob format 0", scanout_blob(0, 2, 0, 64, 64, 256, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob format 5", scanout_blob(0, 2, 5, 64, 64, 256, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob 16x15", scanout_blob(0, 2, XRGB, 16, 15, 256, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob 65 rows past the blob",
	    scanout_blob(0, 2, XRGB, 64, 65, 256, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob offset pushes past the blob",
	    scanout_blob(0, 2, XRGB, 64, 64, 256, 4), 0, PARAM);
	BAD(cases, n, "scanout_blob stride below width * 4",
	    scanout_blob(0, 2, XRGB, 64, 16, 255, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob stride 0xffffffff",
	    scanout_blob(0, 2, XRGB, 64, 16, 0xffffffffu, 0), 0, PARAM);
	BAD(cases, n, "scanout_blob offset 0xffffffff",
	    scanout_blob(0, 2, XRGB, 64, 16, 256, 0xffffffffu), 0, PARAM);
	sb = scanout_blob(0, 2, XRGB, 64, 64, 256, 0);
	sb.r = R(1, 0, 64, 64);
	BAD(cases, n, "scanout_blob rect past the fb", sb, 0, PARAM);
	/* The largest reach 32-bit fields allow (just under 2^64: it cannot wrap). */
	sb = scanout_blob(0, 2, XRGB, 16, 0xffffffffu, 0xffffffffu, 0);
	sb.r = R(0, 0xffffffe0u, 16, 16);
	BAD(cases, n, "scanout_blob y * stride near 2^64", sb, 0, PARAM);
	BAD(cases, n, "scanout_blob truncated", scanout_blob(0, 2, XRGB, 64, 64, 256, 0), 80,
	    PARAM);

	/* RESOURCE_FLUSH */
	BAD(cases, n, "flush unknown", flush_cmd(77, 64, 64, 0), 0, RESID);
	fl = flush_cmd(1, 64, 64, 0);
	fl.r = R(0, 0, 65, 64);
	BAD(cases, n, "flush rect past a 2D resource", fl, 0, PARAM);
	BAD(cases, n, "flush truncated", flush_cmd(1, 64, 64, 0), 30, PARAM);

	/* cursor */
	cu = (struct virtio_gpu_update_cursor){ .hdr = H(VIRTIO_GPU_CMD_UPDATE_CURSOR),
						.pos = { .scanout_id = htole32(1) },
						.resource_id = htole32(1) };
	BAD(cases, n, "update_cursor scanout 1 of 1", cu, 0, SCANOUT);
	cu.pos.scanout_id = 0;
	cu.resource_id = htole32(77);
	BAD(cases, n, "update_cursor unknown resource", cu, 0, RESID);
	cu.resource_id = htole32(2);
	BAD(cases, n, "update_cursor from a blob", cu, 0, PARAM);
	cu.resource_id = htole32(4);
	BAD(cases, n, "update_cursor 128x128", cu, 0, PARAM);
	BAD(cases, n, "update_cursor truncated", cu, 40, PARAM);
	cu.hdr = H(VIRTIO_GPU_CMD_MOVE_CURSOR);
	cu.pos.scanout_id = htole32(16);
	BAD(cases, n, "move_cursor scanout 16", cu, 0, SCANOUT);

	tap_ok(n >= 40, "%u malformed commands in the table", n);
	for (unsigned i = 0; i < n; i++) {
		long got = send(gpu, cases[i].bytes, cases[i].len);
		struct virtio_gpu_ctrl_hdr h;

		memcpy(&h, last.buf, sizeof(h));
		if (got != (long)cases[i].want || last.len != sizeof(h) || h.flags || h.fence_id) {
			failures++;
			tap_diag("%s: got %#lx (len %zu), want %#x", cases[i].what, got, last.len,
				 cases[i].want);
		}
	}
	tap_is_uint(failures, 0, "every malformed command got its expected response type");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.resources == 4 && st.errors == n - 1,
	       "nothing was created; every error counted (%llu)", (unsigned long long)st.errors);
	tap_ok(st.err_by_type[VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER - UNSPEC] > 20 &&
		       st.err_by_type[VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID - UNSPEC] == 6,
	       "errors by type");
	tap_ok(st.commands[VGB_GPU_STAT_OTHER] == 7, "7 unsupported commands counted as other");
	tap_ok(st.commands[VGB_GPU_STAT_GET_EDID] == 2, "2 GET_EDID counted as get-edid");
	/* The client is fine afterwards. */
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_set_scanout_blob[]){
				      scanout_blob(0, 2, XRGB, 64, 64, 256, 0) }),
		    OK, "a valid SET_SCANOUT_BLOB still works after the table");
	tap_is_uint(SEND(gpu, *(struct virtio_gpu_resource_flush[]){ flush_cmd(2, 64, 64, 0) }),
		    OK, "and a flush");
	vgb_gpu_destroy(gpu);
	record_sink_destroy(sink);
	guest_finish(&g);
}

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

static void test_isolation(void)
{
	struct guest ga, gb;
	struct record_sink *sa = record_sink_create(), *sb = record_sink_create();
	struct vgb_gpu *a, *b;

	guest_init(&ga, NULL);
	guest_init(&gb, NULL);
	sa->auto_complete = sb->auto_complete = true;
	a = make_gpu(&ga, &sa->base, NULL);
	b = make_gpu(&gb, &sb->base, NULL);
	draw(&ga, fb_pages, 4, 64, 64, 256, 10);
	draw(&gb, fb_pages, 4, 64, 64, 256, 20);
	setup_blob_scanout(&ga, a, 5);
	setup_blob_scanout(&gb, b, 5);
	tap_is_uint(create_blob(b, 8, fb_pages, fb_lens, 1), VIRTIO_GPU_RESP_OK_NODATA,
		    "client B has resource 8");
	tap_is_uint(SEND(a, *(struct virtio_gpu_resource_flush[]){ flush_cmd(8, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "client A cannot name B's resource 8");
	SEND(a, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) });
	SEND(b, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) });
	tap_ok(frame_is(&sa->frames[0], 64, 64, 10) && frame_is(&sb->frames[0], 64, 64, 20),
	       "same resource id 5, each client sees its own memory");
	SEND(a, *(struct virtio_gpu_resource_unref[]){
			{ H(VIRTIO_GPU_CMD_RESOURCE_UNREF), htole32(5), 0 } });
	tap_is_uint(SEND(b, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "A's unref of 5 leaves B's 5 alone");
	vgb_memmap_remove(ga.map, ga.ram_id);
	tap_is_uint(SEND(b, *(struct virtio_gpu_resource_flush[]){ flush_cmd(5, 64, 64, 0) }),
		    VIRTIO_GPU_RESP_OK_NODATA, "A's window removal leaves B's blob alone");
	vgb_gpu_destroy(a);
	vgb_gpu_destroy(b);
	record_sink_destroy(sa);
	record_sink_destroy(sb);
	guest_finish(&ga);
	guest_finish(&gb);
}

static void test_unaligned_message(void)
{
	struct guest g;
	struct vgb_gpu *gpu;
	struct blob_msg m = { .blob = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
					.resource_id = htole32(3),
					.blob_mem = htole32(VIRTIO_GPU_BLOB_MEM_GUEST),
					.nr_entries = htole32(2), .size = htole64(2 * PG) } };
	uint8_t *buf = malloc(sizeof(m) + 1);
	struct vgb_gpu_stats st;
	size_t len = sizeof(m.blob) + 2 * sizeof(m.e[0]);

	guest_init(&g, NULL);
	gpu = make_gpu(&g, NULL, NULL);
	m.e[0] = (struct virtio_gpu_mem_entry){ htole64(0x5000), htole32(PG), 0 };
	m.e[1] = (struct virtio_gpu_mem_entry){ htole64(0x9000), htole32(PG), 0 };
	memcpy(buf + 1, &m, len);
	tap_is_uint(send(gpu, buf + 1, len), VIRTIO_GPU_RESP_OK_NODATA,
		    "a create-blob message at an odd address");
	vgb_gpu_get_stats(gpu, &st);
	tap_ok(st.blob_segments == 2 && st.resources == 1, "  its entries were read correctly");
	free(buf);
	vgb_gpu_destroy(gpu);
	guest_finish(&g);
}

/* xorshift64: deterministic, so a failure reproduces. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/*
 * 20000 commands mutated from valid ones (random bytes flipped, small values planted, random
 * lengths): every call must return a valid response or a deferral, and nothing may crash
 * (the ASan build checks every access).
 */
static void test_random_commands(void)
{
	struct guest g;
	struct record_sink *sink = record_sink_create();
	struct vgb_gpu *gpu;
	struct leak_snapshot before;
	unsigned bad = 0, deferred = 0, ok = 0;
	uint8_t tmpl[8][sizeof(struct blob_msg)];
	size_t tlen[8];

	guest_init(&g, NULL);
	leak_snapshot(&before);
	gpu = make_gpu(&g, &sink->base, sync_sink);
	{
		struct blob_msg b = { .blob = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB),
						.resource_id = htole32(2),
						.blob_mem = htole32(VIRTIO_GPU_BLOB_MEM_GUEST),
						.nr_entries = htole32(2), .size = htole64(2 * PG) } };
		struct attach_msg a = { .attach = { .hdr = H(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING),
						    .resource_id = htole32(1),
						    .nr_entries = htole32(2) } };
		struct virtio_gpu_resource_create_2d c2 = {
			H(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D), htole32(1),
			htole32(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM), htole32(32), htole32(32) };
		struct virtio_gpu_transfer_to_host_2d t = {
			H(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), R(0, 0, 32, 32), 0, htole32(1), 0 };
		struct virtio_gpu_set_scanout_blob sb =
			scanout_blob(0, 2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 16, 32, 256, 0);
		struct virtio_gpu_resource_flush f = flush_cmd(2, 16, 32, 1);
		struct virtio_gpu_update_cursor uc = { .hdr = H(VIRTIO_GPU_CMD_UPDATE_CURSOR),
						       .resource_id = htole32(1) };
		struct virtio_gpu_resource_unref u = { H(VIRTIO_GPU_CMD_RESOURCE_UNREF), htole32(2),
						       0 };

		b.e[0] = (struct virtio_gpu_mem_entry){ htole64(0x3000), htole32(PG), 0 };
		b.e[1] = (struct virtio_gpu_mem_entry){ htole64(0x9000), htole32(PG), 0 };
		a.e[0] = b.e[0];
		a.e[1] = b.e[1];
#define TMPL(i, x, l) (memset(tmpl[i], 0, sizeof(tmpl[i])), memcpy(tmpl[i], &(x), (l)), tlen[i] = (l))
		TMPL(0, b, sizeof(b.blob) + 32);
		TMPL(1, a, sizeof(a.attach) + 32);
		TMPL(2, c2, sizeof(c2));
		TMPL(3, t, sizeof(t));
		TMPL(4, sb, sizeof(sb));
		TMPL(5, f, sizeof(f));
		TMPL(6, uc, sizeof(uc));
		TMPL(7, u, sizeof(u));
#undef TMPL
	}
	for (unsigned i = 0; i < 20000; i++) {
		unsigned k = (unsigned)(rnd() % 8), flips = (unsigned)(rnd() % 4);
		uint8_t msg[sizeof(struct blob_msg)];
		size_t len = tlen[k];
		uint32_t type;
		long got;

		memcpy(msg, tmpl[k], sizeof(msg));
		for (unsigned j = 0; j < flips; j++) {
			size_t at = (size_t)(rnd() % len);

			if (rnd() % 2)
				msg[at] = (uint8_t)rnd();
			else
				msg[at] = (uint8_t)(rnd() % 4); /* small ids, counts, scanouts */
		}
		if (rnd() % 8 == 0)
			len = (size_t)(rnd() % (tlen[k] + 1));
		if (len < sizeof(struct virtio_gpu_ctrl_hdr))
			len = sizeof(struct virtio_gpu_ctrl_hdr);
		got = send(gpu, msg, len);
		type = (uint32_t)got;
		if (last.rc == 1)
			deferred++;
		else if (last.rc == 0 && ((type >= VIRTIO_GPU_RESP_OK_NODATA &&
					  type <= VIRTIO_GPU_RESP_OK_DISPLAY_INFO) ||
					 (type >= VIRTIO_GPU_RESP_ERR_UNSPEC &&
					  type <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER)))
			ok++;
		else
			bad++;
		if (sink->n_frames > RECORD_SINK_MAX_FRAMES / 2)
			record_sink_clear(sink);
		if (i % 64 == 0)
			vgb_gpu_dispatch_timeouts(gpu);
	}
	tap_is_uint(bad, 0, "20000 mutated commands: every one answered (%u) or deferred (%u)", ok,
		    deferred);
	{
		struct vgb_gpu_stats st;

		vgb_gpu_get_stats(gpu, &st);
		tap_ok(st.frames_presented > 100 && st.errors > 1000 && st.errors < 20000,
		       "  they reached the deep paths: %llu frames presented, %llu errors, "
		       "%llu fences", (unsigned long long)st.frames_presented,
		       (unsigned long long)st.errors, (unsigned long long)st.fences_completed);
	}
	vgb_gpu_destroy(gpu);
	record_sink_clear(sink);
	leak_check(&before, "after the mutated commands");
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
	test_display_info();
	test_edid();
	test_2d();
	test_2d_mapped_backing();
	test_blob_fences();
	test_sync_and_no_display();
	test_malformed();
	test_window_removal();
	test_isolation();
	test_view_budgets();
	test_unaligned_message();
	test_random_commands();
	test_destroy_with_frames_held();
	fake_udmabuf_set_absent(false);
	test_vfio_export_and_reset();
	test_decode_off();
	test_unexpected_export_failure();
	leak_check(&before, "all gpu tests");
	fake_udmabuf_remove();
	return tap_done();
}
