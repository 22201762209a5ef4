/* SPDX-License-Identifier: MIT */
#ifndef VGB_BENCH_SCATTER_H
#define VGB_BENCH_SCATTER_H

/*
 * A scattered blob for the benches: @n_pages pages that form @n_runs physically contiguous
 * runs, placed in shuffled order in a backing store (a memfd or a VFIO region), with a page of
 * gap after each run so no two runs touch in either order (the kernel could otherwise merge
 * their VMAs, and the planner their ranges). Every page carries its own pattern, and
 * @expected holds the blob's bytes in order, so a view can be checked byte for byte.
 */

#include <stddef.h>
#include <stdint.h>

struct scatter {
	uint32_t n_pages, n_runs;
	uint64_t *page_off;  /* backing offset of blob page i */
	uint8_t *expected;   /* n_pages * 4096 bytes, the blob in order */
	uint64_t span;       /* backing bytes the layout uses */
};

/* Returns 0, -EINVAL (no pages, more runs than pages), -ENOSPC (does not fit in
 * @capacity bytes) or -ENOMEM. */
int scatter_init(struct scatter *s, uint32_t n_pages, uint32_t n_runs, uint64_t capacity,
		 uint64_t seed);
void scatter_finish(struct scatter *s);

/* Writes each blob page's pattern to @fd at @base + page_off[i]. Returns 0 or -errno. */
int scatter_fill(const struct scatter *s, int fd, uint64_t base);

#endif
