/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_PRIVATE_H
#define VGB_DISPLAY_WAYLAND_PRIVATE_H

/* The Wayland sink's state, shared by wayland.c, wayland-shm.c and wayland-dmabuf.c. */

#include <stdbool.h>
#include <stdint.h>
#include <wayland-client.h>

#include "display-private.h"
#include "linux-dmabuf-unstable-v1-client-protocol.h"
#include "presentation-time-client-protocol.h"
#include "viewporter-client-protocol.h"
#include "xdg-shell-client-protocol.h"

#define SHM_COPY_BUFFERS 3
#define LATENCY_SAMPLES 1024

struct wl_sink;
struct scanout;
struct vgb_egl;
struct vgb_egl_window;

/* One format/modifier pair the compositor listed. */
struct fmt_pair {
	uint32_t fourcc;
	uint64_t modifier;
};

struct fmt_set {
	struct fmt_pair *v;
	size_t n, cap;
};

/* A zwp_linux_dmabuf_feedback_v1 being parsed (default, or one surface's). */
struct dmabuf_feedback {
	struct wl_sink *sink;
	struct zwp_linux_dmabuf_feedback_v1 *proxy;
	const uint8_t *table;  /* mmapped format table: 16-byte {u32 format, u32 pad, u64 mod} */
	size_t table_size;
	struct fmt_set pending; /* tranches since the last done */
	struct fmt_set current; /* as of the last done */
	uint32_t dones;         /* done events seen */
	uint32_t table_changes; /* format_table events seen */
	bool have;              /* at least one done */
};

enum cached_kind {
	CACHED_DMABUF,
	CACHED_SHM_DIRECT,
};

enum cached_state {
	CACHED_IMPORTING, /* zwp_linux_buffer_params_v1.create sent, no answer yet */
	CACHED_READY,
	CACHED_FAILED,    /* the compositor said failed: this export goes through shm */
};

/* One wl_buffer per buffer_id (blob export), reused across frames. */
struct cached_buffer {
	struct wl_list link; /* wl_sink.cached */
	struct wl_sink *sink;
	uint64_t id;         /* 0: not cached, destroyed on release */
	enum cached_kind kind;
	enum cached_state state;
	struct wl_buffer *buffer;
	struct zwp_linux_buffer_params_v1 *params;
	uint32_t width, height, fourcc, stride;
	uint64_t offset, modifier;
	uint64_t deadline_ns; /* import answer expected by then */
};

/* A CPU-copy target: its own memfd and pool, rotated by wl_buffer.release. */
struct shm_buffer {
	struct scanout *so;
	struct wl_buffer *buffer;
	void *data;
	size_t size;
	uint32_t width, height, stride, fourcc;
	bool busy;            /* attached and not released */
	struct vgb_rect stale; /* what changed on screen since this buffer was last written */
};

/* The latest frame not yet committed (latest frame wins). */
struct pending_frame {
	bool valid;
	struct vgb_frame f;
	struct vgb_cpu_view cpu;
	bool has_cpu;
	bool has_dmabuf;
	/* Owned duplicate of the dmabuf when there is no CPU view: an import the compositor
	 * refuses later can still go to the EGL importer. */
	struct vgb_dmabuf dmabuf_dup;
	struct vgb_rect damage;
	enum vgb_present_path path;
	struct cached_buffer *cb; /* DMABUF and SHM_DIRECT */
	bool stalled;             /* counted once in stats.stalls */
	bool copied;              /* SHM_COPY: already in scanout.staged and completed */
	uint64_t since_ns;
};

/* A commit waiting for the compositor to present or discard it. */
struct present_rec {
	struct wl_list link; /* wl_sink.inflight */
	struct wl_sink *sink;
	uint32_t scanout;
	struct wp_presentation_feedback *feedback;
	uint64_t flush_ns;
	uint64_t deadline_ns;
	vgb_frame_done_fn done; /* NULL once completed */
	void *done_data;
};

struct scanout {
	struct wl_sink *sink;
	uint32_t index;
	struct wl_surface *surface;
	struct xdg_surface *xdg_surface;
	struct xdg_toplevel *toplevel;
	struct wp_viewport *viewport;
	struct dmabuf_feedback *feedback; /* per-surface dmabuf feedback (v4) */
	bool configured;
	uint64_t create_ns;
	int32_t conf_width, conf_height;
	uint32_t buf_width, buf_height;

	struct wl_callback *frame_cb;
	uint64_t frame_cb_deadline_ns;
	struct present_rec *frame_rec; /* completed by the frame callback (no wp_presentation) */

	struct pending_frame pending;
	struct shm_buffer *copy[SHM_COPY_BUFFERS];
	struct shm_buffer *front; /* the copy buffer written last */
	struct shm_buffer *staged; /* written, not yet committed: later frames merge into it */
	struct vgb_egl_window *egl_win; /* while EGL draws this scanout */

	/* Cursor: kept across reconnects. */
	uint32_t *cursor_argb;
	uint32_t cursor_w, cursor_h, cursor_hot_x, cursor_hot_y;
	int32_t cursor_x, cursor_y;
	struct wl_surface *cursor_surface;
	struct wl_buffer *cursor_buffer;
};

struct wl_sink {
	struct vgb_display base;
	struct vgb_display_options opts;
	char *title;
	char *socket_name;

	struct wl_display *display;
	struct wl_registry *registry;
	struct wl_compositor *compositor;
	uint32_t compositor_version;
	struct wl_shm *shm;
	struct xdg_wm_base *wm_base;
	struct wp_viewporter *viewporter;
	struct wp_presentation *presentation;
	clockid_t presentation_clock;
	struct zwp_linux_dmabuf_v1 *dmabuf;
	uint32_t dmabuf_version;
	struct dmabuf_feedback *default_feedback; /* v4 */
	struct fmt_set v3_formats;                /* v3 modifier events */
	struct wl_seat *seat;
	struct wl_pointer *pointer;
	uint32_t pointer_serial;
	struct scanout *pointer_focus;
	uint32_t shm_formats; /* bit 0: ARGB8888, bit 1: XRGB8888 */
	struct fmt_set shm_extra;

	struct vgb_egl *egl;     /* the EGL importer, made on first need */
	bool egl_unavailable;    /* tried, and EGL cannot import dmabufs here */

	bool connected;
	bool need_flush;
	uint64_t reconnect_at_ns; /* 0: no timer */

	struct scanout *scanouts[VGB_DISPLAY_MAX_SCANOUTS];
	struct wl_list cached;   /* struct cached_buffer */
	struct wl_list inflight; /* struct present_rec */

	struct vgb_display_stats stats;
	uint64_t latency[LATENCY_SAMPLES];
	uint64_t n_latency;
};

/* wayland.c */
int wl_sink_flush(struct wl_sink *s);
void wl_sink_try_commit(struct scanout *so);
/* An import answered (created or failed): frames waiting on @cb move on (failed: to shm). */
void wl_sink_import_done(struct wl_sink *s, struct cached_buffer *cb);
/* Whether a pending frame waits on @cb. */
bool wl_sink_cb_is_pending(struct wl_sink *s, struct cached_buffer *cb);
void wl_sink_lost(struct wl_sink *s);
uint64_t wl_sink_timeout_ns(struct wl_sink *s);

/* wayland-shm.c */
int shm_alloc_memfd(size_t size, void **ret_data);
struct shm_buffer *shm_copy_get(struct scanout *so, const struct pending_frame *p);
/* Copies @fill of the pending frame's CPU view into @b, after refreshing what changed on
 * screen since @b was last written from the front buffer. */
int shm_copy_fill(struct scanout *so, struct shm_buffer *b, const struct pending_frame *p,
		  const struct vgb_rect *fill);
void shm_copy_destroy_all(struct scanout *so);
int shm_direct_get(struct wl_sink *s, const struct vgb_frame *f, struct cached_buffer **ret);
bool shm_view_is_direct(const struct wl_sink *s, const struct vgb_frame *f);
int shm_cursor_update(struct scanout *so);
/* Whether @cb (may be NULL) was made for @f's size with this fourcc, stride and offset. */
bool cached_matches(const struct cached_buffer *cb, const struct vgb_frame *f, uint32_t fourcc,
		    uint32_t stride, uint64_t offset);
/* A new cached buffer for @f (id f->buffer_id; in no list, no wl_buffer yet), or NULL. */
struct cached_buffer *cached_new(struct wl_sink *s, const struct vgb_frame *f,
				 enum cached_kind kind, enum cached_state state, uint32_t fourcc,
				 uint32_t stride, uint64_t offset);
void cached_destroy(struct cached_buffer *cb);
/* Listens for release on cb->buffer: an uncached (id 0) buffer goes away on release. */
void cached_listen(struct cached_buffer *cb);
struct cached_buffer *cached_find(struct wl_sink *s, uint64_t id, enum cached_kind kind);

/* wayland-dmabuf.c */
void fmt_set_finish(struct fmt_set *set);
int fmt_set_add(struct fmt_set *set, uint32_t fourcc, uint64_t modifier);
bool fmt_set_has(const struct fmt_set *set, uint32_t fourcc, uint64_t modifier);
struct dmabuf_feedback *dmabuf_feedback_create(struct wl_sink *s, struct scanout *so);
void dmabuf_feedback_destroy(struct dmabuf_feedback *fb);
extern const struct zwp_linux_dmabuf_v1_listener dmabuf_v3_listener;
/*
 * Picks the modifier to import @fourcc/@modifier with, among the pairs the compositor listed
 * for @so (its surface feedback, else the default feedback, else the v3 events).
 * Returns false when no listed pair fits.
 */
bool dmabuf_pick_modifier(struct wl_sink *s, struct scanout *so, uint32_t fourcc,
			  uint64_t modifier, uint64_t *ret_modifier);
bool dmabuf_fd_is_vfio_device(int fd);
int dmabuf_import(struct wl_sink *s, struct scanout *so, const struct vgb_frame *f,
		  struct cached_buffer **ret);

#endif
