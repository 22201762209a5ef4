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

int leak_count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strchr(line, '\n'))
			n++;
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
