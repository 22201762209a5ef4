/* SPDX-License-Identifier: MIT */
/*
 * Bad input: a table of malformed commands with the response each must get, messages at
 * odd alignments, randomly mutated commands, and isolation between two clients.
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
#include "gpu-fixture.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "vgb/util.h"
#include "fault.h"

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
		long got = gf_send(gpu, cases[i].bytes, cases[i].len);
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
	tap_is_uint(gf_send(gpu, buf + 1, len), VIRTIO_GPU_RESP_OK_NODATA,
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
	gpu = make_gpu(&g, &sink->base, two_scanouts);
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
		got = gf_send(gpu, msg, len);
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

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	fake_udmabuf_install();
	fake_udmabuf_set_absent(true);
	leak_snapshot(&before);
	gf_run("test_malformed", test_malformed);
	gf_run("test_isolation", test_isolation);
	gf_run("test_unaligned_message", test_unaligned_message);
	gf_run("test_random_commands", test_random_commands);
	leak_check(&before, "every group");
	fake_udmabuf_remove();
	return tap_done();
}
