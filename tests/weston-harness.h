/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_WESTON_HARNESS_H
#define VGB_TESTS_WESTON_HARNESS_H

/*
 * A real weston 10 for the compositor suite: headless backend, pixman renderer, debug protocols
 * (for the screenshooter), desktop-shell with no panel, no animations and a black background
 * (a fullscreen toplevel of the output's size lands at (0,0)), in a private XDG_RUNTIME_DIR
 * (0700). $VGB_TEST_SHELL picks another shell module. (kiosk-shell in weston 10.0.1 headless
 * never repainted a committed surface here, and its screenshots took ~10 s.)
 * $VGB_WESTON_REPAINT_WINDOW sets weston.ini's [core] repaint-window (ms, default 7). The
 * headless backend ends each frame with a fixed 16 ms timer and then waits one refresh minus
 * the repaint window before repainting again: 25.7 ms cycles (39 Hz) by default, 16.7 ms
 * (60 Hz, as a real output repaints) with 16. The benches use 16.
 * Every started weston is killed on every exit path of the test: atexit, fatal signals, and
 * PR_SET_PDEATHSIG in the child should the test die without running either.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vgb/display.h"

struct weston {
	pid_t pid;
	char dir[64];     /* XDG_RUNTIME_DIR, also holds weston.ini and weston.log */
	char socket[32];
	uint32_t width, height;
	struct harness_conn *conn; /* the harness's own client (screenshots) */
};

/* Starts weston with an output of @width x @height and waits (60 s at most) until it serves
 * xdg_wm_base and the screenshooter. Sets XDG_RUNTIME_DIR for this process. Returns 0 or -errno. */
int weston_start(struct weston *w, uint32_t width, uint32_t height);
/* Starts weston again on the same socket and directory after weston_kill(). */
int weston_restart(struct weston *w);
/* Kills weston (SIGKILL) without cleaning up the directory: a compositor crash. */
void weston_kill(struct weston *w);
/* Stops weston and removes its directory. Accepts a stopped one. */
void weston_stop(struct weston *w);

/* Forces a full repaint of the output, then takes a screenshot of it into @ret
 * (width*height ARGB8888 words).
 * Returns 0 or -errno (-ETIMEDOUT after 60 s). */
int weston_screenshot(struct weston *w, uint32_t *ret);

/* Compares a screenshot with @want (width*height), RGB only: the output has no alpha.
 * Prints the first mismatches as TAP diagnostics. Returns the number of differing pixels. */
unsigned compare_pixels(const uint32_t *got, const uint32_t *want, uint32_t width,
			uint32_t height);

/* Runs the sink's loop (get_fd/next_timeout_ms/dispatch) until @cond(@data) or @timeout_ms. */
bool pump_until(struct vgb_display *d, bool (*cond)(void *data), void *data, int timeout_ms);
/* Runs the sink's loop until no frame waits for pacing and every commit was answered
 * (presented or discarded), or @timeout_ms. */
bool settle(struct vgb_display *d, int timeout_ms);
/* Runs the sink's loop for @ms. */
void pump_for(struct vgb_display *d, int ms);

/* A struct vgb_frame .done callback that counts completions for present_and_wait(). */
void frame_done(void *data, int status);
/* Presents @f (its .done must be frame_done), waits up to 30 s for its completion and, when
 * that was 0, for the sink to settle (the first GL frame under TCG has taken seconds).
 * Returns the completion status, present's -errno, or -ETIMEDOUT. */
int present_and_wait(struct vgb_display *d, const struct vgb_frame *f);

#endif
