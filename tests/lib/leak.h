/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_LEAK_H
#define VGB_TESTS_LEAK_H

#include <stdbool.h>

/* A snapshot of the process's open fds and mappings (/proc/self/fd, /proc/self/maps). */
struct leak_snapshot {
	int n_fds;
	int n_maps;
};

void leak_snapshot(struct leak_snapshot *ret);
/* Reports one TAP test: no fd and no mapping more than in @before. */
bool leak_check(const struct leak_snapshot *before, const char *what);
int leak_count_fds(void);
int leak_count_maps(void);
/*
 * Mappings of files only (inode != 0): what our code maps from memfds, dmabufs and devices.
 * For tests whose anonymous mappings are not theirs to count (malloc arenas, ASan's
 * quarantine of freed large blocks).
 */
int leak_count_file_maps(void);

#endif
