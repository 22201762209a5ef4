/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_GPU_H
#define VGB_BRIDGE_GPU_H

/*
 * The virtio-gpu command processor: one per client. It takes the bytes of one control- or
 * cursor-queue command as the virtio spec (section 5.7) lays them out and writes the spec's
 * response. It keeps the client's resource and scanout tables, translates and exports blobs
 * over the client's memory map, presents scanouts to a display sink, and completes fences.
 *
 * Supported: GET_DISPLAY_INFO, GET_EDID (a generated EDID 1.4 block per scanout: the
 * preferred mode is display_width x display_height, the monitor is named "vgbridge"),
 * RESOURCE_CREATE_2D, RESOURCE_UNREF, SET_SCANOUT,
 * RESOURCE_FLUSH, TRANSFER_TO_HOST_2D (a no-op answering OK for blobs),
 * RESOURCE_ATTACH_BACKING, RESOURCE_DETACH_BACKING, RESOURCE_CREATE_BLOB (BLOB_MEM_GUEST with
 * inline entries), SET_SCANOUT_BLOB, UPDATE_CURSOR, MOVE_CURSOR. Anything else answers
 * VIRTIO_GPU_RESP_ERR_UNSPEC.
 *
 * Fences: a command with VIRTIO_GPU_FLAG_FENCE completes in order within its timeline
 * (ctx_id, and ring_idx when VIRTIO_GPU_FLAG_INFO_RING_IDX is set). A fenced RESOURCE_FLUSH
 * completes when the display has taken the frame, or at the fence deadline; later fenced
 * commands of the same timeline wait behind it. Unfenced commands always answer at once.
 *
 * Inside: decode.c turns the bytes into a struct vgb_gpu_cmd (no state), the processor keeps
 * ids, scanouts, guest blobs and fences, and a renderer (renderer.h; the 2D software renderer
 * today) owns the pixels of the resources it creates.
 *
 * Not thread-safe: call everything from the loop that dispatches the display.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vgb/display.h"
#include "vgb/dmabuf.h"

#include "export.h"
#include "memmap.h"

struct vgb_gpu;

/* Largest response vgb_gpu_process() writes (OK_EDID, 1056 bytes). */
#define VGB_GPU_MAX_RESP 1056u

/* Largest SUBMIT_3D command stream accepted (bytes). */
#define VGB_GPU_MAX_SUBMIT (4u << 20)

struct vgb_gpu_limits {
	uint32_t max_entries;      /* per blob or backing; default 16384 */
	uint64_t max_blob_bytes;   /* per blob or 2D resource; default 256 MiB */
	uint32_t max_resources;    /* per client; default 1024 */
	/* host memory of a client: 2D resources and copied CPU views; default 1 GiB */
	uint64_t max_host_bytes;
	/* mmaps held by a client's mapped CPU views and mapped 2D backings (the process has
	 * ~65530); default 8192. A blob whose view would need more is copied instead; a 2D
	 * backing that would is read with pread per row. */
	uint32_t max_view_mmaps;
	uint32_t num_scanouts;     /* 1..16; default 1 */
	uint32_t display_width;    /* reported by GET_DISPLAY_INFO; default 1280 */
	uint32_t display_height;   /* default 800 */
	uint32_t fence_timeout_ms; /* deadline of a fenced flush; default 20 (guest waits 50) */
};

/* Fills @ret with the defaults above. */
void vgb_gpu_limits_init(struct vgb_gpu_limits *ret);

/*
 * A deferred command's completion: @resp (@len bytes, the spec's response with the fence
 * fields copied) for the command that vgb_gpu_process() accepted with @cookie. @resp is valid
 * only during the call. Called from vgb_gpu_dispatch_timeouts(), from the display's
 * completion (inside vgb_display_dispatch()), or from vgb_gpu_process(); never from
 * vgb_gpu_destroy(). The callback must not call back into this gpu (queue the reply and
 * return).
 */
typedef void (*vgb_gpu_fence_fn)(void *data, uint64_t cookie, const void *resp, size_t len);

struct vgb_gpu_config {
	struct vgb_gpu_limits limits;  /* start from vgb_gpu_limits_init() */
	/* Borrowed; may be NULL (no display: flushes complete at once). Must outlive the gpu. */
	struct vgb_display *display;
	/* Guest scanout N is display scanout scanout_base + N (clients sharing a sink). */
	uint32_t scanout_base;
	vgb_gpu_fence_fn fence_done;  /* may be NULL only if the client never sends fences */
	void *fence_data;
};

/*
 * Creates a processor over @map (borrowed; must outlive the gpu). The gpu registers a
 * removal listener on @map: blobs using a removed window become invalid (commands naming them
 * then answer ERR_INVALID_PARAMETER, or ERR_INVALID_RESOURCE_ID once unreferenced) and their
 * exports are released once no frame borrows them.
 * Returns 0, -EINVAL (bad limits: a zero cap, num_scanouts not in 1..16) or -ENOMEM.
 */
int vgb_gpu_create(struct vgb_memmap *map, const struct vgb_gpu_config *cfg,
		   struct vgb_gpu **ret);

/*
 * Frees every resource, export, mapping and fd of the client, disables its scanouts on the
 * display and tells the display to forget its buffers. Pending fences are dropped without
 * calling fence_done. Frames the display still holds keep their (refcounted) memory until the
 * display completes them. Accepts NULL.
 */
void vgb_gpu_destroy(struct vgb_gpu *gpu);

/*
 * Processes one command: @cmd, @len bytes (header included; trailing bytes beyond what the
 * command needs are ignored, as the spec allows). Writes the response into @resp (@resp_cap
 * bytes; VGB_GPU_MAX_RESP always suffices) and its length into *@ret_resp_len.
 *
 * Returns:
 *   0  the response is in @resp (OK_* or ERR_* as the spec says: guest mistakes answer
 *      ERR_INVALID_PARAMETER / _RESOURCE_ID / _SCANOUT_ID, host failures ERR_UNSPEC /
 *      ERR_OUT_OF_MEMORY, unknown commands ERR_UNSPEC);
 *  1  a fenced command whose completion is deferred: nothing is written, and fence_done will
 *      be called exactly once with @cookie and the response (unless the gpu is destroyed
 *      first);
 *  -EINVAL     @len is shorter than a virtio_gpu_ctrl_hdr (no response can be formed);
 *  -ENOBUFS    @resp_cap is too small for the response;
 *  -ENOMEM     a fenced command could not be queued (nothing was done).
 * The inline entries of RESOURCE_CREATE_BLOB / ATTACH_BACKING are read from @cmd at any
 * alignment; @cmd is not kept after the call.
 */
int vgb_gpu_process(struct vgb_gpu *gpu, const void *cmd, size_t len, void *resp,
		    size_t resp_cap, size_t *ret_resp_len, uint64_t cookie);

/* Milliseconds until the next fence deadline (0: now), or -1 when none is pending. */
int vgb_gpu_next_timeout_ms(struct vgb_gpu *gpu);

/* Completes fences whose deadline has passed (fence_done is called for each). */
void vgb_gpu_dispatch_timeouts(struct vgb_gpu *gpu);

/*
 * A dmabuf for blob @resource_id, for the VMM (EXPORT_BLOB): a new descriptor with one plane
 * whose fd is a duplicate the caller owns (vgb_dmabuf_finish() it). The layout (width, height,
 * fourcc, stride[0], offset[0]) is the one of the last SET_SCANOUT_BLOB that showed the blob;
 * before any, width/height/fourcc/stride are 0. modifier is DRM_FORMAT_MOD_LINEAR.
 * *@ret_strategy (may be NULL) gets the blob's strategy either way.
 * Returns 0, -ENOENT (no such resource, or not a blob), -ESTALE (a window it used was
 * removed), -EOPNOTSUPP (the blob has only a CPU view), or -errno (dup).
 */
int vgb_gpu_export_blob(struct vgb_gpu *gpu, uint32_t resource_id, struct vgb_dmabuf *ret,
			enum vgb_export_strategy *ret_strategy);

/* Compact command indices for the stats. */
enum vgb_gpu_cmd_stat {
	VGB_GPU_STAT_GET_DISPLAY_INFO = 0,
	VGB_GPU_STAT_RESOURCE_CREATE_2D,
	VGB_GPU_STAT_RESOURCE_UNREF,
	VGB_GPU_STAT_SET_SCANOUT,
	VGB_GPU_STAT_RESOURCE_FLUSH,
	VGB_GPU_STAT_TRANSFER_TO_HOST_2D,
	VGB_GPU_STAT_ATTACH_BACKING,
	VGB_GPU_STAT_DETACH_BACKING,
	VGB_GPU_STAT_RESOURCE_CREATE_BLOB,
	VGB_GPU_STAT_SET_SCANOUT_BLOB,
	VGB_GPU_STAT_UPDATE_CURSOR,
	VGB_GPU_STAT_MOVE_CURSOR,
	VGB_GPU_STAT_OTHER,
	VGB_GPU_STAT_GET_EDID, /* after OTHER: the wire's first 13 counters keep their meaning */
	VGB_GPU_STAT_COUNT,
};
/* "get-display-info", ... "other", "get-edid"; NULL out of range. */
const char *vgb_gpu_cmd_stat_name(unsigned i);

struct vgb_gpu_stats {
	uint64_t commands[VGB_GPU_STAT_COUNT];   /* commands received, by type */
	uint64_t errors;                         /* ERR_* responses */
	uint64_t err_by_type[6];                 /* [resp - VIRTIO_GPU_RESP_ERR_UNSPEC] */
	uint32_t resources;                      /* live resources (2D and blob) */
	uint32_t blobs_by_strategy[VGB_EXPORT_COUNT]; /* live blobs by current strategy */
	uint64_t exports_by_strategy[VGB_EXPORT_COUNT]; /* plans made, cumulative */
	uint64_t export_failures;                /* unexpected export failures */
	uint64_t blob_segments;                  /* segments after merging, cumulative */
	uint64_t segments_merged;                /* segments merged away, cumulative */
	uint64_t blobs_invalidated;              /* by window removal */
	uint64_t exports_dropped;                /* by device reset, memory decode off, a failed read */
	uint64_t flushes;
	uint64_t frames_presented;               /* vgb_display_present() accepted */
	uint64_t present_errors;
	uint64_t fences_completed;
	uint64_t fences_timed_out;               /* completed at the deadline */
	uint64_t copies;                         /* CPU copies (2D transfers, unaligned blobs) */
	uint64_t bytes_copied;
	bool has_display;
	struct vgb_display_stats display;        /* the sink's, when has_display */
};

void vgb_gpu_get_stats(struct vgb_gpu *gpu, struct vgb_gpu_stats *ret);

#endif
