/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_PACING_H
#define VGB_DISPLAY_WAYLAND_PACING_H

/*
 * What happens to a commit: its frame callback says the compositor repainted with it,
 * wp_presentation feedback says presented or discarded (and when), and flush-to-presented
 * latency samples are kept. Frames are committed as they arrive, not paced by frame callbacks:
 * a frame waiting out a compositor cycle would add that cycle to its latency.
 */

#include "wayland-private.h"

/* Binds the registry's wp_presentation @name and learns its clock. */
void vgb_wayland_presentation_bind(struct wayland_sink *s, struct wl_registry *registry,
				   uint32_t name);

/*
 * Follows the commit about to be made on @so: a frame callback (the compositor repainted with
 * it: rec's done runs) and, with wp_presentation, presentation feedback. @rec must be in
 * wayland_sink.inflight; it is completed and destroyed when the compositor answers, or at
 * rec->deadline_ns.
 */
void vgb_wayland_pacing_watch(struct scanout *so, struct present_rec *rec);
/* Whether @so has MAX_INFLIGHT commits unanswered (the next frame waits). */
bool vgb_wayland_pacing_is_full(const struct scanout *so);

/* Calls rec's done once (later calls do nothing). */
void vgb_wayland_rec_complete(struct present_rec *rec, int status);
/* Unlinks @rec and destroys its callback and feedback; does not complete it. */
void vgb_wayland_rec_destroy(struct present_rec *rec);

/* Completes and destroys @so's records with @status (its window goes). */
void vgb_wayland_pacing_drop(struct scanout *so, int status);
/* Completes and destroys every record in flight with @status (the connection went). */
void vgb_wayland_pacing_lose_all(struct wayland_sink *s, int status);
/* Records past their deadline by @now complete with -ETIMEDOUT and go (counted lost). */
void vgb_wayland_pacing_expire(struct wayland_sink *s, uint64_t now);
/* The earliest record deadline, or UINT64_MAX. */
uint64_t vgb_wayland_pacing_next_deadline(const struct wayland_sink *s);

/* Flush-to-presented percentiles over the last LATENCY_SAMPLES frames (0 when none). */
void vgb_wayland_latency_get(const struct wayland_sink *s, uint64_t *ret_p50, uint64_t *ret_p99);

#endif
