/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <drm_fourcc.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "edid.h"
#include "gpu.h"
#include "vgb/guard.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define CURSOR_MAX 64u

_Static_assert(sizeof(struct virtio_gpu_resp_edid) == VGB_GPU_MAX_RESP &&
		       sizeof(struct virtio_gpu_resp_display_info) <= VGB_GPU_MAX_RESP,
	       "VGB_GPU_MAX_RESP is the largest response");
_Static_assert(sizeof(struct virtio_gpu_set_scanout_blob) >=
			       sizeof(struct virtio_gpu_resource_create_blob) &&
		       sizeof(struct virtio_gpu_set_scanout_blob) >=
			       sizeof(struct virtio_gpu_transfer_to_host_2d),
	       "SET_SCANOUT_BLOB has the largest fixed part");

/* buffer_id for vgb_frame: unique across every gpu of the process (clients may share a sink). */
static uint64_t next_buffer_id = 1;

struct pending;

struct resource {
	uint32_t id;
	bool is_blob;
	/* 2D */
	uint32_t fourcc, width, height, stride;
	struct vgb_blob_layout *backing; /* translated ATTACH_BACKING entries, or NULL */
	/* A mapping of a RAM backing, read by transfers (NULL: they read through the layout) */
	struct vgb_export *backing_view;
	size_t backing_mmaps;            /* what it was charged against max_view_mmaps */
	/* blob */
	struct vgb_blob_layout *layout;  /* NULL once a window it used was removed */
	bool invalid;
	uint64_t gen_key;                /* sum of the generations of its VFIO devices */
	bool warned;                     /* an unexpected export failure was logged */
	/* layout of the last SET_SCANOUT_BLOB that showed it, for vgb_gpu_export_blob() */
	uint32_t last_fourcc, last_width, last_height, last_stride, last_offset;
	/* 2D: host memory; blob: the current export (NULL after a drop, until re-planned). */
	struct vgb_export *exp;
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
	/* what the frame reads: byte offset of (r.x, r.y) in the resource, row stride, format */
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

struct vgb_gpu {
	struct vgb_memmap *map;
	struct vgb_gpu_config cfg;
	struct resource **res;
	size_t n_res;
	uint64_t host_bytes;   /* 2D host memory and copied views */
	size_t view_mmaps;     /* mmaps of mapped views */
	struct scanout scanouts[VIRTIO_GPU_MAX_SCANOUTS];
	struct pending *pending_head, **pending_tail;
	struct frame_token *tokens;
	bool in_process, delivering;
	struct vgb_gpu_stats stats;
};

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

static struct resource *find_res(struct vgb_gpu *gpu, uint32_t id)
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

/* Forgets buffer ids handed out for @exp (NULL: for any export of @res_id) on our scanouts. */
static void forget_buffers(struct vgb_gpu *gpu, uint32_t res_id)
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

static void disable_scanout(struct vgb_gpu *gpu, unsigned s)
{
	struct scanout *so = &gpu->scanouts[s];

	if (!so->enabled)
		return;
	if (so->buffer_id)
		vgb_display_forget(gpu->cfg.display, so->buffer_id);
	vgb_display_disable_scanout(gpu->cfg.display, gpu->cfg.scanout_base + s);
	*so = (struct scanout){ 0 };
}

static void drop_export(struct vgb_gpu *gpu, struct resource *res)
{
	if (!res->exp)
		return;
	forget_buffers(gpu, res->id);
	gpu->host_bytes -= res->charged_bytes;
	gpu->view_mmaps -= res->charged_mmaps;
	res->charged_bytes = 0;
	res->charged_mmaps = 0;
	if (res->is_blob && res->exp->strategy < VGB_EXPORT_COUNT)
		gpu->stats.blobs_by_strategy[res->exp->strategy]--;
	vgb_export_unref(res->exp);
	res->exp = NULL;
}

/* Forgets @res's backing and the mapping transfers read it through. */
static void drop_backing(struct vgb_gpu *gpu, struct resource *res)
{
	gpu->view_mmaps -= res->backing_mmaps;
	res->backing_mmaps = 0;
	vgb_export_unref(res->backing_view);
	res->backing_view = NULL;
	free(res->backing);
	res->backing = NULL;
}

/*
 * Maps a guest-RAM backing once, at ATTACH_BACKING, so that each TRANSFER_TO_HOST_2D is one
 * guarded 2D copy instead of a pread() per row and page. Only within the client's mmap
 * budget and when the segment edges allow a mapping; otherwise transfers read through the
 * layout as before. BAR backings always do (a read checks memory decode).
 */
static void map_backing(struct vgb_gpu *gpu, struct resource *res)
{
	const struct vgb_gpu_limits *l = &gpu->cfg.limits;
	struct vgb_export *v;
	int r;

	for (size_t i = 0; i < res->backing->n_segs; i++)
		if (res->backing->segs[i].kind != VGB_MEMMAP_RAM)
			return;
	r = vgb_export_create_mapped(res->backing,
				     l->max_view_mmaps - VGB_MIN(gpu->view_mmaps, l->max_view_mmaps),
				     &v);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "backing of %u (%zu segments) not mapped", res->id,
			      res->backing->n_segs);
		return;
	}
	res->backing_view = v;
	res->backing_mmaps = v->segmap ? v->segmap->n_mmaps : 0;
	gpu->view_mmaps += res->backing_mmaps;
}

static void free_res(struct vgb_gpu *gpu, struct resource *res)
{
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
		if (gpu->scanouts[s].enabled && gpu->scanouts[s].resource_id == res->id)
			disable_scanout(gpu, s);
	drop_export(gpu, res);
	if (!res->is_blob)
		gpu->host_bytes -= res->size;
	drop_backing(gpu, res);
	free(res->layout);
	free(res);
}

static void remove_res(struct vgb_gpu *gpu, struct resource *res)
{
	for (size_t i = 0; i < gpu->n_res; i++) {
		if (gpu->res[i] == res) {
			gpu->res[i] = gpu->res[--gpu->n_res];
			break;
		}
	}
	free_res(gpu, res);
}

static int add_res(struct vgb_gpu *gpu, struct resource *res)
{
	struct resource **p = reallocarray(gpu->res, gpu->n_res + 1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	gpu->res = p;
	gpu->res[gpu->n_res++] = res;
	return 0;
}

/*
 * Makes sure a valid blob has a current export: re-plans after a device reset (its dmabuf
 * is revoked) or after an earlier drop. Returns 0 or -errno.
 */
static int ensure_export(struct vgb_gpu *gpu, struct resource *res)
{
	struct vgb_export_report report;
	struct vgb_export *e;
	uint64_t key;
	int r;

	if (!res->is_blob)
		return res->exp ? 0 : -ENOENT;
	if (res->invalid || !res->layout)
		return -ESTALE;
	key = gen_key(res->layout);
	r = check_decode(res->layout);
	if (res->exp && (key != res->gen_key || res->faulted || r < 0)) {
		gpu->stats.exports_dropped++;
		drop_export(gpu, res);
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

/* Memory-map listener: blobs and backings that use window @w become invalid. */
static void on_window_removed(void *data, struct vgb_memmap *map,
			      const struct vgb_memmap_window *w)
{
	struct vgb_gpu *gpu = data;

	for (size_t i = 0; i < gpu->n_res; i++) {
		struct resource *res = gpu->res[i];

		if (res->backing && vgb_blob_layout_uses_window(res->backing, w->id))
			drop_backing(gpu, res);
		if (!res->is_blob || !res->layout || !vgb_blob_layout_uses_window(res->layout, w->id))
			continue;
		for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
			if (gpu->scanouts[s].enabled && gpu->scanouts[s].resource_id == res->id)
				disable_scanout(gpu, s);
		/* Frames in flight keep their own references to the export. */
		drop_export(gpu, res);
		free(res->layout);
		res->layout = NULL;
		res->invalid = true;
		gpu->stats.blobs_invalidated++;
	}
}

/* ---- fences ---- */

static uint64_t timeline_of(const struct virtio_gpu_ctrl_hdr *hdr)
{
	uint64_t ring = (le32toh(hdr->flags) & VIRTIO_GPU_FLAG_INFO_RING_IDX) ? hdr->ring_idx : 0;

	return ((uint64_t)le32toh(hdr->ctx_id) << 8) | ring;
}

static bool is_head_of_timeline(struct vgb_gpu *gpu, const struct pending *p)
{
	for (struct pending *q = gpu->pending_head; q && q != p; q = q->next)
		if (q->timeline == p->timeline)
			return false;
	return true;
}

static void unlink_pending(struct vgb_gpu *gpu, struct pending *p)
{
	struct pending **pp = &gpu->pending_head;

	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	if (gpu->pending_tail == &p->next)
		gpu->pending_tail = pp;
	for (struct frame_token *t = gpu->tokens; t; t = t->next)
		if (t->p == p)
			t->p = NULL;
}

/* Delivers every ready response that no earlier fence of its timeline holds back. */
static void deliver(struct vgb_gpu *gpu)
{
	bool again = true;

	if (gpu->delivering)
		return;
	gpu->delivering = true;
	while (again) {
		again = false;
		for (struct pending *p = gpu->pending_head; p; p = p->next) {
			if (!p->ready || !is_head_of_timeline(gpu, p))
				continue;
			unlink_pending(gpu, p);
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

/* The sink could not read @exp's memory (-EIO): whichever resource shows it re-plans. */
static void mark_faulted(struct vgb_gpu *gpu, const struct vgb_export *exp)
{
	for (size_t i = 0; i < gpu->n_res; i++)
		if (gpu->res[i]->exp == exp)
			gpu->res[i]->faulted = true;
}

static void frame_done(void *data, int status)
{
	struct frame_token *t = data;
	struct vgb_gpu *gpu = t->gpu;

	if (gpu && status == -EIO)
		mark_faulted(gpu, t->exp);
	if (gpu) {
		if (t->prev)
			t->prev->next = t->next;
		else
			gpu->tokens = t->next;
		if (t->next)
			t->next->prev = t->prev;
		if (t->p && --t->p->outstanding == 0)
			t->p->ready = true;
	}
	vgb_export_unref(t->exp);
	free(t);
	if (gpu && !gpu->in_process)
		deliver(gpu);
}

int vgb_gpu_next_timeout_ms(struct vgb_gpu *gpu)
{
	uint64_t now = vgb_now_ns(), first = UINT64_MAX;

	for (struct pending *p = gpu->pending_head; p; p = p->next)
		if (!p->ready && p->deadline_ns < first)
			first = p->deadline_ns;
	if (first == UINT64_MAX)
		return -1;
	if (first <= now)
		return 0;
	return (int)VGB_MIN((first - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

void vgb_gpu_dispatch_timeouts(struct vgb_gpu *gpu)
{
	uint64_t now = vgb_now_ns();

	for (struct pending *p = gpu->pending_head; p; p = p->next) {
		if (p->ready || p->deadline_ns > now)
			continue;
		p->ready = true;
		gpu->stats.fences_timed_out++;
		for (struct frame_token *t = gpu->tokens; t; t = t->next)
			if (t->p == p)
				t->p = NULL;
	}
	deliver(gpu);
}

/* ---- commands ---- */

struct ctx {
	struct vgb_gpu *gpu;
	const struct virtio_gpu_ctrl_hdr *hdr;
	const uint8_t *cmd;  /* the fixed part, copied to an aligned buffer */
	const uint8_t *raw;  /* the whole message as received (inline entries follow) */
	size_t len;
	struct pending *fence; /* when fenced: frames presented by this command count here */
	uint8_t *resp;
	size_t resp_len;
};

/* Logs a guest mistake (rate-limited) and returns the response type for it. */
#define GUEST_ERR(type, ...)                                                  \
	({                                                                    \
		vgb_log_ratelimited(VGB_LOG_WARN, "guest: " __VA_ARGS__);      \
		(uint32_t)(type);                                             \
	})

static uint32_t host_err(int r)
{
	return r == -ENOMEM ? VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY : VIRTIO_GPU_RESP_ERR_UNSPEC;
}

static bool rect_in(const struct virtio_gpu_rect *r, uint32_t width, uint32_t height)
{
	uint64_t x = le32toh(r->x), y = le32toh(r->y), w = le32toh(r->width),
		 h = le32toh(r->height);

	return x + w <= width && y + h <= height;
}

static struct vgb_rect rect_of(const struct virtio_gpu_rect *r)
{
	return (struct vgb_rect){ le32toh(r->x), le32toh(r->y), le32toh(r->width),
				  le32toh(r->height) };
}

static uint32_t cmd_get_display_info(struct ctx *c)
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

static uint32_t check_scanout(struct ctx *c, uint32_t s);

/* GET_EDID (VIRTIO_GPU_F_EDID): a generated monitor for each scanout at its configured size. */
static uint32_t cmd_get_edid(struct ctx *c)
{
	const struct virtio_gpu_cmd_get_edid *cmd = (const void *)c->cmd;
	struct virtio_gpu_resp_edid *out = (void *)c->resp;
	const struct vgb_gpu_limits *l = &c->gpu->cfg.limits;
	uint32_t s = le32toh(cmd->scanout), err;
	int r;

	if ((err = check_scanout(c, s)))
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

static uint32_t check_new_id(struct vgb_gpu *gpu, uint32_t id)
{
	if (id == 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "resource id 0");
	if (find_res(gpu, id))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "resource %u exists", id);
	if (gpu->n_res >= gpu->cfg.limits.max_resources)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, "over %u resources",
				 gpu->cfg.limits.max_resources);
	return 0;
}

static uint32_t cmd_create_2d(struct ctx *c)
{
	const struct virtio_gpu_resource_create_2d *cmd = (const void *)c->cmd;
	uint32_t id = le32toh(cmd->resource_id), w = le32toh(cmd->width), h = le32toh(cmd->height);
	uint32_t fourcc = vgb_format_virtio_to_drm(le32toh(cmd->format)), err, stride;
	struct vgb_gpu *gpu = c->gpu;
	struct resource *res;
	uint64_t size, total;
	int r;

	if ((err = check_new_id(gpu, id)))
		return err;
	if (fourcc == 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "format %u",
				 le32toh(cmd->format));
	if (w == 0 || h == 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "2D size %ux%u", w, h);
	if (__builtin_mul_overflow(w, vgb_format_bpp(fourcc), &stride) ||
	    __builtin_mul_overflow((uint64_t)stride, h, &size) ||
	    size > gpu->cfg.limits.max_blob_bytes ||
	    __builtin_add_overflow(gpu->host_bytes, size, &total) ||
	    total > gpu->cfg.limits.max_host_bytes)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, "2D resource %ux%u too big", w,
				 h);
	res = calloc(1, sizeof(*res));
	if (!res)
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	res->id = id;
	res->fourcc = fourcc;
	res->width = w;
	res->height = h;
	res->stride = stride;
	res->size = size;
	r = vgb_export_create_host(size, &res->exp);
	if (r == 0)
		r = add_res(gpu, res);
	if (r < 0) {
		vgb_export_unref(res->exp);
		free(res);
		return host_err(r);
	}
	gpu->host_bytes += size;
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_unref(struct ctx *c)
{
	const struct virtio_gpu_resource_unref *cmd = (const void *)c->cmd;
	struct resource *res = find_res(c->gpu, le32toh(cmd->resource_id));

	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "unref of %u",
				 le32toh(cmd->resource_id));
	remove_res(c->gpu, res);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Translates inline entries after a command struct of @hdr_size bytes. */
static uint32_t translate_entries(struct ctx *c, size_t hdr_size, uint32_t n, uint64_t size,
				  struct vgb_blob_layout **ret)
{
	const struct vgb_gpu_limits *l = &c->gpu->cfg.limits;
	size_t need;
	int r;

	if (n > l->max_entries)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "%u entries (cap %u)", n,
				 l->max_entries);
	if (__builtin_mul_overflow((size_t)n, sizeof(struct virtio_gpu_mem_entry), &need) ||
	    __builtin_add_overflow(need, hdr_size, &need) || c->len < need)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "%u entries do not fit in %zu bytes", n, c->len);
	/* The entries stay in the caller's buffer; the translator reads them unaligned. */
	r = vgb_blob_translate(c->gpu->map,
			       (const struct virtio_gpu_mem_entry *)(const void *)(c->raw + hdr_size),
			       n, size, l->max_entries, l->max_blob_bytes, ret);
	if (r == -ENOMEM)
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	if (r < 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "bad entries: %s",
				 strerror(-r));
	return 0;
}

static uint32_t cmd_attach_backing(struct ctx *c)
{
	const struct virtio_gpu_resource_attach_backing *cmd = (const void *)c->cmd;
	struct resource *res = find_res(c->gpu, le32toh(cmd->resource_id));
	struct vgb_blob_layout *layout;
	uint32_t err;

	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "attach to %u",
				 le32toh(cmd->resource_id));
	if (res->is_blob)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "attach to blob %u", res->id);
	if (res->backing)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "resource %u has backing", res->id);
	err = translate_entries(c, sizeof(*cmd), le32toh(cmd->nr_entries), 0, &layout);
	if (err)
		return err;
	c->gpu->stats.blob_segments += layout->n_segs;
	c->gpu->stats.segments_merged += layout->merged;
	res->backing = layout;
	map_backing(c->gpu, res);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_detach_backing(struct ctx *c)
{
	const struct virtio_gpu_resource_detach_backing *cmd = (const void *)c->cmd;
	struct resource *res = find_res(c->gpu, le32toh(cmd->resource_id));

	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "detach from %u",
				 le32toh(cmd->resource_id));
	if (res->is_blob)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "detach from blob %u",
				 res->id);
	if (!res->backing)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "resource %u has no backing", res->id);
	drop_backing(c->gpu, res);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_transfer_2d(struct ctx *c)
{
	const struct virtio_gpu_transfer_to_host_2d *cmd = (const void *)c->cmd;
	struct resource *res = find_res(c->gpu, le32toh(cmd->resource_id));
	uint32_t w = le32toh(cmd->r.width), h = le32toh(cmd->r.height);
	uint32_t x = le32toh(cmd->r.x), y = le32toh(cmd->r.y);
	uint64_t src = le64toh(cmd->offset), row_bytes, end;
	uint8_t *dst;

	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "transfer to %u",
				 le32toh(cmd->resource_id));
	if (res->is_blob)
		return VIRTIO_GPU_RESP_OK_NODATA; /* guest blobs are the memory: nothing to do */
	if (!res->backing)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "transfer to %u without backing",
				 res->id);
	if (!rect_in(&cmd->r, res->width, res->height))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "transfer rect outside %u",
				 res->id);
	if (w == 0 || h == 0)
		return VIRTIO_GPU_RESP_OK_NODATA;
	row_bytes = (uint64_t)w * vgb_format_bpp(res->fourcc);
	/* Row i comes from backing offset src + i * stride (the guest's layout = ours). */
	if (__builtin_mul_overflow((uint64_t)res->stride, (uint64_t)(h - 1), &end) ||
	    __builtin_add_overflow(end, src, &end) || __builtin_add_overflow(end, row_bytes, &end) ||
	    end > res->backing->size)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "transfer reaches past the backing of %u", res->id);
	dst = (uint8_t *)res->exp->map + (uint64_t)y * res->stride +
	      (uint64_t)x * vgb_format_bpp(res->fourcc);
	if (res->backing_view) {
		/* One guarded copy: a backing that vanished under the mapping is -EIO. */
		int r = vgb_guarded_copy_2d(dst, res->stride, res->backing_view->cpu + src,
					    res->stride, row_bytes, h);
		if (r < 0) {
			vgb_log_ratelimited(VGB_LOG_WARN, "transfer to %u: %s", res->id,
					    strerror(-r));
			return host_err(r);
		}
		c->gpu->stats.copies++;
		c->gpu->stats.bytes_copied += row_bytes * h;
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	for (uint32_t i = 0; i < h; i++) {
		int r = vgb_blob_layout_read(res->backing, src + (uint64_t)i * res->stride,
					     dst + (uint64_t)i * res->stride, row_bytes);
		if (r < 0) {
			vgb_log_ratelimited(VGB_LOG_WARN, "transfer to %u: %s", res->id,
					    strerror(-r));
			return host_err(r);
		}
	}
	c->gpu->stats.copies++;
	c->gpu->stats.bytes_copied += row_bytes * h;
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_create_blob(struct ctx *c)
{
	const struct virtio_gpu_resource_create_blob *cmd = (const void *)c->cmd;
	uint32_t id = le32toh(cmd->resource_id), err;
	uint32_t flags = le32toh(cmd->blob_flags);
	struct vgb_gpu *gpu = c->gpu;
	struct vgb_blob_layout *layout;
	struct resource *res;
	int r;

	if ((err = check_new_id(gpu, id)))
		return err;
	if (le32toh(cmd->blob_mem) != VIRTIO_GPU_BLOB_MEM_GUEST)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob_mem %u",
				 le32toh(cmd->blob_mem));
	if (flags & ~(uint32_t)(VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE |
				VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE |
				VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob_flags %#x", flags);
	if (le64toh(cmd->size) == 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "blob size 0");
	err = translate_entries(c, sizeof(*cmd), le32toh(cmd->nr_entries), le64toh(cmd->size),
				&layout);
	if (err)
		return err;
	res = calloc(1, sizeof(*res));
	if (!res) {
		free(layout);
		return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
	}
	res->id = id;
	res->is_blob = true;
	res->layout = layout;
	res->size = layout->size;
	r = add_res(gpu, res);
	if (r < 0) {
		free(res->layout);
		free(res);
		return host_err(r);
	}
	gpu->stats.blob_segments += layout->n_segs;
	gpu->stats.segments_merged += layout->merged;
	/* Plan now: the VMM may ask for the dmabuf before any scanout shows the blob. With
	 * memory decode off (-EIO) the blob is still valid: it is planned on first use. */
	r = ensure_export(gpu, res);
	if (r < 0 && r != -EIO) {
		remove_res(gpu, res);
		return host_err(r);
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t check_scanout(struct ctx *c, uint32_t s)
{
	if (s >= c->gpu->cfg.limits.num_scanouts)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, "scanout %u", s);
	return 0;
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

static uint32_t cmd_set_scanout(struct ctx *c)
{
	const struct virtio_gpu_set_scanout *cmd = (const void *)c->cmd;
	uint32_t s = le32toh(cmd->scanout_id), id = le32toh(cmd->resource_id), err;
	struct vgb_rect r = rect_of(&cmd->r);
	struct resource *res;
	uint32_t bpp;

	if ((err = check_scanout(c, s)))
		return err;
	if (id == 0) {
		disable_scanout(c->gpu, s);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = find_res(c->gpu, id);
	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "scanout of %u", id);
	if (res->is_blob)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "SET_SCANOUT of blob %u (use SET_SCANOUT_BLOB)", id);
	if (r.width < 16 || r.height < 16 || !rect_in(&cmd->r, res->width, res->height))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "scanout rect %ux%u+%u+%u on %ux%u", r.width, r.height, r.x, r.y,
				 res->width, res->height);
	bpp = vgb_format_bpp(res->fourcc);
	bind_scanout(c->gpu, s, id, &r, (uint64_t)r.y * res->stride + (uint64_t)r.x * bpp,
		     res->stride, res->fourcc);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_set_scanout_blob(struct ctx *c)
{
	const struct virtio_gpu_set_scanout_blob *cmd = (const void *)c->cmd;
	uint32_t s = le32toh(cmd->scanout_id), id = le32toh(cmd->resource_id), err;
	uint32_t fourcc = vgb_format_virtio_to_drm(le32toh(cmd->format));
	uint32_t fb_w = le32toh(cmd->width), fb_h = le32toh(cmd->height);
	uint32_t stride = le32toh(cmd->strides[0]), bpp;
	struct vgb_rect r = rect_of(&cmd->r);
	uint64_t start, end, row;
	struct resource *res;

	if ((err = check_scanout(c, s)))
		return err;
	if (id == 0) {
		disable_scanout(c->gpu, s);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = find_res(c->gpu, id);
	if (!res || !res->is_blob)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "scanout of blob %u", id);
	if (res->invalid)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "blob %u lost its memory window", id);
	if (fourcc == 0)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "format %u",
				 le32toh(cmd->format));
	bpp = vgb_format_bpp(fourcc);
	if (r.width < 16 || r.height < 16 || !rect_in(&cmd->r, fb_w, fb_h))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "scanout rect %ux%u+%u+%u on %ux%u", r.width, r.height, r.x, r.y,
				 fb_w, fb_h);
	/* The frame reads rows of r.width pixels, stride apart, from (r.x, r.y) of the fb. */
	if ((uint64_t)stride < (uint64_t)fb_w * bpp)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "stride %u for width %u",
				 stride, fb_w);
	row = (uint64_t)r.width * bpp;
	/* 32-bit fields keep this under 2^64 (stride >= width * 4 bounds x and width); checked
	 * anyway, since a wrapped end would let a frame read outside the blob. */
	if (__builtin_mul_overflow((uint64_t)r.y, (uint64_t)stride, &start) ||
	    __builtin_add_overflow(start, (uint64_t)le32toh(cmd->offsets[0]), &start) ||
	    __builtin_add_overflow(start, (uint64_t)r.x * bpp, &start) ||
	    __builtin_mul_overflow((uint64_t)stride, (uint64_t)(r.height - 1), &end) ||
	    __builtin_add_overflow(end, start, &end) || __builtin_add_overflow(end, row, &end))
		end = UINT64_MAX;
	if (end > res->size)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "scanout reaches byte %llu of blob %u (%llu bytes)",
				 (unsigned long long)end, id, (unsigned long long)res->size);
	res->last_fourcc = fourcc;
	res->last_width = fb_w;
	res->last_height = fb_h;
	res->last_stride = stride;
	res->last_offset = le32toh(cmd->offsets[0]);
	bind_scanout(c->gpu, s, id, &r, start, stride, fourcc);
	return VIRTIO_GPU_RESP_OK_NODATA;
}

/* Presents scanout @s (which shows @res) with @damage in scanout coordinates. */
static int present(struct ctx *c, unsigned s, struct resource *res, const struct vgb_rect *damage)
{
	struct vgb_gpu *gpu = c->gpu;
	struct scanout *so = &gpu->scanouts[s];
	uint64_t len = (uint64_t)so->stride * (so->r.height - 1) +
		       (uint64_t)so->r.width * vgb_format_bpp(so->fourcc);
	struct frame_token *t;
	struct vgb_frame frame;
	int r;

	if (res->is_blob) {
		r = ensure_export(gpu, res);
		if (r < 0)
			return r;
		if (!res->exp->cpu) {
			const struct vgb_gpu_limits *l = &gpu->cfg.limits;
			struct vgb_export *e = res->exp;

			r = vgb_export_cpu_view_limited(
				e, res->layout, l->max_view_mmaps - VGB_MIN(gpu->view_mmaps,
									    l->max_view_mmaps),
				l->max_host_bytes - VGB_MIN(gpu->host_bytes, l->max_host_bytes));
			if (r < 0)
				return r;
			res->charged_mmaps = e->segmap ? e->segmap->n_mmaps : 0;
			res->charged_bytes = e->cpu_is_copy ? e->map_size : 0;
			gpu->view_mmaps += res->charged_mmaps;
			gpu->host_bytes += res->charged_bytes;
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
	}
	if (!gpu->cfg.display)
		return 0;
	if (so->id_for != res->exp || !so->buffer_id) {
		if (so->buffer_id)
			vgb_display_forget(gpu->cfg.display, so->buffer_id);
		so->buffer_id = next_buffer_id++;
		so->id_for = res->exp;
	}

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->gpu = gpu;
	t->exp = vgb_export_ref(res->exp);
	t->cpu = (struct vgb_cpu_view){
		.data = res->exp->cpu + so->offset,
		.stride = so->stride,
		.memfd = -1,
	};
	if (!vgb_export_memfd_range(res->exp, so->offset, len, &t->cpu.memfd,
				    &t->cpu.memfd_offset, &t->cpu.memfd_size))
		t->cpu.memfd = -1;
	vgb_dmabuf_init(&t->dmabuf);
	if (res->exp->dmabuf_fd >= 0 && so->offset <= UINT32_MAX) {
		t->dmabuf = (struct vgb_dmabuf){
			.width = so->r.width, .height = so->r.height, .fourcc = so->fourcc,
			.modifier = DRM_FORMAT_MOD_LINEAR, .n_planes = 1,
			.offset = { (uint32_t)so->offset }, .stride = { so->stride },
			.fd = { res->exp->dmabuf_fd, -1, -1, -1 },
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
		if (t->prev)
			t->prev->next = t->next;
		else
			gpu->tokens = t->next;
		if (t->next)
			t->next->prev = t->prev;
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

static uint32_t cmd_flush(struct ctx *c)
{
	const struct virtio_gpu_resource_flush *cmd = (const void *)c->cmd;
	struct resource *res = find_res(c->gpu, le32toh(cmd->resource_id));
	struct vgb_gpu *gpu = c->gpu;
	struct vgb_rect fr = rect_of(&cmd->r);

	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "flush of %u",
				 le32toh(cmd->resource_id));
	if (res->invalid)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "blob %u lost its memory window", res->id);
	if (!res->is_blob && !rect_in(&cmd->r, res->width, res->height))
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "flush rect outside %u",
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
		x0 = VGB_MAX((uint64_t)fr.x, so->r.x);
		y0 = VGB_MAX((uint64_t)fr.y, so->r.y);
		x1 = VGB_MIN((uint64_t)fr.x + fr.width, (uint64_t)so->r.x + so->r.width);
		y1 = VGB_MIN((uint64_t)fr.y + fr.height, (uint64_t)so->r.y + so->r.height);
		if (x1 <= x0 || y1 <= y0)
			damage = (struct vgb_rect){ 0 };
		else
			damage = (struct vgb_rect){ (uint32_t)(x0 - so->r.x), (uint32_t)(y0 - so->r.y),
						    (uint32_t)(x1 - x0), (uint32_t)(y1 - y0) };
		r = present(c, s, res, &damage);
		if (r == -EIO)
			res->faulted = true; /* e.g. memory decode off: no view now, maybe later */
		if (r == -ESTALE)
			return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
					 "blob %u lost its memory window", res->id);
		if (r == -E2BIG)
			return GUEST_ERR(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
					 "blob %u: no room left for its CPU view", res->id);
		if (r < 0) {
			vgb_log_ratelimited(VGB_LOG_WARN, "flush of %u: %s", res->id, strerror(-r));
			return host_err(r);
		}
	}
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_update_cursor(struct ctx *c)
{
	const struct virtio_gpu_update_cursor *cmd = (const void *)c->cmd;
	uint32_t s = le32toh(cmd->pos.scanout_id), id = le32toh(cmd->resource_id), err;
	struct vgb_gpu *gpu = c->gpu;
	struct resource *res;
	int r;

	if ((err = check_scanout(c, s)))
		return err;
	if (id == 0) {
		vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s, NULL, 0, 0, 0,
				       0);
		return VIRTIO_GPU_RESP_OK_NODATA;
	}
	res = find_res(gpu, id);
	if (!res)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "cursor %u", id);
	if (res->is_blob || res->width > CURSOR_MAX || res->height > CURSOR_MAX)
		return GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				 "cursor %u is not a 2D image of at most 64x64", id);
	if (!gpu->cfg.display)
		return VIRTIO_GPU_RESP_OK_NODATA;
	/* 2D host memory is tightly packed 32-bit pixels: exactly what set_cursor takes. */
	r = vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s,
				   (const uint32_t *)res->exp->map, res->width, res->height,
				   le32toh(cmd->hot_x), le32toh(cmd->hot_y));
	if (r < 0)
		vgb_log_ratelimited(VGB_LOG_WARN, "display refused cursor: %s", strerror(-r));
	vgb_display_move_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s,
				(int32_t)le32toh(cmd->pos.x), (int32_t)le32toh(cmd->pos.y));
	return VIRTIO_GPU_RESP_OK_NODATA;
}

static uint32_t cmd_move_cursor(struct ctx *c)
{
	const struct virtio_gpu_update_cursor *cmd = (const void *)c->cmd;
	uint32_t s = le32toh(cmd->pos.scanout_id), err;

	if ((err = check_scanout(c, s)))
		return err;
	vgb_display_move_cursor(c->gpu->cfg.display, c->gpu->cfg.scanout_base + s,
				(int32_t)le32toh(cmd->pos.x), (int32_t)le32toh(cmd->pos.y));
	return VIRTIO_GPU_RESP_OK_NODATA;
}

struct cmd_desc {
	uint32_t type;
	unsigned stat;
	size_t size;
	uint32_t (*fn)(struct ctx *c);
	size_t resp_size; /* of the OK response; 0: a header */
};

static const struct cmd_desc cmds[] = {
	{ VIRTIO_GPU_CMD_GET_DISPLAY_INFO, VGB_GPU_STAT_GET_DISPLAY_INFO,
	  sizeof(struct virtio_gpu_ctrl_hdr), cmd_get_display_info,
	  sizeof(struct virtio_gpu_resp_display_info) },
	{ VIRTIO_GPU_CMD_GET_EDID, VGB_GPU_STAT_GET_EDID, sizeof(struct virtio_gpu_cmd_get_edid),
	  cmd_get_edid, sizeof(struct virtio_gpu_resp_edid) },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, VGB_GPU_STAT_RESOURCE_CREATE_2D,
	  sizeof(struct virtio_gpu_resource_create_2d), cmd_create_2d, 0 },
	{ VIRTIO_GPU_CMD_RESOURCE_UNREF, VGB_GPU_STAT_RESOURCE_UNREF,
	  sizeof(struct virtio_gpu_resource_unref), cmd_unref, 0 },
	{ VIRTIO_GPU_CMD_SET_SCANOUT, VGB_GPU_STAT_SET_SCANOUT,
	  sizeof(struct virtio_gpu_set_scanout), cmd_set_scanout, 0 },
	{ VIRTIO_GPU_CMD_RESOURCE_FLUSH, VGB_GPU_STAT_RESOURCE_FLUSH,
	  sizeof(struct virtio_gpu_resource_flush), cmd_flush, 0 },
	{ VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, VGB_GPU_STAT_TRANSFER_TO_HOST_2D,
	  sizeof(struct virtio_gpu_transfer_to_host_2d), cmd_transfer_2d, 0 },
	{ VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, VGB_GPU_STAT_ATTACH_BACKING,
	  sizeof(struct virtio_gpu_resource_attach_backing), cmd_attach_backing, 0 },
	{ VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, VGB_GPU_STAT_DETACH_BACKING,
	  sizeof(struct virtio_gpu_resource_detach_backing), cmd_detach_backing, 0 },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, VGB_GPU_STAT_RESOURCE_CREATE_BLOB,
	  sizeof(struct virtio_gpu_resource_create_blob), cmd_create_blob, 0 },
	{ VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, VGB_GPU_STAT_SET_SCANOUT_BLOB,
	  sizeof(struct virtio_gpu_set_scanout_blob), cmd_set_scanout_blob, 0 },
	{ VIRTIO_GPU_CMD_UPDATE_CURSOR, VGB_GPU_STAT_UPDATE_CURSOR,
	  sizeof(struct virtio_gpu_update_cursor), cmd_update_cursor, 0 },
	{ VIRTIO_GPU_CMD_MOVE_CURSOR, VGB_GPU_STAT_MOVE_CURSOR,
	  sizeof(struct virtio_gpu_update_cursor), cmd_move_cursor, 0 },
};

/* Response header: the spec's rules for echoing fence and ring fields. */
static void fill_resp_hdr(struct virtio_gpu_ctrl_hdr *out, const struct virtio_gpu_ctrl_hdr *in,
			  uint32_t type)
{
	uint32_t flags = le32toh(in->flags);

	memset(out, 0, sizeof(*out));
	out->type = htole32(type);
	if (flags & VIRTIO_GPU_FLAG_FENCE) {
		uint32_t f = VIRTIO_GPU_FLAG_FENCE;

		out->fence_id = in->fence_id;
		out->ctx_id = in->ctx_id;
		if (flags & VIRTIO_GPU_FLAG_INFO_RING_IDX) {
			f |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
			out->ring_idx = in->ring_idx;
		}
		out->flags = htole32(f);
	}
}

int vgb_gpu_process(struct vgb_gpu *gpu, const void *cmd, size_t len, void *resp,
		    size_t resp_cap, size_t *ret_resp_len, uint64_t cookie)
{
	struct virtio_gpu_ctrl_hdr hdr;
	uint8_t out[VGB_GPU_MAX_RESP];
	/* The fixed part of any command we handle, aligned (the message may sit anywhere). */
	union {
		struct virtio_gpu_set_scanout_blob largest;
		uint64_t align;
	} fixed;
	const struct cmd_desc *d = NULL;
	struct pending *p = NULL;
	struct ctx c;
	uint32_t type, rtype;
	bool fenced;

	if (!cmd || len < sizeof(hdr))
		return -EINVAL;
	memcpy(&hdr, cmd, sizeof(hdr));
	type = le32toh(hdr.type);
	fenced = le32toh(hdr.flags) & VIRTIO_GPU_FLAG_FENCE;
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cmds); i++)
		if (cmds[i].type == type)
			d = &cmds[i];
	/* GET_DISPLAY_INFO and GET_EDID answer more than a header; the caller's buffer must fit. */
	if (resp_cap < (d && d->resp_size && len >= d->size ? d->resp_size
							     : sizeof(struct virtio_gpu_ctrl_hdr)))
		return -ENOBUFS;

	if (fenced) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->cookie = cookie;
		p->timeline = timeline_of(&hdr);
		p->deadline_ns = vgb_now_ns() + (uint64_t)gpu->cfg.limits.fence_timeout_ms * 1000000u;
		*gpu->pending_tail = p;
		gpu->pending_tail = &p->next;
	}

	c = (struct ctx){ .gpu = gpu, .hdr = &hdr, .cmd = (const uint8_t *)&fixed, .raw = cmd,
			  .len = len, .fence = p, .resp = out,
			  .resp_len = sizeof(struct virtio_gpu_ctrl_hdr) };
	gpu->stats.commands[d ? d->stat : VGB_GPU_STAT_OTHER]++;
	gpu->in_process = true;
	if (!d) {
		rtype = GUEST_ERR(VIRTIO_GPU_RESP_ERR_UNSPEC, "unsupported command %#x", type);
	} else if (len < d->size) {
		rtype = GUEST_ERR(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
				  "command %#x of %zu bytes (needs %zu)", type, len, d->size);
	} else {
		memcpy(&fixed, cmd, d->size);
		rtype = d->fn(&c);
	}
	gpu->in_process = false;
	if (rtype != VIRTIO_GPU_RESP_OK_DISPLAY_INFO && rtype != VIRTIO_GPU_RESP_OK_EDID)
		c.resp_len = sizeof(struct virtio_gpu_ctrl_hdr);

	fill_resp_hdr((struct virtio_gpu_ctrl_hdr *)(void *)out, &hdr, rtype);
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
		if (p->ready && is_head_of_timeline(gpu, p)) {
			unlink_pending(gpu, p);
			free(p);
			p = NULL;
			gpu->stats.fences_completed++;
		}
	}
	/* Frames completed while we were busy may release earlier fences. */
	deliver(gpu);
	if (p)
		return 1;
	memcpy(resp, out, c.resp_len);
	*ret_resp_len = c.resp_len;
	return 0;
}

/* ---- lifetime and stats ---- */

int vgb_gpu_create(struct vgb_memmap *map, const struct vgb_gpu_config *cfg,
		   struct vgb_gpu **ret)
{
	const struct vgb_gpu_limits *l = &cfg->limits;
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
	r = vgb_memmap_add_listener(map, on_window_removed, gpu);
	if (r < 0) {
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
	for (struct frame_token *t = gpu->tokens, *next; t; t = next) {
		next = t->next;
		t->gpu = NULL;
		t->p = NULL;
		t->prev = t->next = NULL;
	}
	gpu->tokens = NULL;
	while (gpu->pending_head) {
		struct pending *p = gpu->pending_head;

		gpu->pending_head = p->next;
		free(p);
	}
	for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
		disable_scanout(gpu, s);
	if (gpu->cfg.display)
		for (unsigned s = 0; s < gpu->cfg.limits.num_scanouts; s++)
			vgb_display_set_cursor(gpu->cfg.display, gpu->cfg.scanout_base + s, NULL,
					       0, 0, 0, 0);
	for (size_t i = 0; i < gpu->n_res; i++)
		free_res(gpu, gpu->res[i]);
	free(gpu->res);
	free(gpu);
}

int vgb_gpu_export_blob(struct vgb_gpu *gpu, uint32_t resource_id, struct vgb_dmabuf *ret,
			enum vgb_export_strategy *ret_strategy)
{
	struct resource *res = find_res(gpu, resource_id);
	struct vgb_dmabuf buf;
	int r, fd;

	if (!res || !res->is_blob)
		return -ENOENT;
	r = ensure_export(gpu, res);
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
	ret->has_display = gpu->cfg.display != NULL;
	if (gpu->cfg.display)
		vgb_display_get_stats(gpu->cfg.display, &ret->display);
	else
		memset(&ret->display, 0, sizeof(ret->display));
}
