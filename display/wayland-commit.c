/* SPDX-License-Identifier: MIT */
/*
 * Commits a scanout's pending frame: attach, damage, pacing and feedback, commit. A frame whose
 * dmabuf the compositor refused goes to wl_shm, and one with no CPU view to the EGL importer.
 */
#include <errno.h>
#include <stdlib.h>

#include "vgb/util.h"
#include "wayland-buffer-cache.h"
#include "wayland-commit.h"
#include "wayland-pacing.h"
#include "wayland-shm.h"
#include "wayland-window.h"
#ifdef VGB_HAVE_EGL
#include "egl.h"
#endif

#ifdef VGB_HAVE_EGL
/* Draws @buf through the EGL importer: one GPU copy. Returns 0 or -errno. */
int vgb_wayland_egl_show(struct scanout *so, const struct vgb_dmabuf *buf, uint32_t width,
			 uint32_t height)
{
	struct wayland_sink *s = so->sink;
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
	return 0;
}
#else
int vgb_wayland_egl_show(struct scanout *so, const struct vgb_dmabuf *buf, uint32_t width,
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
		r = vgb_wayland_egl_show(so, &p->dmabuf_dup, p->f.width, p->f.height);
	vgb_wayland_pending_finish(p, r);
}

/*
 * Re-routes a pending frame whose dmabuf the compositor refused (or that cannot take the
 * dmabuf path) to shm. Returns false when nothing else can show it.
 */
bool vgb_wayland_route_to_shm(struct wayland_sink *s, struct pending_frame *p)
{
	p->cb = NULL;
	if (!p->has_cpu)
		return false;
	if (vgb_wayland_shm_view_is_direct(s, &p->f)) {
		struct cached_buffer *cb;
		if (vgb_wayland_shm_direct_get(s, &p->f, &cb) == 0) {
			p->path = VGB_PATH_SHM_DIRECT;
			p->cb = cb;
			return true;
		}
	}
	p->path = VGB_PATH_SHM_COPY;
	return true;
}

void vgb_wayland_try_commit(struct scanout *so)
{
	struct wayland_sink *s = so->sink;
	struct pending_frame *p = &so->pending;
	struct wl_buffer *buffer;
	struct present_rec *rec;
	struct vgb_rect dmg;
	struct vgb_frame copied = { 0 };

	if (!p->valid || !s->connected || !so->surface || !so->configured ||
	    vgb_wayland_pacing_is_full(so))
		return;

	if (p->path == VGB_PATH_DMABUF) {
		if (p->cb->state == CACHED_IMPORTING)
			return; /* the dispatch after created/failed calls us again */
		if (p->cb->state == CACHED_FAILED) {
			struct cached_buffer *failed = p->cb;
			bool rerouted = vgb_wayland_route_to_shm(s, p);
			if (failed->id == 0)
				vgb_wayland_cache_destroy(failed); /* uncached: it served this frame only */
			if (!rerouted) {
				pending_to_egl(so);
				return;
			}
		}
	}

	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		vgb_wayland_pending_finish(p, -ENOMEM);
		return;
	}

	if (p->path == VGB_PATH_SHM_COPY) {
		/*
		 * The copy happens here, when the frame is committed, so only frames that reach the
		 * compositor are copied: one that a newer frame replaced while it waited never is.
		 */
		struct shm_buffer *sb = vgb_wayland_copy_get(so, p);
		int r;
		if (!sb) {
			/* Every buffer is still held by the compositor: wait for a release. */
			if (!p->stalled) {
				p->stalled = true;
				s->stats.stalls++;
			}
			free(rec);
			return;
		}
		r = vgb_wayland_copy_fill(so, sb, p, &p->damage);
		if (r < 0) {
			free(rec);
			vgb_wayland_pending_finish(p, r);
			return;
		}
		buffer = sb->buffer;
		sb->busy = true;
		/* The guest's memory is no longer needed: its fence completes below. */
		copied = p->f;
	} else {
		buffer = p->cb->buffer;
		rec->done = p->f.done;
		rec->done_data = p->f.done_data;
	}

	rec->sink = s;
	rec->scanout = so->index;
	rec->flush_ns = p->f.flush_ns;
	rec->deadline_ns = vgb_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	wl_list_insert(s->inflight.prev, &rec->link);

	vgb_wayland_scanout_set_buffer_size(so, p->f.width, p->f.height);
	dmg = p->damage;
	wl_surface_attach(so->surface, buffer, 0, 0);
	if (s->compositor_version >= 4)
		wl_surface_damage_buffer(so->surface, (int32_t)dmg.x, (int32_t)dmg.y,
					 (int32_t)dmg.width, (int32_t)dmg.height);
	else
		wl_surface_damage(so->surface, (int32_t)dmg.x, (int32_t)dmg.y, (int32_t)dmg.width,
				  (int32_t)dmg.height);
	vgb_wayland_pacing_watch(so, rec);
	wl_surface_commit(so->surface);
	s->stats.commits++;
	s->stats.last_path = p->path;
	vgb_wayland_pending_clear(p);
	/* Last: the callback may present again. The caller flushes. */
	vgb_frame_complete(&copied, 0);
}
