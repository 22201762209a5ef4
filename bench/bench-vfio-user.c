/* SPDX-License-Identifier: MIT */
/*
 * The CPU view of a scattered blob over the vfio-user backend, against the kernel backend on
 * the fake VFIO kernel, in the same run.
 *
 * Both builds are the planner's: vgb_vfio_segments() over the blob's pages (region info from
 * the cache, memory decode checked once per build through a PCI_COMMAND config read), then
 * vgb_segmap_create() and vgb_segmap_destroy(). What differs is the backend under them: the
 * kernel backend's config read is a pread of the (fake) device fd; the vfio-user backend's is
 * a REGION_READ message to vgbridge's own vfio-user server, running its loop in a thread of
 * this process, and its mmaps are of the server's memfd instead of the device fd.
 * "ours" is vfio-user, the baseline the kernel backend: the ratio says what the protocol
 * costs per build (below 1 is slower; the goal is "no worse than half the kernel's speed").
 *
 * Self-checks (TAP): both views equal the blob byte for byte, and the vfio-user build sends one
 * message (the config read) per build after the first.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "bench.h"
#include "fake-vfio.h"
#include "scatter.h"
#include "tap.h"
#include "vgb/mem.h"
#include "vgb/util.h"
#include "vgb/vfio.h"
#include "vus.h"

#define REGION VFIO_PCI_BAR2_REGION_INDEX

struct srv {
	struct vgb_vus *vus;
	pthread_t thread;
	int stop;
};

static void *srv_main(void *data)
{
	struct srv *s = data;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vgb_vus_get_fd(s->vus), .events = POLLIN },
			{ .fd = s->stop, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		vgb_vus_dispatch(s->vus, 0);
	}
}

struct side {
	struct vgb_vfio_device *dev;
	struct vgb_segment *segs;
	struct vgb_segmap *map;
};

struct ctx {
	const struct scatter *s;
	struct vgb_vfio_range *ranges;
	struct side vu, kernel;
};

static int build(struct ctx *c, struct side *sd)
{
	int r = vgb_vfio_segments(sd->dev, REGION, c->ranges, c->s->n_pages, sd->segs);

	if (r < 0)
		return r;
	return vgb_segmap_create(sd->segs, c->s->n_pages, -1, &sd->map);
}

static void teardown(struct side *sd)
{
	vgb_segmap_destroy(sd->map);
	sd->map = NULL;
}

static int run_vu(void *data)
{
	struct ctx *c = data;
	int r = build(c, &c->vu);

	if (r == 0)
		teardown(&c->vu);
	return r;
}

static int run_kernel(void *data)
{
	struct ctx *c = data;
	int r = build(c, &c->kernel);

	if (r == 0)
		teardown(&c->kernel);
	return r;
}

static bool check(struct ctx *c, struct side *sd, const char *label)
{
	int r = build(c, sd);
	bool ok = tap_is_int(r, 0, "%s builds", label);

	if (r == 0) {
		ok &= tap_ok(memcmp(sd->map->addr, c->s->expected,
				    (size_t)c->s->n_pages * VGB_PAGE_SIZE) == 0,
			     "%s: the view equals the blob", label);
		teardown(sd);
	}
	return ok;
}

int main(void)
{
	const uint32_t width = 1920, height = 1080, runs = 64, reps = 61;
	uint32_t pages = (uint32_t)(VGB_ALIGN_UP((uint64_t)width * height * 4, VGB_PAGE_SIZE) /
				    VGB_PAGE_SIZE);
	struct bench_row row = { .bench = "cpu-view", .goal = "x >= 0.5" };
	struct vgb_vus_stats st0, st1;
	struct bench_stat so, sb;
	struct scatter s;
	struct ctx c = { .s = &s };
	struct fake_vfio *f;
	struct srv srv;
	int sv[2], r, before_fds = bench_count_fds();
	uint64_t one = 1;

	tap_plan_lazy();
	bench_print_machine();

	/* The fake kernel's regions are at most 16 MiB: one 1080p frame in 64 runs fits. */
	r = scatter_init(&s, pages, runs, 1u << FAKE_VFIO_REGION_SHIFT, 0x9e3779b97f4a7c15ull);
	if (r < 0)
		tap_bail("scatter: %s", strerror(-r));
	c.ranges = calloc(pages, sizeof(*c.ranges));
	c.vu.segs = calloc(pages, sizeof(*c.vu.segs));
	c.kernel.segs = calloc(pages, sizeof(*c.kernel.segs));
	if (!c.ranges || !c.vu.segs || !c.kernel.segs)
		tap_bail("oom");
	for (uint32_t i = 0; i < pages; i++)
		c.ranges[i] = (struct vgb_vfio_range){ s.page_off[i], VGB_PAGE_SIZE };

	/* vfio-user: our server in a thread, our backend over a socketpair. */
	r = vgb_vus_create("bar2=16M", NULL, &srv.vus);
	if (r < 0)
		tap_bail("vfio-user server: %s", strerror(-r));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    vgb_vus_attach(srv.vus, sv[1]) < 0)
		tap_bail("socketpair");
	srv.stop = eventfd(0, EFD_CLOEXEC);
	pthread_create(&srv.thread, NULL, srv_main, &srv);
	if (vgb_vfio_user_adopt(sv[0], "bench", &c.vu.dev) < 0)
		tap_bail("vfio-user adopt");
	if (scatter_fill(&s, vgb_vfio_vdev_region_memfd(vgb_vus_device(srv.vus), REGION), 0) < 0)
		tap_bail("fill");

	/* Kernel backend over the fake VFIO kernel. */
	f = fake_vfio_create();
	if (!f)
		tap_bail("fake vfio");
	f->regions[REGION].size = 1u << FAKE_VFIO_REGION_SHIFT;
	if ((r = fake_vfio_layout(f)) < 0)
		tap_bail("fake layout: %s", strerror(-r));
	fake_vfio_install(f);
	if (vgb_vfio_kernel_adopt(fake_vfio_dup_device(f), "fake", &c.kernel.dev) < 0)
		tap_bail("kernel adopt");
	if (scatter_fill(&s, f->device_fd, fake_vfio_region_offset(REGION)) < 0)
		tap_bail("fill");

	tap_diag("1920x1080 XRGB8888: %u entries of 4 KiB in %u runs, shuffled", pages, s.n_runs);
	bool ok = check(&c, &c.vu, "vfio-user");
	ok &= check(&c, &c.kernel, "kernel backend, fake VFIO");
	vgb_vus_get_stats(srv.vus, &st0);
	ok &= check(&c, &c.vu, "vfio-user, again");
	vgb_vus_get_stats(srv.vus, &st1);
	ok &= tap_is_uint(st1.messages - st0.messages, 1,
			  "vfio-user: one message per build once the region info is cached");
	if (ok) {
		r = bench_pair(run_vu, run_kernel, &c, 2, reps, &so, &sb);
		if (tap_is_int(r, 0, "timed runs succeed")) {
			row.name = "1920x1080, 64 runs: vfio-user vs kernel (fake VFIO)";
			bench_fmt_stat(row.ours, sizeof(row.ours), &so);
			bench_fmt_stat(row.base, sizeof(row.base), &sb);
			row.ratio = (double)sb.median_ns / (double)(so.median_ns ? so.median_ns : 1);
			row.met = bench_goal_at_least(row.ratio, 0.5);
			snprintf(row.notes, sizeof(row.notes),
				 "build+teardown, n=%zu; ours = vfio-user backend (1 REGION_READ to an "
				 "in-process server thread per build), base = kernel backend on the "
				 "fake VFIO kernel (1 pread)", so.n);
			bench_report(&row);
			tap_diag("min: vfio-user %llu us, kernel %llu us (the median includes waking "
				 "the server thread on a shared machine)",
				 (unsigned long long)so.min_ns / 1000,
				 (unsigned long long)sb.min_ns / 1000);
		}
	}

	vgb_vfio_device_destroy(c.kernel.dev);
	fake_vfio_remove();
	fake_vfio_destroy(f);
	vgb_vfio_device_destroy(c.vu.dev);
	if (write(srv.stop, &one, sizeof(one)) != sizeof(one))
		tap_bail("eventfd");
	pthread_join(srv.thread, NULL);
	vgb_vus_destroy(srv.vus);
	close(srv.stop);
	free(c.ranges);
	free(c.vu.segs);
	free(c.kernel.segs);
	scatter_finish(&s);
	tap_is_int(bench_count_fds(), before_fds, "no fd left behind");
	return tap_done();
}
