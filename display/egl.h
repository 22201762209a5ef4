/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_EGL_H
#define VGB_DISPLAY_EGL_H

/*
 * The EGL importer (libepoxy): for a dmabuf the compositor refuses but the host's EGL can
 * import (EGL_EXT_image_dma_buf_import), import it as a texture and draw it into a
 * wl_egl_window: one GPU copy, no CPU copy. Every EGL/GL entry point used is gated on the
 * extension that provides it (epoxy_has_egl_extension / epoxy_has_gl_extension).
 */

#include <stdbool.h>
#include <stdint.h>
#include <wayland-client.h>

#include "vgb/dmabuf.h"

struct vgb_egl;
struct vgb_egl_window;

/*
 * Initialises EGL on @display (borrowed; must outlive the importer) with a GLES2 context.
 * Returns 0, or -EOPNOTSUPP when EGL, GLES2, EGL_EXT_image_dma_buf_import or GL_OES_EGL_image
 * is missing (a capability, logged at debug only).
 */
int vgb_egl_create(struct wl_display *display, struct vgb_egl **ret);
void vgb_egl_destroy(struct vgb_egl *egl);

/* Whether EGL lists @fourcc/@modifier for import (without the modifiers extension: LINEAR or
 * INVALID only). */
bool vgb_egl_can_import(struct vgb_egl *egl, uint32_t fourcc, uint64_t modifier);

/* An EGL window surface on @surface (borrowed) of @width x @height; swap interval 0, so a swap
 * never waits for the compositor. */
int vgb_egl_window_create(struct vgb_egl *egl, struct wl_surface *surface, uint32_t width,
			  uint32_t height, struct vgb_egl_window **ret);
void vgb_egl_window_destroy(struct vgb_egl_window *win);

/*
 * Imports @buf (fds borrowed: EGL holds its own references), draws it over the whole window
 * and swaps (attach, damage and commit happen in eglSwapBuffers). Returns once the GPU has
 * read the dmabuf (glFinish), so the caller may complete the frame. Returns 0 or -errno
 * (-EINVAL: EGL refused the import).
 */
int vgb_egl_window_draw(struct vgb_egl_window *win, const struct vgb_dmabuf *buf);

#endif
