/* SPDX-License-Identifier: MIT */
#ifndef VGB_BENCH_PLAIN_CLIENT_H
#define VGB_BENCH_PLAIN_CLIENT_H

/*
 * The end-to-end bench's baseline: a plain wl_shm client (xdg toplevel, two shm buffers) that
 * commits a frame and waits for wp_presentation's "presented", on the same compositor, with the
 * same frame size and pace as the bridge: the compositor's own floor for commit -> presented.
 */

#include <stdint.h>

struct plain_client;

/* Connects to @socket_name and maps a @width x @height XRGB8888 toplevel.
 * Returns 0 or -errno (-ENOTSUP when the compositor lacks wp_presentation or xdg_wm_base). */
int plain_client_create(const char *socket_name, uint32_t width, uint32_t height,
			struct plain_client **ret);
void plain_client_destroy(struct plain_client *p);

/*
 * Draws frame @seq, commits it and waits (5 s at most: a loaded machine stalls weston) for its feedback. *@ret_ns: commit ->
 * presented, on CLOCK_MONOTONIC. Returns 0, -ECANCELED (discarded), -ETIMEDOUT or -EPIPE.
 */
int plain_client_frame(struct plain_client *p, uint32_t seq, uint64_t *ret_ns);

#endif
