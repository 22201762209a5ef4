/* SPDX-License-Identifier: MIT */
#ifndef VGB_BENCH_PLAIN_CLIENT_H
#define VGB_BENCH_PLAIN_CLIENT_H

/*
 * The end-to-end bench's baseline: a plain wl_shm client (xdg toplevel, three shm buffers) doing
 * the guest's job on the same compositor: frames of the same size at the same open-loop pace,
 * each committed as it is drawn (the compositor keeps the latest), each with presentation
 * feedback. Its commit -> presented is the compositor's own floor for that job.
 */

#include <stdint.h>

struct plain_client;

/* Connects to @socket_name and maps a @width x @height XRGB8888 toplevel.
 * Returns 0 or -errno (-ENOTSUP when the compositor lacks wp_presentation or xdg_wm_base). */
int plain_client_create(const char *socket_name, uint32_t width, uint32_t height,
			struct plain_client **ret);
void plain_client_destroy(struct plain_client *p);

#define PLAIN_CLIENT_MAX_FRAMES 1024

/*
 * Draws frame @seq into a buffer the compositor does not hold (waiting for a release when all
 * are held), commits it and returns without waiting for it to be shown.
 * Returns 0, -ENOSPC (PLAIN_CLIENT_MAX_FRAMES reached), -ETIMEDOUT or -EPIPE.
 */
int plain_client_commit(struct plain_client *p, uint32_t seq);
/* Dispatches events, waiting at most @ms. Returns 0 or -EPIPE. */
int plain_client_dispatch(struct plain_client *p, int ms);
/*
 * Waits (5 s at most) until every commit was presented or discarded. @ret_ns (room for every
 * frame committed) gets commit -> presented of each presented frame, on CLOCK_MONOTONIC;
 * *@ret_n how many, *@ret_discarded how many the compositor replaced before showing them.
 * Returns 0, -ETIMEDOUT or -EPIPE.
 */
int plain_client_finish(struct plain_client *p, uint64_t *ret_ns, uint32_t *ret_n,
			uint32_t *ret_discarded);

#endif
