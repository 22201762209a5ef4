/* SPDX-License-Identifier: MIT */
/*
 * wl_shm paths: a pool straight on the guest memfd (zero copies), rotating copy buffers that
 * receive only the damaged rectangle, the cursor buffer, and the per-buffer_id cache.
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
#include "wayland-private.h"

int shm_alloc_memfd(size_t size, void **ret_data)
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

static bool shm_format_ok(const struct wl_sink *s, uint32_t fourcc, uint32_t *ret_format)
{
	int64_t f = vgb_format_drm_to_wl_shm(fourcc);

	if (f < 0)
		return false;
	if ((f == 0 && !(s->shm_formats & 1)) || (f == 1 && !(s->shm_formats & 2)))
		return false;
	if (f > 1 && !fmt_set_has(&s->shm_extra, (uint32_t)f, 0))
		return false;
	*ret_format = (uint32_t)f;
	return true;
}

/* ---- cached wl_buffers (dmabuf imports and direct shm) ---- */

struct cached_buffer *cached_find(struct wl_sink *s, uint64_t id, enum cached_kind kind)
{
	struct cached_buffer *cb;

	if (id == 0)
		return NULL;
	wl_list_for_each(cb, &s->cached, link)
		if (cb->id == id && cb->kind == kind)
			return cb;
	return NULL;
}

bool cached_matches(const struct cached_buffer *cb, const struct vgb_frame *f, uint32_t fourcc,
		    uint32_t stride, uint64_t offset)
{
	return cb && cb->width == f->width && cb->height == f->height && cb->fourcc == fourcc &&
	       cb->stride == stride && cb->offset == offset;
}

struct cached_buffer *cached_new(struct wl_sink *s, const struct vgb_frame *f,
				 enum cached_kind kind, enum cached_state state, uint32_t fourcc,
				 uint32_t stride, uint64_t offset)
{
	struct cached_buffer *cb = calloc(1, sizeof(*cb));

	if (!cb)
		return NULL;
	cb->sink = s;
	cb->id = f->buffer_id;
	cb->kind = kind;
	cb->state = state;
	cb->width = f->width;
	cb->height = f->height;
	cb->fourcc = fourcc;
	cb->stride = stride;
	cb->offset = offset;
	return cb;
}

void cached_destroy(struct cached_buffer *cb)
{
	if (!cb)
		return;
	wl_list_remove(&cb->link);
	if (cb->params)
		zwp_linux_buffer_params_v1_destroy(cb->params);
	if (cb->buffer)
		wl_buffer_destroy(cb->buffer);
	free(cb);
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

bool shm_view_is_direct(const struct wl_sink *s, const struct vgb_frame *f)
{
	const struct vgb_cpu_view *v = f->cpu;
	uint64_t end, size;
	uint32_t format;
	struct stat st;

	if (!v || v->memfd < 0 || !shm_format_ok(s, f->fourcc, &format))
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

static void cached_release(void *data, struct wl_buffer *buffer)
{
	struct cached_buffer *cb = data;

	/* Uncached (id 0) buffers live for one commit. */
	if (cb->id == 0)
		cached_destroy(cb);
}

static const struct wl_buffer_listener cached_listener = {
	.release = cached_release,
};

void cached_listen(struct cached_buffer *cb)
{
	wl_buffer_add_listener(cb->buffer, &cached_listener, cb);
}

int shm_direct_get(struct wl_sink *s, const struct vgb_frame *f, struct cached_buffer **ret)
{
	const struct vgb_cpu_view *v = f->cpu;
	struct cached_buffer *cb = cached_find(s, f->buffer_id, CACHED_SHM_DIRECT);
	struct wl_shm_pool *pool;
	uint32_t format;

	if (cached_matches(cb, f, f->fourcc, v->stride, v->memfd_offset)) {
		*ret = cb;
		return 0;
	}
	cached_destroy(cb); /* same export, new layout */
	if (!shm_format_ok(s, f->fourcc, &format))
		return -EOPNOTSUPP;

	cb = cached_new(s, f, CACHED_SHM_DIRECT, CACHED_READY, f->fourcc, v->stride,
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
	wl_buffer_add_listener(cb->buffer, &cached_listener, cb);
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

	b->busy = false;
	/* A frame may be waiting for exactly this. */
	wl_sink_try_commit(b->so);
}

static const struct wl_buffer_listener copy_listener = {
	.release = copy_release,
};

void shm_copy_destroy_all(struct scanout *so)
{
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++) {
		shm_buffer_destroy(so->copy[i]);
		so->copy[i] = NULL;
	}
	so->front = NULL;
	so->staged = NULL;
}

static struct shm_buffer *shm_buffer_create(struct scanout *so, uint32_t w, uint32_t h,
					    uint32_t fourcc)
{
	struct wl_sink *s = so->sink;
	struct shm_buffer *b;
	struct wl_shm_pool *pool;
	uint32_t format;
	int fd;

	if (!shm_format_ok(s, fourcc, &format))
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
	fd = shm_alloc_memfd(b->size, &b->data);
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

struct shm_buffer *shm_copy_get(struct scanout *so, const struct pending_frame *p)
{
	const struct vgb_frame *f = &p->f;
	int free_slot = -1;

	/* A new size or format makes every old buffer useless. */
	for (uint32_t i = 0; i < SHM_COPY_BUFFERS; i++) {
		struct shm_buffer *b = so->copy[i];
		if (b && (b->width != f->width || b->height != f->height || b->fourcc != f->fourcc)) {
			shm_copy_destroy_all(so);
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

int shm_copy_fill(struct scanout *so, struct shm_buffer *b, const struct pending_frame *p,
		  const struct vgb_rect *fill)
{
	struct wl_sink *s = so->sink;
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

/* ---- cursor ---- */

int shm_cursor_update(struct scanout *so)
{
	struct wl_sink *s = so->sink;
	struct wl_shm_pool *pool;
	struct wl_buffer *buffer;
	void *data;
	size_t size;
	int fd;

	if (!so->cursor_argb) {
		if (s->pointer && s->pointer_focus == so)
			wl_pointer_set_cursor(s->pointer, s->pointer_serial, NULL, 0, 0);
		return wl_sink_flush(s);
	}
	if (!(s->shm_formats & 1))
		return -EOPNOTSUPP;
	if (!so->cursor_surface) {
		so->cursor_surface = wl_compositor_create_surface(s->compositor);
		if (!so->cursor_surface)
			return -ENOMEM;
	}
	size = (size_t)so->cursor_w * so->cursor_h * 4;
	fd = shm_alloc_memfd(size, &data);
	if (fd < 0)
		return fd;
	memcpy(data, so->cursor_argb, size);
	munmap(data, size);
	pool = wl_shm_create_pool(s->shm, fd, (int32_t)size);
	close(fd);
	if (!pool)
		return -ENOMEM;
	buffer = wl_shm_pool_create_buffer(pool, 0, (int32_t)so->cursor_w, (int32_t)so->cursor_h,
					   (int32_t)so->cursor_w * 4, 0 /* ARGB8888 */);
	wl_shm_pool_destroy(pool);
	if (!buffer)
		return -ENOMEM;
	wl_surface_attach(so->cursor_surface, buffer, 0, 0);
	wl_surface_damage(so->cursor_surface, 0, 0, (int32_t)so->cursor_w, (int32_t)so->cursor_h);
	wl_surface_commit(so->cursor_surface);
	/* Replaced in the surface's state: the old buffer can go. */
	if (so->cursor_buffer)
		wl_buffer_destroy(so->cursor_buffer);
	so->cursor_buffer = buffer;
	if (s->pointer && s->pointer_focus == so)
		wl_pointer_set_cursor(s->pointer, s->pointer_serial, so->cursor_surface,
				      (int32_t)so->cursor_hot_x, (int32_t)so->cursor_hot_y);
	return wl_sink_flush(s);
}
