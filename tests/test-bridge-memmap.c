/* SPDX-License-Identifier: MIT */
/* The guest memory map: adding, rejecting, looking up and removing windows. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "leak.h"
#include "memmap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)

static int new_memfd(uint64_t size, unsigned seals)
{
	int fd = memfd_create("test-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		tap_bail("memfd: %m");
	if (seals && fcntl(fd, F_ADD_SEALS, seals) < 0)
		tap_bail("seal: %m");
	return fd;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* Adds a RAM window over a fresh memfd; returns the add's result (closing the fd on error). */
static int add_ram(struct vgb_memmap *map, uint64_t gpa, uint64_t size, uint32_t *ret_id)
{
	int fd = new_memfd(VGB_MAX(size, 4096), 0);
	int r = vgb_memmap_add_ram(map, gpa, size, fd, 0, ret_id);

	if (r < 0)
		close(fd);
	return r;
}

static void test_rejections(void)
{
	struct vgb_memmap *map;
	uint32_t id;
	int fd;

	tap_is_int(vgb_memmap_create(&map), 0, "create");
	tap_is_int(add_ram(map, 0x100000, 0x100000, &id), 0, "window [1M, 2M)");

	/* { gpa, size, expected } against the [1M, 2M) window. */
	static const struct {
		uint64_t gpa, size;
		int want;
		const char *what;
	} cases[] = {
		{ 0x300000, 0, -EINVAL, "size 0" },
		{ UINT64_MAX - 0xfff, 0x2000, -EOVERFLOW, "wraps around 2^64" },
		{ UINT64_MAX, 1, -EOVERFLOW, "ends exactly at 2^64" },
		{ 0x100000, 0x100000, -EEXIST, "same range" },
		{ 0x0ff000, 0x2000, -EEXIST, "overlaps the start" },
		{ 0x1ff000, 0x2000, -EEXIST, "overlaps the end" },
		{ 0x180000, 0x1000, -EEXIST, "inside" },
		{ 0x0ff000, 0x1001, -EEXIST, "overlaps the first byte only" },
		{ 0x1fffff, 0x1000, -EEXIST, "overlaps the last byte only" },
		{ 0x000000, 0x400000, -EEXIST, "encloses" },
		{ 0x0ff000, 0x1000, 0, "touches the start" },
		{ 0x200000, 0x1000, 0, "touches the end" },
	};
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++)
		tap_is_errno(add_ram(map, cases[i].gpa, cases[i].size, NULL), cases[i].want,
			     "add [%#llx +%#llx): %s", (unsigned long long)cases[i].gpa,
			     (unsigned long long)cases[i].size, cases[i].what);
	tap_is_uint(vgb_memmap_count(map), 3, "three windows after the table");

	/* memfd offset + size wraps */
	fd = new_memfd(4096, 0);
	tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, fd, UINT64_MAX - 0x10, NULL),
		     -EOVERFLOW, "memfd offset + size wraps");
	tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x2000, fd, 0, NULL), -EINVAL,
		     "window past the end of the memfd");
	tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, fd, 0x1000, NULL), -EINVAL,
		     "offset at the end of the memfd");
	tap_ok(fd_is_open(fd), "the caller keeps the memfd on failure");
	close(fd);
	tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, -1, 0, NULL), -EBADF, "fd -1");

	/* not a memfd: a pipe and a regular file cannot be sealed */
	{
		int p[2];
		char path[] = "/tmp/vgb-memmap-XXXXXX";
		int tmp = mkostemp(path, O_CLOEXEC);

		if (pipe2(p, O_CLOEXEC) < 0 || tmp < 0 || ftruncate(tmp, 4096) < 0)
			tap_bail("pipe/tmp: %m");
		unlink(path);
		tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, p[0], 0, NULL), -EINVAL,
			     "a pipe is refused");
		tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, tmp, 0, NULL), -EINVAL,
			     "a regular file (not sealable) is refused");
		close(p[0]);
		close(p[1]);
		close(tmp);
	}
	/* sealed against new seals, without SHRINK */
	fd = new_memfd(4096, F_SEAL_SEAL);
	tap_is_errno(vgb_memmap_add_ram(map, 0x10000000, 0x1000, fd, 0, NULL), -EPERM,
		     "F_SEAL_SEAL without F_SEAL_SHRINK is refused");
	close(fd);

	tap_is_uint(vgb_memmap_count(map), 3, "failed adds left the map alone");
	vgb_memmap_destroy(map);
}

static void test_sealing(void)
{
	const struct vgb_memmap_window *w;
	struct vgb_memmap *map;
	uint32_t a, b;
	int fd1 = new_memfd(MiB, 0), fd2 = new_memfd(MiB, F_SEAL_WRITE);

	vgb_memmap_create(&map);
	tap_is_int(vgb_memmap_add_ram(map, 0, MiB, fd1, 0, &a), 0, "unsealed memfd accepted");
	tap_ok(fcntl(fd1, F_GET_SEALS) & F_SEAL_SHRINK, "the map sealed it against shrinking");
	tap_is_errno(ftruncate(fd1, 4096) < 0 ? -errno : 0, -EPERM,
		     "the client can no longer shrink it");
	tap_is_int(vgb_memmap_add_ram(map, MiB, MiB, fd2, 0, &b), 0, "write-sealed memfd accepted");
	w = vgb_memmap_find_id(map, a);
	tap_ok(w && w->ram.udmabuf_ok, "unsealed-for-write memfd can back a udmabuf");
	w = vgb_memmap_find_id(map, b);
	tap_ok(w && !w->ram.udmabuf_ok, "F_SEAL_WRITE memfd cannot back a udmabuf");
	tap_is_int(vgb_memmap_remove(map, a), 0, "remove");
	tap_ok(!fd_is_open(fd1), "removing a window closes its memfd (ownership taken)");
	vgb_memmap_destroy(map);
	tap_ok(!fd_is_open(fd2), "destroy closes the remaining memfds");
}

static void test_lookup_many(void)
{
	struct vgb_memmap *map;
	unsigned bad = 0;
	uint32_t ids[512];
	int n = 0;

	vgb_memmap_create(&map);
	/* Windows of 64 KiB every 128 KiB, added in a scrambled order. */
	for (unsigned k = 0; k < 512; k++) {
		unsigned i = (k * 197) % 512;

		if (add_ram(map, (uint64_t)i * 0x20000, 0x10000, &ids[i]) == 0)
			n++;
	}
	tap_is_int(n, 512, "512 windows added out of order");
	for (size_t i = 1; i < vgb_memmap_count(map); i++)
		if (vgb_memmap_get(map, i - 1)->gpa >= vgb_memmap_get(map, i)->gpa)
			bad++;
	tap_is_uint(bad, 0, "kept sorted by gpa");
	bad = 0;
	for (uint64_t gpa = 0; gpa < 512 * 0x20000ull; gpa += 0x800) {
		const struct vgb_memmap_window *w = vgb_memmap_lookup(map, gpa);
		uint64_t i = gpa / 0x20000, in = gpa % 0x20000;
		bool want = in < 0x10000;

		if (want != (w != NULL) || (w && w->id != ids[i]))
			bad++;
	}
	tap_is_uint(bad, 0, "every lookup agrees with the layout (hits, holes, edges)");
	tap_ok(vgb_memmap_lookup(map, 0xffff) != NULL && vgb_memmap_lookup(map, 0x10000) == NULL,
	       "the last byte is in, the byte after is out");
	tap_ok(vgb_memmap_lookup(map, UINT64_MAX) == NULL, "lookup at 2^64-1 finds nothing");
	vgb_memmap_destroy(map);
}

static unsigned removed_calls;
static uint32_t removed_id;

static void on_remove(void *data, struct vgb_memmap *map, const struct vgb_memmap_window *w)
{
	removed_calls++;
	removed_id = w->id;
	/* The window is still in the map while listeners run. */
	if (vgb_memmap_find_id(map, w->id) != w)
		removed_id = 0;
}

static void test_remove(void)
{
	struct vgb_memmap *map;
	uint32_t a, b, c;
	uint64_t epoch;

	vgb_memmap_create(&map);
	add_ram(map, 0, 0x1000, &a);
	add_ram(map, 0x1000, 0x1000, &b);
	tap_is_int(vgb_memmap_add_listener(map, on_remove, NULL), 0, "listener added");
	tap_is_errno(vgb_memmap_add_listener(map, on_remove, NULL), -EEXIST, "no duplicates");
	epoch = vgb_memmap_epoch(map);
	tap_is_int(vgb_memmap_remove(map, a), 0, "remove a");
	tap_ok(removed_calls == 1 && removed_id == a, "listener told about a, while still mapped");
	tap_ok(vgb_memmap_epoch(map) != epoch, "epoch bumped");
	tap_is_errno(vgb_memmap_remove(map, a), -ENOENT, "removing twice: ENOENT");
	tap_is_errno(vgb_memmap_remove(map, 0), -ENOENT, "id 0: ENOENT");
	tap_ok(vgb_memmap_lookup(map, 0) == NULL, "a's range is a hole now");
	tap_is_int(add_ram(map, 0, 0x1000, &c), 0, "its range can be reused");
	tap_ok(c != a && c != b, "with a new id (ids are never reused)");
	vgb_memmap_remove_listener(map, on_remove, NULL);
	vgb_memmap_remove(map, b);
	tap_is_uint(removed_calls, 1, "no calls after the listener is removed");
	vgb_memmap_destroy(map);
	vgb_memmap_destroy(NULL);
}

static void test_vfio(void)
{
	const struct vgb_memmap_window *w;
	struct vgb_vfio_device *dev, *dev2;
	struct vgb_memmap *map;
	uint32_t id;
	int r;

	r = vgb_vfio_vdev_create("bar0=1M,bar2=4M,dmabuf=off", &dev);
	tap_is_int(r, 0, "virtual device");
	if (r < 0)
		return;
	vgb_vfio_vdev_create("bar2=1M,dmabuf=off", &dev2);
	vgb_memmap_create(&map);
	tap_is_int(vgb_memmap_add_vfio(map, 0x80000000, 2 * MiB, dev, 2, MiB, &id), 0,
		   "VFIO window over BAR2 [1M, 3M)");
	w = vgb_memmap_lookup(map, 0x80000000 + MiB);
	tap_ok(w && w->kind == VGB_MEMMAP_VFIO && w->vfio.region == 2 &&
		       w->vfio.region_offset == MiB, "found with its region and offset");
	tap_is_errno(vgb_memmap_add_vfio(map, 0x90000000, 2 * MiB, dev, 2, 3 * MiB, NULL), -EINVAL,
		     "reaching past the region");
	tap_is_errno(vgb_memmap_add_vfio(map, 0x90000000, 4096, dev, 99, 0, NULL), -EINVAL,
		     "region index out of range");
	tap_is_errno(vgb_memmap_add_vfio(map, 0x90000000, 0, dev, 2, 0, NULL), -EINVAL, "size 0");
	tap_is_errno(vgb_memmap_add_vfio(map, 0x80100000, 4096, dev, 0, 0, NULL), -EEXIST,
		     "overlap with the VFIO window");
	tap_is_errno(vgb_memmap_add_vfio(map, 0x90000000, 4096, NULL, 0, 0, NULL), -EINVAL,
		     "NULL device");
	tap_is_int(vgb_memmap_add_vfio(map, 0xa0000000, MiB, dev2, 2, 0, NULL), 0,
		   "a window of a second device");
	tap_is_int(vgb_memmap_add_vfio(map, 0xb0000000, 4096, dev, 0, 0, NULL), 0, "BAR0 window");
	tap_is_int(vgb_memmap_remove_device(map, dev), 2, "remove_device removed both of dev's");
	tap_is_uint(vgb_memmap_count(map), 1, "the other device's window stays");
	vgb_memmap_destroy(map);
	vgb_vfio_device_destroy(dev);
	vgb_vfio_device_destroy(dev2);
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	leak_snapshot(&before);
	test_rejections();
	test_sealing();
	test_lookup_many();
	test_remove();
	test_vfio();
	leak_check(&before, "memory map tests");
	return tap_done();
}
