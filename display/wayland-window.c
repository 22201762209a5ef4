/* SPDX-License-Identifier: MIT */
/* Scanout windows and their pending frames (see wayland-window.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-cursor.h"
#include "wayland-dmabuf.h"
#include "wayland-pacing.h"
#include "wayland-shm.h"
#include "wayland-window.h"
#ifdef VGB_HAVE_EGL
#include "egl.h"
#endif

/* Forgets the pending frame without completing it (its completion moved elsewhere). */
void vgb_wayland_pending_clear(struct pending_frame *p)
{
	p->valid = false;
	p->cb = NULL;
	vgb_dmabuf_finish(&p->dmabuf_dup);
}

/* Completes the pending frame with @status and forgets it. */
void vgb_wayland_pending_finish(struct pending_frame *p, int status)
{
	struct vgb_frame f = p->f;

	vgb_wayland_pending_clear(p);
	vgb_frame_complete(&f, status);
}

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
	/* A frame waiting for the first configure is committed by the sink's dispatch. */
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
void vgb_wayland_scanout_drop_window(struct scanout *so, int status)
{
	struct pending_frame *p = &so->pending;

	if (p->valid)
		vgb_wayland_pending_finish(p, status);
	p->cb = NULL;
#ifdef VGB_HAVE_EGL
	vgb_egl_window_destroy(so->egl_win);
	so->egl_win = NULL;
#endif
	vgb_wayland_pacing_drop(so, status);
	vgb_wayland_copy_destroy_all(so);
	if (so->feedback)
		vgb_wayland_dmabuf_feedback_destroy(so->feedback);
	so->feedback = NULL;
	vgb_wayland_cursor_drop(so);
	if (so->viewport)
		wp_viewport_destroy(so->viewport);
	so->viewport = NULL;
	if (so->toplevel)
		xdg_toplevel_destroy(so->toplevel);
	so->toplevel = NULL;
	if (so->xdg_surface)
		xdg_surface_destroy(so->xdg_surface);
	so->xdg_surface = NULL;
	if (so->surface)
		wl_surface_destroy(so->surface);
	so->surface = NULL;
	so->configured = false;
	so->conf_width = so->conf_height = 0;
	so->buf_width = so->buf_height = 0;
}

static int scanout_open_window(struct scanout *so)
{
	struct wayland_sink *s = so->sink;
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
		so->feedback = vgb_wayland_dmabuf_feedback_create(s, so);
	so->create_ns = vgb_now_ns();
	/* The initial commit without a buffer asks for the first configure. */
	wl_surface_commit(so->surface);
	/* A cursor that cannot be shown does not keep the window from opening. */
	if (so->cursor_argb)
		vgb_wayland_cursor_update(so);
	return 0;
}

int vgb_wayland_scanout_new(struct wayland_sink *s, uint32_t index, struct scanout **ret)
{
	struct scanout *so = s->scanouts[index];

	if (!so) {
		so = calloc(1, sizeof(*so));
		if (!so)
			return -ENOMEM;
		so->sink = s;
		so->index = index;
		vgb_dmabuf_init(&so->pending.dmabuf_dup);
		s->scanouts[index] = so;
	}
	*ret = so;
	return 0;
}

int vgb_wayland_scanout_get(struct wayland_sink *s, uint32_t index, struct scanout **ret)
{
	struct scanout *so;
	int r;

	r = vgb_wayland_scanout_new(s, index, &so);
	if (r < 0)
		return r;
	if (!so->surface) {
		r = scanout_open_window(so);
		if (r < 0) {
			vgb_wayland_scanout_drop_window(so, -EPIPE);
			return r;
		}
	}
	*ret = so;
	return 0;
}

void vgb_wayland_scanout_destroy(struct scanout *so)
{
	if (!so)
		return;
	so->sink->scanouts[so->index] = NULL;
	vgb_wayland_scanout_drop_window(so, -ECANCELED);
	free(so->cursor_argb);
	free(so);
}

void vgb_wayland_scanout_set_buffer_size(struct scanout *so, uint32_t w, uint32_t h)
{
	if (so->buf_width != w || so->buf_height != h) {
		so->buf_width = w;
		so->buf_height = h;
		update_viewport(so);
	}
}
