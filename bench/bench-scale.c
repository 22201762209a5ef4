/* SPDX-License-Identifier: MIT */
/*
 * Bench 6: scale. RSS and open fds of a vgbridged process (no display) with 1, 16 and 64
 * clients, each with a 128 MiB RAM memfd window and 8 blobs of 8 MiB (2048 page entries in 64
 * shuffled runs, as a guest's framebuffers would be). Daemon memory per blob excludes guest
 * memory: it is the growth of RssAnon (the daemon's own heap and stacks; guest pages are shmem
 * and are never touched here) from the same clients without blobs to them with blobs.
 * Baseline: a host copy of the blob (8 MiB), what a bridge that copies blobs into its own
 * memory holds per blob.
 *
 * Self-checks: every request and command answers OK; STATS shows the clients and 8 blobs each;
 * each client costs the same number of fds whatever the number of clients, blobs cost none
 * (their strategy is the CPU view: no dmabuf fd on this host); after every client has gone the
 * daemon is back to its idle fd count.
 * argv: VGBRIDGED
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "bench.h"
#include "client.h"
#include "guest.h"
#include "tap.h"
#include "vgb/util.h"

#define BLOBS 8u
#define BLOB_SIZE (8ull << 20)
#define BLOB_PAGES ((uint32_t)(BLOB_SIZE / VGB_PAGE_SIZE))
#define RUNS 64u
#define RAM_SIZE (128ull << 20)
#define MAX_CLIENTS 64u

static const char *vgbridged;
static char sock_path[128];
static pid_t daemon_pid;

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct usage {
	uint64_t rss, anon; /* bytes */
	int fds;
};

static int measure(struct usage *u)
{
	char path[64], line[256];
	FILE *f;
	int n = 0;

	*u = (struct usage){ 0 };
	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;

		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			u->rss = kb << 10;
		else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1)
			u->anon = kb << 10;
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)daemon_pid);
	{
		DIR *d = opendir(path);
		struct dirent *e;

		if (!d)
			return -errno;
		while ((e = readdir(d)))
			n += e->d_name[0] != '.';
		closedir(d);
	}
	u->fds = n;
	return 0;
}

/*
 * Measures once the daemon has settled: the last probe's disconnect is processed after
 * STATS answered, so wait for two equal fd counts 50 ms apart.
 */
static int measure_settled(struct usage *u)
{
	struct usage prev;
	int r = measure(&prev);

	for (int i = 0; r == 0 && i < 100; i++) {
		usleep(50000);
		if ((r = measure(u)) < 0 || u->fds == prev.fds)
			return r;
		prev = *u;
	}
	return r < 0 ? r : -ETIMEDOUT;
}

/* The blob entries of blob @b: 64 runs in shuffled slots of the client's RAM. */
static uint32_t make_entries(uint32_t b, struct virtio_gpu_mem_entry *e)
{
	uint64_t seed = 0xbb67ae8584caa73bull + b;
	uint32_t slot[RUNS], slot_pages = BLOB_PAGES / RUNS + 1;
	uint64_t base = (uint64_t)b * (RAM_SIZE / BLOBS);

	for (uint32_t i = 0; i < RUNS; i++)
		slot[i] = i;
	bench_shuffle(slot, RUNS, &seed);
	for (uint32_t r = 0; r < RUNS; r++)
		for (uint32_t k = 0; k < BLOB_PAGES / RUNS; k++)
			e[r * (BLOB_PAGES / RUNS) + k] = (struct virtio_gpu_mem_entry){
				htole64(base + ((uint64_t)slot[r] * slot_pages + k) * VGB_PAGE_SIZE),
				htole32(VGB_PAGE_SIZE), 0 };
	return BLOB_PAGES;
}

static int connect_client(struct vgb_client **ret)
{
	_cleanup_close_ int memfd = memfd_create("bench-scale-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct vgb_client *c;
	int r;

	if (memfd < 0 || ftruncate(memfd, (off_t)RAM_SIZE) < 0)
		return -errno;
	r = vgb_client_connect(sock_path, &c);
	if (r < 0)
		return r;
	if ((r = vgb_client_hello(c, NULL)) < 0 ||
	    (r = vgb_client_add_ram(c, memfd, 0, RAM_SIZE, 0)) < 0) {
		vgb_client_destroy(c);
		return r;
	}
	*ret = c;
	return 0;
}

static int create_blobs(struct vgb_client *c, uint8_t *cmd, size_t cap,
			struct virtio_gpu_mem_entry *e)
{
	for (uint32_t b = 0; b < BLOBS; b++) {
		uint8_t resp[64];
		size_t len, rlen = 0;
		uint32_t n = make_entries(b, e);
		int r;

		len = vgb_guest_create_blob(cmd, cap, b + 1, VIRTIO_GPU_BLOB_MEM_GUEST,
					    VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, BLOB_SIZE, e, n);
		if (!len)
			return -E2BIG;
		r = vgb_client_gpu_cmd(c, 0, cmd, len, resp, sizeof(resp), &rlen);
		if (r < 0)
			return r;
		if (vgb_guest_resp_type(resp, rlen) != VIRTIO_GPU_RESP_OK_NODATA)
			return -EPROTO;
	}
	return 0;
}

/* Waits until STATS shows @n clients (disconnects are processed asynchronously). */
static bool wait_clients(uint32_t n)
{
	uint64_t deadline = mono_ns() + 5000000000ull;
	struct vgb_client *probe;

	while (mono_ns() < deadline) {
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;
		int r;

		if (vgb_client_connect(sock_path, &probe) < 0)
			return false;
		r = vgb_client_hello(probe, NULL);
		if (r == 0)
			r = vgb_client_stats(probe, 0, &g, &rows);
		free(rows);
		vgb_client_destroy(probe);
		/* the probe itself is one client */
		if (r == 0 && g.clients_now == n + 1)
			return true;
		usleep(20000);
	}
	return false;
}

int main(int argc, char **argv)
{
	static const uint32_t counts[] = { 1, 16, 64 };
	char dir[] = "/tmp/vgb-bench-scale-XXXXXX";
	struct vgb_client *clients[MAX_CLIENTS] = { 0 };
	size_t cap = sizeof(struct virtio_gpu_resource_create_blob) +
		     BLOB_PAGES * sizeof(struct virtio_gpu_mem_entry);
	_cleanup_free_ uint8_t *cmd = malloc(cap);
	_cleanup_free_ struct virtio_gpu_mem_entry *e = calloc(BLOB_PAGES, sizeof(*e));
	struct usage idle, after;
	int per_client_fds = -1, status = 0, r;
	uint64_t deadline;

	tap_plan_lazy();
	bench_print_machine();
	if (argc < 2)
		tap_bail("usage: bench-scale VGBRIDGED");
	if (!cmd || !e)
		tap_bail("oom");
	vgbridged = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp: %m");
	snprintf(sock_path, sizeof(sock_path), "%s/vgb.sock", dir);
	daemon_pid = fork();
	if (daemon_pid < 0)
		tap_bail("fork: %m");
	if (daemon_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(vgbridged, vgbridged, "--socket", sock_path, "--display", "none",
		      "--max-clients", "80", "--log-level", "warn", (char *)NULL);
		_exit(127);
	}
	deadline = mono_ns() + 10000000000ull;
	while (access(sock_path, F_OK) < 0 && mono_ns() < deadline)
		usleep(10000);
	if (!wait_clients(0))
		tap_bail("vgbridged did not come up");
	if ((r = measure_settled(&idle)) < 0)
		tap_bail("measure: %s", strerror(-r));
	tap_diag("idle vgbridged: RSS %llu KiB (anon %llu KiB), %d fds",
		 (unsigned long long)idle.rss >> 10, (unsigned long long)idle.anon >> 10, idle.fds);

	for (size_t k = 0; k < VGB_ARRAY_SIZE(counts); k++) {
		uint32_t n = counts[k];
		struct usage no_blobs, with_blobs;
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;
		struct bench_row row = { .bench = "scale", .met = BENCH_GOAL_NONE };
		char name[64];
		uint64_t blobs_ok = 0;
		double per_blob;
		bool ok = true;

		for (uint32_t i = 0; i < n && ok; i++)
			ok = connect_client(&clients[i]) == 0;
		if (!tap_ok(ok, "%u clients connect and add their RAM", n))
			goto disconnect;
		measure(&no_blobs);
		for (uint32_t i = 0; i < n && ok; i++)
			ok = create_blobs(clients[i], cmd, cap, e) == 0;
		if (!tap_ok(ok, "%u clients create %u blobs of 8 MiB each", n, BLOBS))
			goto disconnect;
		measure(&with_blobs);
		r = vgb_client_stats(clients[0], 0, &g, &rows);
		if (r == 0)
			for (uint32_t i = 0; i < g.n_clients; i++)
				blobs_ok += rows[i].resources == BLOBS &&
					    rows[i].blobs_cpu + rows[i].blobs_udmabuf +
						    rows[i].blobs_vfio_dmabuf == BLOBS;
		free(rows);
		ok &= tap_ok(r == 0 && g.n_clients == n && blobs_ok == n,
			     "%u clients: STATS shows each with %u blobs", n, BLOBS);
		if (per_client_fds < 0)
			per_client_fds = no_blobs.fds - idle.fds;
		ok &= tap_is_int(no_blobs.fds - idle.fds, (long long)n * per_client_fds,
				 "%u clients: %d fds per client", n, per_client_fds);
		ok &= tap_is_int(with_blobs.fds, no_blobs.fds, "%u clients: blobs add no fd", n);
		if (ok) {
			per_blob = with_blobs.anon > no_blobs.anon
					   ? (double)(with_blobs.anon - no_blobs.anon) / (n * BLOBS) : 0;
			snprintf(name, sizeof(name), "%u client%s x 8 blobs of 8 MiB", n, n > 1 ? "s" : "");
			row.name = name;
			snprintf(row.ours, sizeof(row.ours), "%.0f B/blob", per_blob);
			snprintf(row.base, sizeof(row.base), "%llu B/blob", BLOB_SIZE);
			row.ratio = per_blob > 0 ? (double)BLOB_SIZE / per_blob : -1;
			snprintf(row.notes, sizeof(row.notes),
				 "daemon RSS %llu KiB (anon %llu), %d fds; idle: %llu KiB (anon %llu), "
				 "%d fds; %d fds per client; baseline: a host copy of each blob",
				 (unsigned long long)with_blobs.rss >> 10,
				 (unsigned long long)with_blobs.anon >> 10, with_blobs.fds,
				 (unsigned long long)idle.rss >> 10, (unsigned long long)idle.anon >> 10,
				 idle.fds, per_client_fds);
			bench_report(&row);
		}
disconnect:
		for (uint32_t i = 0; i < n; i++) {
			vgb_client_destroy(clients[i]);
			clients[i] = NULL;
		}
		tap_ok(wait_clients(0), "%u clients: the daemon saw every client go", n);
		measure_settled(&after);
		tap_is_int(after.fds, idle.fds, "%u clients: back to the idle fd count", n);
	}
	kill(daemon_pid, SIGTERM);
	if (waitpid(daemon_pid, &status, 0) < 0 || !WIFEXITED(status))
		status = -1;
	tap_is_int(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0, "vgbridged exits 0 on SIGTERM");
	unlink(sock_path);
	rmdir(dir);
	return tap_done();
}
