/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <string.h>
#include <linux/virtio_gpu.h>

#include "decode.h"
#include "vgb/util.h"

/* Largest fixed part of any command: the aligned copy each decoder reads from. */
union fixed {
	struct virtio_gpu_ctrl_hdr hdr;
	struct virtio_gpu_cmd_get_edid get_edid;
	struct virtio_gpu_resource_create_2d create_2d;
	struct virtio_gpu_resource_unref unref;
	struct virtio_gpu_resource_detach_backing detach;
	struct virtio_gpu_resource_attach_backing attach;
	struct virtio_gpu_resource_create_blob create_blob;
	struct virtio_gpu_set_scanout set_scanout;
	struct virtio_gpu_set_scanout_blob set_scanout_blob;
	struct virtio_gpu_resource_flush flush;
	struct virtio_gpu_transfer_to_host_2d transfer_2d;
	struct virtio_gpu_update_cursor cursor;
	struct virtio_gpu_ctx_create ctx_create;
	struct virtio_gpu_ctx_resource ctx_resource;
	struct virtio_gpu_resource_create_3d create_3d;
	struct virtio_gpu_transfer_host_3d transfer_3d;
	struct virtio_gpu_cmd_submit submit;
	struct virtio_gpu_get_capset_info capset_info;
	struct virtio_gpu_get_capset capset;
	uint64_t align;
};

struct input {
	const union fixed *f;
	const uint8_t *raw;   /* the whole message */
	size_t len;
	const struct vgb_gpu_decode_limits *lim;
};

static struct vgb_rect rect_of(const struct virtio_gpu_rect *r)
{
	return (struct vgb_rect){ le32toh(r->x), le32toh(r->y), le32toh(r->width),
				  le32toh(r->height) };
}

/* Whether @r, once its x + width and y + height are computed in 64 bits, fits @w x @h. */
static bool rect_fits(const struct vgb_rect *r, uint64_t w, uint64_t h)
{
	return (uint64_t)r->x + r->width <= w && (uint64_t)r->y + r->height <= h;
}

/* Inline entries after a fixed part of @fixed_size bytes: within the cap and the message. */
static uint32_t check_entries(const struct input *in, size_t fixed_size, uint32_t n)
{
	size_t need;

	if (n > in->lim->max_entries)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "%u entries (cap %u)",
				     n, in->lim->max_entries);
	if (__builtin_mul_overflow((size_t)n, sizeof(struct virtio_gpu_mem_entry), &need) ||
	    __builtin_add_overflow(need, fixed_size, &need) || in->len < need)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "%u entries do not fit in %zu bytes", n, in->len);
	return 0;
}

static uint32_t dec_none(const struct input *in, struct vgb_gpu_cmd *c)
{
	(void)in;
	(void)c;
	return 0;
}

static uint32_t dec_get_edid(const struct input *in, struct vgb_gpu_cmd *c)
{
	c->get_edid.scanout_id = le32toh(in->f->get_edid.scanout);
	return 0;
}

static uint32_t dec_create_2d(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_resource_create_2d *m = &in->f->create_2d;

	c->create_2d.resource_id = le32toh(m->resource_id);
	c->create_2d.format = le32toh(m->format);
	c->create_2d.fourcc = vgb_format_virtio_to_drm(c->create_2d.format);
	c->create_2d.width = le32toh(m->width);
	c->create_2d.height = le32toh(m->height);
	if (c->create_2d.fourcc == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "format %u",
				     c->create_2d.format);
	if (c->create_2d.width == 0 || c->create_2d.height == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "2D size %ux%u",
				     c->create_2d.width, c->create_2d.height);
	return 0;
}

static uint32_t dec_resource(const struct input *in, struct vgb_gpu_cmd *c)
{
	/* UNREF, DETACH_BACKING and CTX_*_RESOURCE all carry the id right after the header. */
	c->resource.resource_id = le32toh(in->f->unref.resource_id);
	return 0;
}

static uint32_t dec_attach(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_resource_attach_backing *m = &in->f->attach;

	c->attach.resource_id = le32toh(m->resource_id);
	c->attach.nr_entries = le32toh(m->nr_entries);
	c->attach.entries = in->raw + sizeof(*m);
	return check_entries(in, sizeof(*m), c->attach.nr_entries);
}

static uint32_t dec_create_blob(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_resource_create_blob *m = &in->f->create_blob;

	c->create_blob.resource_id = le32toh(m->resource_id);
	c->create_blob.blob_mem = le32toh(m->blob_mem);
	c->create_blob.blob_flags = le32toh(m->blob_flags);
	c->create_blob.nr_entries = le32toh(m->nr_entries);
	c->create_blob.blob_id = le64toh(m->blob_id);
	c->create_blob.size = le64toh(m->size);
	c->create_blob.entries = in->raw + sizeof(*m);
	switch (c->create_blob.blob_mem) {
	case VIRTIO_GPU_BLOB_MEM_GUEST:
	case VIRTIO_GPU_BLOB_MEM_HOST3D:
	case VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST:
		break;
	default:
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob_mem %u",
				     c->create_blob.blob_mem);
	}
	if (c->create_blob.blob_flags & ~(uint32_t)(VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE |
						    VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE |
						    VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob_flags %#x",
				     c->create_blob.blob_flags);
	if (c->create_blob.size == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob size 0");
	return check_entries(in, sizeof(*m), c->create_blob.nr_entries);
}

static uint32_t dec_set_scanout(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_set_scanout *m = &in->f->set_scanout;

	c->set_scanout.scanout_id = le32toh(m->scanout_id);
	c->set_scanout.resource_id = le32toh(m->resource_id);
	c->set_scanout.r = rect_of(&m->r);
	return 0;
}

/* The layout checks of SET_SCANOUT_BLOB and the byte range the scanout reads. */
static uint32_t check_scanout_blob(struct vgb_gpu_cmd *c)
{
	__typeof__(c->set_scanout_blob) *m = &c->set_scanout_blob;
	const struct vgb_rect *r = &m->r;
	uint64_t start, end, row;
	uint32_t bpp;

	if (m->fourcc == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "format %u", m->format);
	bpp = vgb_format_bpp(m->fourcc);
	if (r->width < 16 || r->height < 16 || !rect_fits(r, m->width, m->height))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "scanout rect %ux%u+%u+%u on %ux%u", r->width, r->height,
				     r->x, r->y, m->width, m->height);
	/* The frame reads rows of r.width pixels, stride apart, from (r.x, r.y) of the fb. */
	if ((uint64_t)m->stride < (uint64_t)m->width * bpp)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "stride %u for width %u", m->stride, m->width);
	row = (uint64_t)r->width * bpp;
	/* 32-bit fields keep this under 2^64 (stride >= width * 4 bounds x and width); checked
	 * anyway, since a wrapped end would let a frame read outside the blob. */
	if (__builtin_mul_overflow((uint64_t)r->y, (uint64_t)m->stride, &start) ||
	    __builtin_add_overflow(start, (uint64_t)m->offset, &start) ||
	    __builtin_add_overflow(start, (uint64_t)r->x * bpp, &start) ||
	    __builtin_mul_overflow((uint64_t)m->stride, (uint64_t)(r->height - 1), &end) ||
	    __builtin_add_overflow(end, start, &end) || __builtin_add_overflow(end, row, &end))
		end = UINT64_MAX;
	m->start = start;
	m->end = end;
	return 0;
}

static uint32_t dec_set_scanout_blob(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_set_scanout_blob *m = &in->f->set_scanout_blob;

	c->set_scanout_blob.scanout_id = le32toh(m->scanout_id);
	c->set_scanout_blob.resource_id = le32toh(m->resource_id);
	c->set_scanout_blob.r = rect_of(&m->r);
	c->set_scanout_blob.format = le32toh(m->format);
	c->set_scanout_blob.fourcc = vgb_format_virtio_to_drm(c->set_scanout_blob.format);
	c->set_scanout_blob.width = le32toh(m->width);
	c->set_scanout_blob.height = le32toh(m->height);
	c->set_scanout_blob.stride = le32toh(m->strides[0]);
	c->set_scanout_blob.offset = le32toh(m->offsets[0]);
	/* resource 0 disables the scanout: nothing else matters then. */
	return c->set_scanout_blob.resource_id ? check_scanout_blob(c) : 0;
}

static uint32_t dec_flush(const struct input *in, struct vgb_gpu_cmd *c)
{
	c->flush.resource_id = le32toh(in->f->flush.resource_id);
	c->flush.r = rect_of(&in->f->flush.r);
	return 0;
}

static uint32_t dec_transfer_2d(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_transfer_to_host_2d *m = &in->f->transfer_2d;
	struct vgb_rect r = rect_of(&m->r);

	c->transfer = (struct vgb_gpu_transfer){
		.resource_id = le32toh(m->resource_id),
		.box = { r.x, r.y, 0, r.width, r.height, 1 },
		.offset = le64toh(m->offset),
	};
	return 0;
}

static uint32_t dec_cursor(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_update_cursor *m = &in->f->cursor;

	c->cursor.scanout_id = le32toh(m->pos.scanout_id);
	c->cursor.x = (int32_t)le32toh(m->pos.x);
	c->cursor.y = (int32_t)le32toh(m->pos.y);
	c->cursor.resource_id = le32toh(m->resource_id);
	c->cursor.hot_x = le32toh(m->hot_x);
	c->cursor.hot_y = le32toh(m->hot_y);
	return 0;
}

static uint32_t dec_ctx_create(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_ctx_create *m = &in->f->ctx_create;
	uint32_t nlen = le32toh(m->nlen);

	if (nlen > sizeof(m->debug_name))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "context name of %u bytes (at most 64)", nlen);
	c->ctx_create.context_init = le32toh(m->context_init);
	memcpy(c->ctx_create.name, m->debug_name, nlen);
	c->ctx_create.name[nlen] = '\0';
	return 0;
}

static uint32_t dec_create_3d(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_resource_create_3d *m = &in->f->create_3d;
	struct vgb_gpu_create_3d *a = &c->create_3d;

	*a = (struct vgb_gpu_create_3d){
		.resource_id = le32toh(m->resource_id), .target = le32toh(m->target),
		.format = le32toh(m->format), .bind = le32toh(m->bind),
		.width = le32toh(m->width), .height = le32toh(m->height),
		.depth = le32toh(m->depth), .array_size = le32toh(m->array_size),
		.last_level = le32toh(m->last_level), .nr_samples = le32toh(m->nr_samples),
		.flags = le32toh(m->flags),
	};
	if (a->width == 0 || a->height == 0 || a->depth == 0 || a->array_size == 0)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "3D resource %u of %ux%ux%u, %u layers", a->resource_id,
				     a->width, a->height, a->depth, a->array_size);
	if (a->last_level > 31 || a->nr_samples > 32)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "3D resource %u: last_level %u, %u samples", a->resource_id,
				     a->last_level, a->nr_samples);
	return 0;
}

static uint32_t dec_transfer_3d(const struct input *in, struct vgb_gpu_cmd *c)
{
	const struct virtio_gpu_transfer_host_3d *m = &in->f->transfer_3d;
	struct vgb_gpu_transfer *t = &c->transfer;

	*t = (struct vgb_gpu_transfer){
		.resource_id = le32toh(m->resource_id),
		.box = { le32toh(m->box.x), le32toh(m->box.y), le32toh(m->box.z),
			 le32toh(m->box.w), le32toh(m->box.h), le32toh(m->box.d) },
		.offset = le64toh(m->offset), .level = le32toh(m->level),
		.stride = le32toh(m->stride), .layer_stride = le32toh(m->layer_stride),
	};
	if ((uint64_t)t->box.x + t->box.w > UINT32_MAX ||
	    (uint64_t)t->box.y + t->box.h > UINT32_MAX ||
	    (uint64_t)t->box.z + t->box.d > UINT32_MAX || t->level > 31)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "3D transfer box %u,%u,%u %ux%ux%u level %u wraps", t->box.x,
				     t->box.y, t->box.z, t->box.w, t->box.h, t->box.d, t->level);
	return 0;
}

static uint32_t dec_submit(const struct input *in, struct vgb_gpu_cmd *c)
{
	uint32_t size = le32toh(in->f->submit.size);

	if (size > in->lim->max_submit)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "SUBMIT_3D of %u bytes (cap %u)", size, in->lim->max_submit);
	if (size > in->len - sizeof(struct virtio_gpu_cmd_submit))
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "SUBMIT_3D of %u bytes in a %zu-byte command", size, in->len);
	if (size % 4)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "SUBMIT_3D of %u bytes (not whole dwords)", size);
	c->submit.size = size;
	c->submit.data = in->raw + sizeof(struct virtio_gpu_cmd_submit);
	return 0;
}

static uint32_t dec_capset_info(const struct input *in, struct vgb_gpu_cmd *c)
{
	c->capset_info.index = le32toh(in->f->capset_info.capset_index);
	return 0;
}

static uint32_t dec_capset(const struct input *in, struct vgb_gpu_cmd *c)
{
	c->capset.id = le32toh(in->f->capset.capset_id);
	c->capset.version = le32toh(in->f->capset.capset_version);
	return 0;
}

struct decoder {
	uint32_t type;
	size_t size;        /* fixed part */
	size_t resp_size;   /* of the OK response; 0: a header */
	uint32_t (*fn)(const struct input *in, struct vgb_gpu_cmd *c);
};

#define D(t, s, fn) { VIRTIO_GPU_CMD_##t, sizeof(struct s), 0, fn }
static const struct decoder decoders[] = {
	{ VIRTIO_GPU_CMD_GET_DISPLAY_INFO, sizeof(struct virtio_gpu_ctrl_hdr),
	  sizeof(struct virtio_gpu_resp_display_info), dec_none },
	{ VIRTIO_GPU_CMD_GET_EDID, sizeof(struct virtio_gpu_cmd_get_edid),
	  sizeof(struct virtio_gpu_resp_edid), dec_get_edid },
	D(RESOURCE_CREATE_2D, virtio_gpu_resource_create_2d, dec_create_2d),
	D(RESOURCE_UNREF, virtio_gpu_resource_unref, dec_resource),
	D(SET_SCANOUT, virtio_gpu_set_scanout, dec_set_scanout),
	D(RESOURCE_FLUSH, virtio_gpu_resource_flush, dec_flush),
	D(TRANSFER_TO_HOST_2D, virtio_gpu_transfer_to_host_2d, dec_transfer_2d),
	D(RESOURCE_ATTACH_BACKING, virtio_gpu_resource_attach_backing, dec_attach),
	D(RESOURCE_DETACH_BACKING, virtio_gpu_resource_detach_backing, dec_resource),
	D(RESOURCE_CREATE_BLOB, virtio_gpu_resource_create_blob, dec_create_blob),
	D(SET_SCANOUT_BLOB, virtio_gpu_set_scanout_blob, dec_set_scanout_blob),
	D(UPDATE_CURSOR, virtio_gpu_update_cursor, dec_cursor),
	D(MOVE_CURSOR, virtio_gpu_update_cursor, dec_cursor),
	D(CTX_CREATE, virtio_gpu_ctx_create, dec_ctx_create),
	D(CTX_DESTROY, virtio_gpu_ctx_destroy, dec_none),
	D(CTX_ATTACH_RESOURCE, virtio_gpu_ctx_resource, dec_resource),
	D(CTX_DETACH_RESOURCE, virtio_gpu_ctx_resource, dec_resource),
	D(RESOURCE_CREATE_3D, virtio_gpu_resource_create_3d, dec_create_3d),
	D(TRANSFER_TO_HOST_3D, virtio_gpu_transfer_host_3d, dec_transfer_3d),
	D(TRANSFER_FROM_HOST_3D, virtio_gpu_transfer_host_3d, dec_transfer_3d),
	D(SUBMIT_3D, virtio_gpu_cmd_submit, dec_submit),
	{ VIRTIO_GPU_CMD_GET_CAPSET_INFO, sizeof(struct virtio_gpu_get_capset_info),
	  sizeof(struct virtio_gpu_resp_capset_info), dec_capset_info },
	/* The capset's size is the renderer's: the processor sizes that response. */
	D(GET_CAPSET, virtio_gpu_get_capset, dec_capset),
};
#undef D

static const struct decoder *find(uint32_t type)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(decoders); i++)
		if (decoders[i].type == type)
			return &decoders[i];
	return NULL;
}

bool vgb_gpu_decode_is_known(uint32_t type)
{
	return find(type) != NULL;
}

size_t vgb_gpu_decode_ok_resp_size(uint32_t type, size_t len)
{
	const struct decoder *d = find(type);

	if (!d || !d->resp_size || len < d->size)
		return sizeof(struct virtio_gpu_ctrl_hdr);
	return d->resp_size;
}

uint32_t vgb_gpu_decode(const void *bytes, size_t len, const struct vgb_gpu_decode_limits *lim,
			struct vgb_gpu_cmd *ret)
{
	union fixed fixed;
	const struct decoder *d;
	struct input in = { .f = &fixed, .raw = bytes, .len = len, .lim = lim };

	memset(ret, 0, sizeof(*ret));
	memcpy(&fixed.hdr, bytes, sizeof(fixed.hdr));
	ret->type = le32toh(fixed.hdr.type);
	ret->flags = le32toh(fixed.hdr.flags);
	ret->fence_id = le64toh(fixed.hdr.fence_id);
	ret->ctx_id = le32toh(fixed.hdr.ctx_id);
	if (ret->flags & VIRTIO_GPU_FLAG_INFO_RING_IDX)
		ret->ring_idx = fixed.hdr.ring_idx;
	d = find(ret->type);
	if (!d)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "unsupported command %#x",
				     ret->type);
	if (len < d->size)
		return VGB_GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				     "command %#x of %zu bytes (needs %zu)", ret->type, len,
				     d->size);
	memcpy(&fixed, bytes, d->size);
	return d->fn(&in, ret);
}
