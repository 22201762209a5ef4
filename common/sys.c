/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vgb/sys.h"
#include "vgb/util.h"

static int real_ioctl(int fd, unsigned long request, void *arg)
{
	return ioctl(fd, request, arg);
}

static const struct vgb_sys real_sys = {
	.ioctl = real_ioctl,
	.mmap = mmap,
	.munmap = munmap,
	.pread = pread,
	.pwrite = pwrite,
	.read = read,
	.write = write,
};

struct vgb_sys vgb_sys = real_sys;

void vgb_sys_reset(void)
{
	vgb_sys = real_sys;
}

int vgb_ioctl(int fd, unsigned long request, void *arg)
{
	int r;

	do
		r = vgb_sys.ioctl(fd, request, arg);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

int vgb_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **ret_addr)
{
	void *p = vgb_sys.mmap(addr, len, prot, flags, fd, off);

	if (p == MAP_FAILED)
		return -errno;
	*ret_addr = p;
	return 0;
}

int vgb_munmap(void *addr, size_t len)
{
	return vgb_sys.munmap(addr, len) < 0 ? -errno : 0;
}

static ssize_t rw_all(bool write, int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write ? vgb_sys.pwrite(fd, (char *)buf + done, len - done, off + (off_t)done)
				  : vgb_sys.pread(fd, (char *)buf + done, len - done, off + (off_t)done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t vgb_pread_all(int fd, void *buf, size_t len, off_t off)
{
	return rw_all(false, fd, buf, len, off);
}

ssize_t vgb_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	return rw_all(true, fd, (void *)buf, len, off);
}

ssize_t vgb_read(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = vgb_sys.read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

ssize_t vgb_write(int fd, const void *buf, size_t len)
{
	ssize_t n;

	do
		n = vgb_sys.write(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

uint64_t vgb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
