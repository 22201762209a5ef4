/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmpdir.h"

int tmpdir_create(char *buf, size_t len)
{
	const char *base = getenv("TMPDIR");
	int r;

	r = snprintf(buf, len, "%s/vgb-test-XXXXXX", base && *base ? base : "/tmp");
	if (r < 0 || (size_t)r >= len)
		return -ENAMETOOLONG;
	return mkdtemp(buf) ? 0 : -errno;
}

int tmpdir_mkdirs(const char *root, const char *rel)
{
	char path[4096];
	int r;

	r = snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (r < 0 || (size_t)r >= sizeof(path))
		return -ENAMETOOLONG;
	for (char *p = path + strlen(root) + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int tmpdir_touch(const char *root, const char *rel, char *out, size_t len)
{
	char path[4096], dir[4096];
	char *slash;
	int fd, r;

	r = snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (r < 0 || (size_t)r >= sizeof(path))
		return -ENAMETOOLONG;
	snprintf(dir, sizeof(dir), "%s", rel);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		r = tmpdir_mkdirs(root, dir);
		if (r < 0)
			return r;
	}
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	if (out)
		snprintf(out, len, "%s", path);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tmpdir_remove(const char *root)
{
	if (root && *root)
		nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
