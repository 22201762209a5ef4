/* SPDX-License-Identifier: MIT */
#ifndef VGB_UTIL_H
#define VGB_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define VGB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define VGB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VGB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VGB_PAGE_SIZE 4096u
#define VGB_IS_ALIGNED(v, a) ((((uint64_t)(v)) & ((uint64_t)(a) - 1)) == 0)
#define VGB_ALIGN_UP(v, a) ((((uint64_t)(v)) + ((uint64_t)(a) - 1)) & ~((uint64_t)(a) - 1))

#define vgb_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* systemd-style scope cleanup. */
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void vgb_freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(vgb_freep)

static inline void vgb_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_close_ _cleanup_(vgb_closep)

/* Returns the value and leaves -1 / NULL behind, so the cleanup does nothing. */
#define TAKE_FD(fd) ({ int _fd_ = (fd); (fd) = -1; _fd_; })
#define TAKE_PTR(p) ({ __typeof__(p) _p_ = (p); (p) = NULL; _p_; })

/* Moves an fd from @src to @dst, closing what @dst held (weston's fd_move). */
static inline void vgb_fd_move(int *dst, int *src)
{
	if (*dst >= 0)
		close(*dst);
	*dst = *src;
	*src = -1;
}

/* Closes @fd if it is valid and returns -1, for `fd = vgb_close(fd);`. */
static inline int vgb_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}

/* Monotonic time in nanoseconds. */
uint64_t vgb_now_ns(void);

/*
 * Parses a number for a command line or a script: decimal, 0x hex or 0 octal (strtoull base 0),
 * with an optional K, M or G suffix (binary, either case). Returns 0 and *@ret, -EINVAL for an
 * empty, negative or malformed string, -ERANGE when the value exceeds @max or 2^64 - 1.
 */
int vgb_parse_u64(const char *s, uint64_t max, uint64_t *ret);

#endif
