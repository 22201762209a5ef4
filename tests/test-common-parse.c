/* SPDX-License-Identifier: MIT */
/*
 * vgb_parse_u64(), the number parser of vgbridged's options and vgbctl replay scripts: bases,
 * K/M/G suffixes, the caller's maximum, overflow, and malformed input, which never writes
 * *ret.
 */
#include <errno.h>
#include <stdint.h>

#include "tap.h"
#include "vgb/util.h"

static const struct {
	const char *s;
	uint64_t max;
	int r;
	uint64_t want;
} cases[] = {
	{ "0", UINT64_MAX, 0, 0 },
	{ "42", UINT64_MAX, 0, 42 },
	{ "0x10", UINT64_MAX, 0, 16 },
	{ "010", UINT64_MAX, 0, 8 },
	{ "4K", UINT64_MAX, 0, 4096 },
	{ "4k", UINT64_MAX, 0, 4096 },
	{ "2M", UINT64_MAX, 0, 2u << 20 },
	{ "3g", UINT64_MAX, 0, 3ull << 30 },
	{ "0x1K", UINT64_MAX, 0, 1024 },
	{ "18446744073709551615", UINT64_MAX, 0, UINT64_MAX },
	{ "4096", 4096, 0, 4096 },
	{ "4097", 4096, -ERANGE, 0 },
	{ "4K", 4095, -ERANGE, 0 },
	{ "18446744073709551616", UINT64_MAX, -ERANGE, 0 },
	{ "17179869184G", UINT64_MAX, -ERANGE, 0 }, /* 2^34 G = 2^64 */
	{ "17179869183G", UINT64_MAX, 0, 17179869183ull << 30 },
	{ "", UINT64_MAX, -EINVAL, 0 },
	{ "-1", UINT64_MAX, -EINVAL, 0 },
	{ "12x", UINT64_MAX, -EINVAL, 0 },
	{ "4KB", UINT64_MAX, -EINVAL, 0 },
	{ "K", UINT64_MAX, -EINVAL, 0 },
	{ "m", UINT64_MAX, -EINVAL, 0 },
	{ "0x", UINT64_MAX, -EINVAL, 0 },
	{ " 1", UINT64_MAX, 0, 1 }, /* strtoull skips leading space */
	{ "1 ", UINT64_MAX, -EINVAL, 0 },
};

int main(void)
{
	const uint64_t untouched = 0xdeadbeef;
	uint64_t v;

	tap_plan_lazy();
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		int r;

		v = untouched;
		r = vgb_parse_u64(cases[i].s, cases[i].max, &v);
		if (cases[i].r == 0)
			tap_ok(r == 0 && v == cases[i].want, "\"%s\" (max %#llx) -> %llu (got %d, %llu)",
			       cases[i].s, (unsigned long long)cases[i].max,
			       (unsigned long long)cases[i].want, r, (unsigned long long)v);
		else
			tap_ok(r == cases[i].r && v == untouched,
			       "\"%s\" (max %#llx) -> %d, *ret untouched (got %d)", cases[i].s,
			       (unsigned long long)cases[i].max, cases[i].r, r);
	}
	v = untouched;
	tap_ok(vgb_parse_u64(NULL, UINT64_MAX, &v) == -EINVAL && v == untouched, "NULL -> -EINVAL");
	return tap_done();
}
