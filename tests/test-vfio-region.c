/* SPDX-License-Identifier: MIT */
/*
 * The region-info capability-chain parser on hand-built buffers: what a correct kernel sends,
 * and every malformed chain (loops, offsets outside the buffer, counts that do not fit,
 * duplicate caps) refused with -EPROTO instead of read out of bounds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/vfio.h>

#include "private.h"
#include "tap.h"

struct buf {
	_Alignas(8) uint8_t b[256];
	size_t len;
};

static void put32(struct buf *b, size_t off, uint32_t v)
{
	memcpy(b->b + off, &v, 4);
}

static void put64(struct buf *b, size_t off, uint64_t v)
{
	memcpy(b->b + off, &v, 8);
}

static void put16(struct buf *b, size_t off, uint16_t v)
{
	memcpy(b->b + off, &v, 2);
}

/* vfio_region_info: 64 KiB region, FLAG_CAPS, chain at @cap_offset. */
static void header(struct buf *b, uint32_t cap_offset)
{
	memset(b, 0, sizeof(*b));
	put32(b, 0, 0);   /* argsz (unused by the parser) */
	put32(b, 4, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP |
		    (cap_offset ? VFIO_REGION_INFO_FLAG_CAPS : 0));
	put32(b, 8, 2);   /* index */
	put32(b, 12, cap_offset);
	put64(b, 16, 65536);  /* size */
	put64(b, 24, 1u << 20); /* offset */
	b->len = 32;
}

/* A sparse cap at @off with @n areas of 4 KiB every 8 KiB; returns its end. */
static size_t sparse(struct buf *b, size_t off, uint32_t n, uint32_t next)
{
	put16(b, off, VFIO_REGION_INFO_CAP_SPARSE_MMAP);
	put16(b, off + 2, 1);
	put32(b, off + 4, next);
	put32(b, off + 8, n);
	for (uint32_t i = 0; i < n; i++) {
		put64(b, off + 16 + i * 16, (uint64_t)i * 8192);
		put64(b, off + 24 + i * 16, 4096);
	}
	return off + 16 + n * 16;
}

static size_t type(struct buf *b, size_t off, uint32_t next)
{
	put16(b, off, VFIO_REGION_INFO_CAP_TYPE);
	put16(b, off + 2, 1);
	put32(b, off + 4, next);
	put32(b, off + 8, 0x80001af4);
	put32(b, off + 12, 9);
	return off + 16;
}

static int parse(struct buf *b, struct vgb_vfio_region_info *info)
{
	struct vgb_vfio_sparse_area *areas = NULL;
	int r = vgb_vfio_parse_region_info(b->b, b->len, info, &areas);

	free(areas);
	return r;
}

int main(void)
{
	struct vgb_vfio_region_info info;
	struct vgb_vfio_sparse_area *areas = NULL;
	struct buf b;
	size_t end;
	int r;

	tap_plan_lazy();

	/* Correct: sparse (2 areas) -> unknown cap 77 -> type. */
	header(&b, 32);
	end = sparse(&b, 32, 2, 80);
	put16(&b, end, 77);
	put32(&b, end + 4, 88);
	end = type(&b, 88, 0);
	b.len = end;
	r = vgb_vfio_parse_region_info(b.b, b.len, &info, &areas);
	tap_is_errno(r, 0, "sparse -> unknown -> type");
	tap_ok(info.index == 2 && info.size == 65536 && info.offset == (1u << 20),
	       "fixed fields");
	tap_ok(info.has_sparse && info.n_sparse == 2 && info.sparse == areas &&
		       areas[1].offset == 8192 && areas[1].size == 4096,
	       "sparse areas copied");
	tap_ok(info.has_type && info.type == 0x80001af4 && info.subtype == 9,
	       "type after an unknown cap");
	free(areas);

	/* FLAG_CAPS with cap_offset 0: the chain did not fit; no caps, not an error. */
	header(&b, 0);
	put32(&b, 4, VFIO_REGION_INFO_FLAG_CAPS);
	tap_is_errno(parse(&b, &info), 0, "FLAG_CAPS, cap_offset 0: no caps parsed");
	tap_ok(!info.has_sparse && !info.has_type, "and none reported");

	/* A sparse cap with zero areas: nothing may be mmapped. */
	header(&b, 32);
	b.len = sparse(&b, 32, 0, 0);
	tap_ok(parse(&b, &info) == 0 && info.has_sparse && info.n_sparse == 0,
	       "sparse cap with no areas");

	header(&b, 0);
	b.len = 31;
	tap_is_errno(parse(&b, &info), -EPROTO, "buffer shorter than vfio_region_info");

	header(&b, 32);
	b.len = sparse(&b, 32, 1, 32);
	tap_is_errno(parse(&b, &info), -EPROTO, "a cap pointing at itself (loop)");

	header(&b, 48);
	sparse(&b, 48, 0, 0);
	type(&b, 32, 48);
	put32(&b, 12, 48);
	put32(&b, 52, 32); /* sparse.next -> type at 32, which points forward to 48 */
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "a chain going backwards");

	header(&b, 48);
	type(&b, 48, 32);
	put16(&b, 32, 99);
	put32(&b, 36, 0);
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "type -> an earlier cap (the kernel only appends)");

	header(&b, 200);
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "cap_offset past the buffer");

	header(&b, 16);
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "cap_offset inside the fixed struct");

	header(&b, 34);
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "unaligned cap_offset");

	header(&b, 32);
	end = sparse(&b, 32, 3, 0);
	b.len = end - 8;
	tap_is_errno(parse(&b, &info), -EPROTO, "nr_areas more than the buffer holds");

	header(&b, 32);
	sparse(&b, 32, 1, 0);
	put32(&b, 32 + 8, 0xffffffffu);
	b.len = 64;
	tap_is_errno(parse(&b, &info), -EPROTO, "nr_areas 0xffffffff");

	header(&b, 32);
	b.len = sparse(&b, 32, 1, 0);
	put64(&b, 48, 61440);
	put64(&b, 56, 8192); /* 60K + 8K > 64K */
	tap_is_errno(parse(&b, &info), -EPROTO, "sparse area past the region");

	header(&b, 32);
	b.len = sparse(&b, 32, 1, 0);
	put64(&b, 48, UINT64_MAX);
	put64(&b, 56, 2);
	tap_is_errno(parse(&b, &info), -EPROTO, "sparse area offset + size overflows");

	header(&b, 32);
	end = sparse(&b, 32, 1, 64);
	b.len = sparse(&b, 64, 1, 0);
	tap_is_errno(parse(&b, &info), -EPROTO, "two sparse caps");

	header(&b, 32);
	b.len = type(&b, 32, 0) - 4;
	tap_is_errno(parse(&b, &info), -EPROTO, "type cap cut short");

	header(&b, 32);
	put64(&b, 24, UINT64_MAX);
	b.len = type(&b, 32, 0);
	tap_is_errno(parse(&b, &info), -EPROTO, "region offset + size overflows");

	/* A long, valid-looking chain of unknown caps is bounded. */
	header(&b, 32);
	for (size_t off = 32; off + 8 <= 248; off += 8) {
		put16(&b, off, 99);
		put32(&b, off + 4, off + 8 < 248 ? (uint32_t)(off + 8) : 0);
	}
	b.len = 256;
	tap_is_errno(parse(&b, &info), 0, "27 unknown caps in a row: fine");
	return tap_done();
}
