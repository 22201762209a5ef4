/* SPDX-License-Identifier: MIT */
/*
 * Scanouts of the gpu processor: GET_DISPLAY_INFO, GET_EDID, SET_SCANOUT(_BLOB), flushes
 * that present frames to the display sink and track them until the sink is done, and the
 * cursor.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <drm_fourcc.h>

#include "edid.h"
#include "gpu-private.h"
#include "vgb/log.h"
#include "vgb/mem.h"
#include "vgb/util.h"

#define CURSOR_MAX 64u

/* buffer_id for vgb_frame: unique across every gpu of the process (clients may share a sink). */
static uint64_t next_buffer_id = 1;

static void frame_done(void *data, int status)
{
	struct frame_token *t = data;
	struct vgb_gpu *gpu = t->gpu;

	if (gpu && status == -EIO)
		vgb_gpu_mark_faulted(gpu, t->exp);
	if (gpu) {
		vgb_gpu_unlink_token(gpu, t);
		if (t->p && --t->p->outstanding == 0)
			t->p->ready = true;
	}
	vgb_export_unref(t->exp);
	free(t);
	if (gpu && !gpu->in_process)
		vgb_gpu_deliver(gpu);
}

uint32_t vgb_gpu_cmd_get_display_info(struct cmd_ctx *c)
{
	struct virtio_gpu_resp_display_info *info = (void *)c->resp;
	const struct vgb_gpu_limits *l = &c->gpu->cfg.limits;

	memset(info, 0, sizeof(*info));
	for (unsigned i = 0; i < l->num_scanouts; i++) {
		info->pmodes[i].r.width = htole32(l->display_width);
		info->pmodes[i].r.height = htole32(l->display_height);
		info->pmodes[i].enabled = htole32(1);
	}
	c->resp_len = sizeof(*info);
	return VIRTIO_GPU_RESP_OK_DISPLAY_INFO;
}

/* GET_EDID (VIRTIO_GPU_F_EDID): a generated monitor for each scanout at its configured size. */
uint32_t vgb_gpu_cmd_get_edid(struct cmd_ctx *c)
{
	struct virtio_gpu_resp_edid *out = (void *)c->resp;
	const struct vgb_gpu_limits *l = &c->gpu->cfg.limits;
	uint32_t s = c->cmd->get_edid.scanout_id, err;
	int r;

	if ((err = vgb_gpu_check_scanout(c->gpu, s)))
		return err;
	memset(out, 0, sizeof(*out));
	r = vgb_edid_build(l->display_width, l->display_height, "vgbridge",
			   c->gpu->cfg.scanout_base + s + 1, out->edid);
	if (r < 0) {
		vgb_log_ratelimited(VGB_LOG_WARN, "no EDID for a %ux%u display: %s",
				    l->display_width, l->display_height, strerror(-r));
		return VIRTIO_GPU_RESP_ERR_UNSPEC;
	}
	out->size = htole32(VGB_EDID_BLOCK_SIZE);
	c->resp_len = sizeof(*out);
	return VIRTIO_GPU_RESP_OK_EDID;
}

static void bind_scanout(struct vgb_gpu *gpu, unsigned s, uint32_t res_id,
			 const struct vgb_rect *r, uint64_t offset, uint32_t stride, uint32_t fourcc)
{
	struct scanout *so = &gpu->scanouts[s];

	if (so->enabled && so->buffer_id)
		vgb_display_forget(gpu->cfg.display, so->buffer_id);
	*so = (struct scanout){
		.enabled = true, .resource_id = res_id, .r = *r, .offset = offset,
		.stride = stride, .fourcc = fourcc,
	};
}

static bool rect_fits(const struct vgb_rect *r, uint32_t width, uint32_t height)
{
	return (uint64_t)r->x + r->width <= width && (uint64_t)r->y + r->height <= height;
}

uint32_t vgb_gpu_cmd_set_scanout(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->set_scanout) *m = &c->cmd->set_scanout;
	uint32_t s = m->scanout_id, id = m->resource_id, err;
	const struct vgb_rect *r = &m->r;
	struct resource *res;

	if ((err = vgb_gpu_check_scanout(c->gpu, s)))
		return err;
	if (id == 0) {
		vgb_gpu_disable_scanout(c->gpu, s);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = vgb_gpu_find_res(c->gpu, id);
	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "scanout of %u", id);
	if (res->is_blob)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "SET_SCANOUT of blob %u (use SET_SCANOUT_BLOB)", id);
	if (res->rr->fourcc == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "resource %u has no format a display shows", id);
	if (r->width < 16 || r->height < 16 || !rect_fits(r, res->rr->width, res->rr->height))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "scanout rect %ux%u+%u+%u on %ux%u", r->width, r->height, r->x,
				     r->y, res->rr->width, res->rr->height);
	/* Offset and stride come from the renderer's image at each flush. */
	bind_scanout(c->gpu, s, id, r, 0, 0, res->rr->fourcc);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_set_scanout_blob(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->set_scanout_blob) *m = &c->cmd->set_scanout_blob;
	uint32_t s = m->scanout_id, id = m->resource_id, err;
	struct resource *res;

	if ((err = vgb_gpu_check_scanout(c->gpu, s)))
		return err;
	if (id == 0) {
		vgb_gpu_disable_scanout(c->gpu, s);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = vgb_gpu_find_res(c->gpu, id);
	if (!res || !res->is_blob)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "scanout of blob %u",
				     id);
	if (res->invalid)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "blob %u lost its memory window", id);
	if (m->end > res->size)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "scanout reaches byte %llu of blob %u (%llu bytes)",
				     (unsigned long long)m->end, id, (unsigned long long)res->size);
	res->last_fourcc = m->fourcc;
	res->last_width = m->width;
	res->last_height = m->height;
	res->last_stride = m->stride;
	res->last_offset = m->offset;
	bind_scanout(c->gpu, s, id, &m->r, m->start, m->stride, m->fourcc);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Builds (or refreshes the damaged rows of) a guest blob's CPU view. */
static int blob_view(struct vgb_gpu *gpu, struct scanout *so, struct resource *res,
		     const struct vgb_rect *damage)
{
	struct vgb_renderer_budget *b = &gpu->budget;
	int r = vgb_gpu_ensure_export(gpu, res);

	if (r < 0)
		return r;
	if (!res->exp->cpu) {
		struct vgb_export *e = res->exp;

		r = vgb_export_cpu_view_limited(
			e, res->layout, vgb_renderer_budget_left(b->max_view_mmaps, b->view_mmaps),
			vgb_renderer_budget_left(b->max_host_bytes, b->host_bytes));
		if (r < 0)
			return r;
		res->charged_mmaps = e->segmap ? e->segmap->n_mmaps : 0;
		res->charged_bytes = e->cpu_is_copy ? e->map_size : 0;
		b->view_mmaps += res->charged_mmaps;
		b->host_bytes += res->charged_bytes;
	}
	if (res->exp->cpu_is_copy) {
		/* Only the damaged rows need re-reading. */
		uint64_t off = so->offset + (uint64_t)damage->y * so->stride;
		uint64_t n = (uint64_t)damage->height * so->stride;

		r = vgb_export_refresh(res->exp, res->layout, off, n);
		if (r < 0)
			return r;
		gpu->stats.copies++;
		gpu->stats.bytes_copied += VGB_MIN(n, res->size - VGB_MIN(off, res->size));
	}
	return 0;
}

/* Presents scanout @s (which shows @res) with @damage in scanout coordinates. */
static int present(struct cmd_ctx *c, unsigned s, struct resource *res,
		   const struct vgb_rect *damage)
{
	struct vgb_gpu *gpu = c->gpu;
	struct scanout *so = &gpu->scanouts[s];
	uint32_t bpp = vgb_format_bpp(so->fourcc);
	struct vgb_export *exp;
	uint64_t offset, len;
	uint32_t stride;
	struct frame_token *t;
	struct vgb_frame frame;
	int r;

	if (res->is_blob) {
		r = blob_view(gpu, so, res, damage);
		if (r < 0)
			return r;
		exp = res->exp;
		offset = so->offset;
		stride = so->stride;
	} else {
		struct vgb_rect rect = { so->r.x + damage->x, so->r.y + damage->y, damage->width,
					 damage->height };
		struct vgb_renderer_image img;

		r = gpu->renderer->ops->scanout_image(gpu->renderer, res->rr, &rect, &img);
		if (r < 0)
			return r;
		exp = img.exp;
		offset = img.offset + (uint64_t)so->r.y * img.stride + (uint64_t)so->r.x * bpp;
		stride = img.stride;
	}
	if (!gpu->cfg.display)
		return 0;
	len = (uint64_t)stride * (so->r.height - 1) + (uint64_t)so->r.width * bpp;
	if (so->id_for != exp || !so->buffer_id) {
		if (so->buffer_id)
			vgb_display_forget(gpu->cfg.display, so->buffer_id);
		so->buffer_id = next_buffer_id++;
		so->id_for = exp;
	}

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->gpu = gpu;
	t->exp = vgb_export_ref(exp);
	t->cpu = (struct vgb_cpu_view){ .data = exp->cpu + offset, .stride = stride, .memfd = -1 };
	if (!vgb_export_memfd_range(exp, offset, len, &t->cpu.memfd, &t->cpu.memfd_offset,
				    &t->cpu.memfd_size))
		t->cpu.memfd = -1;
	vgb_dmabuf_init(&t->dmabuf);
	if (exp->dmabuf_fd >= 0 && offset <= UINT32_MAX) {
		t->dmabuf = (struct vgb_dmabuf){
			.width = so->r.width, .height = so->r.height, .fourcc = so->fourcc,
			.modifier = DRM_FORMAT_MOD_LINEAR, .n_planes = 1,
			.offset = { (uint32_t)offset }, .stride = { stride },
			.fd = { exp->dmabuf_fd, -1, -1, -1 },
		};
	}
	frame = (struct vgb_frame){
		.scanout = gpu->cfg.scanout_base + s,
		.width = so->r.width,
		.height = so->r.height,
		.fourcc = so->fourcc,
		.buffer_id = so->buffer_id,
		.dmabuf = t->dmabuf.n_planes ? &t->dmabuf : NULL,
		.cpu = &t->cpu,
		.damage = *damage,
		.flush_ns = vgb_now_ns(),
		.done = frame_done,
		.done_data = t,
	};
	/* Linked and counted before present: the sink may complete the frame inside it. */
	t->next = gpu->tokens;
	if (t->next)
		t->next->prev = t;
	gpu->tokens = t;
	if (c->fence) {
		t->p = c->fence;
		c->fence->outstanding++;
	}
	r = vgb_display_present(gpu->cfg.display, &frame);
	if (r < 0) {
		/* Not taken: done will never run. */
		if (t->p && --t->p->outstanding == 0)
			t->p->ready = true;
		vgb_gpu_unlink_token(gpu, t);
		if (r == -EIO)
			res->faulted = true;
		vgb_export_unref(t->exp);
		free(t);
		gpu->stats.present_errors++;
		vgb_log_ratelimited(VGB_LOG_WARN, "display refused scanout %u: %s", s,
				    strerror(-r));
		return 0; /* the display's trouble, not the guest's: the flush itself succeeded */
	}
	gpu->stats.frames_presented++;
	return 0;
}

uint32_t vgb_gpu_cmd_flush(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->flush) *m = &c->cmd->flush;
	struct resource *res = vgb_gpu_find_res(c->gpu, m->resource_id);
	struct vgb_gpu *gpu = c->gpu;
	const struct vgb_rect *fr = &m->r;

	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "flush of %u",
				     m->resource_id);
	if (res->invalid)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "blob %u lost its memory window", res->id);
	if (!res->is_blob && !rect_fits(fr, res->rr->width, res->rr->height))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "flush rect outside %u",
				     res->id);
	gpu->stats.flushes++;
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++) {
		struct scanout *so = &gpu->scanouts[s];
		uint64_t x0, y0, x1, y1;
		struct vgb_rect damage;
		int r;

		if (!so->enabled || so->resource_id != res->id)
			continue;
		/* Intersect with the scanout rectangle, in scanout coordinates. */
		x0 = VGB_MAX((uint64_t)fr->x, so->r.x);
		y0 = VGB_MAX((uint64_t)fr->y, so->r.y);
		x1 = VGB_MIN((uint64_t)fr->x + fr->width, (uint64_t)so->r.x + so->r.width);
		y1 = VGB_MIN((uint64_t)fr->y + fr->height, (uint64_t)so->r.y + so->r.height);
		if (x1 <= x0 || y1 <= y0)
			damage = (struct vgb_rect){ 0 };
		else
			damage = (struct vgb_rect){ (uint32_t)(x0 - so->r.x), (uint32_t)(y0 - so->r.y),
						    (uint32_t)(x1 - x0), (uint32_t)(y1 - y0) };
		r = present(c, s, res, &damage);
		if (r == -EIO)
			res->faulted = true; /* e.g. memory decode off: no view now, maybe later */
		if (r == -ESTALE)
			return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
					     "blob %u lost its memory window", res->id);
		if (r == -E2BIG)
			return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
					     "blob %u: no room left for its CPU view", res->id);
		if (r < 0) {
			vgb_log_ratelimited(VGB_LOG_WARN, "flush of %u: %s", res->id, strerror(-r));
			return vgb_gpu_host_err(r);
		}
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_update_cursor(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->cursor) *m = &c->cmd->cursor;
	uint32_t s = m->scanout_id, id = m->resource_id, err;
	struct vgb_gpu *gpu = c->gpu;
	struct vgb_renderer_image img;
	struct vgb_rect all;
	struct resource *res;
	int r;

	if ((err = vgb_gpu_check_scanout(gpu, s)))
		return err;
	if (id == 0) {
		vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s, NULL, 0, 0, 0,
				       0);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = vgb_gpu_find_res(gpu, id);
	if (!res)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "cursor %u", id);
	if (res->is_blob || res->rr->width > CURSOR_MAX || res->rr->height > CURSOR_MAX ||
	    vgb_format_bpp(res->rr->fourcc) != 4)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "cursor %u is not a 2D image of at most 64x64", id);
	if (!gpu->cfg.display)
		return VIRTIO_GPU_RESP_OK_NODATA;
	all = (struct vgb_rect){ 0, 0, res->rr->width, res->rr->height };
	r = gpu->renderer->ops->scanout_image(gpu->renderer, res->rr, &all, &img);
	if (r < 0)
		return vgb_gpu_renderer_err(r, "cursor", id);
	if (img.stride != res->rr->width * 4u) {
		vgb_log_ratelimited(VGB_LOG_WARN, "cursor %u: rows %u bytes apart", id, img.stride);
		return VIRTIO_GPU_RESP_ERR_UNSPEC;
	}
	/* set_cursor takes tightly packed 32-bit pixels. */
	r = vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s,
				   (const uint32_t *)(const void *)(img.exp->cpu + img.offset),
				   res->rr->width, res->rr->height, m->hot_x, m->hot_y);
	if (r < 0)
		vgb_log_ratelimited(VGB_LOG_WARN, "display refused cursor: %s", strerror(-r));
	vgb_display_move_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s, m->x, m->y);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

uint32_t vgb_gpu_cmd_move_cursor(struct cmd_ctx *c)
{
	const __typeof__(c->cmd->cursor) *m = &c->cmd->cursor;
	uint32_t err;

	if ((err = vgb_gpu_check_scanout(c->gpu, m->scanout_id)))
		return err;
	vgb_display_move_cursor(c->gpu->cfg.display, c->gpu->cfg.scanout_base + m->scanout_id,
				m->x, m->y);
	return VIRTIO_GPU_RESP_OK_NODATA;
}
