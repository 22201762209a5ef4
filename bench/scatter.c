/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "scatter.h"
#include "vgb/util.h"

static uint32_t run_start(uint32_t r, uint32_t n, uint32_t runs)
{
	return (uint32_t)((uint64_t)r * n / runs);
}

int scatter_init(struct scatter *s, uint32_t n_pages, uint32_t n_runs, uint64_t capacity,
		 uint64_t seed)
{
	_cleanup_free_ uint32_t *slot = NULL;
	uint32_t max_run = 0;
	uint64_t slot_bytes;

	*s = (struct scatter){ .n_pages = n_pages, .n_runs = n_runs };
	if (!n_pages || !n_runs || n_runs > n_pages)
		return -EINVAL;
	for (uint32_t r = 0; r < n_runs; r++)
		max_run = VGB_MAX(max_run, run_start(r + 1, n_pages, n_runs) -
					   run_start(r, n_pages, n_runs));
	slot_bytes = (uint64_t)(max_run + 1) * VGB_PAGE_SIZE;
	s->span = slot_bytes * n_runs;
	if (s->span > capacity)
		return -ENOSPC;
	slot = calloc(n_runs, sizeof(*slot));
	s->page_off = calloc(n_pages, sizeof(*s->page_off));
	s->expected = malloc((size_t)n_pages * VGB_PAGE_SIZE);
	if (!slot || !s->page_off || !s->expected) {
		scatter_finish(s);
		return -ENOMEM;
	}
	for (uint32_t r = 0; r < n_runs; r++)
		slot[r] = r;
	bench_shuffle(slot, n_runs, &seed);
	for (uint32_t r = 0; r < n_runs; r++) {
		uint32_t a = run_start(r, n_pages, n_runs), b = run_start(r + 1, n_pages, n_runs);

		for (uint32_t i = a; i < b; i++)
			s->page_off[i] = slot[r] * slot_bytes + (uint64_t)(i - a) * VGB_PAGE_SIZE;
	}
	for (uint32_t i = 0; i < n_pages; i++) {
		uint32_t *w = (uint32_t *)(void *)(s->expected + (size_t)i * VGB_PAGE_SIZE);

		for (uint32_t k = 0; k < VGB_PAGE_SIZE / 4; k++)
			w[k] = (i * 2654435761u) ^ (k * 40503u) ^ 0x5a5a0000u;
	}
	return 0;
}

void scatter_finish(struct scatter *s)
{
	free(s->page_off);
	free(s->expected);
	s->page_off = NULL;
	s->expected = NULL;
}

int scatter_fill(const struct scatter *s, int fd, uint64_t base)
{
	for (uint32_t i = 0; i < s->n_pages; i++) {
		ssize_t n = pwrite(fd, s->expected + (size_t)i * VGB_PAGE_SIZE, VGB_PAGE_SIZE,
				   (off_t)(base + s->page_off[i]));

		if (n < 0)
			return -errno;
		if (n != VGB_PAGE_SIZE)
			return -EIO;
	}
	return 0;
}
