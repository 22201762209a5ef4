/* SPDX-License-Identifier: MIT */
/*
 * Contexts and the 3D commands of the gpu processor. Reached only with a renderer that has
 * contexts (renderer.h): the processor checks the ids it owns (contexts, resources) and
 * hands the rest to the renderer.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpu-private.h"
#include "vgb/log.h"
#include "vgb/util.h"

bool vgb_gpu_has_ctx(struct vgb_gpu *gpu, uint32_t ctx_id)
{
	for (unsigned i = 0; i < gpu->n_ctxs; i++)
		if (gpu->ctxs[i] == ctx_id)
			return true;
	return false;
}

void vgb_gpu_destroy_ctxs(struct vgb_gpu *gpu)
{
	struct vgb_renderer *rd = gpu->renderer;

	while (gpu->n_ctxs)
		rd->ops->ctx_destroy(rd, gpu->ctxs[--gpu->n_ctxs]);
}

static uint32_t check_ctx(struct vgb_gpu *gpu, uint32_t ctx_id, const char *what)
{
	if (!vgb_gpu_has_ctx(gpu, ctx_id))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "%s: unknown context %u",
				     what, ctx_id);
	return 0;
}

/* The renderer resource @id names, or an error for a missing one or a guest blob. */
static uint32_t find_renderer_res(struct vgb_gpu *gpu, uint32_t id, const char *what,
				  struct resource **ret)
{
	struct resource *res = vgb_gpu_find_res(gpu, id);

	if (!res || !res->rr)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
				     "%s: no renderer resource %u", what, id);
	*ret = res;
	return 0;
}

uint32_t vgb_gpu_cmd_ctx_create(struct cmd_ctx *c)
{
	struct vgb_gpu *gpu = c->gpu;
	uint32_t id = c->cmd->ctx_id;
	int r;

	if (id == 0 || vgb_gpu_has_ctx(gpu, id))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "CTX_CREATE of context %u (%s)", id, id ? "exists" : "reserved");
	if (gpu->n_ctxs >= VGB_GPU_MAX_CONTEXTS)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, "over %u contexts",
				     VGB_GPU_MAX_CONTEXTS);
	r = gpu->renderer->ops->ctx_create(gpu->renderer, id, c->cmd->ctx_create.context_init,
					   c->cmd->ctx_create.name);
	if (r < 0)
		return vgb_gpu_renderer_err(r, "CTX_CREATE of context", id);
	gpu->ctxs[gpu->n_ctxs++] = id;
	return VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_ctx_destroy(struct cmd_ctx *c)
{
	struct vgb_gpu *gpu = c->gpu;
	uint32_t id = c->cmd->ctx_id, err;

	if ((err = check_ctx(gpu, id, "CTX_DESTROY")))
		return err;
	for (unsigned i = 0; i < gpu->n_ctxs; i++) {
		if (gpu->ctxs[i] == id) {
			gpu->ctxs[i] = gpu->ctxs[--gpu->n_ctxs];
			break;
		}
	}
	gpu->renderer->ops->ctx_destroy(gpu->renderer, id);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t ctx_resource(struct cmd_ctx *c, bool attach)
{
	const char *what = attach ? "CTX_ATTACH_RESOURCE" : "CTX_DETACH_RESOURCE";
	struct vgb_renderer *rd = c->gpu->renderer;
	uint32_t id = c->cmd->resource.resource_id, err;
	struct resource *res;
	int r;

	if ((err = check_ctx(c->gpu, c->cmd->ctx_id, what)) ||
	    (err = find_renderer_res(c->gpu, id, what, &res)))
		return err;
	if (!attach) {
		rd->ops->ctx_detach(rd, c->cmd->ctx_id, res->rr);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	r = rd->ops->ctx_attach(rd, c->cmd->ctx_id, res->rr);
	return r < 0 ? vgb_gpu_renderer_err(r, what, id) : VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_ctx_attach(struct cmd_ctx *c)
{
	return ctx_resource(c, true);
}

uint32_t vgb_gpu_cmd_ctx_detach(struct cmd_ctx *c)
{
	return ctx_resource(c, false);
}

uint32_t vgb_gpu_cmd_create_3d(struct cmd_ctx *c)
{
	const struct vgb_gpu_create_3d *a = &c->cmd->create_3d;
	struct vgb_renderer *rd = c->gpu->renderer;
	struct resource *res;
	uint32_t err;
	int r;

	if ((err = vgb_gpu_check_new_id(c->gpu, a->resource_id)))
		return err;
	res = calloc(1, sizeof(*res));
	if (!res)
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	res->id = a->resource_id;
	r = rd->ops->resource_create_3d(rd, a, &res->rr);
	if (r == 0)
		r = vgb_gpu_add_res(c->gpu, res);
	if (r < 0) {
		if (res->rr)
			rd->ops->resource_destroy(rd, res->rr);
		free(res);
		return vgb_gpu_renderer_err(r, "RESOURCE_CREATE_3D of", a->resource_id);
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_transfer_3d(struct cmd_ctx *c)
{
	bool to_host = c->cmd->type == VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D;
	const char *what = to_host ? "TRANSFER_TO_HOST_3D" : "TRANSFER_FROM_HOST_3D";
	const struct vgb_gpu_transfer *t = &c->cmd->transfer;
	struct vgb_renderer *rd = c->gpu->renderer;
	uint32_t ctx_id = c->cmd->ctx_id, err;
	struct resource *res;
	int r;

	if ((err = find_renderer_res(c->gpu, t->resource_id, what, &res)))
		return err;
	/* Context 0 is the device's own: transfers need no guest context. */
	if (ctx_id && (err = check_ctx(c->gpu, ctx_id, what)))
		return err;
	r = to_host ? rd->ops->transfer_to_host(rd, ctx_id, res->rr, t)
		    : rd->ops->transfer_from_host(rd, ctx_id, res->rr, t);
	if (r == -ENODATA)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "%s of %u without backing", what,
				     t->resource_id);
	return r < 0 ? vgb_gpu_renderer_err(r, what, t->resource_id) : VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_submit_3d(struct cmd_ctx *c)
{
	struct vgb_renderer *rd = c->gpu->renderer;
	uint32_t ctx_id = c->cmd->ctx_id, err;
	int r;

	if ((err = check_ctx(c->gpu, ctx_id, "SUBMIT_3D")))
		return err;
	r = rd->ops->submit_3d(rd, ctx_id, c->cmd->submit.data, c->cmd->submit.size);
	return r < 0 ? vgb_gpu_renderer_err(r, "SUBMIT_3D on context", ctx_id)
		     : VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_get_capset_info(struct cmd_ctx *c)
{
	struct virtio_gpu_resp_capset_info *out = (void *)c->resp;
	struct vgb_renderer *rd = c->gpu->renderer;
	uint32_t index = c->cmd->capset_info.index, id, ver, size;

	if (rd->ops->get_capset_info(rd, index, &id, &ver, &size) < 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "capset index %u",
				     index);
	memset(out, 0, sizeof(*out));
	out->capset_id = htole32(id);
	out->capset_max_version = htole32(ver);
	out->capset_max_size = htole32(size);
	c->resp_len = sizeof(*out);
	return VIRTIO_GPU_RESP_OK_CAPSET_INFO;
}

uint32_t vgb_gpu_cmd_get_capset(struct cmd_ctx *c)
{
	struct virtio_gpu_resp_capset *out = (void *)c->resp;
	struct vgb_renderer *rd = c->gpu->renderer;
	uint32_t id = c->cmd->capset.id, ver = c->cmd->capset.version;
	int n;

	n = rd->ops->get_capset(rd, id, ver, out->capset_data, c->resp_cap - sizeof(*out));
	if (n == -ENOBUFS) {
		vgb_log_ratelimited(VGB_LOG_WARN, "capset %u v%u: no room for it in %zu bytes",
				    id, ver, c->resp_cap);
		return VIRTIO_GPU_RESP_ERR_UNSPEC;
	}
	if (n < 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "capset %u version %u",
				     id, ver);
	c->resp_len = sizeof(*out) + (size_t)n;
	return VIRTIO_GPU_RESP_OK_CAPSET;
}
