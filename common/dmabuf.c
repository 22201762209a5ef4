/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "vgb/dmabuf.h"
#include "vgb/util.h"

void vgb_dmabuf_init(struct vgb_dmabuf *buf)
{
	memset(buf, 0, sizeof(*buf));
	for (unsigned i = 0; i < VGB_DMABUF_MAX_PLANES; i++)
		buf->fd[i] = -1;
}

void vgb_dmabuf_finish(struct vgb_dmabuf *buf)
{
	if (!buf)
		return;
	for (unsigned i = 0; i < VGB_DMABUF_MAX_PLANES; i++) {
		if (buf->fd[i] < 0)
			continue;
		/* Planes may share one fd: close each number once. */
		for (unsigned j = i + 1; j < VGB_DMABUF_MAX_PLANES; j++)
			if (buf->fd[j] == buf->fd[i])
				buf->fd[j] = -1;
		close(buf->fd[i]);
	}
	vgb_dmabuf_init(buf);
}

int vgb_dmabuf_dup(const struct vgb_dmabuf *src, struct vgb_dmabuf *ret)
{
	struct vgb_dmabuf copy;

	if (!src || src->n_planes == 0 || src->n_planes > VGB_DMABUF_MAX_PLANES)
		return -EINVAL;
	for (unsigned i = 0; i < src->n_planes; i++)
		if (src->fd[i] < 0)
			return -EINVAL;

	copy = *src;
	for (unsigned i = 0; i < VGB_DMABUF_MAX_PLANES; i++)
		copy.fd[i] = -1;
	for (unsigned i = 0; i < src->n_planes; i++) {
		unsigned j;

		for (j = 0; j < i; j++)
			if (src->fd[j] == src->fd[i])
				break;
		if (j < i) {
			copy.fd[i] = copy.fd[j];
			continue;
		}
		copy.fd[i] = fcntl(src->fd[i], F_DUPFD_CLOEXEC, 3);
		if (copy.fd[i] < 0) {
			int r = -errno;
			vgb_dmabuf_finish(&copy);
			return r;
		}
	}
	*ret = copy;
	return 0;
}
