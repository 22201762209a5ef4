/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_TMPDIR_H
#define VGB_TESTS_TMPDIR_H

/* A scratch directory tree for tests that need files (fake sysfs, fake device nodes). */

#include <stddef.h>

/* Creates a fresh directory under $TMPDIR (or /tmp); writes its path into @buf. 0 or -errno. */
int tmpdir_create(char *buf, size_t len);
/* mkdir -p @root/@rel. 0 or -errno. */
int tmpdir_mkdirs(const char *root, const char *rel);
/* Creates an empty file @root/@rel (parents too); writes the full path to @out if not NULL. */
int tmpdir_touch(const char *root, const char *rel, char *out, size_t len);
/* rm -rf @root. */
void tmpdir_remove(const char *root);

#endif
