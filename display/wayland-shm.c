/* SPDX-License-Identifier: MIT */
/*
 * wl_shm paths: a pool straight on the guest memfd (zero copies), and rotating copy buffers that
 * receive only the damaged rectangle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-buffer-cache.h"
#include "wayland-shm.h"

int vgb_wayland_shm_alloc_memfd(size_t size, void **ret_data)
{
	_cleanup_close_ int fd = memfd_create("vgb-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *data;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	/* The compositor maps it too: it must not be able to shrink under us. */
	fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
	data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (data == MAP_FAILED)
		return -errno;
	*ret_data = data;
	return TAKE_FD(fd);
}

bool vgb_wayland_shm_format_ok(const struct wayland_sink *s, uint32_t fourcc,
			       uint32_t *ret_format)
{
	int64_t f = vgb_format_drm_to_wl_shm(fourcc);

	if (f < 0)
		return false;
	if ((f == 0 && !(s->shm_formats & 1)) || (f == 1 && !(s->shm_formats & 2)))
		return false;
	if (f > 1 && !vgb_fmt_set_has(&s->shm_extra, (uint32_t)f, 0))
		return false;
	*ret_format = (uint32_t)f;
	return true;
}

/* ---- direct: a pool on the guest's memfd ---- */

static bool fd_is_sealed_memfd(int fd)
{
	/*
	 * Only memfds answer F_GET_SEALS: a VFIO device fd or a regular file never goes to the
	 * compositor. F_SEAL_SHRINK too: a memfd shrunk under the compositor's mapping makes it
	 * fault, and libwayland-server answers that by killing our connection (QEMU seals its
	 * memfd RAM backends by default).
	 */
	int seals = fcntl(fd, F_GET_SEALS);

	return seals >= 0 && (seals & F_SEAL_SHRINK);
}

bool vgb_wayland_shm_view_is_direct(const struct wayland_sink *s, const struct vgb_frame *f)
{
	const struct vgb_cpu_view *v = f->cpu;
	uint64_t end, size;
	uint32_t format;
	struct stat st;

	if (!v || v->memfd < 0 || !vgb_wayland_shm_format_ok(s, f->fourcc, &format))
		return false;
	/* wl_shm pool sizes and buffer offsets are int32. */
	if (__builtin_mul_overflow((uint64_t)v->stride, (uint64_t)f->height, &end) ||
	    __builtin_add_overflow(end, v->memfd_offset, &end) || end > INT32_MAX ||
	    v->stride > INT32_MAX)
		return false;
	if (!fd_is_sealed_memfd(v->memfd) || fstat(v->memfd, &st) < 0)
		return false;
	size = v->memfd_size ? VGB_MIN(v->memfd_size, (uint64_t)st.st_size) : (uint64_t)st.st_size;
	return end <= size;
}

int vgb_wayland_shm_direct_get(struct wayland_sink *s, const struct vgb_frame *f,
			       struct cached_buffer **ret)
{
	const struct vgb_cpu_view *v = f->cpu;
	struct cached_buffer *cb = vgb_wayland_cache_find(s, f->buffer_id, CACHED_SHM_DIRECT);
	struct wl_shm_pool *pool;
	uint32_t format;

	if (vgb_wayland_cache_matches(cb, f, f->fourcc, v->stride, v->memfd_offset)) {
		*ret = cb;
		return 0;
	}
	vgb_wayland_cache_destroy(cb); /* same export, new layout */
	if (!vgb_wayland_shm_format_ok(s, f->fourcc, &format))
		return -EOPNOTSUPP;

	cb = vgb_wayland_cache_new(s, f, CACHED_SHM_DIRECT, CACHED_READY, f->fourcc, v->stride,
			v->memfd_offset);
	if (!cb)
		return -ENOMEM;
	/* The pool spans the memfd from 0 to the frame's end: the compositor maps only that. */
	pool = wl_shm_create_pool(s->shm, v->memfd,
				  (int32_t)(v->memfd_offset + (uint64_t)v->stride * f->height));
	if (!pool) {
		free(cb);
		return -ENOMEM;
	}
	cb->buffer = wl_shm_pool_create_buffer(pool, (int32_t)v->memfd_offset, (int32_t)f->width,
					       (int32_t)f->height, (int32_t)v->stride, format);
	wl_shm_pool_destroy(pool);
	if (!cb->buffer) {
		free(cb);
		return -ENOMEM;
	}
	vgb_wayland_cache_listen(cb);
	wl_list_insert(&s->cached, &cb->link);
	*ret = cb;
	return 0;
}

/* ---- copy: rotating buffers, damage only ---- */

static void shm_buffer_destroy(struct shm_buffer *b)
{
	if (!b)
		return;
	if (b->buffer)
		wl_buffer_destroy(b->buffer);
	if (b->data)
		munmap(b->data, b->size);
	free(b);
}

static void copy_release(void *data, struct wl_buffer *buffer)
{
	struct shm_buffer *b = data;

	/* A frame waiting for exactly this moves on in the sink's dispatch. */
	b->busy = false;
}

static const struct wl_buffer_listener copy_listener = {
	.release = copy_release,
};

void vgb_wayland_copy_destroy_all(struct scanout *so)
{
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++) {
		shm_buffer_destroy(so->copy[i]);
		so->copy[i] = NULL;
	}
	so->front = NULL;
}

static struct shm_buffer *shm_buffer_create(struct scanout *so, uint32_t w, uint32_t h,
					    uint32_t fourcc)
{
	struct wayland_sink *s = so->sink;
	struct shm_buffer *b;
	struct wl_shm_pool *pool;
	uint32_t format;
	int fd;

	if (!vgb_wayland_shm_format_ok(s, fourcc, &format))
		return NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->so = so;
	b->width = w;
	b->height = h;
	b->fourcc = fourcc;
	b->stride = w * 4;
	b->size = (size_t)b->stride * h;
	b->stale = (struct vgb_rect){ 0, 0, w, h };
	fd = vgb_wayland_shm_alloc_memfd(b->size, &b->data);
	if (fd < 0) {
		free(b);
		return NULL;
	}
	pool = wl_shm_create_pool(s->shm, fd, (int32_t)b->size);
	close(fd); /* libwayland sent its own duplicate */
	if (!pool) {
		munmap(b->data, b->size);
		free(b);
		return NULL;
	}
	b->buffer = wl_shm_pool_create_buffer(pool, 0, (int32_t)w, (int32_t)h, (int32_t)b->stride,
					      format);
	wl_shm_pool_destroy(pool);
	if (!b->buffer) {
		munmap(b->data, b->size);
		free(b);
		return NULL;
	}
	wl_buffer_add_listener(b->buffer, &copy_listener, b);
	return b;
}

struct shm_buffer *vgb_wayland_copy_get(struct scanout *so, const struct pending_frame *p)
{
	const struct vgb_frame *f = &p->f;
	int free_slot = -1;

	/* A new size or format makes every old buffer useless. */
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++) {
		struct shm_buffer *b = so->copy[i];
		if (b && (b->width != f->width || b->height != f->height || b->fourcc != f->fourcc)) {
			vgb_wayland_copy_destroy_all(so);
			break;
		}
	}
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++) {
		struct shm_buffer *b = so->copy[i];
		if (b && !b->busy && b != so->front)
			return b;
		if (!b && free_slot < 0)
			free_slot = (int)i;
	}
	/* Prefer a new buffer over rewriting the one on screen... */
	if (free_slot >= 0) {
		so->copy[free_slot] = shm_buffer_create(so, f->width, f->height, f->fourcc);
		return so->copy[free_slot];
	}
	/* ...but the front buffer is fine once the compositor released it. */
	if (so->front && !so->front->busy)
		return so->front;
	return NULL;
}

static bool rect_contains(const struct vgb_rect *outer, const struct vgb_rect *inner)
{
	return (uint64_t)inner->x >= outer->x && (uint64_t)inner->y >= outer->y &&
	       (uint64_t)inner->x + inner->width <= (uint64_t)outer->x + outer->width &&
	       (uint64_t)inner->y + inner->height <= (uint64_t)outer->y + outer->height;
}

int vgb_wayland_copy_fill(struct scanout *so, struct shm_buffer *b, const struct pending_frame *p,
			  const struct vgb_rect *fill)
{
	struct wayland_sink *s = so->sink;
	struct vgb_rect dmg = *fill;
	struct vgb_rect stale = b->stale;
	int r;

	if (!p->has_cpu)
		return -EINVAL;
	/*
	 * What changed on screen since this buffer was last written comes from the front buffer
	 * (the complete latest image), so pixels outside the guest's damage never change.
	 */
	if (rect_contains(&dmg, &stale))
		stale = (struct vgb_rect){ 0 }; /* the guest's damage covers it anyway */
	if (!vgb_rect_is_empty(&stale) && so->front && so->front != b) {
		struct vgb_cpu_view front = { .data = so->front->data, .stride = so->front->stride,
					      .memfd = -1 };
		r = vgb_copy_rect(b->data, b->stride, &front, &stale, 4);
		if (r < 0)
			return r;
		s->stats.bytes_copied += (uint64_t)stale.width * stale.height * 4;
	} else if (!vgb_rect_is_empty(&stale) && !so->front) {
		/* Nothing on screen yet: the whole frame comes from the guest. */
		vgb_rect_union(&dmg, &stale);
	}
	/* A fault in the guest's view (-EIO) fails the frame; this buffer keeps its stale area. */
	r = vgb_copy_rect(b->data, b->stride, &p->cpu, &dmg, 4);
	if (r < 0) {
		vgb_rect_union(&b->stale, &dmg);
		return r;
	}
	s->stats.bytes_copied += (uint64_t)dmg.width * dmg.height * 4;
	s->stats.copies++;
	b->stale = (struct vgb_rect){ 0 };
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++)
		if (so->copy[i] && so->copy[i] != b)
			vgb_rect_union(&so->copy[i]->stale, &dmg);
	so->front = b;
	return 0;
}
