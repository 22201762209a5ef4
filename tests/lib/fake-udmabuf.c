/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/udmabuf.h>

#include "fake-udmabuf.h"
#include "private.h"
#include "tap.h"
#include "vgb/sys.h"
#include "vgb/util.h"

static int (*prev_ioctl)(int fd, unsigned long request, void *arg);
static unsigned calls;
static char dir[64];

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
	struct udmabuf_create_list *list = arg;

	if (request != UDMABUF_CREATE_LIST)
		return prev_ioctl(fd, request, arg);
	calls++;
	for (uint32_t i = 0; i < list->count; i++) {
		struct udmabuf_create_item *it = &list->list[i];
		int seals = fcntl((int)it->memfd, F_GET_SEALS);
		struct stat st;

		if (fstat((int)it->memfd, &st) < 0) {
			errno = EBADF;
			return -1;
		}
		if (seals < 0) {
			errno = EBADFD;
			return -1;
		}
		if (!(seals & F_SEAL_SHRINK) || (seals & F_SEAL_WRITE) ||
		    !VGB_IS_ALIGNED(it->offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(it->size, VGB_PAGE_SIZE) ||
		    it->offset + it->size > (uint64_t)st.st_size) {
			errno = EINVAL;
			return -1;
		}
	}
	return eventfd(0, EFD_CLOEXEC);
}

void fake_udmabuf_set_param(const char *name, unsigned long value)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f)
		tap_bail("%s: %m", path);
	fprintf(f, "%lu\n", value);
	fclose(f);
}

void fake_udmabuf_install(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vgb-udmabuf-XXXXXX");
	if (!mkdtemp(dir))
		tap_bail("mkdtemp: %m");
	fake_udmabuf_set_param("list_limit", 1024);
	fake_udmabuf_set_param("size_limit_mb", 64);
	prev_ioctl = vgb_sys.ioctl;
	vgb_sys.ioctl = fake_ioctl;
	calls = 0;
	vgb_udmabuf_set_paths("/dev/null", dir);
}

void fake_udmabuf_set_absent(bool absent)
{
	vgb_udmabuf_set_paths(absent ? "/nonexistent/udmabuf" : "/dev/null", dir);
}

unsigned fake_udmabuf_calls(void)
{
	return calls;
}

void fake_udmabuf_remove(void)
{
	char path[128];

	vgb_sys.ioctl = prev_ioctl;
	vgb_udmabuf_set_paths(NULL, NULL);
	snprintf(path, sizeof(path), "%s/list_limit", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/size_limit_mb", dir);
	unlink(path);
	rmdir(dir);
}
