/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "leak.h"
#include "tap.h"

int leak_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

/*
 * Under ASan the allocator commits pieces of its reserved space (x86-64: 0x600000000000 +
 * 4 TiB) as size classes are first used, which splits one mapping into several. That is heap
 * growth, not a leaked mapping: leave the range out. Our own mappings never land there.
 */
#if defined(__SANITIZE_ADDRESS__) && defined(__x86_64__)
static bool is_asan_allocator(unsigned long lo)
{
	return lo >= 0x600000000000ul && lo < 0x640000000000ul;
}
#else
static bool is_asan_allocator(unsigned long lo)
{
	(void)lo;
	return false;
}
#endif

int leak_count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo;

		if (!strchr(line, '\n'))
			continue;
		if (sscanf(line, "%lx-", &lo) == 1 && is_asan_allocator(lo))
			continue;
		n++;
	}
	fclose(f);
	return n;
}

int leak_count_file_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long inode = 0;

		if (sscanf(line, "%*s %*s %*s %*s %lu", &inode) == 1 && inode != 0)
			n++;
	}
	fclose(f);
	return n;
}

void leak_snapshot(struct leak_snapshot *ret)
{
	ret->n_fds = leak_count_fds();
	ret->n_maps = leak_count_maps();
}

bool leak_check(const struct leak_snapshot *before, const char *what)
{
	struct leak_snapshot now;

	leak_snapshot(&now);
	return tap_ok(now.n_fds == before->n_fds && now.n_maps == before->n_maps,
		      "%s: fds %d -> %d, maps %d -> %d", what, before->n_fds, now.n_fds,
		      before->n_maps, now.n_maps);
}
