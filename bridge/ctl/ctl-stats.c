/* SPDX-License-Identifier: MIT */
/* vgbctl stats: prints vgbridged's counters (STATS). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "ctl-bridge.h"
#include "vgb/display.h"
#include "vgb/util.h"

void vgb_ctl_default_socket(char *buf, size_t size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");

	if (rt && *rt)
		snprintf(buf, size, "%s/vgbridge.sock", rt);
	else
		snprintf(buf, size, "/tmp/vgbridge-%u.sock", (unsigned)getuid());
}

/* The wire's commands[] indices (docs/protocol.md, STATS client row); 14-15 are unused. */
static const char *const command_names[] = {
	"get-display-info", "resource-create-2d", "resource-unref", "set-scanout",
	"resource-flush", "transfer-to-host-2d", "attach-backing", "detach-backing",
	"resource-create-blob", "set-scanout-blob", "update-cursor", "move-cursor", "other",
	"get-edid",
};
_Static_assert(VGB_ARRAY_SIZE(command_names) <= VGB_WIRE_STATS_COMMANDS,
	       "more command names than wire counters");

static const char *path_name(uint32_t p)
{
	static const char *const names[] = { "none", "dmabuf", "egl", "shm-direct", "shm-copy",
					     "capture" };
	return p < VGB_ARRAY_SIZE(names) ? names[p] : "?";
}

static void print_ms(const char *label, uint64_t ns)
{
	printf("%s%.3f ms", label, (double)ns / 1e6);
}

static void print_global(const struct vgb_wire_stats_global *g)
{
	char name[sizeof(g->display_name) + 1];

	memcpy(name, g->display_name, sizeof(g->display_name));
	name[sizeof(g->display_name)] = 0;
	printf("daemon: up %.1f s, clients %u now, %llu accepted, %llu rejected\n",
	       (double)g->uptime_ns / 1e9, g->clients_now,
	       (unsigned long long)g->clients_accepted, (unsigned long long)g->clients_rejected);
	printf("display: %s (%s), path %s, frames %llu presented, %llu dropped\n", name,
	       g->display_connected ? "connected" : "not connected", path_name(g->display_path),
	       (unsigned long long)g->frames_presented, (unsigned long long)g->frames_dropped);
	printf("display copies: %llu frames copied, %llu bytes, %.2f copies per presented frame; "
	       "dmabufs refused %llu\n",
	       (unsigned long long)g->frame_copies, (unsigned long long)g->bytes_copied,
	       g->frames_presented ? (double)g->frame_copies / (double)g->frames_presented : 0.0,
	       (unsigned long long)g->dmabuf_failed);
	print_ms("display latency (flush -> presented): p50 ", g->latency_p50_ns);
	print_ms(", p99 ", g->latency_p99_ns);
	printf("\n");
	printf("page faults: %u queues read, %llu groups answered, %llu errors\n", g->fault_queues,
	       (unsigned long long)g->fault_groups, (unsigned long long)g->fault_errors);
}

static void print_client(const struct vgb_wire_stats_client *r)
{
	printf("client %u (pid %d): %u windows, %u devices, %u resources\n", r->client_id, r->pid,
	       r->windows, r->devices, r->resources);
	printf("  blobs now: vfio-dmabuf %u, udmabuf %u, cpu-view %u; exports made: vfio-dmabuf "
	       "%llu, udmabuf %llu, cpu-view %llu, failed %llu\n",
	       r->blobs_vfio_dmabuf, r->blobs_udmabuf, r->blobs_cpu,
	       (unsigned long long)r->exports_vfio_dmabuf, (unsigned long long)r->exports_udmabuf,
	       (unsigned long long)r->exports_cpu, (unsigned long long)r->export_failures);
	printf("  segments: %llu after merging, %llu merged away; blobs invalidated %llu\n",
	       (unsigned long long)r->blob_segments, (unsigned long long)r->segments_merged,
	       (unsigned long long)r->blobs_invalidated);
	printf("  requests %llu (errors %llu); gpu commands %llu (errors %llu)\n",
	       (unsigned long long)r->requests, (unsigned long long)r->request_errors,
	       (unsigned long long)r->gpu_commands, (unsigned long long)r->gpu_errors);
	printf("  flushes %llu, frames presented %llu, bridge copies %llu (%llu bytes), "
	       "%.2f copies per frame\n",
	       (unsigned long long)r->flushes, (unsigned long long)r->frames_presented,
	       (unsigned long long)r->copies, (unsigned long long)r->bytes_copied,
	       r->frames_presented ? (double)r->copies / (double)r->frames_presented : 0.0);
	printf("  fences: %llu completed (%llu at the deadline), %llu pending",
	       (unsigned long long)r->fences_completed, (unsigned long long)r->fences_timed_out,
	       (unsigned long long)r->fences_pending);
	if (r->fences_replied) {
		print_ms("; latency avg ", r->fence_latency_sum_ns / r->fences_replied);
		print_ms(", max ", r->fence_latency_max_ns);
	}
	printf("\n  commands:");
	for (unsigned i = 0; i < VGB_ARRAY_SIZE(command_names); i++)
		if (r->commands[i])
			printf(" %s=%llu", command_names[i], (unsigned long long)r->commands[i]);
	printf("\n");
}

int vgb_ctl_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows = NULL;
	struct vgb_client *c = NULL;
	struct vgb_msg_hello_reply hello = { 0 };
	char path[108];
	int o, r;

	vgb_ctl_default_socket(path, sizeof(path));
	optind = 1;
	while ((o = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
		switch (o) {
		case 's':
			snprintf(path, sizeof(path), "%s", optarg);
			break;
		case 'h':
			printf("Usage: vgbctl stats [--socket PATH]\n"
			       "Prints vgbridged's counters: per client blobs by strategy, commands,\n"
			       "errors, fences and their latency; the display's path, copies per frame\n"
			       "and latency.\n");
			return 0;
		default:
			return 2;
		}
	}
	r = vgb_client_connect(path, &c);
	if (r < 0) {
		fprintf(stderr, "vgbctl: cannot connect to %s: %s\n", path, strerror(-r));
		return 1;
	}
	r = vgb_client_hello(c, &hello);
	if (r == 0)
		r = vgb_client_stats(c, 0, &g, &rows);
	if (r < 0) {
		fprintf(stderr, "vgbctl: STATS: %s\n", strerror(-r));
		vgb_client_destroy(c);
		return 1;
	}
	print_global(&g);
	if (g.n_clients <= 1)
		printf("no other clients\n");
	for (uint32_t i = 0; i < g.n_clients; i++) {
		if (rows[i].client_id == hello.client_id)
			continue; /* this connection */
		print_client(&rows[i]);
	}
	free(rows);
	vgb_client_destroy(c);
	return 0;
}
