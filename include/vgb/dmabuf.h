/* SPDX-License-Identifier: MIT */
#ifndef VGB_DMABUF_H
#define VGB_DMABUF_H

#include <stdint.h>

#define VGB_DMABUF_MAX_PLANES 4

/*
 * A dmabuf frame descriptor (the shape of wlroots' wlr_dmabuf_attributes).
 * Owning: fd[0..n_planes-1] belong to the descriptor and are closed by vgb_dmabuf_finish();
 * unused fd slots are -1.
 */
struct vgb_dmabuf {
	uint32_t width, height;
	uint32_t fourcc;   /* DRM_FORMAT_* */
	uint64_t modifier; /* DRM_FORMAT_MOD_* (LINEAR for our exports) */
	uint32_t n_planes;
	uint32_t offset[VGB_DMABUF_MAX_PLANES];
	uint32_t stride[VGB_DMABUF_MAX_PLANES];
	int fd[VGB_DMABUF_MAX_PLANES];
};

/* Zeroes @buf and sets every fd to -1. */
void vgb_dmabuf_init(struct vgb_dmabuf *buf);

/* Closes the fds @buf owns and re-initialises it. Accepts NULL and half-filled descriptors. */
void vgb_dmabuf_finish(struct vgb_dmabuf *buf);

/*
 * Copies @src into @ret with each plane fd duplicated (F_DUPFD_CLOEXEC). Planes that share an
 * fd number share one duplicate. On failure nothing is leaked and @ret is untouched.
 * Returns 0 or -errno (-EINVAL for a malformed @src).
 */
int vgb_dmabuf_dup(const struct vgb_dmabuf *src, struct vgb_dmabuf *ret);

#endif
