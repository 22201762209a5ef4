/* SPDX-License-Identifier: MIT */
/*
 * The gpu processor: lifetime, the dispatch of decoded commands, the resource commands and
 * fence bookkeeping per command. The state every command file shares is in gpu-state.c,
 * scanouts in gpu-scanout.c, contexts in gpu-3d.c, pixels behind the renderer seam
 * (renderer.h), wire bytes in decode.c.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <drm_fourcc.h>

#include "blob.h"
#include "gpu-private.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

_Static_assert(sizeof(struct virtio_gpu_resp_edid) <= VGB_GPU_MAX_RESP &&
		       sizeof(struct virtio_gpu_resp_display_info) <= VGB_GPU_MAX_RESP,
	       "VGB_GPU_MAX_RESP holds every fixed-size response");

const char *vgb_gpu_cmd_stat_name(unsigned i)
{
	static const char *const names[VGB_GPU_STAT_COUNT] = {
		"get-display-info", "resource-create-2d", "resource-unref", "set-scanout",
		"resource-flush", "transfer-to-host-2d", "attach-backing", "detach-backing",
		"resource-create-blob", "set-scanout-blob", "update-cursor", "move-cursor", "other",
		"get-edid",
	};
	return i < VGB_GPU_STAT_COUNT ? names[i] : NULL;
}

void vgb_gpu_limits_init(struct vgb_gpu_limits *ret)
{
	*ret = (struct vgb_gpu_limits){
		.max_entries = VGB_BLOB_DEFAULT_MAX_ENTRIES,
		.max_blob_bytes = VGB_BLOB_DEFAULT_MAX_BYTES,
		.max_resources = 1024,
		.max_host_bytes = 1ull << 30,
		.max_view_mmaps = 8192,
		.num_scanouts = 1,
		.display_width = 1280,
		.display_height = 800,
		.fence_timeout_ms = 20,
	};
}

/* ---- resources ---- */

/* Memory-map listener: blobs and backings that use window @w become invalid. */
static void on_window_removed(void *data, struct vgb_memmap *map,
			      const struct vgb_memmap_window *w)
{
	struct vgb_gpu *gpu = data;

	(void)map;
	for (size_t i = 0; i < gpu->n_res; i++) {
		struct resource *res = gpu->res[i];

		if (res->rr)
			gpu->renderer->ops->window_removed(gpu->renderer, res->rr, w->id);
		if (!res->is_blob || !res->layout || !vgb_blob_layout_uses_window(res->layout, w->id))
			continue;
		for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
			if (gpu->scanouts[s].enabled && gpu->scanouts[s].resource_id == res->id)
				vgb_gpu_disable_scanout(gpu, s);
		/* Frames in flight keep their own references to the export. */
		vgb_gpu_drop_export(gpu, res);
		free(res->layout);
		res->layout = NULL;
		res->invalid = true;
		gpu->stats.blobs_invalidated++;
	}
}

/* ---- fences ---- */

static uint64_t timeline_of(const struct vgb_gpu_cmd *cmd)
{
	return ((uint64_t)cmd->ctx_id << 8) | cmd->ring_idx;
}

/* The renderer finished the work before fence @seq of timeline (@ctx_id, @ring_idx). */
static void on_renderer_fence(void *data, uint32_t ctx_id, uint32_t ring_idx, uint64_t seq)
{
	struct vgb_gpu *gpu = data;

	for (struct pending *p = gpu->pending_head; p; p = p->next)
		if (p->gpu_seq && p->gpu_seq <= seq && p->ctx_id == ctx_id &&
		    p->ring_idx == ring_idx)
			p->gpu_seq = 0;
	if (!gpu->in_process)
		vgb_gpu_deliver(gpu);
}

static bool renderer_busy(struct vgb_gpu *gpu)
{
	for (struct pending *p = gpu->pending_head; p; p = p->next)
		if (p->gpu_seq)
			return true;
	return false;
}

int vgb_gpu_next_timeout_ms(struct vgb_gpu *gpu)
{
	uint64_t now = vgb_now_ns(), first = UINT64_MAX;

	for (struct pending *p = gpu->pending_head; p; p = p->next)
		if (!p->ready && p->deadline_ns < first)
			first = p->deadline_ns;
	/* Renderer fences are polled: their work usually ends within a millisecond or two. */
	if (renderer_busy(gpu))
		first = VGB_MIN(first, now + 1000000u);
	if (first == UINT64_MAX)
		return -1;
	if (first <= now)
		return 0;
	return (int)VGB_MIN((first - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

void vgb_gpu_dispatch_timeouts(struct vgb_gpu *gpu)
{
	uint64_t now = vgb_now_ns();

	if (gpu->renderer->ops->poll && renderer_busy(gpu))
		gpu->renderer->ops->poll(gpu->renderer);
	for (struct pending *p = gpu->pending_head; p; p = p->next) {
		if (p->ready || p->deadline_ns > now)
			continue;
		p->ready = true;
		gpu->stats.fences_timed_out++;
		vgb_gpu_unlink_frames(gpu, p);
	}
	vgb_gpu_deliver(gpu);
}

/* ---- commands ---- */

static uint32_t cmd_create_2d(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->create_2d) *m = &c->cmd->create_2d;
	struct vgb_gpu *gpu = c->gpu;
	struct resource *res;
	uint32_t err;
	int r;

	if ((err = vgb_gpu_check_new_id(gpu, m->resource_id)))
		return err;
	res = calloc(1, sizeof(*res));
	if (!res)
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	res->id = m->resource_id;
	r = gpu->renderer->ops->resource_create_2d(gpu->renderer, m->fourcc, m->width, m->height,
						   &res->rr);
	if (r == -ENOMEM) {
		free(res);
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
				     "2D resource %ux%u too big", m->width, m->height);
	}
	if (r == 0)
		r = vgb_gpu_add_res(gpu, res);
	if (r < 0) {
		if (res->rr)
			gpu->renderer->ops->resource_destroy(gpu->renderer, res->rr);
		free(res);
		return vgb_gpu_host_err(r);
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_unref(struct cmd_ctx *c)
{
	uint32_t id = c->cmd->resource.resource_id;
	struct resource *res = vgb_gpu_find_res(c->gpu, id);

	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "unref of %u", id);
	vgb_gpu_remove_res(c->gpu, res);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Translates @n inline entries (checked by the decoder to lie inside the message). */
static uint32_t translate_entries(struct cmd_ctx *c, const void *entries, uint32_t n,
				  uint64_t size, struct vgb_blob_layout **ret)
{
	const struct vgb_gpu_limits *l = &c->gpu->cfg.limits;
	int r;

	/* The entries stay in the caller's buffer; the translator reads them unaligned. */
	r = vgb_blob_translate(c->gpu->map, entries, n, size, l->max_entries, l->max_blob_bytes,
			       ret);
	if (r == -ENOMEM)
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	if (r < 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "bad entries: %s",
				     strerror(-r));
	return 0;
}

static uint32_t cmd_attach_backing(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->attach) *m = &c->cmd->attach;
	struct resource *res = vgb_gpu_find_res(c->gpu, m->resource_id);
	struct vgb_renderer *rd = c->gpu->renderer;
	struct vgb_blob_layout *layout;
	uint32_t err, n_segs, merged;
	int r;

	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "attach to %u",
				     m->resource_id);
	if (res->is_blob)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "attach to blob %u",
				     res->id);
	err = translate_entries(c, m->entries, m->nr_entries, 0, &layout);
	if (err)
		return err;
	n_segs = (uint32_t)layout->n_segs;
	merged = (uint32_t)layout->merged;
	r = rd->ops->attach_backing(rd, res->rr, layout);
	if (r == -EBUSY)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "resource %u has backing", res->id);
	if (r < 0)
		return vgb_gpu_renderer_err(r, "attach to", res->id);
	c->gpu->stats.blob_segments += n_segs;
	c->gpu->stats.segments_merged += merged;
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_detach_backing(struct cmd_ctx *c)
{
	uint32_t id = c->cmd->resource.resource_id;
	struct resource *res = vgb_gpu_find_res(c->gpu, id);
	int r;

	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "detach from %u", id);
	if (res->is_blob)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "detach from blob %u",
				     id);
	r = c->gpu->renderer->ops->detach_backing(c->gpu->renderer, res->rr);
	if (r == -ENODATA)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "resource %u has no backing", id);
	return r < 0 ? vgb_gpu_renderer_err(r, "detach from", id) : VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_transfer_2d(struct cmd_ctx *c)
{
	const struct vgb_gpu_transfer *t = &c->cmd->transfer;
	struct resource *res = vgb_gpu_find_res(c->gpu, t->resource_id);
	struct vgb_renderer *rd = c->gpu->renderer;
	int r;

	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "transfer to %u",
				     t->resource_id);
	if (res->is_blob)
		return VIRTIO_GPU_RESP_OK_NODATA; /* guest blobs are the memory: nothing to do */
	if ((uint64_t)t->box.x + t->box.w > res->rr->width ||
	    (uint64_t)t->box.y + t->box.h > res->rr->height)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "transfer rect outside %u", res->id);
	r = rd->ops->transfer_to_host(rd, 0, res->rr, t);
	if (r == -ENODATA)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "transfer to %u without backing",
				     res->id);
	if (r == -EINVAL)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "transfer reaches past the backing of %u", res->id);
	if (r < 0) {
		vgb_log_ratelimited(VGB_LOG_WARN, "transfer to %u: %s", res->id, strerror(-r));
		return vgb_gpu_host_err(r);
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_create_blob(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->create_blob) *m = &c->cmd->create_blob;
	struct vgb_gpu *gpu = c->gpu;
	struct vgb_blob_layout *layout;
	struct resource *res;
	uint32_t err;
	int r;

	if ((err = vgb_gpu_check_new_id(gpu, m->resource_id)))
		return err;
	/* HOST3D blobs would be the renderer's; no renderer offers them yet. */
	if (m->blob_mem != VIRTIO_GPU_BLOB_MEM_GUEST)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "blob_mem %u (this renderer has guest blobs only)",
				     m->blob_mem);
	err = translate_entries(c, m->entries, m->nr_entries, m->size, &layout);
	if (err)
		return err;
	res = calloc(1, sizeof(*res));
	if (!res) {
		free(layout);
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	}
	res->id = m->resource_id;
	res->is_blob = true;
	res->layout = layout;
	res->size = layout->size;
	r = vgb_gpu_add_res(gpu, res);
	if (r < 0) {
		free(res->layout);
		free(res);
		return vgb_gpu_host_err(r);
	}
	gpu->stats.blob_segments += layout->n_segs;
	gpu->stats.segments_merged += layout->merged;
	/* Plan now: the VMM may ask for the dmabuf before any scanout shows the blob. With
	 * memory decode off (-EIO) the blob is still valid: it is planned on first use. */
	r = vgb_gpu_ensure_export(gpu, res);
	if (r < 0 && r != -EIO) {
		vgb_gpu_remove_res(gpu, res);
		return vgb_gpu_host_err(r);
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

struct cmd_desc {
	uint32_t type;
	unsigned stat;
	uint32_t (*fn)(struct cmd_ctx *c);
	bool needs_3d; /* answered only by a renderer with contexts */
};

static const struct cmd_desc cmds[] = {
	{ VIRTIO_GPU_CMD_GET_DISPLAY_INFO, VGB_GPU_STAT_GET_DISPLAY_INFO,
	  vgb_gpu_cmd_get_display_info, false },
	{ VIRTIO_GPU_CMD_GET_EDID, VGB_GPU_STAT_GET_EDID, vgb_gpu_cmd_get_edid, false },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, VGB_GPU_STAT_RESOURCE_CREATE_2D, cmd_create_2d,
	  false },
	{ VIRTIO_GPU_CMD_RESOURCE_UNREF, VGB_GPU_STAT_RESOURCE_UNREF, cmd_unref, false },
	{ VIRTIO_GPU_CMD_SET_SCANOUT, VGB_GPU_STAT_SET_SCANOUT, vgb_gpu_cmd_set_scanout, false },
	{ VIRTIO_GPU_CMD_RESOURCE_FLUSH, VGB_GPU_STAT_RESOURCE_FLUSH, vgb_gpu_cmd_flush, false },
	{ VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, VGB_GPU_STAT_TRANSFER_TO_HOST_2D, cmd_transfer_2d,
	  false },
	{ VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, VGB_GPU_STAT_ATTACH_BACKING, cmd_attach_backing,
	  false },
	{ VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, VGB_GPU_STAT_DETACH_BACKING, cmd_detach_backing,
	  false },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, VGB_GPU_STAT_RESOURCE_CREATE_BLOB, cmd_create_blob,
	  false },
	{ VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, VGB_GPU_STAT_SET_SCANOUT_BLOB,
	  vgb_gpu_cmd_set_scanout_blob, false },
	{ VIRTIO_GPU_CMD_UPDATE_CURSOR, VGB_GPU_STAT_UPDATE_CURSOR, vgb_gpu_cmd_update_cursor,
	  false },
	{ VIRTIO_GPU_CMD_MOVE_CURSOR, VGB_GPU_STAT_MOVE_CURSOR, vgb_gpu_cmd_move_cursor, false },
	{ VIRTIO_GPU_CMD_CTX_CREATE, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_ctx_create, true },
	{ VIRTIO_GPU_CMD_CTX_DESTROY, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_ctx_destroy, true },
	{ VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_ctx_attach, true },
	{ VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_ctx_detach, true },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_3D, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_create_3d, true },
	{ VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_transfer_3d, true },
	{ VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_transfer_3d,
	  true },
	{ VIRTIO_GPU_CMD_SUBMIT_3D, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_submit_3d, true },
	{ VIRTIO_GPU_CMD_GET_CAPSET_INFO, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_get_capset_info, true },
	{ VIRTIO_GPU_CMD_GET_CAPSET, VGB_GPU_STAT_OTHER, vgb_gpu_cmd_get_capset, true },
};

/* The command's handler, or NULL when this gpu does not offer it (a 3D command without a
 * renderer that has contexts). */
static const struct cmd_desc *find_cmd(struct vgb_gpu *gpu, uint32_t type)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cmds); i++)
		if (cmds[i].type == type)
			return cmds[i].needs_3d && !gpu->renderer->ops->ctx_create ? NULL
										   : &cmds[i];
	return NULL;
}

/* Response header: the spec's rules for echoing fence and ring fields. */
static void fill_resp_hdr(struct virtio_gpu_ctrl_hdr *out, const struct vgb_gpu_cmd *in,
			  uint32_t type)
{
	memset(out, 0, sizeof(*out));
	out->type = htole32(type);
	if (in->flags & VIRTIO_GPU_FLAG_FENCE) {
		uint32_t f = VIRTIO_GPU_FLAG_FENCE;

		out->fence_id = htole64(in->fence_id);
		out->ctx_id = htole32(in->ctx_id);
		if (in->flags & VIRTIO_GPU_FLAG_INFO_RING_IDX) {
			f |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
			out->ring_idx = in->ring_idx;
		}
		out->flags = htole32(f);
	}
}

/* Queues a fence for @cmd. Returns it, or NULL (out of memory). */
static struct pending *queue_fence(struct vgb_gpu *gpu, const struct vgb_gpu_cmd *cmd,
				   uint64_t cookie)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->cookie = cookie;
	p->timeline = timeline_of(cmd);
	p->ctx_id = cmd->ctx_id;
	p->ring_idx = cmd->ring_idx;
	p->deadline_ns = vgb_now_ns() + (uint64_t)gpu->cfg.limits.fence_timeout_ms * 1000000u;
	*gpu->pending_tail = p;
	gpu->pending_tail = &p->next;
	return p;
}

/*
 * A renderer with fences orders every fenced command after the work submitted before it on
 * its timeline. Without one (or when the renderer cannot fence), the command's own work is
 * all there is to wait for.
 */
static void fence_renderer(struct vgb_gpu *gpu, struct pending *p)
{
	struct vgb_renderer *rd = gpu->renderer;
	uint64_t seq = ++gpu->next_gpu_seq;

	if (!rd->ops->create_fence)
		return;
	p->gpu_seq = seq;
	if (rd->ops->create_fence(rd, p->ctx_id, p->ring_idx, seq) < 0)
		p->gpu_seq = 0;
}

int vgb_gpu_process(struct vgb_gpu *gpu, const void *bytes, size_t len, void *resp,
		    size_t resp_cap, size_t *ret_resp_len, uint64_t cookie)
{
	uint8_t out[VGB_GPU_MAX_RESP];
	const struct cmd_desc *d;
	struct vgb_gpu_cmd cmd;
	struct pending *p = NULL;
	struct cmd_ctx c;
	uint32_t type, rtype;
	size_t need;

	if (!bytes || len < sizeof(struct virtio_gpu_ctrl_hdr))
		return -EINVAL;
	memcpy(&type, bytes, sizeof(type));
	type = le32toh(type);
	d = find_cmd(gpu, type);
	/* Commands that answer more than a header need the room; a truncated one does not. */
	need = d ? vgb_gpu_decode_ok_resp_size(type, len) : sizeof(struct virtio_gpu_ctrl_hdr);
	if (resp_cap < need)
		return -ENOBUFS;

	gpu->stats.commands[d ? d->stat : VGB_GPU_STAT_OTHER]++;
	if (!d) {
		memset(&cmd, 0, sizeof(cmd));
		vgb_gpu_decode(bytes, sizeof(struct virtio_gpu_ctrl_hdr), &gpu->decode_limits, &cmd);
		cmd.type = type;
		rtype = VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "unsupported command %#x", type);
	} else {
		rtype = vgb_gpu_decode(bytes, len, &gpu->decode_limits, &cmd);
	}
	if (cmd.flags & VIRTIO_GPU_FLAG_FENCE) {
		p = queue_fence(gpu, &cmd, cookie);
		if (!p)
			return -ENOMEM;
	}

	c = (struct cmd_ctx){ .gpu = gpu, .cmd = &cmd, .len = len, .fence = p, .resp = out,
			      .resp_cap = VGB_MIN(resp_cap, sizeof(out)),
			      .resp_len = sizeof(struct virtio_gpu_ctrl_hdr) };
	gpu->in_process = true;
	if (d && rtype == 0)
		rtype = d->fn(&c);
	if (p && p->outstanding == 0)
		fence_renderer(gpu, p);
	gpu->in_process = false;
	if (rtype >= VIRTIO_GPU_RESP_ERR_UNSPEC)
		c.resp_len = sizeof(struct virtio_gpu_ctrl_hdr);

	fill_resp_hdr((struct virtio_gpu_ctrl_hdr *)(void *)out, &cmd, rtype);
	if (rtype >= VIRTIO_GPU_RESP_ERR_UNSPEC &&
	    rtype <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER) {
		gpu->stats.errors++;
		gpu->stats.err_by_type[rtype - VIRTIO_GPU_RESP_ERR_UNSPEC]++;
	}
	if (p) {
		memcpy(p->resp, out, c.resp_len);
		p->len = c.resp_len;
		if (p->outstanding == 0)
			p->ready = true;
		if (vgb_gpu_pending_is_ready(p) && vgb_gpu_is_head_of_timeline(gpu, p)) {
			vgb_gpu_unlink_pending(gpu, p);
			free(p);
			p = NULL;
			gpu->stats.fences_completed++;
		}
	}
	/* Frames completed while we were busy may release earlier fences. */
	vgb_gpu_deliver(gpu);
	if (p)
		return 1;
	if (resp_cap < c.resp_len)
		return -ENOBUFS;
	memcpy(resp, out, c.resp_len);
	*ret_resp_len = c.resp_len;
	return 0;
}

/* ---- lifetime and stats ---- */

int vgb_gpu_create(struct vgb_memmap *map, const struct vgb_gpu_config *cfg,
		   struct vgb_gpu **ret)
{
	const struct vgb_gpu_limits *l = &cfg->limits;
	struct vgb_renderer_config rcfg;
	struct vgb_gpu *gpu;
	int r;

	if (!map || l->max_entries == 0 || l->max_blob_bytes == 0 || l->max_resources == 0 ||
	    l->num_scanouts == 0 || l->num_scanouts > VIRTIO_GPU_MAX_SCANOUTS ||
	    l->fence_timeout_ms == 0)
		return -EINVAL;
	gpu = calloc(1, sizeof(*gpu));
	if (!gpu)
		return -ENOMEM;
	gpu->map = map;
	gpu->cfg = *cfg;
	gpu->pending_tail = &gpu->pending_head;
	gpu->budget = (struct vgb_renderer_budget){
		.max_bytes = l->max_blob_bytes, .max_host_bytes = l->max_host_bytes,
		.max_view_mmaps = l->max_view_mmaps,
	};
	gpu->decode_limits = (struct vgb_gpu_decode_limits){
		.max_entries = l->max_entries, .max_submit = VGB_GPU_MAX_SUBMIT,
	};
	rcfg = (struct vgb_renderer_config){
		.budget = &gpu->budget, .fence_signalled = on_renderer_fence, .fence_data = gpu,
	};
	r = vgb_renderer_2d_create(&rcfg, &gpu->renderer);
	if (r < 0) {
		free(gpu);
		return r;
	}
	r = vgb_memmap_add_listener(map, on_window_removed, gpu);
	if (r < 0) {
		vgb_renderer_destroy(gpu->renderer);
		free(gpu);
		return r;
	}
	*ret = gpu;
	return 0;
}

void vgb_gpu_destroy(struct vgb_gpu *gpu)
{
	if (!gpu)
		return;
	vgb_memmap_remove_listener(gpu->map, on_window_removed, gpu);
	/* Detach the frames the display holds first: it may complete them from the calls below. */
	vgb_gpu_detach_frames(gpu);
	while (gpu->pending_head) {
		struct pending *p = gpu->pending_head;

		gpu->pending_head = p->next;
		free(p);
	}
	gpu->pending_tail = &gpu->pending_head;
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
		vgb_gpu_disable_scanout(gpu, s);
	if (gpu->cfg.display)
		for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
			vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s, NULL,
					       0, 0, 0, 0);
	vgb_gpu_destroy_ctxs(gpu);
	for (size_t i = 0; i < gpu->n_res; i++)
		vgb_gpu_free_res(gpu, gpu->res[i]);
	free(gpu->res);
	vgb_renderer_destroy(gpu->renderer);
	free(gpu);
}

int vgb_gpu_export_blob(struct vgb_gpu *gpu, uint32_t resource_id, struct vgb_dmabuf *ret,
			enum vgb_export_strategy *ret_strategy)
{
	struct resource *res = vgb_gpu_find_res(gpu, resource_id);
	struct vgb_dmabuf buf;
	int r, fd;

	if (!res || !res->is_blob)
		return -ENOENT;
	r = vgb_gpu_ensure_export(gpu, res);
	if (ret_strategy)
		*ret_strategy = res->exp ? res->exp->strategy : VGB_EXPORT_NONE;
	if (r < 0)
		return r;
	if (res->exp->dmabuf_fd < 0)
		return -EOPNOTSUPP;
	fd = fcntl(res->exp->dmabuf_fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return -errno;
	vgb_dmabuf_init(&buf);
	buf.width = res->last_width;
	buf.height = res->last_height;
	buf.fourcc = res->last_fourcc;
	buf.modifier = DRM_FORMAT_MOD_LINEAR;
	buf.n_planes = 1;
	buf.offset[0] = res->last_offset;
	buf.stride[0] = res->last_stride;
	buf.fd[0] = fd;
	*ret = buf;
	return 0;
}

void vgb_gpu_get_stats(struct vgb_gpu *gpu, struct vgb_gpu_stats *ret)
{
	*ret = gpu->stats;
	ret->resources = (uint32_t)gpu->n_res;
	ret->copies = gpu->stats.copies + gpu->budget.copies;
	ret->bytes_copied = gpu->stats.bytes_copied + gpu->budget.bytes_copied;
	ret->has_display = gpu->cfg.display != NULL;
	if (gpu->cfg.display)
		vgb_display_get_stats(gpu->cfg.display, &ret->display);
	else
		memset(&ret->display, 0, sizeof(ret->display));
}
