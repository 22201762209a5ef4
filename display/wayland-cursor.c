/* SPDX-License-Identifier: MIT */
/*
 * The seat's pointer and the guest's cursor: the cursor image goes on a surface of its own,
 * set as the pointer's image while the pointer is over that scanout's window.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vgb/util.h"
#include "wayland-cursor.h"
#include "wayland-shm.h"

static void pointer_enter(void *data, struct wl_pointer *pointer, uint32_t serial,
			  struct wl_surface *surface, wl_fixed_t x, wl_fixed_t y)
{
	struct wayland_sink *s = data;
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
	((struct wayland_sink *)data)->pointer_focus = NULL;
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
	struct wayland_sink *s = data;

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

void vgb_wayland_seat_bind(struct wayland_sink *s, struct wl_registry *registry, uint32_t name,
			   uint32_t version)
{
	s->seat = wl_registry_bind(registry, name, &wl_seat_interface, VGB_MIN(version, 5u));
	wl_seat_add_listener(s->seat, &seat_listener, s);
}

void vgb_wayland_seat_release(struct wayland_sink *s)
{
	if (s->pointer)
		wl_pointer_destroy(s->pointer);
	s->pointer = NULL;
	s->pointer_focus = NULL;
	if (s->seat)
		wl_seat_destroy(s->seat);
	s->seat = NULL;
}

int vgb_wayland_cursor_update(struct scanout *so)
{
	struct wayland_sink *s = so->sink;
	struct wl_shm_pool *pool;
	struct wl_buffer *buffer;
	void *data;
	size_t size;
	int fd;

	if (!so->cursor_argb) {
		if (s->pointer && s->pointer_focus == so)
			wl_pointer_set_cursor(s->pointer, s->pointer_serial, NULL, 0, 0);
		return 0;
	}
	if (!(s->shm_formats & 1))
		return -EOPNOTSUPP;
	if (!so->cursor_surface) {
		so->cursor_surface = wl_compositor_create_surface(s->compositor);
		if (!so->cursor_surface)
			return -ENOMEM;
	}
	size = (size_t)so->cursor_w * so->cursor_h * 4;
	fd = vgb_wayland_shm_alloc_memfd(size, &data);
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
	return 0;
}

void vgb_wayland_cursor_drop(struct scanout *so)
{
	if (so->cursor_buffer)
		wl_buffer_destroy(so->cursor_buffer);
	so->cursor_buffer = NULL;
	if (so->cursor_surface)
		wl_surface_destroy(so->cursor_surface);
	so->cursor_surface = NULL;
	if (so->sink->pointer_focus == so)
		so->sink->pointer_focus = NULL;
}
