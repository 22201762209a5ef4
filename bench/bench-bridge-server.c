/* SPDX-License-Identifier: MIT */
/*
 * Bench (meson test --benchmark): what a request through vgbridged costs, in-process (the
 * daemon's loop and the client in one thread, as in test-bridge-server).
 *   - baseline, measured in the same run: a 40-byte ping-pong over a SOCK_SEQPACKET socketpair;
 *   - STATS (SELF_ONLY) round trips;
 *   - TRANSFER_TO_HOST_2D on a blob (a no-op) round trips: the protocol + gpu dispatch cost;
 *   - fenced RESOURCE_FLUSH with the null sink (completes at once): present + fence path;
 *   - RESOURCE_CREATE_BLOB + UNREF with 16384 scattered entries (a 256 KiB request).
 * Prints the numbers as TAP diagnostics; the only checks are that each step worked.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "guest.h"
#include "client-gpu.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"

#define MiB (1ull << 20)
#define PG 4096u

/* The bench's wait hook: 4000 rounds where the tests allow 400. */
static void pump(void *data, int fd)
{
	server_pump_for(data, fd, 4000);
}

static double us_per(uint64_t t0, unsigned n)
{
	return (double)(vgb_now_ns() - t0) / 1e3 / n;
}

int main(void)
{
	char dir[] = "/tmp/vgb-bench-server-XXXXXX", path[64];
	struct vgb_server_options o;
	struct vgb_server *s;
	struct vgb_display *null_sink;
	struct vgb_client *c;
	struct virtio_gpu_mem_entry *e;
	uint8_t *cmd;
	size_t cap = 512 << 10, n;
	const unsigned rounds = 2000;
	unsigned bad = 0;
	uint64_t t0;
	int sv[2], memfd;

	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/s", dir);
	cmd = malloc(cap);
	e = calloc(16384, sizeof(*e));
	if (!cmd || !e || vgb_display_create_null(&null_sink) < 0)
		tap_bail("setup");

	/* Baseline: the socket alone. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair");
	memset(cmd, 0, 64);
	t0 = vgb_now_ns();
	for (unsigned i = 0; i < rounds; i++) {
		if (send(sv[0], cmd, 40, 0) != 40 || recv(sv[1], cmd, 64, 0) != 40 ||
		    send(sv[1], cmd, 40, 0) != 40 || recv(sv[0], cmd, 64, 0) != 40)
			bad++;
	}
	tap_is_uint(bad, 0, "baseline ping-pong");
	tap_diag("baseline: SOCK_SEQPACKET 40-byte ping-pong: %.2f us", us_per(t0, rounds));
	close(sv[0]);
	close(sv[1]);

	vgb_server_options_init(&o);
	o.display = null_sink;
	if (vgb_server_create(&o, &s) < 0 || vgb_server_listen(s, path) < 0)
		tap_bail("server");
	if (vgb_client_connect(path, &c) < 0)
		tap_bail("connect");
	vgb_client_set_wait_hook(c, pump, s);
	tap_is_int(vgb_client_hello(c, NULL), 0, "HELLO");
	memfd = memfd_create("bench-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, 256 * MiB) < 0)
		tap_bail("memfd");
	tap_is_int(vgb_client_add_ram(c, memfd, 0, 256 * MiB, 0), 0, "ADD_RAM 256 MiB");

	t0 = vgb_now_ns();
	for (unsigned i = 0; i < rounds; i++) {
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;
		if (vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows) < 0)
			bad++;
		free(rows);
	}
	tap_is_uint(bad, 0, "STATS round trips");
	tap_diag("STATS (self) round trip: %.2f us", us_per(t0, rounds));

	/* A 256x256 blob in 64 one-page-apart runs of 4 pages. */
	for (uint32_t i = 0; i < 64; i++)
		e[i] = (struct virtio_gpu_mem_entry){ .addr = (uint64_t)i * 8 * PG,
						      .length = 4 * PG };
	n = vgb_guest_create_blob(cmd, cap, 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 64 * 4 * PG, e, 64);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "blob of 64 runs");
	n = vgb_guest_set_scanout_blob(cmd, cap, 0, 1, 256, 256, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
				       1024, 0, 0, 0, 256, 256);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "SET_SCANOUT_BLOB");

	n = vgb_guest_transfer_2d(cmd, cap, 1, 0, 0, 256, 256, 0, 0);
	t0 = vgb_now_ns();
	for (unsigned i = 0; i < rounds; i++)
		if (client_gpu(c, cmd, n) != VIRTIO_GPU_RESP_OK_NODATA)
			bad++;
	tap_is_uint(bad, 0, "TRANSFER_TO_HOST_2D round trips");
	tap_diag("TRANSFER_TO_HOST_2D (blob, no-op) round trip: %.2f us", us_per(t0, rounds));

	t0 = vgb_now_ns();
	for (unsigned i = 0; i < rounds; i++) {
		n = vgb_guest_flush(cmd, cap, 1, 0, 0, 256, 256, i + 1);
		if (client_gpu(c, cmd, n) != VIRTIO_GPU_RESP_OK_NODATA)
			bad++;
	}
	tap_is_uint(bad, 0, "fenced RESOURCE_FLUSH round trips");
	tap_diag("fenced RESOURCE_FLUSH (256x256, null sink) round trip: %.2f us",
		 us_per(t0, rounds));

	/* 16384 single pages, every other page, scrambled: the entry cap in one request. */
	for (uint32_t i = 0; i < 16384; i++)
		e[i] = (struct virtio_gpu_mem_entry){
			.addr = (uint64_t)((i * 7919u) % 16384u) * 2 * PG, .length = PG };
	const unsigned big_rounds = 20;
	t0 = vgb_now_ns();
	for (unsigned i = 0; i < big_rounds; i++) {
		n = vgb_guest_create_blob(cmd, cap, 2, VIRTIO_GPU_BLOB_MEM_GUEST,
					  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 16384ull * PG, e, 16384);
		if (client_gpu(c, cmd, n) != VIRTIO_GPU_RESP_OK_NODATA)
			bad++;
		n = vgb_guest_unref(cmd, cap, 2);
		if (client_gpu(c, cmd, n) != VIRTIO_GPU_RESP_OK_NODATA)
			bad++;
	}
	tap_is_uint(bad, 0, "16384-entry blobs created and unreferenced");
	tap_diag("RESOURCE_CREATE_BLOB of 16384 entries (%zu-byte request) + UNREF: %.1f us",
		 sizeof(struct virtio_gpu_resource_create_blob) + 16384 * sizeof(*e),
		 us_per(t0, big_rounds));

	vgb_client_destroy(c);
	close(memfd);
	vgb_server_destroy(s);
	vgb_display_destroy(null_sink);
	rmdir(dir);
	free(cmd);
	free(e);
	return tap_done();
}
