/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_RAWSOCK_H
#define VGB_TESTS_RAWSOCK_H

#include <stddef.h>

/* The most fds rawsock_send() passes. */
#define RAWSOCK_MAX_FDS 16u

/*
 * Sends @len bytes as one packet on @sock with @n_fds fds in SCM_RIGHTS, whatever the bytes
 * say (the fd count need not match anything): for tests that feed a receiver malformed
 * messages. Returns 0, -E2BIG for more than RAWSOCK_MAX_FDS fds, or sendmsg's -errno.
 */
int rawsock_send(int sock, const void *data, size_t len, const int *fds, unsigned n_fds);

#endif
