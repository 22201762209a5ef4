/* SPDX-License-Identifier: MIT */
/* Presentation feedback, frame callbacks and latency samples (see wayland-pacing.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vgb/util.h"
#include "wayland-pacing.h"

static void record_latency(struct wayland_sink *s, uint64_t flush_ns, uint64_t presented_ns)
{
	if (flush_ns == 0 || presented_ns < flush_ns)
		return;
	s->latency[s->n_latency % LATENCY_SAMPLES] = presented_ns - flush_ns;
	s->n_latency++;
}

void vgb_wayland_rec_complete(struct present_rec *rec, int status)
{
	vgb_frame_done_fn done = rec->done;

	rec->done = NULL;
	if (done)
		done(rec->done_data, status);
}

void vgb_wayland_rec_destroy(struct present_rec *rec)
{
	struct wayland_sink *s = rec->sink;
	struct scanout *so = rec->scanout < VGB_DISPLAY_MAX_SCANOUTS ? s->scanouts[rec->scanout] : NULL;

	if (so && so->inflight > 0)
		so->inflight--;
	if (rec->frame_cb)
		wl_callback_destroy(rec->frame_cb);
	if (rec->feedback)
		wp_presentation_feedback_destroy(rec->feedback);
	wl_list_remove(&rec->link);
	free(rec);
}

/* ---- wp_presentation ---- */

static uint64_t presentation_to_mono(struct wayland_sink *s, uint64_t t)
{
	struct timespec ts;
	uint64_t now_clk, now_mono = vgb_now_ns();

	if (s->presentation_clock == CLOCK_MONOTONIC)
		return t;
	if (clock_gettime(s->presentation_clock, &ts) < 0)
		return t;
	now_clk = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return t + now_mono - now_clk;
}

static void feedback_sync_output(void *data, struct wp_presentation_feedback *fb,
				 struct wl_output *output)
{
}

static void feedback_presented(void *data, struct wp_presentation_feedback *fb, uint32_t sec_hi,
			       uint32_t sec_lo, uint32_t nsec, uint32_t refresh, uint32_t seq_hi,
			       uint32_t seq_lo, uint32_t flags)
{
	struct present_rec *rec = data;
	struct wayland_sink *s = rec->sink;
	uint64_t t = (((uint64_t)sec_hi << 32) | sec_lo) * 1000000000u + nsec;

	s->stats.frames_presented++;
	record_latency(s, rec->flush_ns, presentation_to_mono(s, t));
	vgb_wayland_rec_complete(rec, 0);
	vgb_wayland_rec_destroy(rec);
}

static void feedback_discarded(void *data, struct wp_presentation_feedback *fb)
{
	struct present_rec *rec = data;

	/* Replaced by a later commit before any repaint: superseded, never shown. */
	rec->sink->stats.frames_discarded++;
	rec->sink->stats.frames_dropped++;
	vgb_wayland_rec_complete(rec, -ECANCELED);
	vgb_wayland_rec_destroy(rec);
}

static const struct wp_presentation_feedback_listener feedback_listener = {
	.sync_output = feedback_sync_output,
	.presented = feedback_presented,
	.discarded = feedback_discarded,
};

static void presentation_clock_id(void *data, struct wp_presentation *p, uint32_t clk_id)
{
	((struct wayland_sink *)data)->presentation_clock = (clockid_t)clk_id;
}

static const struct wp_presentation_listener presentation_listener = {
	.clock_id = presentation_clock_id,
};

void vgb_wayland_presentation_bind(struct wayland_sink *s, struct wl_registry *registry,
				   uint32_t name)
{
	s->presentation = wl_registry_bind(registry, name, &wp_presentation_interface, 1);
	wp_presentation_add_listener(s->presentation, &presentation_listener, s);
}

/* ---- frame callbacks ---- */

static void frame_done(void *data, struct wl_callback *cb, uint32_t time)
{
	struct present_rec *rec = data;
	struct wayland_sink *s = rec->sink;

	wl_callback_destroy(cb);
	rec->frame_cb = NULL;
	/*
	 * The compositor repainted with this commit: it has read the pixels, so a zero-copy
	 * frame's memory is the guest's again (a copied frame completed at the copy).
	 */
	vgb_wayland_rec_complete(rec, 0);
	if (!rec->feedback) {
		/* No wp_presentation: the frame callback is the best "shown" signal we get. */
		s->stats.frames_presented++;
		record_latency(s, rec->flush_ns, vgb_now_ns());
		vgb_wayland_rec_destroy(rec);
	}
}

static const struct wl_callback_listener frame_listener = {
	.done = frame_done,
};

void vgb_wayland_pacing_watch(struct scanout *so, struct present_rec *rec)
{
	struct wayland_sink *s = so->sink;

	rec->frame_cb = wl_surface_frame(so->surface);
	if (rec->frame_cb)
		wl_callback_add_listener(rec->frame_cb, &frame_listener, rec);
	if (s->presentation) {
		rec->feedback = wp_presentation_feedback(s->presentation, so->surface);
		if (rec->feedback)
			wp_presentation_feedback_add_listener(rec->feedback, &feedback_listener, rec);
	}
	so->inflight++;
}

bool vgb_wayland_pacing_is_full(const struct scanout *so)
{
	return so->inflight >= MAX_INFLIGHT;
}

void vgb_wayland_pacing_drop(struct scanout *so, int status)
{
	struct wayland_sink *s = so->sink;
	struct present_rec *rec, *tmp;

	wl_list_for_each_safe(rec, tmp, &s->inflight, link) {
		if (rec->scanout != so->index)
			continue;
		s->stats.frames_lost++;
		vgb_wayland_rec_complete(rec, status);
		vgb_wayland_rec_destroy(rec);
	}
}

void vgb_wayland_pacing_lose_all(struct wayland_sink *s, int status)
{
	struct present_rec *rec, *tmp;

	wl_list_for_each_safe(rec, tmp, &s->inflight, link) {
		s->stats.frames_lost++;
		vgb_wayland_rec_complete(rec, status);
		vgb_wayland_rec_destroy(rec);
	}
}

void vgb_wayland_pacing_expire(struct wayland_sink *s, uint64_t now)
{
	struct present_rec *rec, *tmp;

	wl_list_for_each_safe(rec, tmp, &s->inflight, link) {
		if (now < rec->deadline_ns)
			continue;
		/* Hidden or stalled surface: stop waiting for this commit. */
		s->stats.frames_lost++;
		vgb_wayland_rec_complete(rec, -ETIMEDOUT);
		vgb_wayland_rec_destroy(rec);
	}
}

uint64_t vgb_wayland_pacing_next_deadline(const struct wayland_sink *s)
{
	uint64_t next = UINT64_MAX;
	struct present_rec *rec;

	wl_list_for_each(rec, &s->inflight, link)
		next = VGB_MIN(next, rec->deadline_ns);
	return next;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void vgb_wayland_latency_get(const struct wayland_sink *s, uint64_t *ret_p50, uint64_t *ret_p99)
{
	size_t n = (size_t)VGB_MIN(s->n_latency, (uint64_t)LATENCY_SAMPLES);
	uint64_t sorted[LATENCY_SAMPLES];

	*ret_p50 = *ret_p99 = 0;
	if (n == 0)
		return;
	memcpy(sorted, s->latency, n * sizeof(uint64_t));
	qsort(sorted, n, sizeof(uint64_t), cmp_u64);
	*ret_p50 = sorted[(n - 1) * 50 / 100];
	*ret_p99 = sorted[(n - 1) * 99 / 100];
}
