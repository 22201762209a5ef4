/* SPDX-License-Identifier: MIT */
/*
 * Bench (meson test --benchmark): what the bridge core costs per blob and per frame.
 *   - translating 16384 scattered single-page entries (the entry cap) and planning them;
 *   - building the CPU view of a 1280x800 XRGB framebuffer in 109 page runs, mapped vs copied;
 *   - a full-frame refresh of the copied view, against a plain memcpy of the same bytes
 *     measured in the same run (the baseline).
 * Prints the numbers as TAP diagnostics; the only checks are that each step worked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "export.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"

#define MiB (1ull << 20)
#define PG 4096u

static double ms_since(uint64_t t0)
{
	return (double)(vgb_now_ns() - t0) / 1e6;
}

int main(void)
{
	struct vgb_memmap *map;
	struct virtio_gpu_mem_entry *e = calloc(16384, sizeof(*e));
	struct vgb_blob_layout *l = NULL;
	struct vgb_export *x = NULL;
	int fd = memfd_create("bench-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint64_t t0;
	const int rounds = 20;

	tap_plan_lazy();
	if (fd < 0 || ftruncate(fd, 256 * MiB) < 0 || vgb_memmap_create(&map) < 0 ||
	    vgb_memmap_add_ram(map, 0, 256 * MiB, fd, 0, NULL) < 0)
		tap_bail("setup");

	/* 16384 pages, every other page of the first 128 MiB, in a scrambled order. */
	for (uint32_t i = 0; i < 16384; i++)
		e[i] = (struct virtio_gpu_mem_entry){ htole64((uint64_t)((i * 7919u) % 16384u) * 2 * PG),
						      htole32(PG), 0 };
	t0 = vgb_now_ns();
	for (int r = 0; r < rounds; r++) {
		free(l);
		l = NULL;
		if (vgb_blob_translate(map, e, 16384, 0, 16384, 256 * MiB, &l) < 0)
			tap_bail("translate");
	}
	tap_ok(l && l->n_segs == 16384, "16384 scattered entries translated");
	tap_diag("translate 16384 entries: %.3f ms (%.1f ns/entry)", ms_since(t0) / rounds,
		 ms_since(t0) * 1e6 / rounds / 16384);
	t0 = vgb_now_ns();
	if (vgb_export_plan(l, &x, NULL) < 0 || vgb_export_cpu_view(x, l) < 0)
		tap_bail("plan");
	tap_ok(!x->cpu_is_copy, "CPU view of 16384 segments built as a mapping");
	tap_diag("plan + mapped CPU view of 16384 segments (%s): %.3f ms",
		 vgb_export_strategy_name(x->strategy), ms_since(t0));
	vgb_export_unref(x);
	free(l);
	l = NULL;

	/* A 1280x800 XRGB framebuffer (4000 KiB) in 109 runs, as the demo scenario lays it out. */
	{
		uint32_t pages = 1000, runs = 109, n = 0;
		uint64_t gpa = 0;
		struct vgb_export *mapped = NULL, *copied = NULL;
		uint8_t *dst = malloc(pages * PG);
		double copy_ms, refresh_ms, map_ms;

		for (uint32_t r = 0; r < runs; r++) {
			uint32_t len = pages / runs + (r < pages % runs ? 1 : 0);

			e[n++] = (struct virtio_gpu_mem_entry){ htole64(gpa), htole32(len * PG), 0 };
			gpa += (uint64_t)(len + 3) * PG;
		}
		if (vgb_blob_translate(map, e, n, 0, 16384, 256 * MiB, &l) < 0)
			tap_bail("fb translate");
		t0 = vgb_now_ns();
		for (int r = 0; r < rounds; r++) {
			vgb_export_unref(mapped);
			if (vgb_export_plan(l, &mapped, NULL) < 0 || vgb_export_cpu_view(mapped, l) < 0)
				tap_bail("fb map");
		}
		map_ms = ms_since(t0) / rounds;
		/* Force the copy path: start the second run one byte in (an unaligned inner edge). */
		e[1].addr = htole64(le64toh(e[1].addr) + 1);
		e[1].length = htole32(le32toh(e[1].length) - 1);
		{
			struct vgb_blob_layout *lc = NULL;

			if (vgb_blob_translate(map, e, n, 0, 16384, 256 * MiB, &lc) < 0 ||
			    vgb_export_plan(lc, &copied, NULL) < 0 ||
			    vgb_export_cpu_view(copied, lc) < 0)
				tap_bail("fb copy");
			tap_ok(copied->cpu_is_copy && !mapped->cpu_is_copy,
			       "framebuffer: mapped view and copied view");
			t0 = vgb_now_ns();
			for (int r = 0; r < rounds; r++)
				vgb_export_refresh(copied, lc, 0, lc->size);
			refresh_ms = ms_since(t0) / rounds;
			t0 = vgb_now_ns();
			for (int r = 0; r < rounds; r++) {
				memcpy(dst, mapped->cpu, lc->size);
				__asm__ volatile("" ::: "memory");
			}
			copy_ms = ms_since(t0) / rounds;
			free(lc);
		}
		tap_diag("framebuffer 4000 KiB in %u runs: mapped view %.3f ms to build (then 0 "
			 "copies per frame)", n, map_ms);
		tap_diag("copied view refresh of the whole frame: %.3f ms; memcpy baseline %.3f ms "
			 "(ratio %.2f)", refresh_ms, copy_ms, copy_ms > 0 ? refresh_ms / copy_ms : 0);
		vgb_export_unref(mapped);
		vgb_export_unref(copied);
		free(dst);
	}
	free(l);
	free(e);
	vgb_memmap_destroy(map);
	return tap_done();
}
