/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "memmap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

struct listener {
	vgb_memmap_remove_fn fn;
	void *data;
};

struct vgb_memmap {
	/* Sorted by gpa, non-overlapping. Pointers to windows are stable only until the next
	 * add or remove, which the header says. */
	struct vgb_memmap_window *windows;
	/* starts[i] == windows[i].gpa, kept in step: the binary search reads only this dense
	 * array (8 bytes a window instead of a whole window struct per probe). */
	uint64_t *starts;
	size_t n, cap;
	uint32_t next_id;
	uint64_t epoch;
	struct listener *listeners;
	size_t n_listeners;
};

int vgb_memmap_create(struct vgb_memmap **ret)
{
	struct vgb_memmap *map = calloc(1, sizeof(*map));

	if (!map)
		return -ENOMEM;
	map->next_id = 1;
	*ret = map;
	return 0;
}

/*
 * The number of windows that start at or below @gpa: the insertion index for @gpa, and one
 * past the only window that can contain it. Branch-free halving over the dense starts (the
 * compiler makes the step a conditional move): random guest addresses would mispredict about
 * half of a branching search's steps, which at 64 windows cost as much as a linear walk.
 */
static size_t starting_at_or_below(const struct vgb_memmap *map, uint64_t gpa)
{
	const uint64_t *base = map->starts;
	size_t n = map->n;

	if (n == 0)
		return 0;
	while (n > 1) {
		size_t half = n / 2;

		base = base[half] <= gpa ? base + half : base;
		n -= half;
	}
	return (size_t)(base - map->starts) + (*base <= gpa);
}

/* Whether @w contains @gpa. w->gpa + w->size cannot wrap: add_window() refused that. */
static bool contains(const struct vgb_memmap_window *w, uint64_t gpa)
{
	return w->gpa <= gpa && gpa < w->gpa + w->size;
}

const struct vgb_memmap_window *vgb_memmap_lookup(const struct vgb_memmap *map, uint64_t gpa)
{
	size_t i = starting_at_or_below(map, gpa);

	if (i > 0 && contains(&map->windows[i - 1], gpa))
		return &map->windows[i - 1];
	return NULL;
}

const struct vgb_memmap_window *vgb_memmap_find_id(const struct vgb_memmap *map, uint32_t id)
{
	for (size_t i = 0; i < map->n; i++)
		if (map->windows[i].id == id)
			return &map->windows[i];
	return NULL;
}

size_t vgb_memmap_count(const struct vgb_memmap *map)
{
	return map->n;
}

const struct vgb_memmap_window *vgb_memmap_get(const struct vgb_memmap *map, size_t i)
{
	return i < map->n ? &map->windows[i] : NULL;
}

uint64_t vgb_memmap_epoch(const struct vgb_memmap *map)
{
	return map->epoch;
}

/* Checks @w's range against the map and inserts a copy. Fills w->id. */
static int add_window(struct vgb_memmap *map, struct vgb_memmap_window *w)
{
	uint64_t end;
	size_t i;

	if (w->size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(w->gpa, w->size, &end))
		return -EOVERFLOW;
	i = starting_at_or_below(map, w->gpa);
	if ((i > 0 && contains(&map->windows[i - 1], w->gpa)) ||
	    (i < map->n && map->windows[i].gpa < end))
		return -EEXIST;
	if (map->n >= VGB_MEMMAP_MAX_WINDOWS || map->next_id == UINT32_MAX)
		return -ENOSPC;
	if (map->n == map->cap) {
		size_t cap = map->cap ? map->cap * 2 : 8;
		struct vgb_memmap_window *p = reallocarray(map->windows, cap, sizeof(*p));
		uint64_t *q;

		if (!p)
			return -ENOMEM;
		map->windows = p;
		q = reallocarray(map->starts, cap, sizeof(*q));
		if (!q)
			return -ENOMEM; /* windows grew, cap did not: still consistent */
		map->starts = q;
		map->cap = cap;
	}
	memmove(&map->windows[i + 1], &map->windows[i], (map->n - i) * sizeof(*w));
	memmove(&map->starts[i + 1], &map->starts[i], (map->n - i) * sizeof(*map->starts));
	w->id = map->next_id++;
	map->windows[i] = *w;
	map->starts[i] = w->gpa;
	map->n++;
	return 0;
}

int vgb_memmap_add_ram(struct vgb_memmap *map, uint64_t gpa, uint64_t size, int memfd,
		       uint64_t offset, uint32_t *ret_id)
{
	struct vgb_memmap_window w = { .kind = VGB_MEMMAP_RAM, .gpa = gpa, .size = size };
	uint64_t end, gend;
	struct stat st;
	int seals, r;

	if (size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(offset, size, &end) || __builtin_add_overflow(gpa, size, &gend))
		return -EOVERFLOW;
	if (memfd < 0 || fstat(memfd, &st) < 0)
		return -EBADF;
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size < end)
		return -EINVAL;
	seals = fcntl(memfd, F_GET_SEALS);
	if (seals < 0)
		return -EINVAL; /* not a memfd: it could shrink under us */
	if (!(seals & F_SEAL_SHRINK)) {
		if (seals & F_SEAL_SEAL)
			return -EPERM;
		if (fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
			return errno == EPERM ? -EPERM : -EINVAL;
		seals |= F_SEAL_SHRINK;
	}
	/* Re-check after sealing: the size could have changed between fstat and the seal. */
	if (fstat(memfd, &st) < 0)
		return -EBADF;
	if ((uint64_t)st.st_size < end)
		return -EINVAL;
	w.ram.memfd = memfd;
	w.ram.offset = offset;
	w.ram.memfd_size = (uint64_t)st.st_size;
	w.ram.udmabuf_ok = !(seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE));
	r = add_window(map, &w);
	if (r < 0)
		return r;
	if (ret_id)
		*ret_id = w.id;
	return 0;
}

int vgb_memmap_add_vfio(struct vgb_memmap *map, uint64_t gpa, uint64_t size,
			struct vgb_vfio_device *dev, uint32_t region, uint64_t region_offset,
			uint32_t *ret_id)
{
	struct vgb_memmap_window w = { .kind = VGB_MEMMAP_VFIO, .gpa = gpa, .size = size };
	const struct vgb_vfio_region_info *info;
	uint64_t end, gend;
	int r;

	if (!dev || size == 0)
		return -EINVAL;
	if (__builtin_add_overflow(region_offset, size, &end) ||
	    __builtin_add_overflow(gpa, size, &gend))
		return -EOVERFLOW;
	if (region >= dev->num_regions)
		return -EINVAL;
	r = vgb_vfio_region_info(dev, region, &info);
	if (r < 0)
		return r;
	if (end > info->size)
		return -EINVAL;
	w.vfio.dev = dev;
	w.vfio.region = region;
	w.vfio.region_offset = region_offset;
	r = add_window(map, &w);
	if (r < 0)
		return r;
	if (ret_id)
		*ret_id = w.id;
	return 0;
}

static void remove_at(struct vgb_memmap *map, size_t i)
{
	struct vgb_memmap_window w = map->windows[i];

	/* Listeners see the window while it is still in the map. */
	for (size_t l = 0; l < map->n_listeners; l++)
		map->listeners[l].fn(map->listeners[l].data, map, &map->windows[i]);
	memmove(&map->windows[i], &map->windows[i + 1], (map->n - i - 1) * sizeof(w));
	memmove(&map->starts[i], &map->starts[i + 1], (map->n - i - 1) * sizeof(*map->starts));
	map->n--;
	map->epoch++;
	if (w.kind == VGB_MEMMAP_RAM)
		vgb_close(w.ram.memfd);
}

int vgb_memmap_remove(struct vgb_memmap *map, uint32_t id)
{
	for (size_t i = 0; i < map->n; i++) {
		if (map->windows[i].id == id) {
			remove_at(map, i);
			return 0;
		}
	}
	return -ENOENT;
}

int vgb_memmap_remove_device(struct vgb_memmap *map, const struct vgb_vfio_device *dev)
{
	int n = 0;

	for (size_t i = map->n; i-- > 0;) {
		if (map->windows[i].kind == VGB_MEMMAP_VFIO && map->windows[i].vfio.dev == dev) {
			remove_at(map, i);
			n++;
		}
	}
	return n;
}

int vgb_memmap_add_listener(struct vgb_memmap *map, vgb_memmap_remove_fn fn, void *data)
{
	struct listener *p;

	for (size_t i = 0; i < map->n_listeners; i++)
		if (map->listeners[i].fn == fn && map->listeners[i].data == data)
			return -EEXIST;
	p = reallocarray(map->listeners, map->n_listeners + 1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	map->listeners = p;
	map->listeners[map->n_listeners++] = (struct listener){ fn, data };
	return 0;
}

void vgb_memmap_remove_listener(struct vgb_memmap *map, vgb_memmap_remove_fn fn, void *data)
{
	for (size_t i = 0; i < map->n_listeners; i++) {
		if (map->listeners[i].fn == fn && map->listeners[i].data == data) {
			memmove(&map->listeners[i], &map->listeners[i + 1],
				(map->n_listeners - i - 1) * sizeof(*map->listeners));
			map->n_listeners--;
			return;
		}
	}
}

void vgb_memmap_destroy(struct vgb_memmap *map)
{
	if (!map)
		return;
	while (map->n > 0)
		remove_at(map, map->n - 1);
	free(map->windows);
	free(map->starts);
	free(map->listeners);
	free(map);
}
