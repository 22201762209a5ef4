/* SPDX-License-Identifier: MIT */
/*
 * The gpu processor's state, below every command: the resource table, guest blob exports,
 * scanout bindings on the display, frames in flight and the fence queue. Calls nothing in
 * the command files (gpu.c, gpu-scanout.c, gpu-3d.c), which all call into it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "gpu-private.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

/* ---- resources and guest blob exports ---- */

struct resource *vgb_gpu_find_res(struct vgb_gpu *gpu, uint32_t id)
{
	for (size_t i = 0; i < gpu->n_res; i++)
		if (gpu->res[i]->id == id)
			return gpu->res[i];
	return NULL;
}

static uint64_t gen_key(const struct vgb_blob_layout *layout)
{
	uint64_t key = 0;

	for (size_t i = 0; i < layout->n_segs; i++)
		if (layout->segs[i].kind == VGB_MEMMAP_VFIO)
			key += layout->segs[i].dev->generation;
	return key;
}

/*
 * Whether the BARs under @layout are decoded now (vgb_vfio_check_decode(), once per run of
 * segments on the same device and region). The guest can turn memory decode off at any time:
 * the kernel then revokes the dmabuf and a CPU view of the BAR faults.
 * Returns 0, -EIO when decode is off, or the config read's -errno.
 */
static int check_decode(const struct vgb_blob_layout *layout)
{
	const struct vgb_blob_segment *last = NULL;

	for (size_t i = 0; i < layout->n_segs; i++) {
		const struct vgb_blob_segment *s = &layout->segs[i];
		int r;

		if (s->kind != VGB_MEMMAP_VFIO ||
		    (last && last->dev == s->dev && last->region == s->region))
			continue;
		r = vgb_vfio_check_decode(s->dev, s->region);
		if (r < 0)
			return r;
		last = s;
	}
	return 0;
}

void vgb_gpu_drop_export(struct vgb_gpu *gpu, struct resource *res)
{
	if (!res->exp)
		return;
	vgb_gpu_forget_buffers(gpu, res->id);
	gpu->budget.host_bytes -= res->charged_bytes;
	gpu->budget.view_mmaps -= res->charged_mmaps;
	res->charged_bytes = 0;
	res->charged_mmaps = 0;
	if (res->exp->strategy < VGB_EXPORT_COUNT)
		gpu->stats.blobs_by_strategy[res->exp->strategy]--;
	vgb_export_unref(res->exp);
	res->exp = NULL;
}

void vgb_gpu_free_res(struct vgb_gpu *gpu, struct resource *res)
{
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
		if (gpu->scanouts[s].enabled && gpu->scanouts[s].resource_id == res->id)
			vgb_gpu_disable_scanout(gpu, s);
	if (res->rr) {
		vgb_gpu_forget_buffers(gpu, res->id);
		gpu->renderer->ops->resource_destroy(gpu->renderer, res->rr);
	}
	vgb_gpu_drop_export(gpu, res);
	free(res->layout);
	free(res);
}

void vgb_gpu_remove_res(struct vgb_gpu *gpu, struct resource *res)
{
	for (size_t i = 0; i < gpu->n_res; i++) {
		if (gpu->res[i] == res) {
			gpu->res[i] = gpu->res[--gpu->n_res];
			break;
		}
	}
	vgb_gpu_free_res(gpu, res);
}

int vgb_gpu_add_res(struct vgb_gpu *gpu, struct resource *res)
{
	struct resource **p = reallocarray(gpu->res, gpu->n_res + 1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	gpu->res = p;
	gpu->res[gpu->n_res++] = res;
	return 0;
}

/*
 * Makes sure a valid guest blob has a current export: re-plans after a device reset (its
 * dmabuf is revoked) or after an earlier drop. Returns 0 or -errno.
 */
int vgb_gpu_ensure_export(struct vgb_gpu *gpu, struct resource *res)
{
	struct vgb_export_report report;
	struct vgb_export *e;
	uint64_t key;
	int r;

	if (!res->is_blob)
		return -ENOENT;
	if (res->invalid || !res->layout)
		return -ESTALE;
	key = gen_key(res->layout);
	r = check_decode(res->layout);
	if (res->exp && (key != res->gen_key || res->faulted || r < 0)) {
		gpu->stats.exports_dropped++;
		vgb_gpu_drop_export(gpu, res);
	}
	if (r < 0)
		return r; /* decode off: no export and no view until the guest turns it back on */
	if (res->exp)
		return 0;
	r = vgb_export_plan(res->layout, &e, &report);
	if (r < 0)
		return r;
	if (report.unexpected && !res->warned) {
		res->warned = true;
		gpu->stats.export_failures++;
		/* Once per blob, and rate-limited: a guest can create many blobs. */
		vgb_log_ratelimited(VGB_LOG_WARN,
				    "blob %u: export failed unexpectedly (vfio: %s, udmabuf: %s), "
				    "using %s", res->id,
				    report.vfio_err ? strerror(-report.vfio_err) : "-",
				    report.udmabuf_err ? strerror(-report.udmabuf_err) : "-",
				    vgb_export_strategy_name(e->strategy));
	} else {
		vgb_log(VGB_LOG_DEBUG, "blob %u: %s (vfio %d, udmabuf %d)", res->id,
			vgb_export_strategy_name(e->strategy), report.vfio_err, report.udmabuf_err);
	}
	res->exp = e;
	res->gen_key = key;
	/* Decode off (-EIO): this plan lacks the dmabuf only for now; try again next time. */
	res->faulted = report.vfio_err == -EIO;
	gpu->stats.blobs_by_strategy[e->strategy]++;
	gpu->stats.exports_by_strategy[e->strategy]++;
	return 0;
}

/* ---- scanouts and frames ---- */

uint32_t vgb_gpu_check_scanout(struct vgb_gpu *gpu, uint32_t s)
{
	if (s >= gpu->cfg.limits.num_scanouts)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, "scanout %u", s);
	return 0;
}

/* Forgets buffer ids handed out on our scanouts for any export of @res_id. */
void vgb_gpu_forget_buffers(struct vgb_gpu *gpu, uint32_t res_id)
{
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++) {
		struct scanout *so = &gpu->scanouts[s];

		if (so->enabled && so->resource_id == res_id && so->buffer_id) {
			vgb_display_forget(gpu->cfg.display, so->buffer_id);
			so->buffer_id = 0;
			so->id_for = NULL;
		}
	}
}

void vgb_gpu_disable_scanout(struct vgb_gpu *gpu, unsigned s)
{
	struct scanout *so = &gpu->scanouts[s];

	if (!so->enabled)
		return;
	if (so->buffer_id)
		vgb_display_forget(gpu->cfg.display, so->buffer_id);
	vgb_display_disable_scanout(gpu->cfg.display, gpu->cfg.scanout_base + s);
	*so = (struct scanout){ 0 };
}

/* The sink could not read @exp's memory (-EIO): whichever resource shows it re-plans. */
void vgb_gpu_mark_faulted(struct vgb_gpu *gpu, const struct vgb_export *exp)
{
	for (size_t i = 0; i < gpu->n_res; i++)
		if (gpu->res[i]->exp == exp)
			gpu->res[i]->faulted = true;
}

void vgb_gpu_unlink_token(struct vgb_gpu *gpu, struct frame_token *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		gpu->tokens = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

void vgb_gpu_unlink_frames(struct vgb_gpu *gpu, const struct pending *p)
{
	for (struct frame_token *t = gpu->tokens; t; t = t->next)
		if (t->p == p)
			t->p = NULL;
}

void vgb_gpu_detach_frames(struct vgb_gpu *gpu)
{
	for (struct frame_token *t = gpu->tokens, *next; t; t = next) {
		next = t->next;
		t->gpu = NULL;
		t->p = NULL;
		t->prev = t->next = NULL;
	}
	gpu->tokens = NULL;
}

/* ---- fences ---- */

bool vgb_gpu_is_head_of_timeline(struct vgb_gpu *gpu, const struct pending *p)
{
	for (struct pending *q = gpu->pending_head; q && q != p; q = q->next)
		if (q->timeline == p->timeline)
			return false;
	return true;
}

void vgb_gpu_unlink_pending(struct vgb_gpu *gpu, struct pending *p)
{
	struct pending **pp = &gpu->pending_head;

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	if (gpu->pending_tail == &p->next)
		gpu->pending_tail = pp;
	vgb_gpu_unlink_frames(gpu, p);
}

bool vgb_gpu_pending_is_ready(const struct pending *p)
{
	return p->ready && p->gpu_seq == 0;
}

/* Delivers every ready response that no earlier fence of its timeline holds back. */
void vgb_gpu_deliver(struct vgb_gpu *gpu)
{
	bool again = true;

	if (gpu->delivering)
		return;
	gpu->delivering = true;
	while (again) {
		again = false;
		for (struct pending *p = gpu->pending_head; p; p = p->next) {
			if (!vgb_gpu_pending_is_ready(p) || !vgb_gpu_is_head_of_timeline(gpu, p))
				continue;
			vgb_gpu_unlink_pending(gpu, p);
			gpu->stats.fences_completed++;
			if (gpu->cfg.fence_done)
				gpu->cfg.fence_done(gpu->cfg.fence_data, p->cookie, p->resp, p->len);
			free(p);
			/* The callback may have changed the queue: start over. */
			again = true;
			break;
		}
	}
	gpu->delivering = false;
}

/* ---- errors ---- */

uint32_t vgb_gpu_host_err(int r)
{
	return r == -ENOMEM ? VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY : VIRTIO_GPU_RESP_ERR_UNSPEC;
}

uint32_t vgb_gpu_renderer_err(int r, const char *what, uint32_t id)
{
	uint32_t type;

	switch (r) {
	case -EINVAL:
		type = VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER;
		break;
	case -ENOENT:
		type = VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID;
		break;
	case -ENOMEM:
		type = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
		break;
	default:
		type = VIRTIO_GPU_RESP_ERR_UNSPEC;
		break;
	}
	vgb_log_ratelimited(VGB_LOG_WARN, "%s %u: %s", what, id, strerror(-r));
	return type;
}

uint32_t vgb_gpu_check_new_id(struct vgb_gpu *gpu, uint32_t id)
{
	if (id == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "resource id 0");
	if (vgb_gpu_find_res(gpu, id))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "resource %u exists",
				     id);
	if (gpu->n_res >= gpu->cfg.limits.max_resources)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, "over %u resources",
				     gpu->cfg.limits.max_resources);
	return 0;
}
