/* SPDX-License-Identifier: MIT */
/*
 * The Wayland sink: one xdg_toplevel per scanout, frames paced by frame callbacks (the latest
 * frame wins), presentation feedback for latency, and a path per frame: linux-dmabuf, wl_shm on
 * the guest memfd, or a damage-limited copy into rotating shm buffers. Nothing here blocks the
 * caller for longer than opts.timeout_ms, and only during create/reconnect; the steady state is
 * driven by get_fd/dispatch/next_timeout_ms.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-private.h"
#ifdef VGB_HAVE_EGL
#include "egl.h"
#endif

#define DEFAULT_TIMEOUT_MS 1000

static const struct vgb_display_ops wl_sink_ops;

static struct wl_sink *wl_sink_from(struct vgb_display *d)
{
	return vgb_container_of(d, struct wl_sink, base);
}

static uint64_t timeout_ns(const struct wl_sink *s)
{
	return (uint64_t)s->opts.timeout_ms * 1000000u;
}

uint64_t wl_sink_timeout_ns(struct wl_sink *s)
{
	return timeout_ns(s);
}

int wl_sink_flush(struct wl_sink *s)
{
	if (!s->display)
		return -EPIPE;
	if (wl_display_flush(s->display) < 0) {
		if (errno == EAGAIN) {
			/* Socket full: retry from dispatch (next_timeout_ms says soon). */
			s->need_flush = true;
			return 0;
		}
		return -EPIPE;
	}
	s->need_flush = false;
	return 0;
}

/* ---- completion and latency ---- */

static void record_latency(struct wl_sink *s, uint64_t flush_ns, uint64_t presented_ns)
{
	if (flush_ns == 0 || presented_ns < flush_ns)
		return;
	s->latency[s->n_latency % LATENCY_SAMPLES] = presented_ns - flush_ns;
	s->n_latency++;
}

static void rec_complete(struct present_rec *rec, int status)
{
	vgb_frame_done_fn done = rec->done;

	rec->done = NULL;
	if (done)
		done(rec->done_data, status);
}

static void rec_destroy(struct present_rec *rec)
{
	struct wl_sink *s = rec->sink;
	struct scanout *so = rec->scanout < VGB_DISPLAY_MAX_SCANOUTS ? s->scanouts[rec->scanout] : NULL;

	if (so && so->frame_rec == rec)
		so->frame_rec = NULL;
	if (rec->feedback)
		wp_presentation_feedback_destroy(rec->feedback);
	wl_list_remove(&rec->link);
	free(rec);
}

static uint64_t presentation_to_mono(struct wl_sink *s, uint64_t t)
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
	struct wl_sink *s = rec->sink;
	uint64_t t = (((uint64_t)sec_hi << 32) | sec_lo) * 1000000000u + nsec;

	s->stats.frames_presented++;
	record_latency(s, rec->flush_ns, presentation_to_mono(s, t));
	rec_complete(rec, 0);
	rec_destroy(rec);
}

static void feedback_discarded(void *data, struct wp_presentation_feedback *fb)
{
	struct present_rec *rec = data;

	rec->sink->stats.frames_discarded++;
	rec_complete(rec, -ECANCELED);
	rec_destroy(rec);
}

static const struct wp_presentation_feedback_listener feedback_listener = {
	.sync_output = feedback_sync_output,
	.presented = feedback_presented,
	.discarded = feedback_discarded,
};

/* ---- pending frames ---- */

/* Forgets the pending frame without completing it (its completion moved elsewhere). */
static void pending_clear(struct pending_frame *p)
{
	p->valid = false;
	p->cb = NULL;
	vgb_dmabuf_finish(&p->dmabuf_dup);
}

/* Completes the pending frame with @status and forgets it. */
static void pending_finish(struct pending_frame *p, int status)
{
	struct vgb_frame f = p->f;

	pending_clear(p);
	vgb_frame_complete(&f, status);
}

#ifdef VGB_HAVE_EGL
/* Draws @buf through the EGL importer: one GPU copy. Returns 0 or -errno. */
static int egl_show(struct scanout *so, const struct vgb_dmabuf *buf, uint32_t width,
		    uint32_t height)
{
	struct wl_sink *s = so->sink;
	int r;

	if (s->egl_unavailable)
		return -EOPNOTSUPP;
	if (!s->egl) {
		r = vgb_egl_create(s->display, &s->egl);
		if (r < 0) {
			s->egl_unavailable = true;
			return r;
		}
	}
	if (!vgb_egl_can_import(s->egl, buf->fourcc, buf->modifier))
		return -EOPNOTSUPP;
	if (so->egl_win) {
		/* A new size needs a new window surface. */
		vgb_egl_window_destroy(so->egl_win);
		so->egl_win = NULL;
	}
	r = vgb_egl_window_create(s->egl, so->surface, width, height, &so->egl_win);
	if (r < 0)
		return r;
	r = vgb_egl_window_draw(so->egl_win, buf);
	if (r < 0)
		return r;
	s->stats.commits++;
	s->stats.frames_presented++;
	s->stats.last_path = VGB_PATH_EGL;
	return wl_sink_flush(s);
}
#else
static int egl_show(struct scanout *so, const struct vgb_dmabuf *buf, uint32_t width,
		    uint32_t height)
{
	return -EOPNOTSUPP;
}
#endif

/* The last resort for a pending frame whose dmabuf was refused and that has no CPU view. */
static void pending_to_egl(struct scanout *so)
{
	struct pending_frame *p = &so->pending;
	int r = -EOPNOTSUPP;

	if (p->dmabuf_dup.n_planes > 0 && so->configured)
		r = egl_show(so, &p->dmabuf_dup, p->f.width, p->f.height);
	pending_finish(p, r);
}

/* ---- scanout windows ---- */

static void frame_done(void *data, struct wl_callback *cb, uint32_t time)
{
	struct scanout *so = data;
	struct wl_sink *s = so->sink;

	wl_callback_destroy(cb);
	so->frame_cb = NULL;
	if (so->frame_rec) {
		/* No wp_presentation: the frame callback is the best "shown" signal we get. */
		struct present_rec *rec = so->frame_rec;
		s->stats.frames_presented++;
		record_latency(s, rec->flush_ns, vgb_now_ns());
		rec_complete(rec, 0);
		rec_destroy(rec);
	}
	wl_sink_try_commit(so);
}

static const struct wl_callback_listener frame_listener = {
	.done = frame_done,
};

static void update_viewport(struct scanout *so)
{
	if (!so->viewport || so->buf_width == 0)
		return;
	if (so->conf_width > 0 && so->conf_height > 0 &&
	    ((uint32_t)so->conf_width != so->buf_width ||
	     (uint32_t)so->conf_height != so->buf_height))
		wp_viewport_set_destination(so->viewport, so->conf_width, so->conf_height);
	else
		wp_viewport_set_destination(so->viewport, -1, -1);
}

static void xdg_surface_configure(void *data, struct xdg_surface *xdg_surface, uint32_t serial)
{
	struct scanout *so = data;

	xdg_surface_ack_configure(xdg_surface, serial);
	so->configured = true;
	update_viewport(so);
	wl_sink_try_commit(so);
}

static const struct xdg_surface_listener xdg_surface_listener = {
	.configure = xdg_surface_configure,
};

static void toplevel_configure(void *data, struct xdg_toplevel *toplevel, int32_t width,
			       int32_t height, struct wl_array *states)
{
	struct scanout *so = data;

	so->conf_width = width;
	so->conf_height = height;
}

static void toplevel_close(void *data, struct xdg_toplevel *toplevel)
{
	/* The VM keeps running; the window stays until the scanout is disabled. */
	vgb_log(VGB_LOG_DEBUG, "wayland: close requested for scanout %u",
		((struct scanout *)data)->index);
}

static const struct xdg_toplevel_listener toplevel_listener = {
	.configure = toplevel_configure,
	.close = toplevel_close,
};

/* Destroys the scanout's Wayland objects, keeping what must survive a reconnect. */
static void scanout_drop_window(struct scanout *so, int status)
{
	struct pending_frame *p = &so->pending;

	if (p->valid)
		pending_finish(p, status);
	p->cb = NULL;
#ifdef VGB_HAVE_EGL
	vgb_egl_window_destroy(so->egl_win);
	so->egl_win = NULL;
#endif
	if (so->frame_rec) {
		so->sink->stats.frames_lost++;
		rec_complete(so->frame_rec, status);
		rec_destroy(so->frame_rec);
	}
	if (so->frame_cb)
		wl_callback_destroy(so->frame_cb);
	so->frame_cb = NULL;
	shm_copy_destroy_all(so);
	if (so->feedback)
		dmabuf_feedback_destroy(so->feedback);
	so->feedback = NULL;
	if (so->cursor_buffer)
		wl_buffer_destroy(so->cursor_buffer);
	so->cursor_buffer = NULL;
	if (so->cursor_surface)
		wl_surface_destroy(so->cursor_surface);
	so->cursor_surface = NULL;
	if (so->viewport)
		wp_viewport_destroy(so->viewport);
	so->viewport = NULL;
	if (so->toplevel)
		xdg_toplevel_destroy(so->toplevel);
	so->toplevel = NULL;
	if (so->xdg_surface)
		xdg_surface_destroy(so->xdg_surface);
	so->xdg_surface = NULL;
	if (so->sink->pointer_focus == so)
		so->sink->pointer_focus = NULL;
	if (so->surface)
		wl_surface_destroy(so->surface);
	so->surface = NULL;
	so->configured = false;
	so->conf_width = so->conf_height = 0;
	so->buf_width = so->buf_height = 0;
}

static int scanout_open_window(struct scanout *so)
{
	struct wl_sink *s = so->sink;
	char title[256];

	so->surface = wl_compositor_create_surface(s->compositor);
	if (!so->surface)
		return -ENOMEM;
	wl_surface_set_user_data(so->surface, so);
	so->xdg_surface = xdg_wm_base_get_xdg_surface(s->wm_base, so->surface);
	if (!so->xdg_surface)
		return -ENOMEM;
	xdg_surface_add_listener(so->xdg_surface, &xdg_surface_listener, so);
	so->toplevel = xdg_surface_get_toplevel(so->xdg_surface);
	if (!so->toplevel)
		return -ENOMEM;
	xdg_toplevel_add_listener(so->toplevel, &toplevel_listener, so);
	snprintf(title, sizeof(title), "%s scanout %u", s->title, so->index);
	xdg_toplevel_set_title(so->toplevel, title);
	xdg_toplevel_set_app_id(so->toplevel, "vgbridge");
	if (s->opts.fullscreen)
		xdg_toplevel_set_fullscreen(so->toplevel, NULL);
	if (s->viewporter)
		so->viewport = wp_viewporter_get_viewport(s->viewporter, so->surface);
	if (s->dmabuf && s->dmabuf_version >= 4 && !s->opts.no_dmabuf)
		so->feedback = dmabuf_feedback_create(s, so);
	so->create_ns = vgb_now_ns();
	/* The initial commit without a buffer asks for the first configure. */
	wl_surface_commit(so->surface);
	if (so->cursor_argb)
		shm_cursor_update(so);
	return wl_sink_flush(s);
}

static int scanout_get(struct wl_sink *s, uint32_t index, struct scanout **ret)
{
	struct scanout *so = s->scanouts[index];
	int r;

	if (!so) {
		so = calloc(1, sizeof(*so));
		if (!so)
			return -ENOMEM;
		so->sink = s;
		so->index = index;
		vgb_dmabuf_init(&so->pending.dmabuf_dup);
		s->scanouts[index] = so;
	}
	if (!so->surface) {
		r = scanout_open_window(so);
		if (r < 0) {
			scanout_drop_window(so, -EPIPE);
			return r;
		}
	}
	*ret = so;
	return 0;
}

static void scanout_destroy(struct scanout *so)
{
	if (!so)
		return;
	so->sink->scanouts[so->index] = NULL;
	scanout_drop_window(so, -ECANCELED);
	free(so->cursor_argb);
	free(so);
}

/* ---- commit ---- */

static void buffer_geometry(struct scanout *so, uint32_t w, uint32_t h)
{
	if (so->buf_width != w || so->buf_height != h) {
		so->buf_width = w;
		so->buf_height = h;
		update_viewport(so);
	}
}

/*
 * Re-routes a pending frame whose dmabuf the compositor refused (or that cannot take the
 * dmabuf path) to shm. Returns false when nothing else can show it.
 */
static bool route_to_shm(struct wl_sink *s, struct pending_frame *p)
{
	p->cb = NULL;
	if (!p->has_cpu)
		return false;
	if (shm_view_is_direct(s, &p->f)) {
		struct cached_buffer *cb;
		if (shm_direct_get(s, &p->f, &cb) == 0) {
			p->path = VGB_PATH_SHM_DIRECT;
			p->cb = cb;
			return true;
		}
	}
	p->path = VGB_PATH_SHM_COPY;
	return true;
}

bool wl_sink_cb_is_pending(struct wl_sink *s, struct cached_buffer *cb)
{
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		if (s->scanouts[i] && s->scanouts[i]->pending.valid &&
		    s->scanouts[i]->pending.cb == cb)
			return true;
	return false;
}

void wl_sink_import_done(struct wl_sink *s, struct cached_buffer *cb)
{
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
		struct scanout *so = s->scanouts[i];
		if (!so || !so->pending.valid || so->pending.cb != cb)
			continue;
		if (cb->state == CACHED_FAILED && !route_to_shm(s, &so->pending)) {
			pending_to_egl(so);
			continue;
		}
		wl_sink_try_commit(so);
		if (!s->connected)
			return;
	}
}

void wl_sink_try_commit(struct scanout *so)
{
	struct wl_sink *s = so->sink;
	struct pending_frame *p = &so->pending;
	struct wl_buffer *buffer;
	struct present_rec *rec;
	struct shm_buffer *sb = NULL;
	struct vgb_rect dmg;
	struct vgb_frame copied = { 0 };

	if (!p->valid || !s->connected || !so->surface || !so->configured || so->frame_cb)
		return;

	if (p->path == VGB_PATH_DMABUF) {
		if (p->cb->state == CACHED_IMPORTING)
			return; /* created/failed will call us again */
		if (p->cb->state == CACHED_FAILED && !route_to_shm(s, p)) {
			pending_to_egl(so);
			return;
		}
	}

	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		pending_finish(p, -ENOMEM);
		return;
	}

	if (p->path == VGB_PATH_SHM_COPY && p->copied && !so->staged) {
		/* Cannot happen (staged is set while a copied frame waits); never crash on it. */
		free(rec);
		pending_clear(p);
		return;
	}
	if (p->path == VGB_PATH_SHM_COPY && p->copied) {
		/* Copied at present time: commit the staged buffer. */
		sb = so->staged;
		so->staged = NULL;
		buffer = sb->buffer;
		sb->busy = true;
	} else if (p->path == VGB_PATH_SHM_COPY) {
		int r;
		sb = shm_copy_get(so, p);
		if (!sb) {
			/* Every buffer is still held by the compositor: wait for a release. */
			if (!p->stalled) {
				p->stalled = true;
				s->stats.stalls++;
			}
			free(rec);
			return;
		}
		r = shm_copy_fill(so, sb, p, &p->damage);
		if (r < 0) {
			free(rec);
			pending_finish(p, r);
			return;
		}
		if (so->staged == sb)
			so->staged = NULL;
		buffer = sb->buffer;
		sb->busy = true;
	} else {
		buffer = p->cb->buffer;
	}

	rec->sink = s;
	rec->scanout = so->index;
	rec->flush_ns = p->f.flush_ns;
	rec->deadline_ns = vgb_now_ns() + timeout_ns(s);
	if (p->path == VGB_PATH_SHM_COPY) {
		/* The copy is done: the guest's memory is no longer needed (completed below). */
		copied = p->f;
	} else {
		rec->done = p->f.done;
		rec->done_data = p->f.done_data;
	}
	wl_list_insert(s->inflight.prev, &rec->link);

	buffer_geometry(so, p->f.width, p->f.height);
	dmg = p->damage;
	wl_surface_attach(so->surface, buffer, 0, 0);
	if (s->compositor_version >= 4)
		wl_surface_damage_buffer(so->surface, (int32_t)dmg.x, (int32_t)dmg.y,
					 (int32_t)dmg.width, (int32_t)dmg.height);
	else
		wl_surface_damage(so->surface, (int32_t)dmg.x, (int32_t)dmg.y, (int32_t)dmg.width,
				  (int32_t)dmg.height);
	so->frame_cb = wl_surface_frame(so->surface);
	wl_callback_add_listener(so->frame_cb, &frame_listener, so);
	so->frame_cb_deadline_ns = vgb_now_ns() + timeout_ns(s);
	if (s->presentation) {
		rec->feedback = wp_presentation_feedback(s->presentation, so->surface);
		wp_presentation_feedback_add_listener(rec->feedback, &feedback_listener, rec);
	} else {
		so->frame_rec = rec;
	}
	wl_surface_commit(so->surface);
	s->stats.commits++;
	s->stats.last_path = p->path;
	pending_clear(p);
	/* Last: the callback may present again. */
	vgb_frame_complete(&copied, 0);
	if (s->connected && wl_sink_flush(s) < 0)
		wl_sink_lost(s);
}

/* ---- present ---- */

static int wl_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	struct wl_sink *s = wl_sink_from(d);
	struct scanout *so;
	struct pending_frame next = { .valid = true };
	int r;

	vgb_dmabuf_init(&next.dmabuf_dup);

	r = vgb_frame_check(frame);
	if (r < 0)
		return r;
	if (!s->connected)
		return -EPIPE;
	r = scanout_get(s, frame->scanout, &so);
	if (r < 0)
		return r;

	next.f = *frame;
	next.damage = vgb_frame_damage(frame);
	next.since_ns = vgb_now_ns();
	if (frame->cpu) {
		next.cpu = *frame->cpu;
		next.has_cpu = true;
		next.f.cpu = &next.cpu;
	}
	/* The dmabuf descriptor is only read here: imports happen now, never later. */
	next.has_dmabuf = frame->dmabuf != NULL;
	next.f.dmabuf = NULL;

	next.path = VGB_PATH_NONE;
	if (frame->dmabuf && s->dmabuf && !s->opts.no_dmabuf) {
		struct cached_buffer *cb;
		r = dmabuf_import(s, so, frame, &cb);
		if (r == 0 && cb->state != CACHED_FAILED) {
			next.path = VGB_PATH_DMABUF;
			next.cb = cb;
		}
	}
	if (next.path == VGB_PATH_NONE && !route_to_shm(s, &next)) {
		/* No CPU view and a dmabuf the compositor will not take: the EGL importer. */
		if (!frame->dmabuf || !so->configured)
			return -EOPNOTSUPP;
		if (so->pending.valid) {
			s->stats.frames_dropped++;
			pending_finish(&so->pending, -ECANCELED);
		}
		r = egl_show(so, frame->dmabuf, frame->width, frame->height);
		if (r < 0)
			return r == -EPIPE ? (wl_sink_lost(s), -EPIPE) : -EOPNOTSUPP;
		vgb_frame_complete(frame, 0);
		return 0;
	}
	if (next.path == VGB_PATH_DMABUF && !next.has_cpu) {
		/* Kept for the EGL importer, should the compositor answer `failed`. */
		r = vgb_dmabuf_dup(frame->dmabuf, &next.dmabuf_dup);
		if (r < 0)
			return r;
	}
#ifdef VGB_HAVE_EGL
	if (so->egl_win) {
		/* Back to our own buffers on this surface. */
		vgb_egl_window_destroy(so->egl_win);
		so->egl_win = NULL;
	}
#endif

	/*
	 * What this frame must copy: its own damage, plus the damage of a replaced frame that was
	 * never copied (read from this, the latest, view). What the commit damages: everything
	 * since the last commit.
	 */
	struct vgb_rect fill = next.damage;
	if (so->pending.valid) {
		if (!so->pending.copied)
			vgb_rect_union(&fill, &so->pending.damage);
		vgb_rect_union(&next.damage, &so->pending.damage);
	}

	/*
	 * The copy path copies now when a buffer is free, so the guest's memory is released (and
	 * a fenced flush completes) without waiting for the compositor's pacing; frames that
	 * arrive before the commit merge into the same staged buffer.
	 */
	bool complete_now = false;
	if (next.path == VGB_PATH_SHM_COPY && so->configured) {
		struct shm_buffer *sb = so->staged;
		if (!sb || sb->width != frame->width || sb->height != frame->height ||
		    sb->fourcc != frame->fourcc)
			sb = shm_copy_get(so, &next);
		if (sb && shm_copy_fill(so, sb, &next, &fill) == 0) {
			so->staged = sb;
			next.copied = true;
			complete_now = true;
			next.f.done = NULL; /* completed below, once */
		}
	}

	if (so->pending.valid && so->pending.copied) {
		/*
		 * Already copied and completed: its pixels are in the staged buffer, and this
		 * frame's copy (when it made one) went on top. Otherwise (another path, or a
		 * failed read) the staged pixels are not what gets committed next: dropped.
		 */
		if (!next.copied)
			s->stats.frames_dropped++;
		next.stalled = so->pending.stalled;
		so->pending = next;
		so->pending.f.cpu = so->pending.has_cpu ? &so->pending.cpu : NULL;
	} else if (so->pending.valid) {
		/* Latest frame wins: the older one is replaced before it was shown. */
		struct pending_frame old = so->pending;
		if (old.cb && old.cb->id == 0 && old.cb != next.cb &&
		    old.cb->state != CACHED_IMPORTING)
			cached_destroy(old.cb); /* an uncached buffer that was never committed */
		next.stalled = old.stalled;
		so->pending = next;
		so->pending.f.cpu = so->pending.has_cpu ? &so->pending.cpu : NULL;
		s->stats.frames_dropped++;
		vgb_dmabuf_finish(&old.dmabuf_dup);
		vgb_frame_complete(&old.f, -ECANCELED);
	} else {
		so->pending = next;
		so->pending.f.cpu = so->pending.has_cpu ? &so->pending.cpu : NULL;
	}
	wl_sink_try_commit(so);
	if (complete_now)
		vgb_frame_complete(frame, 0);
	if (!s->connected)
		return 0; /* completed with -EPIPE already */
	return wl_sink_flush(s) < 0 ? (wl_sink_lost(s), 0) : 0;
}

static void wl_forget(struct vgb_display *d, uint64_t buffer_id)
{
	struct wl_sink *s = wl_sink_from(d);
	struct cached_buffer *cb, *tmp;

	wl_list_for_each_safe(cb, tmp, &s->cached, link) {
		if (cb->id != buffer_id)
			continue;
		/*
		 * A pending frame still pointing at it cannot be shown any more: the export is
		 * going away, and with it the memory the frame borrowed.
		 */
		for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
			struct scanout *so = s->scanouts[i];
			if (so && so->pending.valid && so->pending.cb == cb) {
				s->stats.frames_dropped++;
				pending_finish(&so->pending, -ECANCELED);
			}
		}
		cached_destroy(cb);
	}
	if (s->display)
		wl_sink_flush(s);
}

static void wl_disable_scanout(struct vgb_display *d, uint32_t scanout)
{
	struct wl_sink *s = wl_sink_from(d);

	if (scanout >= VGB_DISPLAY_MAX_SCANOUTS || !s->scanouts[scanout])
		return;
	scanout_drop_window(s->scanouts[scanout], -ECANCELED);
	if (s->display)
		wl_sink_flush(s);
}

static int wl_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			 uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y)
{
	struct wl_sink *s = wl_sink_from(d);
	struct scanout *so;
	uint32_t *copy = NULL;

	if (scanout >= VGB_DISPLAY_MAX_SCANOUTS)
		return -EINVAL;
	if (argb) {
		copy = malloc((size_t)w * h * 4);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, argb, (size_t)w * h * 4);
	}
	so = s->scanouts[scanout];
	if (!so) {
		so = calloc(1, sizeof(*so));
		if (!so) {
			free(copy);
			return -ENOMEM;
		}
		so->sink = s;
		so->index = scanout;
		vgb_dmabuf_init(&so->pending.dmabuf_dup);
		s->scanouts[scanout] = so;
	}
	free(so->cursor_argb);
	so->cursor_argb = copy;
	so->cursor_w = w;
	so->cursor_h = h;
	so->cursor_hot_x = VGB_MIN(hot_x, w);
	so->cursor_hot_y = VGB_MIN(hot_y, h);
	if (!s->connected || !so->surface)
		return 0; /* applied when the window (re)appears */
	return shm_cursor_update(so);
}

static void wl_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	struct wl_sink *s = wl_sink_from(d);

	/*
	 * The host pointer owns the cursor position on a Wayland desktop; the guest's position is
	 * kept for stats and for sinks that draw the cursor themselves.
	 */
	if (scanout < VGB_DISPLAY_MAX_SCANOUTS && s->scanouts[scanout]) {
		s->scanouts[scanout]->cursor_x = x;
		s->scanouts[scanout]->cursor_y = y;
	}
}

/* ---- registry, seat, shm formats ---- */

static void wm_base_ping(void *data, struct xdg_wm_base *wm_base, uint32_t serial)
{
	xdg_wm_base_pong(wm_base, serial);
}

static const struct xdg_wm_base_listener wm_base_listener = {
	.ping = wm_base_ping,
};

static void shm_format(void *data, struct wl_shm *shm, uint32_t format)
{
	struct wl_sink *s = data;

	if (format == 0)
		s->shm_formats |= 1;
	else if (format == 1)
		s->shm_formats |= 2;
	else
		fmt_set_add(&s->shm_extra, format, 0);
}

static const struct wl_shm_listener shm_listener = {
	.format = shm_format,
};

static void presentation_clock_id(void *data, struct wp_presentation *p, uint32_t clk_id)
{
	((struct wl_sink *)data)->presentation_clock = (clockid_t)clk_id;
}

static const struct wp_presentation_listener presentation_listener = {
	.clock_id = presentation_clock_id,
};

static void pointer_enter(void *data, struct wl_pointer *pointer, uint32_t serial,
			  struct wl_surface *surface, wl_fixed_t x, wl_fixed_t y)
{
	struct wl_sink *s = data;
	struct scanout *so = NULL;

	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		if (s->scanouts[i] && s->scanouts[i]->surface == surface)
			so = s->scanouts[i];
	s->pointer_serial = serial;
	s->pointer_focus = so;
	if (!so)
		return;
	if (so->cursor_surface && so->cursor_argb)
		wl_pointer_set_cursor(pointer, serial, so->cursor_surface,
				      (int32_t)so->cursor_hot_x, (int32_t)so->cursor_hot_y);
	else
		wl_pointer_set_cursor(pointer, serial, NULL, 0, 0);
}

static void pointer_leave(void *data, struct wl_pointer *pointer, uint32_t serial,
			  struct wl_surface *surface)
{
	((struct wl_sink *)data)->pointer_focus = NULL;
}

static void pointer_motion(void *data, struct wl_pointer *p, uint32_t time, wl_fixed_t x,
			   wl_fixed_t y)
{
}

static void pointer_button(void *data, struct wl_pointer *p, uint32_t serial, uint32_t time,
			   uint32_t button, uint32_t state)
{
}

static void pointer_axis(void *data, struct wl_pointer *p, uint32_t time, uint32_t axis,
			 wl_fixed_t value)
{
}

static const struct wl_pointer_listener pointer_listener = {
	.enter = pointer_enter,
	.leave = pointer_leave,
	.motion = pointer_motion,
	.button = pointer_button,
	.axis = pointer_axis,
};

static void seat_capabilities(void *data, struct wl_seat *seat, uint32_t caps)
{
	struct wl_sink *s = data;

	if ((caps & WL_SEAT_CAPABILITY_POINTER) && !s->pointer) {
		s->pointer = wl_seat_get_pointer(seat);
		wl_pointer_add_listener(s->pointer, &pointer_listener, s);
	} else if (!(caps & WL_SEAT_CAPABILITY_POINTER) && s->pointer) {
		wl_pointer_destroy(s->pointer);
		s->pointer = NULL;
		s->pointer_focus = NULL;
	}
}

static void seat_name(void *data, struct wl_seat *seat, const char *name)
{
}

static const struct wl_seat_listener seat_listener = {
	.capabilities = seat_capabilities,
	.name = seat_name,
};

static void registry_global(void *data, struct wl_registry *registry, uint32_t name,
			    const char *interface, uint32_t version)
{
	struct wl_sink *s = data;

	if (strcmp(interface, wl_compositor_interface.name) == 0 && !s->compositor) {
		s->compositor_version = VGB_MIN(version, 4u);
		s->compositor = wl_registry_bind(registry, name, &wl_compositor_interface,
						 s->compositor_version);
	} else if (strcmp(interface, wl_shm_interface.name) == 0 && !s->shm) {
		s->shm = wl_registry_bind(registry, name, &wl_shm_interface, 1);
		wl_shm_add_listener(s->shm, &shm_listener, s);
	} else if (strcmp(interface, xdg_wm_base_interface.name) == 0 && !s->wm_base) {
		s->wm_base = wl_registry_bind(registry, name, &xdg_wm_base_interface, 1);
		xdg_wm_base_add_listener(s->wm_base, &wm_base_listener, s);
	} else if (strcmp(interface, wp_viewporter_interface.name) == 0 && !s->viewporter) {
		s->viewporter = wl_registry_bind(registry, name, &wp_viewporter_interface, 1);
	} else if (strcmp(interface, wp_presentation_interface.name) == 0 && !s->presentation) {
		s->presentation = wl_registry_bind(registry, name, &wp_presentation_interface, 1);
		wp_presentation_add_listener(s->presentation, &presentation_listener, s);
	} else if (strcmp(interface, zwp_linux_dmabuf_v1_interface.name) == 0 && !s->dmabuf &&
		   version >= 3 && !s->opts.no_dmabuf) {
		s->dmabuf_version = VGB_MIN(version, 4u);
		s->dmabuf = wl_registry_bind(registry, name, &zwp_linux_dmabuf_v1_interface,
					     s->dmabuf_version);
		if (s->dmabuf_version < 4)
			zwp_linux_dmabuf_v1_add_listener(s->dmabuf, &dmabuf_v3_listener, s);
	} else if (strcmp(interface, wl_seat_interface.name) == 0 && !s->seat) {
		s->seat = wl_registry_bind(registry, name, &wl_seat_interface, VGB_MIN(version, 5u));
		wl_seat_add_listener(s->seat, &seat_listener, s);
	}
}

static void registry_global_remove(void *data, struct wl_registry *registry, uint32_t name)
{
}

static const struct wl_registry_listener registry_listener = {
	.global = registry_global,
	.global_remove = registry_global_remove,
};

/* ---- connection ---- */

static void sync_done(void *data, struct wl_callback *cb, uint32_t serial)
{
	*(bool *)data = true;
}

static const struct wl_callback_listener sync_listener = {
	.done = sync_done,
};

/* Reads and dispatches what is there, waiting at most @wait_ms. Returns 0 or -EPIPE. */
static int pump(struct wl_sink *s, int wait_ms)
{
	struct pollfd pfd = { .fd = wl_display_get_fd(s->display), .events = POLLIN };

	while (wl_display_prepare_read(s->display) != 0)
		if (wl_display_dispatch_pending(s->display) < 0)
			return -EPIPE;
	if (wl_display_flush(s->display) < 0 && errno != EAGAIN) {
		wl_display_cancel_read(s->display);
		return -EPIPE;
	}
	if (poll(&pfd, 1, wait_ms) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
		if (wl_display_read_events(s->display) < 0)
			return -EPIPE;
	} else {
		wl_display_cancel_read(s->display);
	}
	if (wl_display_dispatch_pending(s->display) < 0)
		return -EPIPE;
	return 0;
}

/* wl_display_roundtrip with a deadline. */
static int roundtrip_bounded(struct wl_sink *s)
{
	uint64_t deadline = vgb_now_ns() + timeout_ns(s);
	bool done = false;
	struct wl_callback *cb = wl_display_sync(s->display);
	int r = 0;

	if (!cb)
		return -ENOMEM;
	wl_callback_add_listener(cb, &sync_listener, &done);
	while (!done) {
		uint64_t now = vgb_now_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		r = pump(s, (int)((deadline - now + 999999) / 1000000));
		if (r < 0)
			break;
	}
	/* sync_done does not destroy the proxy: it is ours to destroy either way. */
	wl_callback_destroy(cb);
	return r;
}

/* Drops every Wayland object; scanouts keep their configuration (cursor) for reconnect. */
static void disconnect(struct wl_sink *s, int status)
{
	struct present_rec *rec, *rtmp;
	struct cached_buffer *cb, *ctmp;

	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		if (s->scanouts[i])
			scanout_drop_window(s->scanouts[i], status);
	wl_list_for_each_safe(rec, rtmp, &s->inflight, link) {
		s->stats.frames_lost++;
		rec_complete(rec, status);
		rec_destroy(rec);
	}
	wl_list_for_each_safe(cb, ctmp, &s->cached, link)
		cached_destroy(cb);
	if (s->default_feedback)
		dmabuf_feedback_destroy(s->default_feedback);
	s->default_feedback = NULL;
	fmt_set_finish(&s->v3_formats);
	fmt_set_finish(&s->shm_extra);
	s->shm_formats = 0;
#ifdef VGB_HAVE_EGL
	/* After the scanouts dropped their EGL windows, before the display goes. */
	vgb_egl_destroy(s->egl);
	s->egl = NULL;
	s->egl_unavailable = false;
#endif
	if (s->pointer)
		wl_pointer_destroy(s->pointer);
	s->pointer = NULL;
	s->pointer_focus = NULL;
#define DESTROY(field, fn)          \
	do {                        \
		if (s->field)       \
			fn(s->field); \
		s->field = NULL;    \
	} while (0)
	DESTROY(seat, wl_seat_destroy);
	DESTROY(dmabuf, zwp_linux_dmabuf_v1_destroy);
	DESTROY(presentation, wp_presentation_destroy);
	DESTROY(viewporter, wp_viewporter_destroy);
	DESTROY(wm_base, xdg_wm_base_destroy);
	DESTROY(shm, wl_shm_destroy);
	DESTROY(compositor, wl_compositor_destroy);
	DESTROY(registry, wl_registry_destroy);
#undef DESTROY
	if (s->display)
		wl_display_disconnect(s->display);
	s->display = NULL;
	s->connected = false;
	s->need_flush = false;
}

void wl_sink_lost(struct wl_sink *s)
{
	if (!s->connected)
		return;
	vgb_log(VGB_LOG_DEBUG, "wayland: compositor connection lost");
	s->connected = false;
	disconnect(s, -EPIPE);
	if (s->opts.reconnect_ms > 0)
		s->reconnect_at_ns = vgb_now_ns() + (uint64_t)s->opts.reconnect_ms * 1000000u;
}

static int connect_compositor(struct wl_sink *s)
{
	int r;

	s->display = wl_display_connect(s->socket_name);
	if (!s->display)
		return errno > 0 ? -errno : -ECONNREFUSED;
	s->presentation_clock = CLOCK_MONOTONIC;
	s->registry = wl_display_get_registry(s->display);
	if (!s->registry) {
		r = -ENOMEM;
		goto err;
	}
	wl_registry_add_listener(s->registry, &registry_listener, s);
	r = roundtrip_bounded(s);
	if (r < 0)
		goto err;
	if (!s->compositor || !s->shm || !s->wm_base) {
		r = -EPROTONOSUPPORT;
		goto err;
	}
	if (s->dmabuf && s->dmabuf_version >= 4) {
		s->default_feedback = dmabuf_feedback_create(s, NULL);
		if (!s->default_feedback) {
			r = -ENOMEM;
			goto err;
		}
	}
	/* Second round: shm formats, dmabuf formats/feedback, clock id, seat capabilities. */
	r = roundtrip_bounded(s);
	if (r < 0)
		goto err;
	s->connected = true;
	s->reconnect_at_ns = 0;
	return 0;
err:
	disconnect(s, -EPIPE);
	return r;
}

static int wl_reconnect(struct vgb_display *d)
{
	struct wl_sink *s = wl_sink_from(d);
	int r;

	if (s->connected)
		return 0;
	r = connect_compositor(s);
	if (r < 0) {
		if (s->opts.reconnect_ms > 0)
			s->reconnect_at_ns =
				vgb_now_ns() + (uint64_t)s->opts.reconnect_ms * 1000000u;
		return r;
	}
	s->stats.reconnects++;
	/* Windows come back with the next frame of each scanout. */
	return 0;
}

/* ---- event loop integration ---- */

static int wl_get_fd(struct vgb_display *d)
{
	struct wl_sink *s = wl_sink_from(d);

	return s->display ? wl_display_get_fd(s->display) : -1;
}

static void handle_timeouts(struct wl_sink *s)
{
	uint64_t now = vgb_now_ns();
	struct present_rec *rec, *tmp;
	struct cached_buffer *cb, *ctmp;

	if (!s->connected) {
		if (s->reconnect_at_ns && now >= s->reconnect_at_ns)
			wl_reconnect(&s->base);
		return;
	}
	wl_list_for_each_safe(rec, tmp, &s->inflight, link) {
		if (rec->done && now >= rec->deadline_ns)
			rec_complete(rec, -ETIMEDOUT);
	}
	wl_list_for_each_safe(cb, ctmp, &s->cached, link) {
		if (cb->state == CACHED_IMPORTING && now >= cb->deadline_ns) {
			/* No answer to the import: treat it as refused. */
			s->stats.dmabuf_failed++;
			cb->state = CACHED_FAILED;
			if (cb->params)
				zwp_linux_buffer_params_v1_destroy(cb->params);
			cb->params = NULL;
		}
	}
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
		struct scanout *so = s->scanouts[i];
		if (!so || !so->surface)
			continue;
		if (so->frame_cb && now >= so->frame_cb_deadline_ns) {
			/* Hidden or stalled surface: stop waiting for its frame callback. */
			wl_callback_destroy(so->frame_cb);
			so->frame_cb = NULL;
			if (so->frame_rec) {
				s->stats.frames_lost++;
				rec_complete(so->frame_rec, -ETIMEDOUT);
				rec_destroy(so->frame_rec);
			}
		}
		if (so->pending.valid && !so->configured &&
		    now >= so->create_ns + timeout_ns(s)) {
			pending_finish(&so->pending, -ETIMEDOUT);
		} else if (so->pending.valid && so->pending.stalled &&
			   now >= so->pending.since_ns + timeout_ns(s)) {
			pending_finish(&so->pending, -ETIMEDOUT);
		}
		wl_sink_try_commit(so);
		if (!s->connected)
			return;
	}
}

static int wl_dispatch(struct vgb_display *d)
{
	struct wl_sink *s = wl_sink_from(d);

	if (s->connected) {
		if (pump(s, 0) < 0) {
			wl_sink_lost(s);
			return 0;
		}
	}
	handle_timeouts(s);
	if (s->connected && wl_sink_flush(s) < 0)
		wl_sink_lost(s);
	return 0;
}

static int wl_next_timeout_ms(struct vgb_display *d)
{
	struct wl_sink *s = wl_sink_from(d);
	uint64_t now = vgb_now_ns(), next = UINT64_MAX;
	struct present_rec *rec;
	struct cached_buffer *cb;

	if (!s->connected) {
		if (!s->reconnect_at_ns)
			return -1;
		next = s->reconnect_at_ns;
	} else {
		if (s->need_flush)
			return 1;
		wl_list_for_each(rec, &s->inflight, link)
			if (rec->done)
				next = VGB_MIN(next, rec->deadline_ns);
		wl_list_for_each(cb, &s->cached, link)
			if (cb->state == CACHED_IMPORTING)
				next = VGB_MIN(next, cb->deadline_ns);
		for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
			struct scanout *so = s->scanouts[i];
			if (!so || !so->surface)
				continue;
			if (so->frame_cb)
				next = VGB_MIN(next, so->frame_cb_deadline_ns);
			if (so->pending.valid && !so->configured)
				next = VGB_MIN(next, so->create_ns + timeout_ns(s));
			if (so->pending.valid && so->pending.stalled)
				next = VGB_MIN(next, so->pending.since_ns + timeout_ns(s));
		}
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return (int)VGB_MIN((next - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void wl_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct wl_sink *s = wl_sink_from(d);
	size_t n = (size_t)VGB_MIN(s->n_latency, (uint64_t)LATENCY_SAMPLES);
	struct cached_buffer *cb;

	*ret = s->stats;
	ret->connected = s->connected;
	ret->shm_buffers = 0;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		for (uint32_t j = 0; s->scanouts[i] && j < SHM_COPY_BUFFERS; j++)
			ret->shm_buffers += s->scanouts[i]->copy[j] != NULL;
	ret->frames_pending = 0;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		ret->frames_pending += s->scanouts[i] && s->scanouts[i]->pending.valid;
	ret->cached_buffers = 0;
	wl_list_for_each(cb, &s->cached, link)
		ret->cached_buffers++;
	if (n > 0) {
		uint64_t sorted[LATENCY_SAMPLES];
		memcpy(sorted, s->latency, n * sizeof(uint64_t));
		qsort(sorted, n, sizeof(uint64_t), cmp_u64);
		ret->latency_p50_ns = sorted[(n - 1) * 50 / 100];
		ret->latency_p99_ns = sorted[(n - 1) * 99 / 100];
	}
}

static void wl_destroy(struct vgb_display *d)
{
	struct wl_sink *s = wl_sink_from(d);

	if (!s)
		return;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		scanout_destroy(s->scanouts[i]);
	disconnect(s, -ECANCELED);
	free(s->title);
	free(s->socket_name);
	free(s);
}

static const struct vgb_display_ops wl_sink_ops = {
	.name = "wayland",
	.present = wl_present,
	.forget = wl_forget,
	.disable_scanout = wl_disable_scanout,
	.set_cursor = wl_set_cursor,
	.move_cursor = wl_move_cursor,
	.get_fd = wl_get_fd,
	.dispatch = wl_dispatch,
	.next_timeout_ms = wl_next_timeout_ms,
	.reconnect = wl_reconnect,
	.get_stats = wl_get_stats,
	.destroy = wl_destroy,
};

int vgb_display_create_wayland(const char *socket_name, const struct vgb_display_options *opts,
			       struct vgb_display **ret)
{
	struct wl_sink *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->base.ops = &wl_sink_ops;
	wl_list_init(&s->cached);
	wl_list_init(&s->inflight);
	if (opts)
		s->opts = *opts;
	if (s->opts.timeout_ms <= 0)
		s->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
	s->opts.title = NULL;
	s->title = strdup(opts && opts->title ? opts->title : "vgbridge");
	s->socket_name = socket_name ? strdup(socket_name) : NULL;
	if (!s->title || (socket_name && !s->socket_name)) {
		wl_destroy(&s->base);
		return -ENOMEM;
	}
	r = connect_compositor(s);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "wayland: cannot connect to %s",
			      socket_name ? socket_name : "$WAYLAND_DISPLAY");
		wl_destroy(&s->base);
		return r;
	}
	s->stats.connected = true;
	*ret = &s->base;
	return 0;
}
