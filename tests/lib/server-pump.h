/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_SERVER_PUMP_H
#define VGB_TESTS_SERVER_PUMP_H

/*
 * For tests that run the daemon's loop (struct vgb_server) and a client in one thread: the
 * client's wait hook (vgb_client_set_wait()) runs the loop until the client's socket is
 * readable. Bounded, so a missing reply fails the test instead of hanging it.
 */

struct vgb_server;

/* Dispatches @s (up to 25 ms a round, at most @rounds rounds) until @fd is readable or the
 * loop fails. */
void server_pump_for(struct vgb_server *s, int fd, unsigned rounds);

/* The wait hook: @data is the struct vgb_server; 400 rounds (about 10 s at most). */
void server_pump(void *data, int fd);

#endif
