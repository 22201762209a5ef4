/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_RENDERER_H
#define VGB_BRIDGE_RENDERER_H

/*
 * The renderer seam of the gpu processor. The processor (gpu.c) owns the client's resource
 * ids, scanouts, guest blobs and fences; a renderer owns the pixels of the resources it
 * creates: their host storage, their guest backing, transfers between the two, 3D contexts
 * and command streams, and the image a scanout of such a resource shows.
 *
 * Two implementations: render-2d.c (host memory, CPU copies; no 3D) and renderer-virgl.c
 * (virglrenderer). A renderer never sees wire bytes: the decoder (decode.h) has checked and
 * converted every field, and the processor has checked everything its tables know (that an
 * id exists, that a rectangle lies inside the resource's size).
 *
 * Errors follow one convention, so the processor can answer the guest: -EINVAL (the guest's
 * mistake: ERR_INVALID_PARAMETER), -ENOENT (an unknown context or a resource the context
 * does not see: ERR_INVALID_RESOURCE_ID), -ENOMEM (ERR_OUT_OF_MEMORY), -EOPNOTSUPP (not
 * offered by this renderer), anything else ERR_UNSPEC. The renderer logs guest mistakes
 * itself (rate-limited); the processor logs nothing more for them.
 *
 * Called only from the thread that runs the gpu; never re-entered.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"
#include "decode.h"
#include "export.h"

struct vgb_renderer;

/*
 * What a client may use, shared between the processor and its renderer: the renderer
 * charges what it allocates and releases it when it frees it.
 */
struct vgb_renderer_budget {
	uint64_t max_bytes;        /* per 2D resource or blob */
	uint64_t max_host_bytes;   /* host memory of the client */
	uint64_t host_bytes;
	uint32_t max_view_mmaps;   /* mmaps held by the client's CPU views and mapped backings */
	size_t view_mmaps;
	/* Counters the processor reports in its stats. */
	uint64_t copies, bytes_copied;
};

/* Room left under a cap (0 when over it). */
static inline uint64_t vgb_renderer_budget_left(uint64_t max, uint64_t used)
{
	return used < max ? max - used : 0;
}

/*
 * A renderer's resource, embedded as `base` in the renderer's own struct. Filled by the
 * create op; the processor reads it and never writes it.
 */
struct vgb_renderer_resource {
	uint32_t width, height;
	uint32_t fourcc;   /* DRM fourcc of what a scanout shows; 0: cannot be scanned out */
	bool is_3d;        /* created by RESOURCE_CREATE_3D or as a HOST3D blob */
};

/*
 * What a scanout of a resource reads: an export (borrowed: the processor takes its own
 * reference for each frame) whose CPU view holds the image, top row first, @stride bytes
 * apart, starting at @offset.
 */
struct vgb_renderer_image {
	struct vgb_export *exp;
	uint64_t offset;
	uint32_t stride;
};

/*
 * Called by the renderer when every fence up to @seq (a value the processor passed to
 * create_fence) has signalled on the timeline it was created on. May run inside
 * create_fence, submit_3d or poll; never inside destroy. Must not call back into the renderer.
 */
typedef void (*vgb_renderer_fence_fn)(void *data, uint32_t ctx_id, uint32_t ring_idx,
				      uint64_t seq);

struct vgb_renderer_config {
	struct vgb_renderer_budget *budget; /* borrowed; outlives the renderer */
	vgb_renderer_fence_fn fence_signalled;
	void *fence_data;
	const char *render_node;            /* may be NULL: no GPU (3D renderers only) */
};

struct vgb_renderer_ops {
	const char *name;   /* "2d", "virgl": what STATS shows */

	/* Frees every resource and context it still has. */
	void (*destroy)(struct vgb_renderer *r);

	/*
	 * RESOURCE_CREATE_2D of @w x @h pixels of @fourcc (non-zero sizes, a known format).
	 * Returns 0 and a new resource, -ENOMEM (over the budget or out of memory), -EOPNOTSUPP.
	 */
	int (*resource_create_2d)(struct vgb_renderer *r, uint32_t fourcc, uint32_t w, uint32_t h,
				  struct vgb_renderer_resource **ret);
	/* RESOURCE_CREATE_3D (NULL when the renderer has no 3D). Same returns. */
	int (*resource_create_3d)(struct vgb_renderer *r, const struct vgb_gpu_create_3d *args,
				  struct vgb_renderer_resource **ret);
	/* Frees @res (never NULL), its backing and whatever it was charged. */
	void (*resource_destroy)(struct vgb_renderer *r, struct vgb_renderer_resource *res);

	/*
	 * RESOURCE_ATTACH_BACKING: @layout is the translated guest memory. Takes ownership of
	 * @layout, on failure too. Returns 0, -EBUSY (a backing is attached), -EINVAL.
	 */
	int (*attach_backing)(struct vgb_renderer *r, struct vgb_renderer_resource *res,
			      struct vgb_blob_layout *layout);
	/* RESOURCE_DETACH_BACKING. Returns 0 or -ENODATA (none attached). */
	int (*detach_backing)(struct vgb_renderer *r, struct vgb_renderer_resource *res);
	/* A memory window went away: drops @res's backing if it used window @window_id. */
	void (*window_removed)(struct vgb_renderer *r, struct vgb_renderer_resource *res,
			       uint32_t window_id);

	/*
	 * TRANSFER_TO_HOST_2D/3D: guest backing → host storage. @ctx_id is 0 for 2D. The box
	 * of a 2D transfer lies inside the resource (checked by the processor).
	 * Returns 0, -ENODATA (no backing), -EINVAL (reaches past the backing or the resource),
	 * -EIO (the backing could not be read).
	 */
	int (*transfer_to_host)(struct vgb_renderer *r, uint32_t ctx_id,
				struct vgb_renderer_resource *res, const struct vgb_gpu_transfer *t);
	/* TRANSFER_FROM_HOST_3D: host storage → guest backing (NULL without 3D). */
	int (*transfer_from_host)(struct vgb_renderer *r, uint32_t ctx_id,
				  struct vgb_renderer_resource *res,
				  const struct vgb_gpu_transfer *t);

	/*
	 * Makes rectangle @rect of @res current in the image a scanout reads, and describes
	 * that image in @ret. For the 2D renderer the image is the host storage (no work); a
	 * 3D renderer reads the rectangle back from the GPU (one copy). Returns 0 or -errno.
	 */
	int (*scanout_image)(struct vgb_renderer *r, struct vgb_renderer_resource *res,
			     const struct vgb_rect *rect, struct vgb_renderer_image *ret);

	/* ---- 3D: NULL in a renderer without contexts ---- */

	/* CTX_CREATE of client context @ctx_id (non-zero, not live). Returns 0, -EINVAL. */
	int (*ctx_create)(struct vgb_renderer *r, uint32_t ctx_id, uint32_t context_init,
			  const char *name);
	void (*ctx_destroy)(struct vgb_renderer *r, uint32_t ctx_id);
	int (*ctx_attach)(struct vgb_renderer *r, uint32_t ctx_id,
			  struct vgb_renderer_resource *res);
	void (*ctx_detach)(struct vgb_renderer *r, uint32_t ctx_id,
			   struct vgb_renderer_resource *res);
	/*
	 * SUBMIT_3D: @len bytes (whole dwords) of the context's command stream, borrowed for
	 * the call. Returns 0, -EINVAL (the renderer refused the stream).
	 */
	int (*submit_3d)(struct vgb_renderer *r, uint32_t ctx_id, const void *cmds, size_t len);
	/* GET_CAPSET_INFO @index. Returns 0 or -EINVAL (no such index). */
	int (*get_capset_info)(struct vgb_renderer *r, uint32_t index, uint32_t *ret_id,
			       uint32_t *ret_max_version, uint32_t *ret_max_size);
	/* GET_CAPSET: writes at most @cap bytes. Returns the size written, -EINVAL (no such
	 * capset or version) or -ENOBUFS (@cap is too small). */
	int (*get_capset)(struct vgb_renderer *r, uint32_t id, uint32_t version, void *buf,
			  size_t cap);
	/*
	 * Asks for fence_signalled(@ctx_id, @ring_idx, @seq) once the work submitted so far on
	 * that timeline is done. Sequence numbers increase per renderer. Returns 0 or -errno.
	 */
	int (*create_fence)(struct vgb_renderer *r, uint32_t ctx_id, uint32_t ring_idx,
			    uint64_t seq);
	/* Checks for signalled fences (fence_signalled runs from here). */
	void (*poll)(struct vgb_renderer *r);
};

struct vgb_renderer {
	const struct vgb_renderer_ops *ops;
};

/* The 2D software renderer. Returns 0 or -ENOMEM. */
int vgb_renderer_2d_create(const struct vgb_renderer_config *cfg, struct vgb_renderer **ret);

/* Whether this build has the virgl renderer. */
bool vgb_renderer_virgl_is_available(void);

/*
 * The virglrenderer renderer (EGL surfaceless on llvmpipe without a render node, GBM on
 * @cfg->render_node with one). Returns 0, -EOPNOTSUPP (built without virgl), or -errno
 * (virglrenderer did not initialise).
 */
int vgb_renderer_virgl_create(const struct vgb_renderer_config *cfg, struct vgb_renderer **ret);

/* Destroys @r (accepts NULL). */
static inline void vgb_renderer_destroy(struct vgb_renderer *r)
{
	if (r)
		r->ops->destroy(r);
}

#endif
