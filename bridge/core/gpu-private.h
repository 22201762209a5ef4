/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_GPU_PRIVATE_H
#define VGB_BRIDGE_GPU_PRIVATE_H

/*
 * What the files of the gpu processor share. gpu-state.c (resource table, guest blob
 * exports, scanout bindings, frames in flight, the fence queue) is below the command files:
 * gpu.c (lifetime, dispatch, resource commands), gpu-scanout.c (scanouts, flushes, the
 * cursor) and gpu-3d.c (contexts and the 3D commands). Calls go down only, never between
 * command files except from gpu.c's dispatch table. Not for anything outside
 * bridge/core/gpu*.c.
 */

#include <linux/virtio_gpu.h>

#include "decode.h"
#include "gpu.h"
#include "renderer.h"

struct resource {
	uint32_t id;
	/* A guest blob (BLOB_MEM_GUEST): memory the processor exports itself. Every other
	 * resource belongs to the renderer (@rr). */
	bool is_blob;
	struct vgb_renderer_resource *rr;
	/* guest blob */
	struct vgb_blob_layout *layout;  /* NULL once a window it used was removed */
	bool invalid;
	uint64_t gen_key;                /* sum of the generations of its VFIO devices */
	bool warned;                     /* an unexpected export failure was logged */
	/* layout of the last SET_SCANOUT_BLOB that showed it, for vgb_gpu_export_blob() */
	uint32_t last_fourcc, last_width, last_height, last_stride, last_offset;
	struct vgb_export *exp;          /* the current export (NULL after a drop) */
	uint64_t size;
	/* what the current export's CPU view was charged against the client's budgets */
	uint64_t charged_bytes;
	size_t charged_mmaps;
	/* Reading its memory failed with -EIO (a BAR whose memory decode the guest turned off,
	 * a view faulting in the sink's guarded copy): re-plan on next use, never keep it. */
	bool faulted;
};

struct scanout {
	bool enabled;
	uint32_t resource_id;
	struct vgb_rect r;
	/* guest blobs: byte offset of (r.x, r.y) in the blob, row stride, format */
	uint64_t offset;
	uint32_t stride, fourcc;
	uint64_t buffer_id;               /* 0 when none was handed out yet */
	const struct vgb_export *id_for;  /* the export buffer_id was handed out for */
};

/* A fenced command whose response is held back. */
struct pending {
	struct pending *next;
	uint64_t cookie;
	uint64_t timeline;
	uint64_t deadline_ns;
	unsigned outstanding; /* frames the display has not completed */
	uint64_t gpu_seq;     /* renderer fence still to signal; 0: none */
	uint32_t ctx_id, ring_idx;
	bool ready;
	size_t len;
	uint8_t resp[VGB_GPU_MAX_RESP];
};

/* One presented frame, owned by the display until it calls frame_done(). */
struct frame_token {
	struct frame_token *prev, *next;
	struct vgb_gpu *gpu; /* NULL once the gpu is gone */
	struct pending *p;   /* NULL when unfenced, timed out or the gpu is gone */
	struct vgb_export *exp;
	struct vgb_cpu_view cpu;
	struct vgb_dmabuf dmabuf; /* fd borrowed from exp: not finished */
};

/* A client context (CTX_CREATE) as the processor knows it. */
#define VGB_GPU_MAX_CONTEXTS 64u

struct vgb_gpu {
	struct vgb_memmap *map;
	struct vgb_gpu_config cfg;
	struct vgb_renderer *renderer;
	struct vgb_renderer_budget budget;
	struct vgb_gpu_decode_limits decode_limits;
	struct resource **res;
	size_t n_res;
	uint32_t ctxs[VGB_GPU_MAX_CONTEXTS];
	unsigned n_ctxs;
	struct scanout scanouts[VIRTIO_GPU_MAX_SCANOUTS];
	struct pending *pending_head, **pending_tail;
	uint64_t next_gpu_seq;
	struct frame_token *tokens;
	bool in_process, delivering;
	struct vgb_gpu_stats stats;
};

/* One command in flight through the processor. */
struct cmd_ctx {
	struct vgb_gpu *gpu;
	struct vgb_gpu_cmd *cmd;
	size_t len;            /* of the whole message */
	struct pending *fence; /* when fenced: frames presented by this command count here */
	uint8_t *resp;
	size_t resp_cap;
	size_t resp_len;       /* set by commands whose OK response is more than a header */
};

/* gpu-state.c: below every command file */
struct resource *vgb_gpu_find_res(struct vgb_gpu *gpu, uint32_t id);
void vgb_gpu_free_res(struct vgb_gpu *gpu, struct resource *res);
uint32_t vgb_gpu_check_new_id(struct vgb_gpu *gpu, uint32_t id);
int vgb_gpu_add_res(struct vgb_gpu *gpu, struct resource *res);
void vgb_gpu_remove_res(struct vgb_gpu *gpu, struct resource *res);
int vgb_gpu_ensure_export(struct vgb_gpu *gpu, struct resource *res);
void vgb_gpu_drop_export(struct vgb_gpu *gpu, struct resource *res);
uint32_t vgb_gpu_host_err(int r);
/* The response for a renderer's -errno on @what (logged once, rate-limited). */
uint32_t vgb_gpu_renderer_err(int r, const char *what, uint32_t id);
void vgb_gpu_deliver(struct vgb_gpu *gpu);
void vgb_gpu_unlink_pending(struct vgb_gpu *gpu, struct pending *p);
bool vgb_gpu_is_head_of_timeline(struct vgb_gpu *gpu, const struct pending *p);
/* Its response is written and nothing (frame, renderer fence) holds it back. */
bool vgb_gpu_pending_is_ready(const struct pending *p);
uint32_t vgb_gpu_check_scanout(struct vgb_gpu *gpu, uint32_t s);
void vgb_gpu_disable_scanout(struct vgb_gpu *gpu, unsigned s);
void vgb_gpu_forget_buffers(struct vgb_gpu *gpu, uint32_t res_id);
void vgb_gpu_mark_faulted(struct vgb_gpu *gpu, const struct vgb_export *exp);
/* Detaches every frame the display holds from @gpu and its fences. */
void vgb_gpu_detach_frames(struct vgb_gpu *gpu);
/* Forgets every frame's link to @p (it completes without them). */
void vgb_gpu_unlink_frames(struct vgb_gpu *gpu, const struct pending *p);
void vgb_gpu_unlink_token(struct vgb_gpu *gpu, struct frame_token *t);

/* gpu-scanout.c */
uint32_t vgb_gpu_cmd_get_display_info(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_get_edid(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_set_scanout(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_set_scanout_blob(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_flush(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_update_cursor(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_move_cursor(struct cmd_ctx *c);

/* gpu-3d.c */
bool vgb_gpu_has_ctx(struct vgb_gpu *gpu, uint32_t ctx_id);
void vgb_gpu_destroy_ctxs(struct vgb_gpu *gpu);
uint32_t vgb_gpu_cmd_ctx_create(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_ctx_destroy(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_ctx_attach(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_ctx_detach(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_create_3d(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_transfer_3d(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_submit_3d(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_get_capset_info(struct cmd_ctx *c);
uint32_t vgb_gpu_cmd_get_capset(struct cmd_ctx *c);

#endif
