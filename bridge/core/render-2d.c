/* SPDX-License-Identifier: MIT */
/*
 * The 2D software renderer: a resource is tightly packed host memory (a sealed memfd a sink
 * may share with its compositor); TRANSFER_TO_HOST_2D copies from the guest backing into it;
 * a scanout reads it in place. No contexts, no 3D.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "renderer.h"
#include "vgb/guard.h"
#include "vgb/mem.h"
#include "vgb/log.h"
#include "vgb/util.h"

struct res2d {
	struct vgb_renderer_resource base;
	uint32_t stride;
	uint64_t size;
	struct vgb_export *exp;          /* host memory */
	struct vgb_blob_layout *backing; /* translated ATTACH_BACKING entries, or NULL */
	/* A mapping of a RAM backing, read by transfers (NULL: they read through the layout) */
	struct vgb_export *backing_view;
	size_t backing_mmaps;            /* what it was charged against max_view_mmaps */
};

struct render2d {
	struct vgb_renderer base;
	struct vgb_renderer_budget *budget;
};

static const struct vgb_renderer_ops ops_2d;

static struct render2d *to_2d(struct vgb_renderer *r)
{
	assert(r->ops == &ops_2d);
	return vgb_container_of(r, struct render2d, base);
}

static struct res2d *to_res(struct vgb_renderer_resource *res)
{
	return vgb_container_of(res, struct res2d, base);
}

static int create_2d(struct vgb_renderer *r, uint32_t fourcc, uint32_t w, uint32_t h,
		     struct vgb_renderer_resource **ret)
{
	struct vgb_renderer_budget *b = to_2d(r)->budget;
	uint64_t size, total;
	uint32_t stride;
	struct res2d *res;
	int err;

	if (__builtin_mul_overflow(w, vgb_format_bpp(fourcc), &stride) ||
	    __builtin_mul_overflow((uint64_t)stride, h, &size) || size > b->max_bytes ||
	    __builtin_add_overflow(b->host_bytes, size, &total) || total > b->max_host_bytes)
		return -ENOMEM;
	res = calloc(1, sizeof(*res));
	if (!res)
		return -ENOMEM;
	res->base = (struct vgb_renderer_resource){ .width = w, .height = h, .fourcc = fourcc };
	res->stride = stride;
	res->size = size;
	err = vgb_export_create_host(size, &res->exp);
	if (err < 0) {
		free(res);
		return err;
	}
	b->host_bytes += size;
	*ret = &res->base;
	return 0;
}

/* Forgets @res's backing and the mapping transfers read it through. */
static void drop_backing(struct render2d *r, struct res2d *res)
{
	r->budget->view_mmaps -= res->backing_mmaps;
	res->backing_mmaps = 0;
	vgb_export_unref(res->backing_view);
	res->backing_view = NULL;
	free(res->backing);
	res->backing = NULL;
}

static void destroy_res(struct vgb_renderer *r, struct vgb_renderer_resource *base)
{
	struct res2d *res = to_res(base);

	drop_backing(to_2d(r), res);
	to_2d(r)->budget->host_bytes -= res->size;
	vgb_export_unref(res->exp);
	free(res);
}

/*
 * Maps a guest-RAM backing once, at ATTACH_BACKING, so that each TRANSFER_TO_HOST_2D is one
 * guarded 2D copy instead of a pread() per row and page. Only within the client's mmap
 * budget and when the segment edges allow a mapping; otherwise transfers read through the
 * layout. BAR backings always do (a read checks memory decode).
 */
static void map_backing(struct render2d *r, struct res2d *res)
{
	struct vgb_renderer_budget *b = r->budget;
	struct vgb_export *v;
	int err;

	for (size_t i = 0; i < res->backing->n_segs; i++)
		if (res->backing->segs[i].kind != VGB_MEMMAP_RAM)
			return;
	err = vgb_export_create_mapped(res->backing,
				       vgb_renderer_budget_left(b->max_view_mmaps, b->view_mmaps),
				       &v);
	if (err < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, err, "backing (%zu segments) not mapped",
			      res->backing->n_segs);
		return;
	}
	res->backing_view = v;
	res->backing_mmaps = v->segmap ? v->segmap->n_mmaps : 0;
	b->view_mmaps += res->backing_mmaps;
}

static int attach_backing(struct vgb_renderer *r, struct vgb_renderer_resource *base,
			  struct vgb_blob_layout *layout)
{
	struct res2d *res = to_res(base);

	if (res->backing) {
		free(layout);
		return -EBUSY;
	}
	res->backing = layout;
	map_backing(to_2d(r), res);
	return 0;
}

static int detach_backing(struct vgb_renderer *r, struct vgb_renderer_resource *base)
{
	struct res2d *res = to_res(base);

	if (!res->backing)
		return -ENODATA;
	drop_backing(to_2d(r), res);
	return 0;
}

static void window_removed(struct vgb_renderer *r, struct vgb_renderer_resource *base,
			   uint32_t window_id)
{
	struct res2d *res = to_res(base);

	if (res->backing && vgb_blob_layout_uses_window(res->backing, window_id))
		drop_backing(to_2d(r), res);
}

static int transfer_to_host(struct vgb_renderer *r, uint32_t ctx_id,
			    struct vgb_renderer_resource *base, const struct vgb_gpu_transfer *t)
{
	struct vgb_renderer_budget *b = to_2d(r)->budget;
	struct res2d *res = to_res(base);
	uint32_t bpp = vgb_format_bpp(base->fourcc);
	uint64_t src = t->offset, row_bytes, end;
	uint8_t *dst;

	(void)ctx_id;
	if (!res->backing)
		return -ENODATA;
	if (t->box.w == 0 || t->box.h == 0)
		return 0;
	row_bytes = (uint64_t)t->box.w * bpp;
	/* Row i comes from backing offset src + i * stride (the guest's layout = ours). */
	if (__builtin_mul_overflow((uint64_t)res->stride, (uint64_t)(t->box.h - 1), &end) ||
	    __builtin_add_overflow(end, src, &end) || __builtin_add_overflow(end, row_bytes, &end) ||
	    end > res->backing->size)
		return -EINVAL;
	dst = (uint8_t *)res->exp->map + (uint64_t)t->box.y * res->stride + (uint64_t)t->box.x * bpp;
	if (res->backing_view) {
		/* One guarded copy: a backing that vanished under the mapping is -EIO. */
		int err = vgb_guarded_copy_2d(dst, res->stride, res->backing_view->cpu + src,
					      res->stride, row_bytes, t->box.h);
		if (err < 0)
			return err;
	} else {
		for (uint32_t i = 0; i < t->box.h; i++) {
			int err = vgb_blob_layout_read(res->backing,
						       src + (uint64_t)i * res->stride,
						       dst + (uint64_t)i * res->stride, row_bytes);
			if (err < 0)
				return err;
		}
	}
	b->copies++;
	b->bytes_copied += row_bytes * t->box.h;
	return 0;
}

static int scanout_image(struct vgb_renderer *r, struct vgb_renderer_resource *base,
			 const struct vgb_rect *rect, struct vgb_renderer_image *ret)
{
	struct res2d *res = to_res(base);

	(void)r;
	(void)rect; /* the host memory is the image: nothing to bring up to date */
	*ret = (struct vgb_renderer_image){ .exp = res->exp, .offset = 0, .stride = res->stride };
	return 0;
}

static void destroy(struct vgb_renderer *r)
{
	free(to_2d(r));
}

static const struct vgb_renderer_ops ops_2d = {
	.name = "2d",
	.destroy = destroy,
	.resource_create_2d = create_2d,
	.resource_destroy = destroy_res,
	.attach_backing = attach_backing,
	.detach_backing = detach_backing,
	.window_removed = window_removed,
	.transfer_to_host = transfer_to_host,
	.scanout_image = scanout_image,
};

int vgb_renderer_2d_create(const struct vgb_renderer_config *cfg, struct vgb_renderer **ret)
{
	struct render2d *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->base.ops = &ops_2d;
	r->budget = cfg->budget;
	*ret = &r->base;
	return 0;
}
