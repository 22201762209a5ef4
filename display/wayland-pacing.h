/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_PACING_H
#define VGB_DISPLAY_WAYLAND_PACING_H

/*
 * What happens to a commit: wp_presentation feedback says presented or discarded (and when),
 * a frame callback paces the next commit, and flush-to-presented latency samples are kept.
 * Without wp_presentation the frame callback stands for "presented".
 */

#include "wayland-private.h"

/* Binds the registry's wp_presentation @name and learns its clock. */
void vgb_wayland_presentation_bind(struct wayland_sink *s, struct wl_registry *registry,
				   uint32_t name);

/*
 * Follows the commit about to be made on @so: asks for a frame callback and, with
 * wp_presentation, for @rec's presentation feedback. @rec must be in wayland_sink.inflight;
 * it is completed and destroyed when the compositor answers (or by the deadlines below).
 */
void vgb_wayland_pacing_watch(struct scanout *so, struct present_rec *rec);
/* Whether @so waits for a frame callback before its next commit. */
bool vgb_wayland_pacing_is_waiting(const struct scanout *so);

/* Calls rec's done once (later calls do nothing). */
void vgb_wayland_rec_complete(struct present_rec *rec, int status);
/* Unlinks @rec and destroys its feedback; does not complete it. */
void vgb_wayland_rec_destroy(struct present_rec *rec);

/* Ends @so's frame callback; a frame waiting for it is lost with @status. */
void vgb_wayland_pacing_drop(struct scanout *so, int status);
/* Completes and destroys every record in flight with @status (the connection went). */
void vgb_wayland_pacing_lose_all(struct wayland_sink *s, int status);
/* Acts on the deadlines that passed by @now: fences past theirs complete with -ETIMEDOUT, a
 * frame callback that never came stops pacing its scanout. */
void vgb_wayland_pacing_expire(struct wayland_sink *s, uint64_t now);
/* The earliest deadline of the above, or UINT64_MAX. */
uint64_t vgb_wayland_pacing_next_deadline(const struct wayland_sink *s);

/* Flush-to-presented percentiles over the last LATENCY_SAMPLES frames (0 when none). */
void vgb_wayland_latency_get(const struct wayland_sink *s, uint64_t *ret_p50, uint64_t *ret_p99);

#endif
