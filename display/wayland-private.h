/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_PRIVATE_H
#define VGB_DISPLAY_WAYLAND_PRIVATE_H

/*
 * The Wayland sink's state, shared by its files. Only data lives here: each file's functions are
 * declared in that file's own header, so the includes show who calls whom, and the calls only
 * go downwards:
 *
 *   wayland.c               the sink's ops: present, dispatch, timeouts, stats
 *   wayland-connection.c    connect, registry, disconnect, reconnect, the socket pump
 *   wayland-commit.c        a scanout's pending frame onto its surface (or the EGL importer)
 *   wayland-window.c        the xdg toplevel per scanout, its viewport, its pending frame
 *   wayland-feedback.c      presentation feedback, frame callbacks, latency samples
 *   wayland-cursor.c        seat, pointer and the cursor surface
 *   wayland-dmabuf.c        linux-dmabuf feedback and imports
 *   wayland-shm.c           wl_shm: the pool on the guest memfd, the copy buffers
 *   wayland-buffer-cache.c  one wl_buffer per buffer_id
 *   format-set.c            format/modifier sets
 *
 * Compositor events only change state; the sink's dispatch then moves every scanout on
 * (vgb_wayland_try_commit), so no listener calls back up into the files above it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <wayland-client.h>

#include "display-private.h"
#include "format-set.h"
#include "linux-dmabuf-unstable-v1-client-protocol.h"
#include "presentation-time-client-protocol.h"
#include "viewporter-client-protocol.h"
#include "xdg-shell-client-protocol.h"

#define SHM_COPY_BUFFERS 3
/*
 * Commits of one scanout the compositor has not answered yet. Frames are committed as they
 * arrive (the latest wins in the compositor), so this bounds what a hidden or stalled window
 * accumulates; past it the newest frame waits as the scanout's pending frame.
 */
#define MAX_INFLIGHT 8
#define LATENCY_SAMPLES 1024

struct wayland_sink;
struct scanout;
struct vgb_egl;
struct vgb_egl_window;

/* A zwp_linux_dmabuf_feedback_v1 being parsed (default, or one surface's). */
struct dmabuf_feedback {
	struct wayland_sink *sink;
	struct zwp_linux_dmabuf_feedback_v1 *proxy;
	const uint8_t *table;  /* mmapped format table: 16-byte {u32 format, u32 pad, u64 mod} */
	size_t table_size;
	struct vgb_fmt_set pending; /* tranches since the last done */
	struct vgb_fmt_set current; /* as of the last done */
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
	struct wl_list link; /* wayland_sink.cached */
	struct wayland_sink *sink;
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

/* A frame that cannot be committed yet (no configure, import unanswered, no free copy buffer,
 * MAX_INFLIGHT reached); a newer frame replaces it (latest frame wins). */
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
	uint64_t since_ns;
};

/*
 * A commit waiting for the compositor. Its frame callback says the compositor repainted with it
 * (it read the pixels: a zero-copy frame's fence completes there); wp_presentation feedback then
 * says presented or discarded (replaced by a later commit before a repaint). Without
 * wp_presentation the frame callback also stands for "presented".
 */
struct present_rec {
	struct wl_list link; /* wayland_sink.inflight */
	struct wayland_sink *sink;
	uint32_t scanout;
	struct wl_callback *frame_cb;              /* NULL once answered */
	struct wp_presentation_feedback *feedback; /* NULL once answered */
	uint64_t flush_ns;
	uint64_t deadline_ns;
	vgb_frame_done_fn done; /* NULL once completed */
	void *done_data;
};

struct scanout {
	struct wayland_sink *sink;
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

	uint32_t inflight; /* present_recs of this scanout (at most MAX_INFLIGHT) */

	struct pending_frame pending;
	struct shm_buffer *copy[SHM_COPY_BUFFERS];
	struct shm_buffer *front; /* the copy buffer written last */
	struct vgb_egl_window *egl_win; /* while EGL draws this scanout */

	/* Cursor: kept across reconnects. */
	uint32_t *cursor_argb;
	uint32_t cursor_w, cursor_h, cursor_hot_x, cursor_hot_y;
	int32_t cursor_x, cursor_y;
	struct wl_surface *cursor_surface;
	struct wl_buffer *cursor_buffer;
};

struct wayland_sink {
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
	struct vgb_fmt_set v3_formats;                /* v3 modifier events */
	struct wl_seat *seat;
	struct wl_pointer *pointer;
	uint32_t pointer_serial;
	struct scanout *pointer_focus;
	uint32_t shm_formats; /* bit 0: ARGB8888, bit 1: XRGB8888 */
	struct vgb_fmt_set shm_extra;

	struct vgb_egl *egl;     /* the EGL importer, made on first need */
	bool egl_unavailable;    /* tried, and EGL cannot import dmabufs here */

	bool connected;
	bool need_flush;
	uint64_t reconnect_at_ns; /* 0: no timer */
	/* A connection being set up (display set, not connected): its round trip. */
	struct wl_callback *conn_sync;
	bool conn_synced;
	unsigned conn_round;      /* 1: globals, 2: formats, feedback, clock, seat */
	uint64_t conn_deadline_ns;

	struct scanout *scanouts[VGB_DISPLAY_MAX_SCANOUTS];
	struct wl_list cached;   /* struct cached_buffer */
	struct wl_list inflight; /* struct present_rec */

	struct vgb_display_stats stats;
	uint64_t latency[LATENCY_SAMPLES];
	uint64_t n_latency;
};

#endif
