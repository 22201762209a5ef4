/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_H
#define VGB_DISPLAY_H

/*
 * display/: sinks that show scanouts. The bridge hands a sink, per scanout, either a dmabuf
 * descriptor or a CPU view (or both: the sink picks), with the damage rectangle and a
 * completion callback. Sinks never block the bridge's loop: they expose an fd and a timeout
 * for the bridge's epoll, and every compositor wait is bounded.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vgb/dmabuf.h"

struct vgb_display;

struct vgb_rect {
	uint32_t x, y, width, height;
};

#define VGB_CURSOR_MAX 64
#define VGB_DISPLAY_MAX_SCANOUTS 16

/*
 * A CPU view of a frame: @data points at (0,0) of the scanout, rows @stride bytes apart.
 * When the whole frame lies in one memfd range, @memfd (borrowed) and @memfd_offset say where
 * (data[0] == byte @memfd_offset of @memfd), so a sink can share the memfd with zero copies;
 * otherwise @memfd is -1.
 */
struct vgb_cpu_view {
	const void *data;
	uint32_t stride;
	int memfd;
	uint64_t memfd_offset;
	uint64_t memfd_size; /* size of the memfd (for a wl_shm pool) */
};

enum vgb_present_path {
	VGB_PATH_NONE = 0,
	VGB_PATH_DMABUF,     /* linux-dmabuf, 0 copies */
	VGB_PATH_EGL,        /* EGL import + GPU blit, 0 CPU copies */
	VGB_PATH_SHM_DIRECT, /* wl_shm pool on the guest memfd, 0 copies */
	VGB_PATH_SHM_COPY,   /* gather copy of the damage into an shm pool, 1 copy */
	VGB_PATH_CAPTURE,    /* written to PNG */
};
const char *vgb_present_path_name(enum vgb_present_path path);

/*
 * Called exactly once per presented frame: when the sink has taken the frame (copied it,
 * or the compositor has shown or replaced it), or when it gives up. @status is 0, or -errno
 * (-ECANCELED: replaced by a newer frame before being shown, which still counts as taken;
 * -ETIMEDOUT; -EPIPE: compositor lost; -EIO: the CPU view could not be read, see
 * vgb_copy_rect()). The bridge completes fenced flushes from here.
 */
typedef void (*vgb_frame_done_fn)(void *data, int status);

struct vgb_frame {
	uint32_t scanout;
	uint32_t width, height; /* the scanout rectangle's size */
	uint32_t fourcc;        /* DRM_FORMAT_* */
	/*
	 * Identifies the buffer behind this frame across presents (a blob export), so a sink can
	 * cache one wl_buffer per export and reuse it. 0 means "do not cache". The bridge calls
	 * vgb_display_forget() before the export goes away (unref, revoke, window removal).
	 */
	uint64_t buffer_id;
	const struct vgb_dmabuf *dmabuf; /* NULL when there is none; fds borrowed */
	const struct vgb_cpu_view *cpu;  /* NULL when there is none; memory borrowed until done */
	struct vgb_rect damage;          /* within the scanout; may be empty */
	uint64_t flush_ns;               /* vgb_now_ns() at RESOURCE_FLUSH, for latency stats */
	vgb_frame_done_fn done;          /* may be NULL */
	void *done_data;
};

struct vgb_display_stats {
	uint64_t frames_presented;  /* frames the compositor showed */
	uint64_t frames_dropped;    /* replaced before being shown (latest frame wins) */
	uint64_t bytes_copied;      /* CPU copies into shm buffers */
	uint64_t copies;            /* frames that needed a CPU copy */
	uint64_t dmabuf_failed;     /* compositor refused a dmabuf */
	uint64_t latency_p50_ns;    /* flush -> presented */
	uint64_t latency_p99_ns;
	enum vgb_present_path last_path;
	bool connected;
	uint64_t commits;           /* wl_surface commits carrying a new buffer */
	uint64_t frames_discarded;  /* committed but reported discarded by the compositor */
	uint64_t frames_lost;       /* committed, never answered (compositor lost, no frame callback) */
	uint64_t stalls;            /* frames that had to wait for a free shm buffer */
	uint64_t reconnects;        /* successful reconnections */
	uint32_t shm_buffers;       /* shm copy buffers currently allocated (all scanouts) */
	uint32_t cached_buffers;    /* wl_buffers cached per buffer_id */
	uint32_t frames_pending;    /* frames waiting for the compositor's pacing (per scanout) */
};

struct vgb_display_ops {
	const char *name;
	int (*present)(struct vgb_display *d, const struct vgb_frame *frame);
	void (*forget)(struct vgb_display *d, uint64_t buffer_id);
	void (*disable_scanout)(struct vgb_display *d, uint32_t scanout);
	/* Cursor image (ARGB8888, 64x64 max, premultiplied as virtio-gpu gives it); NULL hides. */
	int (*set_cursor)(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			  uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y);
	void (*move_cursor)(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y);
	int (*get_fd)(struct vgb_display *d);        /* -1: nothing to poll */
	int (*dispatch)(struct vgb_display *d);      /* after get_fd polled readable, or timeout */
	int (*next_timeout_ms)(struct vgb_display *d); /* -1: none */
	int (*reconnect)(struct vgb_display *d); /* starts; never waits for the compositor */
	void (*get_stats)(struct vgb_display *d, struct vgb_display_stats *ret);
	void (*destroy)(struct vgb_display *d);
};

struct vgb_display {
	const struct vgb_display_ops *ops;
};

/* Options shared by the sinks that show windows. */
struct vgb_display_options {
	const char *title;   /* VM name for window titles; "vgbridge" when NULL */
	bool fullscreen;
	bool no_dmabuf;      /* never try linux-dmabuf */
	int timeout_ms;      /* bound on every compositor wait (default 1000) */
	int reconnect_ms;    /* retry a lost compositor this often; 0: only on request */
};

/* Wayland sink; connects to $WAYLAND_DISPLAY (or @socket_name when not NULL). */
int vgb_display_create_wayland(const char *socket_name, const struct vgb_display_options *opts,
			       struct vgb_display **ret);
/* Capture sink: writes DIR/scanout<N>-<seq>.png and a CRC32 line per frame to DIR/frames.txt. */
int vgb_display_create_capture(const char *dir, struct vgb_display **ret);
/* Accepts frames and completes them at once. */
int vgb_display_create_null(struct vgb_display **ret);

/*
 * Wrappers over the ops; each accepts a sink whose op is NULL where that makes sense.
 *
 * vgb_display_present() returns 0 when the sink took the frame: frame->done will then be called
 * exactly once (possibly before present returns). It returns -errno when it did not (-EINVAL:
 * malformed frame; -EPIPE: compositor lost; -EOPNOTSUPP: no path can show it): done is then
 * never called and the caller still owns everything.
 */
int vgb_display_present(struct vgb_display *d, const struct vgb_frame *frame);
void vgb_display_forget(struct vgb_display *d, uint64_t buffer_id);
void vgb_display_disable_scanout(struct vgb_display *d, uint32_t scanout);
int vgb_display_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			   uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y);
void vgb_display_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y);
int vgb_display_get_fd(struct vgb_display *d);
int vgb_display_dispatch(struct vgb_display *d);
int vgb_display_next_timeout_ms(struct vgb_display *d);
/*
 * Starts connecting to a lost compositor again, without waiting for it: returns 0 when the
 * attempt is under way (dispatch completes it; stats.connected says when) or the sink is
 * connected, -errno when the compositor's socket refuses at once.
 */
int vgb_display_reconnect(struct vgb_display *d);
void vgb_display_get_stats(struct vgb_display *d, struct vgb_display_stats *ret);
void vgb_display_destroy(struct vgb_display *d);

/* ---- formats (display/format.c) ---- */

/* virtio-gpu format (VIRTIO_GPU_FORMAT_*) to DRM fourcc; 0 when unknown. */
uint32_t vgb_format_virtio_to_drm(uint32_t virtio_format);
/* DRM fourcc to wl_shm format (ARGB8888 = 0, XRGB8888 = 1, else the fourcc); -1 when unknown. */
int64_t vgb_format_drm_to_wl_shm(uint32_t fourcc);
/* Bytes per pixel of a single-plane DRM fourcc we handle; 0 when unknown. */
uint32_t vgb_format_bpp(uint32_t fourcc);

/*
 * Gather copy of @rect of @src (a CPU view) into @dst (stride @dst_stride), @bpp bytes/pixel.
 * The copy is guarded (vgb/guard.h): a CPU view whose memory went away under it (a BAR whose
 * memory decode the guest turned off, a truncated memfd) gives -EIO instead of a SIGBUS; the
 * sink then fails the frame with -EIO, which tells the bridge to re-make the view.
 * Returns 0 or -EIO (@dst's bytes in the rectangle are then unspecified).
 */
int vgb_copy_rect(void *dst, uint32_t dst_stride, const struct vgb_cpu_view *src,
		  const struct vgb_rect *rect, uint32_t bpp);
/* Whether a fourcc we handle carries alpha (the X formats do not). */
bool vgb_format_has_alpha(uint32_t fourcc);
/* Decodes one pixel (the little-endian word of a 32-bit @fourcc) to R, G, B, A bytes. */
void vgb_format_to_rgba(uint32_t fourcc, uint32_t px, uint8_t ret_rgba[4]);

/* Rectangle helpers: empty when width or height is 0. */
bool vgb_rect_is_empty(const struct vgb_rect *r);
/* Grows @acc to the bounding box of @acc and @r. */
void vgb_rect_union(struct vgb_rect *acc, const struct vgb_rect *r);
/* Clips @r to width x height; returns whether anything is left. */
bool vgb_rect_clip(struct vgb_rect *r, uint32_t width, uint32_t height);

#endif
