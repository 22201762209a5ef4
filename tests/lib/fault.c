/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/mman.h>

#include "fault.h"
#include "vgb/sys.h"

static struct vgb_sys saved;
static struct fault_counts counts;
static unsigned ioctl_nth, mmap_nth;
static int ioctl_err, mmap_err;
static int fired;

static int fault_ioctl(int fd, unsigned long request, void *arg)
{
	counts.ioctl++;
	if (ioctl_nth && --ioctl_nth == 0) {
		fired = 1;
		errno = ioctl_err;
		return -1;
	}
	return saved.ioctl(fd, request, arg);
}

static void *fault_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	counts.mmap++;
	if (mmap_nth && --mmap_nth == 0) {
		fired = 1;
		errno = mmap_err;
		return MAP_FAILED;
	}
	return saved.mmap(addr, len, prot, flags, fd, off);
}

static int fault_munmap(void *addr, size_t len)
{
	counts.munmap++;
	return saved.munmap(addr, len);
}

void fault_install(void)
{
	saved = vgb_sys;
	vgb_sys.ioctl = fault_ioctl;
	vgb_sys.mmap = fault_mmap;
	vgb_sys.munmap = fault_munmap;
	fault_reset_counts();
}

void fault_remove(void)
{
	vgb_sys = saved;
	ioctl_nth = mmap_nth = 0;
}

void fault_arm_ioctl(unsigned nth, int err)
{
	ioctl_nth = nth;
	ioctl_err = err;
	fired = 0;
}

void fault_arm_mmap(unsigned nth, int err)
{
	mmap_nth = nth;
	mmap_err = err;
	fired = 0;
}

void fault_reset_counts(void)
{
	counts = (struct fault_counts){ 0 };
}

struct fault_counts fault_get_counts(void)
{
	return counts;
}

int fault_fired(void)
{
	return fired;
}
