/* SPDX-License-Identifier: MIT */
/*
 * In-guest, a kernel with udmabuf (trixie-backports' 7.2): a RAM blob from several ranges of a
 * sealed memfd exports through udmabuf and its mmap shows the right bytes; an unsealed memfd
 * and more items than the module's list_limit are refused quietly (nothing above debug), the
 * limit before any ioctl.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fault.h"
#include "lab.h"
#include "leak.h"
#include "logcap.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PAGE VGB_PAGE_SIZE
#define SEED 0x5eed1234u

/* A memfd of @pages pages holding the pattern of SEED, sealed against shrinking if @seal. */
static int make_memfd(uint64_t pages, bool seal)
{
	int fd = memfd_create("vgb-vm-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p;

	if (fd < 0 || ftruncate(fd, (off_t)(pages * PAGE)) < 0)
		tap_bail("memfd: %s", strerror(errno));
	p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		tap_bail("mmap memfd: %s", strerror(errno));
	vm_lab_fill(p, 0, pages * PAGE, SEED);
	munmap(p, pages * PAGE);
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)
		tap_bail("seal: %s", strerror(errno));
	return fd;
}

static unsigned long long list_limit(void)
{
	char buf[32];

	if (vm_lab_read_file("/sys/module/udmabuf/parameters/list_limit", buf, sizeof(buf)) < 0)
		return 1024; /* the module's default */
	return strtoull(buf, NULL, 10);
}

int main(void)
{
	struct leak_snapshot start, before;
	int memfd;

	tap_plan_lazy();
	leak_snapshot(&start);
	logcap_start();
	tap_ok(vgb_udmabuf_is_available(), "udmabuf: /dev/udmabuf is available");

	/* Several ranges, out of order; {20,2} and {22,1} touch and are merged into one item. */
	memfd = make_memfd(64, true);
	{
		const struct { uint64_t page, pages; } runs[] = {
			{ 20, 2 }, { 22, 1 }, { 3, 1 }, { 40, 4 }, { 0, 1 },
		};
		struct vgb_udmabuf_item items[VGB_ARRAY_SIZE(runs)];
		uint64_t total = 0, pos = 0;
		bool ok = true;
		void *m = MAP_FAILED;
		int fd;

		leak_snapshot(&before);
		for (size_t k = 0; k < VGB_ARRAY_SIZE(runs); k++) {
			items[k] = (struct vgb_udmabuf_item){ memfd, runs[k].page * PAGE,
							      runs[k].pages * PAGE };
			total += runs[k].pages * PAGE;
		}
		fd = vgb_udmabuf_create(items, VGB_ARRAY_SIZE(items));
		tap_ok(fd >= 0 && lseek(fd, 0, SEEK_END) == (off_t)total,
		       "udmabuf of %zu memfd ranges: fd %d, size %" PRIu64, VGB_ARRAY_SIZE(items),
		       fd, total);
		if (fd >= 0)
			m = mmap(NULL, total, PROT_READ, MAP_SHARED, fd, 0);
		for (size_t k = 0; k < VGB_ARRAY_SIZE(runs) && m != MAP_FAILED; k++) {
			ok = vm_lab_pattern_ok((const char *)m + pos, runs[k].page * PAGE,
					       runs[k].pages * PAGE, SEED) &&
			     ok;
			pos += runs[k].pages * PAGE;
		}
		tap_ok(m != MAP_FAILED && ok,
		       "its mmap shows each range's bytes in the blob's order");
		if (m != MAP_FAILED)
			munmap(m, total);
		if (fd >= 0)
			close(fd);
		leak_check(&before, "udmabuf closed: no fd, no mapping left");
	}
	close(memfd);

	/* Unsealed: the kernel refuses (EINVAL), quietly. */
	memfd = make_memfd(8, false);
	{
		struct vgb_udmabuf_item item = { memfd, 0, 2 * PAGE };
		int r;

		leak_snapshot(&before);
		r = vgb_udmabuf_create(&item, 1);
		tap_is_errno(r, -EINVAL, "an unsealed memfd is refused with -EINVAL");
		leak_check(&before, "the refusal leaked nothing");
	}
	close(memfd);

	/* More items than list_limit: -E2BIG before any ioctl. */
	{
		unsigned long long limit = list_limit();
		size_t n = (size_t)limit + 1;
		struct vgb_udmabuf_item *items = calloc(n, sizeof(*items));
		struct fault_counts c;
		int r;

		tap_diag("udmabuf list_limit %llu", limit);
		if (!items || limit > 65536)
			tap_bail("list_limit %llu", limit);
		memfd = make_memfd(2 * n, true);
		/* Every other page, so no two items touch and none are merged. */
		for (size_t k = 0; k < n; k++)
			items[k] = (struct vgb_udmabuf_item){ memfd, 2 * k * PAGE, PAGE };
		leak_snapshot(&before);
		fault_install();
		r = vgb_udmabuf_create(items, n);
		c = fault_get_counts();
		fault_remove();
		tap_ok(r == -E2BIG && c.ioctl == 0,
		       "%zu items (list_limit + 1): %d (want -E2BIG) with %u ioctls (want 0)", n, r,
		       c.ioctl);
		leak_check(&before, "the refusal leaked nothing");
		r = vgb_udmabuf_create(items, n - 1);
		tap_ok(r >= 0 && lseek(r, 0, SEEK_END) == (off_t)((n - 1) * PAGE),
		       "%zu items (list_limit exactly) work (%d)", n - 1, r);
		if (r >= 0)
			close(r);
		free(items);
		close(memfd);
	}

	tap_ok(logcap_count_at_or_above(VGB_LOG_INFO) == 0,
	       "the refusals logged nothing above debug (%u%s%s)",
	       logcap_count_at_or_above(VGB_LOG_INFO), *logcap_last_loud() ? ": " : "",
	       logcap_last_loud());
	logcap_stop();
	leak_check(&start, "fds and mappings as at the start");
	return tap_done();
}
