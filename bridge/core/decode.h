/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_DECODE_H
#define VGB_BRIDGE_DECODE_H

/*
 * The virtio-gpu command decoder: bytes of one control- or cursor-queue command (virtio spec
 * 5.7, little-endian, any alignment) into a host-endian struct vgb_gpu_cmd. It checks
 * everything that needs no state: lengths, counts against the configured caps, formats,
 * sizes and rectangles that must be non-empty, arithmetic that must not wrap. Whether a
 * resource, context or scanout exists is the processor's business (gpu.c), and what a
 * command does to pixels is the renderer's (renderer.h). Keeps nothing between calls.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vgb/display.h"
#include "vgb/log.h"

/* Caps the decoder checks counts against (from struct vgb_gpu_limits). */
struct vgb_gpu_decode_limits {
	uint32_t max_entries;     /* inline mem entries of one command */
	uint32_t max_submit;      /* bytes of one SUBMIT_3D command stream */
};

/* A 3D box: what TRANSFER_*_3D address inside one mip level. */
struct vgb_box {
	uint32_t x, y, z, w, h, d;
};

/* Arguments of RESOURCE_CREATE_3D, as the guest's gallium driver chose them. */
struct vgb_gpu_create_3d {
	uint32_t resource_id;
	uint32_t target, format, bind;
	uint32_t width, height, depth, array_size, last_level, nr_samples, flags;
};

/* TRANSFER_TO_HOST_3D / TRANSFER_FROM_HOST_3D (and TRANSFER_TO_HOST_2D as a 1-deep box). */
struct vgb_gpu_transfer {
	uint32_t resource_id;
	struct vgb_box box;
	uint64_t offset;          /* into the guest backing */
	uint32_t level, stride, layer_stride;
};

/*
 * One decoded command. @entries and @submit.data point into the caller's message (unaligned:
 * read them with memcpy) and are valid only as long as it is.
 */
struct vgb_gpu_cmd {
	uint32_t type;              /* VIRTIO_GPU_CMD_* */
	uint32_t flags;             /* VIRTIO_GPU_FLAG_* */
	uint64_t fence_id;
	uint32_t ctx_id;
	uint8_t ring_idx;           /* 0 unless VIRTIO_GPU_FLAG_INFO_RING_IDX */
	union {
		struct { uint32_t scanout_id; } get_edid;
		struct {
			uint32_t resource_id, format, fourcc, width, height;
		} create_2d;
		struct { uint32_t resource_id; } resource; /* UNREF, DETACH, CTX_ATTACH/DETACH */
		struct {
			uint32_t resource_id, nr_entries;
			const void *entries;  /* nr_entries struct virtio_gpu_mem_entry */
		} attach;
		struct {
			uint32_t resource_id, blob_mem, blob_flags, nr_entries;
			uint64_t blob_id, size;
			const void *entries;
		} create_blob;
		struct {
			uint32_t scanout_id, resource_id;
			struct vgb_rect r;
		} set_scanout;
		struct {
			uint32_t scanout_id, resource_id;
			struct vgb_rect r;
			uint32_t format, fourcc, width, height, stride, offset;
			/* bytes the scanout reads: [start, end) of the blob (valid when
			 * resource_id != 0) */
			uint64_t start, end;
		} set_scanout_blob;
		struct {
			uint32_t resource_id;
			struct vgb_rect r;
		} flush;
		struct {
			uint32_t scanout_id, resource_id, hot_x, hot_y;
			int32_t x, y;
		} cursor;
		struct {
			uint32_t context_init;
			char name[65];       /* NUL-terminated debug name */
		} ctx_create;
		struct vgb_gpu_create_3d create_3d;
		struct vgb_gpu_transfer transfer;
		struct {
			const void *data;
			uint32_t size;
		} submit;
		struct { uint32_t index; } capset_info;
		struct { uint32_t id, version; } capset;
	};
};

/* Logs a guest mistake (rate-limited) and evaluates to the response type for it. */
#define VGB_GUEST_ERR(type, ...)                                              \
	({                                                                    \
		vgb_log_ratelimited(VGB_LOG_WARN, "guest: " __VA_ARGS__);      \
		(uint32_t)(type);                                             \
	})

/*
 * Decodes @len bytes at @bytes (@len >= sizeof(struct virtio_gpu_ctrl_hdr)) into @ret.
 * Returns 0, or the VIRTIO_GPU_RESP_ERR_* the command deserves (logged once, rate-limited,
 * naming the bad value): ERR_UNSPEC for an unknown type, ERR_INVALID_PARAMETER for a
 * truncated or malformed command. The header fields of @ret are filled either way.
 */
uint32_t vgb_gpu_decode(const void *bytes, size_t len, const struct vgb_gpu_decode_limits *lim,
			struct vgb_gpu_cmd *ret);

/* Whether @type is a command this decoder knows. */
bool vgb_gpu_decode_is_known(uint32_t type);

/*
 * Bytes of the OK response of a @len-byte command of @type: a header for most commands, for
 * unknown types and for commands too short to answer anything else. GET_CAPSET's depends on
 * the capset: the header is its minimum.
 */
size_t vgb_gpu_decode_ok_resp_size(uint32_t type, size_t len);

#endif
