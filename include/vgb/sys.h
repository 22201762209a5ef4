/* SPDX-License-Identifier: MIT */
#ifndef VGB_SYS_H
#define VGB_SYS_H

/*
 * The syscall seam. Everything in vfio/ (and the udmabuf/iommufd helpers) reaches the kernel
 * through these pointers, so that unit tests can put a fake at the ioctl boundary or inject a
 * failure on the Nth call. Production code never changes them.
 *
 * Each hook keeps the libc convention (-1 and errno, MAP_FAILED and errno); vgb_ioctl() is
 * where that is normalised to -errno, once.
 */

#include <stddef.h>
#include <sys/types.h>

struct vgb_sys {
	int (*ioctl)(int fd, unsigned long request, void *arg);
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*munmap)(void *addr, size_t len);
	ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	/* Plain read/write, for fds whose read/write is the kernel interface (iommufd fault fds). */
	ssize_t (*read)(int fd, void *buf, size_t len);
	ssize_t (*write)(int fd, const void *buf, size_t len);
};

extern struct vgb_sys vgb_sys;

/* Restores the real syscalls. */
void vgb_sys_reset(void);

/*
 * ioctl through the seam, restarted on EINTR.
 * Returns the ioctl's non-negative result, or -errno.
 */
int vgb_ioctl(int fd, unsigned long request, void *arg);

/* mmap through the seam. Returns 0 and *ret_addr, or -errno. */
int vgb_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **ret_addr);

/* munmap through the seam. Returns 0 or -errno. */
int vgb_munmap(void *addr, size_t len);

/* Full pread/pwrite through the seam, restarted on EINTR and short counts.
 * Returns bytes transferred (< len only at end of file) or -errno. */
ssize_t vgb_pread_all(int fd, void *buf, size_t len, off_t off);
ssize_t vgb_pwrite_all(int fd, const void *buf, size_t len, off_t off);

/* One read()/write() through the seam, restarted on EINTR (not on short counts: for record
 * interfaces a short count is an answer). Returns bytes transferred or -errno. */
ssize_t vgb_read(int fd, void *buf, size_t len);
ssize_t vgb_write(int fd, const void *buf, size_t len);

#endif
