/* SPDX-License-Identifier: MIT */
/*
 * Bench (meson test --benchmark): what the bridge core costs per blob and per frame.
 *   - translating 16384 scattered single-page entries (the entry cap) and planning them;
 *   - building the CPU view of a 1280x800 XRGB framebuffer in 109 page runs, mapped vs copied;
 *   - a full-frame refresh of the copied view, against a plain memcpy of the same bytes
 *     measured in the same run (the baseline);
 *   - full-frame TRANSFER_TO_HOST_2D of a 1280x800 XRGB resource whose backing is 1000
 *     scattered single pages (a Linux guest's dumb buffer) or 109 runs, per call.
 * Prints the numbers as TAP diagnostics; the only checks are that each step worked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "export.h"
#include "gpu.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"

#define MiB (1ull << 20)
#define PG 4096u

static double ms_since(uint64_t t0)
{
	return (double)(vgb_now_ns() - t0) / 1e6;
}

static uint32_t gpu_cmd(struct vgb_gpu *gpu, const void *cmd, size_t len)
{
	uint8_t resp[VGB_GPU_MAX_RESP];
	uint32_t type = 0;
	size_t n;

	if (vgb_gpu_process(gpu, cmd, len, resp, sizeof(resp), &n, 0) != 0)
		return 0;
	memcpy(&type, resp, 4);
	return le32toh(type);
}

/* 1000 backing pages in @runs runs, @gap pages apart; full-frame transfers, per call. */
static void bench_transfer_2d(struct vgb_memmap *map, int fd, uint32_t runs, uint32_t gap)
{
	const uint32_t pages = 1000, rounds = 300;
	struct {
		struct virtio_gpu_resource_attach_backing a;
		struct virtio_gpu_mem_entry e[1000];
	} *m = calloc(1, sizeof(*m));
	struct virtio_gpu_resource_create_2d c = {
		.hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D), .resource_id = htole32(1),
		.format = htole32(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM), .width = htole32(1280),
		.height = htole32(800),
	};
	struct virtio_gpu_transfer_to_host_2d t = {
		.hdr.type = htole32(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D), .resource_id = htole32(1),
		.r = { 0, 0, htole32(1280), htole32(800) },
	};
	struct vgb_gpu_config cfg = { 0 };
	struct timespec c0, c1;
	struct vgb_gpu *gpu;
	uint64_t gpa = 64 * MiB, t0;
	uint32_t bad = 0;
	double wall, cpu;

	vgb_gpu_limits_init(&cfg.limits);
	if (!m || vgb_gpu_create(map, &cfg, &gpu) < 0)
		tap_bail("gpu");
	m->a.hdr.type = htole32(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING);
	m->a.resource_id = htole32(1);
	m->a.nr_entries = htole32(runs);
	for (uint32_t r = 0; r < runs; r++) {
		uint32_t len = pages / runs + (r < pages % runs ? 1 : 0);

		m->e[r] = (struct virtio_gpu_mem_entry){ htole64(gpa), htole32(len * PG), 0 };
		gpa += (uint64_t)(len + gap) * PG;
	}
	if (gpu_cmd(gpu, &c, sizeof(c)) != VIRTIO_GPU_RESP_OK_NODATA ||
	    gpu_cmd(gpu, m, sizeof(m->a) + runs * sizeof(m->e[0])) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("2D setup");
	/* Guest pixels in every backing page (a hole would read as zeros without a page). */
	for (uint32_t r = 0; r < runs; r++) {
		uint8_t page[PG];

		for (uint32_t p = 0; p < le32toh(m->e[r].length) / PG; p++) {
			memset(page, (int)(r + p), sizeof(page));
			if (pwrite(fd, page, PG, (off_t)(le64toh(m->e[r].addr) + p * PG)) != PG)
				tap_bail("pwrite");
		}
	}
	gpu_cmd(gpu, &t, sizeof(t)); /* warm up */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	t0 = vgb_now_ns();
	for (uint32_t r = 0; r < rounds; r++)
		bad += gpu_cmd(gpu, &t, sizeof(t)) != VIRTIO_GPU_RESP_OK_NODATA;
	wall = (double)(vgb_now_ns() - t0) / 1e3 / rounds;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	cpu = ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) / 1e3 /
	      rounds;
	tap_is_uint(bad, 0, "TRANSFER_TO_HOST_2D 1280x800 from %u runs: all OK", runs);
	tap_diag("TRANSFER_TO_HOST_2D 1280x800 (4000 KiB), backing of %u runs: %.1f us wall, "
		 "%.1f us CPU per call", runs, wall, cpu);
	vgb_gpu_destroy(gpu);
	free(m);
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
	bench_transfer_2d(map, fd, 1000, 1);
	bench_transfer_2d(map, fd, 109, 3);
	free(e);
	vgb_memmap_destroy(map);
	return tap_done();
}
