/* SPDX-License-Identifier: MIT */
/* The EGL importer: dmabuf -> EGLImage -> GLES2 texture -> a quad in a wl_egl_window. */
#include <drm_fourcc.h>
#include <epoxy/egl.h>
#include <epoxy/gl.h>
#include <errno.h>
#include <stdlib.h>
#include <wayland-egl.h>

#include "egl.h"
#include "vgb/log.h"
#include "vgb/util.h"

struct vgb_egl {
	EGLDisplay display;
	EGLConfig config;
	EGLContext context;
	bool modifiers; /* EGL_EXT_image_dma_buf_import_modifiers */
	GLuint program;
	GLint tex_uniform;
};

struct vgb_egl_window {
	struct vgb_egl *egl;
	struct wl_egl_window *native;
	EGLSurface surface;
	uint32_t width, height;
	GLuint texture;
};

static const char vertex_src[] = "attribute vec2 pos;\n"
				 "varying vec2 uv;\n"
				 "void main() {\n"
				 "  uv = vec2(pos.x * 0.5 + 0.5, 0.5 - pos.y * 0.5);\n"
				 "  gl_Position = vec4(pos, 0.0, 1.0);\n"
				 "}\n";
static const char fragment_src[] = "precision mediump float;\n"
				   "varying vec2 uv;\n"
				   "uniform sampler2D tex;\n"
				   "void main() { gl_FragColor = texture2D(tex, uv); }\n";

static GLuint compile(GLenum type, const char *src)
{
	GLuint s = glCreateShader(type);
	GLint ok = 0;

	glShaderSource(s, 1, &src, NULL);
	glCompileShader(s);
	glGetShaderiv(s, GL_COMPILE_STATUS, &ok);
	if (!ok) {
		glDeleteShader(s);
		return 0;
	}
	return s;
}

static int build_program(struct vgb_egl *egl)
{
	GLuint vs = compile(GL_VERTEX_SHADER, vertex_src);
	GLuint fs = compile(GL_FRAGMENT_SHADER, fragment_src);
	GLint ok = 0;

	if (!vs || !fs) {
		glDeleteShader(vs);
		glDeleteShader(fs);
		return -EIO;
	}
	egl->program = glCreateProgram();
	glAttachShader(egl->program, vs);
	glAttachShader(egl->program, fs);
	glBindAttribLocation(egl->program, 0, "pos");
	glLinkProgram(egl->program);
	glDeleteShader(vs);
	glDeleteShader(fs);
	glGetProgramiv(egl->program, GL_LINK_STATUS, &ok);
	if (!ok)
		return -EIO;
	egl->tex_uniform = glGetUniformLocation(egl->program, "tex");
	return 0;
}

void vgb_egl_destroy(struct vgb_egl *egl)
{
	if (!egl)
		return;
	if (egl->display != EGL_NO_DISPLAY) {
		if (egl->context != EGL_NO_CONTEXT) {
			eglMakeCurrent(egl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, egl->context);
			if (egl->program)
				glDeleteProgram(egl->program);
			eglMakeCurrent(egl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
			eglDestroyContext(egl->display, egl->context);
		}
		eglTerminate(egl->display);
	}
	free(egl);
}

int vgb_egl_create(struct wl_display *display, struct vgb_egl **ret)
{
	static const EGLint config_attribs[] = {
		EGL_SURFACE_TYPE, EGL_WINDOW_BIT, EGL_RED_SIZE, 8, EGL_GREEN_SIZE, 8,
		EGL_BLUE_SIZE, 8, EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_NONE,
	};
	static const EGLint context_attribs[] = { EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE };
	struct vgb_egl *egl;
	EGLint major, minor, n = 0;
	int r = -EOPNOTSUPP;

	if (!epoxy_has_egl_extension(EGL_NO_DISPLAY, "EGL_EXT_platform_wayland") &&
	    !epoxy_has_egl_extension(EGL_NO_DISPLAY, "EGL_KHR_platform_wayland"))
		return -EOPNOTSUPP;
	egl = calloc(1, sizeof(*egl));
	if (!egl)
		return -ENOMEM;
	egl->display = EGL_NO_DISPLAY;
	egl->context = EGL_NO_CONTEXT;
	if (epoxy_has_egl_extension(EGL_NO_DISPLAY, "EGL_EXT_platform_base"))
		egl->display = eglGetPlatformDisplayEXT(EGL_PLATFORM_WAYLAND_KHR, display, NULL);
	else
		egl->display = eglGetDisplay((EGLNativeDisplayType)display);
	if (egl->display == EGL_NO_DISPLAY || !eglInitialize(egl->display, &major, &minor)) {
		egl->display = EGL_NO_DISPLAY;
		goto fail;
	}
	if (!epoxy_has_egl_extension(egl->display, "EGL_EXT_image_dma_buf_import") ||
	    !epoxy_has_egl_extension(egl->display, "EGL_KHR_image_base")) {
		vgb_log(VGB_LOG_DEBUG, "egl: %s lacks EGL_EXT_image_dma_buf_import",
			eglQueryString(egl->display, EGL_VENDOR));
		goto fail;
	}
	egl->modifiers = epoxy_has_egl_extension(egl->display,
						 "EGL_EXT_image_dma_buf_import_modifiers");
	if (!eglBindAPI(EGL_OPENGL_ES_API) ||
	    !eglChooseConfig(egl->display, config_attribs, &egl->config, 1, &n) || n < 1)
		goto fail;
	egl->context = eglCreateContext(egl->display, egl->config, EGL_NO_CONTEXT, context_attribs);
	if (egl->context == EGL_NO_CONTEXT)
		goto fail;
	/* Surfaceless current context to check GL extensions and build the program. */
	if (!epoxy_has_egl_extension(egl->display, "EGL_KHR_surfaceless_context") ||
	    !eglMakeCurrent(egl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, egl->context))
		goto fail;
	if (!epoxy_has_gl_extension("GL_OES_EGL_image"))
		goto fail;
	r = build_program(egl);
	if (r < 0)
		goto fail;
	*ret = egl;
	return 0;
fail:
	vgb_egl_destroy(egl);
	return r < 0 ? r : -EOPNOTSUPP;
}

bool vgb_egl_can_import(struct vgb_egl *egl, uint32_t fourcc, uint64_t modifier)
{
	EGLint n = 0;

	if (!egl->modifiers)
		return modifier == DRM_FORMAT_MOD_LINEAR || modifier == DRM_FORMAT_MOD_INVALID;
	if (modifier == DRM_FORMAT_MOD_INVALID)
		return true;
	if (!eglQueryDmaBufModifiersEXT(egl->display, (EGLint)fourcc, 0, NULL, NULL, &n) || n <= 0)
		return modifier == DRM_FORMAT_MOD_LINEAR;
	{
		_cleanup_free_ EGLuint64KHR *mods = calloc((size_t)n, sizeof(*mods));
		if (!mods ||
		    !eglQueryDmaBufModifiersEXT(egl->display, (EGLint)fourcc, n, mods, NULL, &n))
			return false;
		for (EGLint i = 0; i < n; i++)
			if (mods[i] == modifier)
				return true;
	}
	return false;
}

int vgb_egl_window_create(struct vgb_egl *egl, struct wl_surface *surface, uint32_t width,
			  uint32_t height, struct vgb_egl_window **ret)
{
	struct vgb_egl_window *win;

	if (width == 0 || height == 0 || width > INT32_MAX || height > INT32_MAX)
		return -EINVAL;
	win = calloc(1, sizeof(*win));
	if (!win)
		return -ENOMEM;
	win->egl = egl;
	win->width = width;
	win->height = height;
	win->surface = EGL_NO_SURFACE;
	win->native = wl_egl_window_create(surface, (int)width, (int)height);
	if (!win->native) {
		free(win);
		return -ENOMEM;
	}
	win->surface = eglCreateWindowSurface(egl->display, egl->config,
					      (EGLNativeWindowType)win->native, NULL);
	if (win->surface == EGL_NO_SURFACE ||
	    !eglMakeCurrent(egl->display, win->surface, win->surface, egl->context)) {
		vgb_egl_window_destroy(win);
		return -EIO;
	}
	/* Never wait for the compositor inside eglSwapBuffers: the caller's loop paces. */
	eglSwapInterval(egl->display, 0);
	glGenTextures(1, &win->texture);
	*ret = win;
	return 0;
}

void vgb_egl_window_destroy(struct vgb_egl_window *win)
{
	if (!win)
		return;
	if (win->surface != EGL_NO_SURFACE) {
		eglMakeCurrent(win->egl->display, win->surface, win->surface, win->egl->context);
		if (win->texture)
			glDeleteTextures(1, &win->texture);
		eglMakeCurrent(win->egl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, win->egl->context);
		eglDestroySurface(win->egl->display, win->surface);
	}
	if (win->native)
		wl_egl_window_destroy(win->native);
	free(win);
}

int vgb_egl_window_draw(struct vgb_egl_window *win, const struct vgb_dmabuf *buf)
{
	static const GLfloat quad[] = { -1, -1, 1, -1, -1, 1, 1, 1 };
	static const EGLint fd_attr[] = { EGL_DMA_BUF_PLANE0_FD_EXT, EGL_DMA_BUF_PLANE1_FD_EXT,
					  EGL_DMA_BUF_PLANE2_FD_EXT, EGL_DMA_BUF_PLANE3_FD_EXT };
	static const EGLint off_attr[] = { EGL_DMA_BUF_PLANE0_OFFSET_EXT,
					   EGL_DMA_BUF_PLANE1_OFFSET_EXT,
					   EGL_DMA_BUF_PLANE2_OFFSET_EXT,
					   EGL_DMA_BUF_PLANE3_OFFSET_EXT };
	static const EGLint pitch_attr[] = { EGL_DMA_BUF_PLANE0_PITCH_EXT,
					     EGL_DMA_BUF_PLANE1_PITCH_EXT,
					     EGL_DMA_BUF_PLANE2_PITCH_EXT,
					     EGL_DMA_BUF_PLANE3_PITCH_EXT };
	static const EGLint lo_attr[] = { EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT,
					  EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT,
					  EGL_DMA_BUF_PLANE2_MODIFIER_LO_EXT,
					  EGL_DMA_BUF_PLANE3_MODIFIER_LO_EXT };
	static const EGLint hi_attr[] = { EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT,
					  EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT,
					  EGL_DMA_BUF_PLANE2_MODIFIER_HI_EXT,
					  EGL_DMA_BUF_PLANE3_MODIFIER_HI_EXT };
	struct vgb_egl *egl = win->egl;
	EGLint attrs[6 + VGB_DMABUF_MAX_PLANES * 10 + 1];
	EGLImageKHR image;
	size_t n = 0;

	if (buf->n_planes == 0 || buf->n_planes > VGB_DMABUF_MAX_PLANES ||
	    buf->width > INT32_MAX || buf->height > INT32_MAX)
		return -EINVAL;
	attrs[n++] = EGL_WIDTH;
	attrs[n++] = (EGLint)buf->width;
	attrs[n++] = EGL_HEIGHT;
	attrs[n++] = (EGLint)buf->height;
	attrs[n++] = EGL_LINUX_DRM_FOURCC_EXT;
	attrs[n++] = (EGLint)buf->fourcc;
	for (uint32_t i = 0; i < buf->n_planes; i++) {
		attrs[n++] = fd_attr[i];
		attrs[n++] = buf->fd[i];
		attrs[n++] = off_attr[i];
		attrs[n++] = (EGLint)buf->offset[i];
		attrs[n++] = pitch_attr[i];
		attrs[n++] = (EGLint)buf->stride[i];
		if (egl->modifiers && buf->modifier != DRM_FORMAT_MOD_INVALID) {
			attrs[n++] = lo_attr[i];
			attrs[n++] = (EGLint)(buf->modifier & 0xffffffffu);
			attrs[n++] = hi_attr[i];
			attrs[n++] = (EGLint)(buf->modifier >> 32);
		}
	}
	attrs[n] = EGL_NONE;

	if (!eglMakeCurrent(egl->display, win->surface, win->surface, egl->context))
		return -EIO;
	/* EGL takes its own references to the fds: the caller keeps and closes its own. */
	image = eglCreateImageKHR(egl->display, EGL_NO_CONTEXT, EGL_LINUX_DMA_BUF_EXT, NULL, attrs);
	if (image == EGL_NO_IMAGE_KHR)
		return -EINVAL;
	glViewport(0, 0, (GLsizei)win->width, (GLsizei)win->height);
	glBindTexture(GL_TEXTURE_2D, win->texture);
	glEGLImageTargetTexture2DOES(GL_TEXTURE_2D, (GLeglImageOES)image);
	glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
	glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
	glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
	glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
	glUseProgram(egl->program);
	glUniform1i(egl->tex_uniform, 0);
	glVertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 0, quad);
	glEnableVertexAttribArray(0);
	glDrawArrays(GL_TRIANGLE_STRIP, 0, 4);
	/* The blit has read the dmabuf once this returns: the guest may reuse it. */
	glFinish();
	eglDestroyImageKHR(egl->display, image);
	if (!eglSwapBuffers(egl->display, win->surface))
		return -EIO;
	return 0;
}
