/* SPDX-License-Identifier: MIT */
/*
 * The capture display under a 60 Hz flood of full frames, 1080p and 4K: how long present()
 * holds the caller's loop. That is both how long a fenced flush takes (the frame completes in
 * present(), after its one copy) and how long any other client's request can wait behind a
 * frame. The PNG encoding runs on the sink's worker thread and is not in it.
 * Baseline: one memcpy of the frame in this process, timed right after each present().
 * Goals (docs/PERFORMANCE.md): p99 under the daemon's 20 ms fence deadline, and under 5 ms for
 * another client's request.
 *
 * Self-checks: every frame completes once with 0; once the sink is destroyed (it writes what
 * is queued first), frames.txt has one line per frame written, and written + dropped frames
 * account for every frame.
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"

#define FRAMES 30u
#define PERIOD_NS 16666667ull

static unsigned done_ok, done_other;

static void on_done(void *data, int status)
{
	if (status == 0)
		done_ok++;
	else
		done_other++;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull), (long)(t % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static unsigned count_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned n = 0;
	int c;

	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

static void measure(const char *name, uint32_t w, uint32_t h)
{
	char dir[] = "/tmp/vgb-bench-capture-XXXXXX", path[256], cmd[300];
	size_t stride = (size_t)w * 4, size = stride * h;
	uint8_t *frame = malloc(size), *dst = malloc(size);
	uint64_t present_ns[FRAMES], copy_ns[FRAMES], next;
	struct vgb_display *d = NULL;
	struct vgb_display_stats st;
	struct bench_stat ours, base;
	struct bench_row row = { .bench = "capture" };
	char rname[96];
	bool ok = true;
	int r;

	if (!frame || !dst || !mkdtemp(dir))
		tap_bail("oom or mkdtemp");
	/* A gradient: cheap to compress, so the disk is not what is measured. */
	for (size_t i = 0; i < size / 4; i++)
		((uint32_t *)(void *)frame)[i] = (uint32_t)(i % w) * 0x010101u;
	r = vgb_display_create_capture(dir, &d);
	if (!tap_is_int(r, 0, "%s: capture sink", name))
		goto out;
	done_ok = done_other = 0;
	next = mono_ns();
	for (unsigned i = 0; i < FRAMES && ok; i++) {
		struct vgb_cpu_view v = { .data = frame, .stride = (uint32_t)stride, .memfd = -1 };
		struct vgb_frame f = { .width = w, .height = h, .fourcc = DRM_FORMAT_XRGB8888,
				       .cpu = &v, .damage = { 0, 0, w, h }, .done = on_done };
		uint64_t t0, t1, t2;

		sleep_until(next);
		next += PERIOD_NS;
		frame[0] = (uint8_t)i; /* every frame differs */
		t0 = mono_ns();
		ok &= vgb_display_present(d, &f) == 0;
		t1 = mono_ns();
		memcpy(dst, frame, size);
		t2 = mono_ns();
		present_ns[i] = t1 - t0;
		copy_ns[i] = t2 - t1;
	}
	ok &= tap_ok(ok && done_ok == FRAMES && done_other == 0,
		     "%s: %u frames taken, each completed once with 0", name, FRAMES);
	vgb_display_get_stats(d, &st);
	unsigned queued = st.frames_pending;
	vgb_display_destroy(d); /* writes what is queued */
	d = NULL;
	snprintf(path, sizeof(path), "%s/frames.txt", dir);
	unsigned lines = count_lines(path);
	ok &= tap_ok(lines > 0 && lines + st.frames_dropped >= FRAMES - queued,
		     "%s: %u frames written, %llu dropped by the bounded queue", name, lines,
		     (unsigned long long)st.frames_dropped);
	if (!ok)
		goto out;
	bench_stat_compute(present_ns, FRAMES, &ours);
	bench_stat_compute(copy_ns, FRAMES, &base);

	snprintf(rname, sizeof(rname), "%s: present() = fenced flush = loop held", name);
	row = (struct bench_row){ .bench = "capture", .name = rname, .goal = "p99 < 5 ms" };
	bench_fmt_stat(row.ours, sizeof(row.ours), &ours);
	bench_fmt_stat(row.base, sizeof(row.base), &base);
	row.ratio = (double)base.median_ns / (double)ours.median_ns;
	row.met = ours.p99_ns < 5000000ull ? BENCH_GOAL_MET : BENCH_GOAL_NOT_MET;
	snprintf(row.notes, sizeof(row.notes),
		 "%u full frames at 60 Hz; PNG encoding on the worker thread (%u written, %llu "
		 "dropped); baseline: one memcpy of the frame; fence deadline 20 ms: %s",
		 FRAMES, lines, (unsigned long long)st.frames_dropped,
		 ours.p99_ns < 20000000ull ? "met" : "NOT MET");
	bench_report(&row);
out:
	vgb_display_destroy(d);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
	free(frame);
	free(dst);
}

int main(void)
{
	tap_plan_lazy();
	bench_print_machine();
	measure("1920x1080", 1920, 1080);
	measure("3840x2160", 3840, 2160);
	return tap_done();
}
