/* SPDX-License-Identifier: MIT */
/*
 * udmabuf: one dmabuf over memfd pages (UDMABUF_CREATE_LIST). The module's limits (list_limit
 * items, size_limit_mb MiB) are read from sysfs and checked here, so that hitting one is a
 * clean -E2BIG ("use another path") rather than a kernel EINVAL that looks like our bug.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/udmabuf.h>

#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/mem.h"

#define UDMABUF_DEV "/dev/udmabuf"
#define UDMABUF_PARAMS "/sys/module/udmabuf/parameters"
/* The module's defaults, used when sysfs does not say. */
#define UDMABUF_DEFAULT_LIST_LIMIT 1024u
#define UDMABUF_DEFAULT_SIZE_LIMIT_MB 64u

static const char *dev_path = UDMABUF_DEV;
static const char *param_dir = UDMABUF_PARAMS;
static int available = -1;

void vgb_udmabuf_set_paths(const char *dev, const char *params)
{
	dev_path = dev ? dev : UDMABUF_DEV;
	param_dir = params ? params : UDMABUF_PARAMS;
	available = -1;
}

bool vgb_udmabuf_is_available(void)
{
	if (available < 0) {
		int fd = open(dev_path, O_RDWR | O_CLOEXEC);

		/* Running out of fds says nothing about the device: ask again next time. */
		if (fd < 0 && (errno == EMFILE || errno == ENFILE))
			return false;
		available = fd >= 0;
		vgb_close(fd);
	}
	return available;
}

/* Reads an unsigned module parameter; @fallback when absent or unreadable. */
static uint64_t read_param(const char *name, uint64_t fallback)
{
	char path[256], line[32];
	unsigned long long v;
	char *end;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", param_dir, name);
	f = fopen(path, "re");
	if (!f)
		return fallback;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return fallback;
	}
	fclose(f);
	errno = 0;
	v = strtoull(line, &end, 10);
	if (errno || end == line || (*end && *end != '\n'))
		return fallback;
	return v;
}

int vgb_udmabuf_create(const struct vgb_udmabuf_item *items, size_t n)
{
	_cleanup_free_ struct udmabuf_create_list *list = NULL;
	_cleanup_close_ int dev = -1;
	uint64_t total = 0, list_limit, size_limit, size_limit_mb;
	uint32_t count = 0;
	int r;

	if (!items || n == 0)
		return -EINVAL;
	/* The kernel's own list_limit is far below this; it only bounds our allocation. */
	if (n > VGB_UDMABUF_MAX_ITEMS)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		uint64_t end;

		if (items[i].memfd < 0 || !items[i].size ||
		    !VGB_IS_ALIGNED(items[i].offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(items[i].size, VGB_PAGE_SIZE) ||
		    __builtin_add_overflow(items[i].offset, items[i].size, &end) ||
		    __builtin_add_overflow(total, items[i].size, &total))
			return -EINVAL;
	}

	list = calloc(1, sizeof(*list) + n * sizeof(list->list[0]));
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct udmabuf_create_item *last = count ? &list->list[count - 1] : NULL;

		if (last && last->memfd == (uint32_t)items[i].memfd &&
		    last->offset + last->size == items[i].offset) {
			last->size += items[i].size;
			continue;
		}
		list->list[count++] = (struct udmabuf_create_item){
			.memfd = (uint32_t)items[i].memfd,
			.offset = items[i].offset,
			.size = items[i].size,
		};
	}

	list_limit = read_param("list_limit", UDMABUF_DEFAULT_LIST_LIMIT);
	size_limit_mb = read_param("size_limit_mb", UDMABUF_DEFAULT_SIZE_LIMIT_MB);
	if (__builtin_mul_overflow(size_limit_mb, 1ull << 20, &size_limit))
		size_limit = UINT64_MAX;
	if (count > list_limit || total > size_limit) {
		vgb_log(VGB_LOG_DEBUG,
			"udmabuf: %u items / %llu bytes over the module's limits (%llu, %llu MiB)",
			count, (unsigned long long)total, (unsigned long long)list_limit,
			(unsigned long long)size_limit_mb);
		return -E2BIG;
	}

	dev = open(dev_path, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return errno == ENOENT ? -ENODEV : -errno;
	list->flags = UDMABUF_FLAGS_CLOEXEC;
	list->count = count;
	r = vgb_ioctl(dev, UDMABUF_CREATE_LIST, list);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "udmabuf: CREATE_LIST of %u items", count);
	return r;
}
