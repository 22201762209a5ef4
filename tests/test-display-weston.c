/* SPDX-License-Identifier: MIT */
/*
 * The Wayland sink against a real weston 10 (headless, pixman), checked by screenshots:
 * shm zero-copy from a memfd range, gather copy from a scattered CPU view, damage limited to
 * the damaged rectangle, latest-frame-wins, buffer rotation without stalls, every commit
 * presented, completion callbacks (the fenced-flush hook), latency stats.
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "leak.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "weston-harness.h"

#define W 160
#define H 120
#define STRIDE (W * 4 + 64) /* padded rows: the sink must honour the stride */

struct done_log {
	unsigned calls;
	unsigned ok, canceled, other;
	int last;
};

static void on_done(void *data, int status)
{
	struct done_log *l = data;

	l->calls++;
	l->last = status;
	if (status == 0)
		l->ok++;
	else if (status == -ECANCELED)
		l->canceled++;
	else
		l->other++;
}

static uint32_t pattern(unsigned seed, uint32_t x, uint32_t y)
{
	return (((x * 7 + seed * 31) & 0xff) << 16) | (((y * 5 + seed * 17) & 0xff) << 8) |
	       ((x ^ y ^ seed) & 0xff);
}

/* Like a guest: writes only what it then reports as damaged. */
static void fill_rect(void *base, uint32_t stride, const struct vgb_rect *r, unsigned seed)
{
	for (uint32_t y = r->y; y < r->y + r->height; y++)
		for (uint32_t x = r->x; x < r->x + r->width; x++)
			((uint32_t *)((char *)base + (size_t)y * stride))[x] = pattern(seed, x, y);
}

static void fill(void *base, uint32_t stride, unsigned seed)
{
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			((uint32_t *)((char *)base + (size_t)y * stride))[x] = pattern(seed, x, y);
}

/* The screen we expect: XRGB8888 shows with alpha ff. */
static void expect_fill(uint32_t *want, unsigned seed)
{
	for (uint32_t y = 0; y < H; y++)
		for (uint32_t x = 0; x < W; x++)
			want[y * W + x] = 0xff000000u | pattern(seed, x, y);
}

static bool screen_is(struct weston *w, const uint32_t *want, const char *what)
{
	static uint32_t got[W * H];
	int r = weston_screenshot(w, got);

	if (r < 0)
		return tap_ok(false, "%s: screenshot failed (%d)", what, r);
	return tap_ok(compare_pixels(got, want, W, H) == 0, "%s: screenshot matches exactly", what);
}

struct wait_done {
	struct done_log *log;
	unsigned calls;
};

static bool done_reached(void *data)
{
	struct wait_done *w = data;

	return w->log->calls >= w->calls;
}

struct wait_stats {
	struct vgb_display *d;
};

static bool all_commits_answered(void *data)
{
	struct wait_stats *w = data;
	struct vgb_display_stats st;

	vgb_display_get_stats(w->d, &st);
	return st.frames_pending == 0 && st.frames_presented + st.frames_discarded >= st.commits;
}


static struct vgb_frame frame_for(const struct vgb_cpu_view *cpu, uint64_t id,
				  struct done_log *log)
{
	return (struct vgb_frame){
		.scanout = 0,
		.width = W,
		.height = H,
		.fourcc = DRM_FORMAT_XRGB8888,
		.buffer_id = id,
		.cpu = cpu,
		.flush_ns = vgb_now_ns(),
		.done = on_done,
		.done_data = log,
	};
}

/* A CPU view scattered over three memfds in a shuffled order, as the segment mapper builds it. */
struct scattered {
	void *base;
	size_t size;
	int fds[3];
};

static int scattered_create(struct scattered *s, size_t size)
{
	size_t pages = size / VGB_PAGE_SIZE;
	/* piece i covers pages [start, start+len) of the view and lives in memfd i at @off. */
	const struct {
		size_t start, len, off_pages;
		int fd;
	} pieces[] = {
		{ 0, pages / 3, 5, 2 },
		{ pages / 3, pages / 3, 0, 0 },
		{ 2 * (pages / 3), pages - 2 * (pages / 3), 9, 1 },
	};

	s->size = size;
	for (int i = 0; i < 3; i++) {
		s->fds[i] = memfd_create("guest-ram", MFD_CLOEXEC);
		if (s->fds[i] < 0 || ftruncate(s->fds[i], (off_t)(size + 16 * VGB_PAGE_SIZE)) < 0)
			return -errno;
	}
	s->base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->base == MAP_FAILED)
		return -errno;
	for (size_t i = 0; i < VGB_ARRAY_SIZE(pieces); i++) {
		void *p = mmap((char *)s->base + pieces[i].start * VGB_PAGE_SIZE,
			       pieces[i].len * VGB_PAGE_SIZE, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, s->fds[pieces[i].fd],
			       (off_t)(pieces[i].off_pages * VGB_PAGE_SIZE));
		if (p == MAP_FAILED)
			return -errno;
	}
	return 0;
}

static void scattered_destroy(struct scattered *s)
{
	munmap(s->base, s->size);
	for (int i = 0; i < 3; i++)
		close(s->fds[i]);
}

int main(void)
{
	static uint32_t want[W * H];
	struct leak_snapshot before;
	struct weston w;
	struct vgb_display *d = NULL;
	struct vgb_display_stats st, st0;
	struct vgb_display_options opts = { .title = "testvm", .fullscreen = true,
					    .timeout_ms = 2000 };
	struct done_log log = { 0 };
	int r;

	tap_plan_lazy();
	leak_snapshot(&before);
	r = weston_start(&w, W, H);
	if (r < 0)
		tap_bail("cannot start weston: %s", strerror(-r));
	/* The harness's own connection and weston's fds count as the baseline for the sink. */
	leak_snapshot(&before);

	r = vgb_display_create_wayland(w.socket, &opts, &d);
	tap_is_int(r, 0, "create the Wayland sink on %s", w.socket);
	if (r < 0)
		tap_bail("no sink");
	vgb_display_get_stats(d, &st);
	tap_ok(st.connected, "stats say connected");
	tap_ok(vgb_display_get_fd(d) >= 0, "the sink exposes an fd for the caller's loop");

	/* ---- 1. shm zero copy from a memfd range ---- */
	{
		const size_t off = 64 * 1024 + 4096 * 3;
		const size_t size = 1 << 20;
		int memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		void *ram;
		struct vgb_cpu_view view;
		struct vgb_frame f;
		struct wait_done wd = { &log, 1 };

		/* Sealed against shrinking, as QEMU's memfd RAM is. */
		tap_ok(memfd >= 0 && ftruncate(memfd, size) == 0 &&
			       fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0,
		       "guest RAM memfd, sealed against shrinking");
		ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		fill((char *)ram + off, STRIDE, 1);
		view = (struct vgb_cpu_view){ .data = (char *)ram + off, .stride = STRIDE,
					      .memfd = memfd, .memfd_offset = off,
					      .memfd_size = size };
		f = frame_for(&view, 100, &log);
		r = vgb_display_present(d, &f);
		tap_is_int(r, 0, "present a frame that lies in one memfd range");
		tap_ok(pump_until(d, done_reached, &wd, 5000), "its completion fires");
		tap_is_int(log.last, 0, "completed with status 0 (shown)");
		vgb_display_get_stats(d, &st);
		tap_is_str(vgb_present_path_name(st.last_path), "shm-direct", "path taken");
		tap_is_uint(st.copies, 0, "no CPU copy");
		tap_is_uint(st.bytes_copied, 0, "no byte copied");
		expect_fill(want, 1);
		screen_is(&w, want, "shm-direct frame");

		/* Zero copy: what the guest writes is what the compositor reads. */
		fill((char *)ram + off, STRIDE, 2);
		f = frame_for(&view, 100, &log);
		wd.calls = 2;
		r = vgb_display_present(d, &f);
		tap_is_int(r, 0, "present the same export again");
		tap_ok(pump_until(d, done_reached, &wd, 5000) && log.last == 0,
		       "second frame completes with 0");
		vgb_display_get_stats(d, &st);
		tap_is_uint(st.cached_buffers, 1, "one cached wl_buffer for the export");
		tap_is_uint(st.copies, 0, "still no CPU copy");
		expect_fill(want, 2);
		screen_is(&w, want, "second shm-direct frame");

		vgb_display_forget(d, 100);
		vgb_display_get_stats(d, &st);
		tap_is_uint(st.cached_buffers, 0, "forget drops the cached wl_buffer");
		munmap(ram, size);
		close(memfd);
	}

	/* ---- 2. gather copy from a scattered CPU view ---- */
	struct scattered sc = { 0 };
	size_t view_size = VGB_ALIGN_UP((size_t)STRIDE * H, VGB_PAGE_SIZE);
	r = scattered_create(&sc, view_size);
	tap_is_int(r, 0, "scattered view over 3 memfds");
	{
		struct vgb_cpu_view view = { .data = sc.base, .stride = STRIDE, .memfd = -1 };
		struct vgb_frame f;
		struct wait_done wd = { &log, log.calls + 1 };

		vgb_display_get_stats(d, &st0);
		fill(sc.base, STRIDE, 3);
		f = frame_for(&view, 0, &log);
		r = vgb_display_present(d, &f);
		tap_is_int(r, 0, "present a scattered view");
		tap_ok(pump_until(d, done_reached, &wd, 5000) && log.last == 0,
		       "completes with 0 once copied");
		tap_ok(pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000),
		       "the commit is presented");
		vgb_display_get_stats(d, &st);
		tap_is_str(vgb_present_path_name(st.last_path), "shm-copy", "path taken");
		tap_is_uint(st.copies - st0.copies, 1, "one copy");
		tap_is_uint(st.bytes_copied - st0.bytes_copied, (uint64_t)W * H * 4,
			    "the first frame copies the whole frame once");
		expect_fill(want, 3);
		screen_is(&w, want, "gather-copied frame");

		/* ---- 3. damage: only the damaged rectangle changes ---- */
		const struct vgb_rect dmg = { 17, 23, 61, 29 };
		fill(sc.base, STRIDE, 4); /* the guest changed everything but reports only dmg */
		f = frame_for(&view, 0, &log);
		f.damage = dmg;
		wd.calls = log.calls + 1;
		vgb_display_get_stats(d, &st0);
		r = vgb_display_present(d, &f);
		tap_is_int(r, 0, "present with a damage rectangle");
		tap_ok(pump_until(d, done_reached, &wd, 5000) && log.last == 0, "completes");
		tap_ok(pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000),
		       "the commit is presented");
		for (uint32_t y = dmg.y; y < dmg.y + dmg.height; y++)
			for (uint32_t x = dmg.x; x < dmg.x + dmg.width; x++)
				want[y * W + x] = 0xff000000u | pattern(4, x, y);
		screen_is(&w, want, "only the damaged rectangle changed");
		vgb_display_get_stats(d, &st);
		tap_ok(st.bytes_copied - st0.bytes_copied <
			       (uint64_t)W * H * 4 + (uint64_t)dmg.width * dmg.height * 4 + 1,
		       "copied at most a refresh of the new buffer plus the damage (%llu bytes)",
		       (unsigned long long)(st.bytes_copied - st0.bytes_copied));

		/* ---- 4. rotation: a steady stream, every commit presented, no stall ---- */
		const unsigned n = 40;
		unsigned first = log.calls;
		vgb_display_get_stats(d, &st0);
		for (unsigned i = 0; i < n; i++) {
			struct vgb_rect band = { 0, (i * 3) % H, W, 3 };
			fill(sc.base, STRIDE, 10 + i);
			f = frame_for(&view, 0, &log);
			f.damage = band;
			wd.calls = log.calls + 1;
			if (vgb_display_present(d, &f) < 0 || !pump_until(d, done_reached, &wd, 5000))
				break;
			/* A guest that waits for the screen: the next frame once this one was shown. */
			if (!pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000))
				break;
			for (uint32_t y = band.y; y < band.y + band.height; y++)
				for (uint32_t x = 0; x < W; x++)
					want[y * W + x] = 0xff000000u | pattern(10 + i, x, y);
		}
		tap_is_uint(log.calls - first, n, "all %u frames completed", n);
		tap_ok(pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000),
		       "every commit answered");
		vgb_display_get_stats(d, &st);
		tap_is_uint(st.frames_presented - st0.frames_presented, st.commits - st0.commits,
			    "every commit was presented");
		tap_is_uint(st.frames_discarded - st0.frames_discarded, 0, "none discarded");
		tap_is_uint(st.stalls - st0.stalls, 0, "no frame waited for a free buffer");
		tap_ok(st.shm_buffers >= 2 && st.shm_buffers <= 3, "buffers rotate within a pool of %u",
		       st.shm_buffers);
		screen_is(&w, want, "after the stream");

		/* ---- 5. a burst: the latest frame wins ---- */
		first = log.calls;
		struct done_log burst = { 0 };
		vgb_display_get_stats(d, &st0);
		for (unsigned i = 0; i < 10; i++) {
			fill(sc.base, STRIDE, 100 + i);
			f = frame_for(&view, 0, &burst);
			r = vgb_display_present(d, &f);
			if (r < 0)
				break;
		}
		tap_is_int(r, 0, "10 frames presented back to back");
		wd = (struct wait_done){ &burst, 10 };
		tap_ok(pump_until(d, done_reached, &wd, 5000), "each of them completes");
		tap_ok(pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000),
		       "every commit answered");
		vgb_display_get_stats(d, &st);
		tap_is_uint(burst.calls, 10, "exactly one completion per frame");
		tap_is_uint(burst.ok + burst.canceled, 10, "each shown or replaced (ok %u, canceled %u)",
			    burst.ok, burst.canceled);
		tap_is_uint(st.frames_dropped - st0.frames_dropped,
			    burst.canceled + (st.frames_discarded - st0.frames_discarded),
			    "replaced frames, ours (%u) and the compositor's (%llu), are counted as dropped",
			    burst.canceled,
			    (unsigned long long)(st.frames_discarded - st0.frames_discarded));
		tap_ok(st.commits - st0.commits < 10, "fewer commits than frames (%llu)",
		       (unsigned long long)(st.commits - st0.commits));
		expect_fill(want, 109);
		screen_is(&w, want, "the last frame of the burst is on screen");
		/*
		 * ---- 6. back-to-back damage: frames that wait for a buffer merge, and no frame's
		 * damage is lost on the way ----
		 */
		struct done_log merged = { 0 };
		for (unsigned i = 0; i < 5; i++) {
			struct vgb_rect band = { 10 * i, 7 * i, 30, 20 };
			fill_rect(sc.base, STRIDE, &band, 200 + i);
			f = frame_for(&view, 0, &merged);
			f.damage = band;
			if (vgb_display_present(d, &f) < 0)
				break;
			for (uint32_t y = band.y; y < band.y + band.height; y++)
				for (uint32_t x = band.x; x < band.x + band.width; x++)
					want[y * W + x] = 0xff000000u | pattern(200 + i, x, y);
		}
		tap_ok(pump_until(d, done_reached, &(struct wait_done){ &merged, 5 }, 5000) &&
			       merged.calls == 5 && merged.ok + merged.canceled == 5,
		       "5 damaged frames without waiting: each completes once (%u copied, %u merged)",
		       merged.ok, merged.canceled);
		tap_ok(settle(d, 5000), "settled");
		screen_is(&w, want, "each damaged rectangle holds its own frame's pixels");

		/*
		 * ---- 7. a copied frame's fence: once it completed, the guest's memory is its own
		 * again, and what the guest writes then never reaches the frame on screen ----
		 */
		struct done_log fence = { 0 };
		fill(sc.base, STRIDE, 300);
		f = frame_for(&view, 0, &fence);
		r = vgb_display_present(d, &f);
		tap_ok(r == 0 && pump_until(d, done_reached, &(struct wait_done){ &fence, 1 }, 5000) &&
			       fence.last == 0,
		       "fenced frame completes with 0");
		fill(sc.base, STRIDE, 301); /* the guest reuses its buffer at once, and never flushes */
		tap_ok(pump_until(d, all_commits_answered, &(struct wait_stats){ d }, 5000),
		       "its commit is answered");
		expect_fill(want, 300);
		screen_is(&w, want, "a guest write after the fence completed is not on screen");

		vgb_display_get_stats(d, &st);
		tap_ok(st.latency_p50_ns > 0 && st.latency_p99_ns >= st.latency_p50_ns,
		       "latency stats: p50 %.2f ms, p99 %.2f ms", st.latency_p50_ns / 1e6,
		       st.latency_p99_ns / 1e6);
	}

	/* Cursor: accepted (headless weston has no pointer to show it). */
	{
		static uint32_t cursor[32 * 32];
		for (unsigned i = 0; i < 32 * 32; i++)
			cursor[i] = 0xff00ff00u;
		tap_is_int(vgb_display_set_cursor(d, 0, cursor, 32, 32, 4, 4), 0, "set a cursor");
		tap_is_int(vgb_display_set_cursor(d, 0, cursor, 65, 32, 0, 0), -EINVAL,
			   "a cursor over 64x64 is refused");
		tap_is_int(vgb_display_set_cursor(d, 0, NULL, 0, 0, 0, 0), 0, "hide it");
	}

	/* Invalid frames are refused without completion. */
	{
		struct vgb_cpu_view view = { .data = sc.base, .stride = W * 4 - 4, .memfd = -1 };
		struct done_log bad = { 0 };
		struct vgb_frame f = frame_for(&view, 0, &bad);
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "a stride shorter than a row");
		f.cpu = NULL;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "no CPU view and no dmabuf");
		view.stride = STRIDE;
		f = frame_for(&view, 0, &bad);
		f.fourcc = DRM_FORMAT_NV12;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "an unsupported format");
		f = frame_for(&view, 0, &bad);
		f.scanout = VGB_DISPLAY_MAX_SCANOUTS;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "a scanout out of range");
		tap_is_uint(bad.calls, 0, "refused frames are never completed");
	}

	vgb_display_disable_scanout(d, 0);
	vgb_display_destroy(d);
	scattered_destroy(&sc);
	leak_check(&before, "sink destroyed: no fd or mapping left");
	weston_stop(&w);
	return tap_done();
}
