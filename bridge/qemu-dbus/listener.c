/* SPDX-License-Identifier: MIT */
/*
 * org.qemu.Display1.Listener (+ .Unix.Map, .Unix.ScanoutDMABUF2) served on a console's
 * peer-to-peer connection: each call is validated before anything is mapped or allocated,
 * answered with an error that names the bad value, and turned into frames for the sink.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <drm_fourcc.h>
#include <gio/gunixfdlist.h>

#include "console.h"
#include "vgb/guard.h"
#include "vgb/log.h"
#include "vgb/util.h"

/* pixman's PIXMAN_FORMAT(bpp, type, a, r, g, b) codes for the formats QEMU's surfaces use. */
#define PIXMAN_CODE(bpp, type, a, r, g, b) \
	(((uint32_t)(bpp) << 24) | ((uint32_t)(type) << 16) | ((a) << 12) | ((r) << 8) | ((g) << 4) | (b))
#define PIXMAN_TYPE_ARGB 2
#define PIXMAN_TYPE_ABGR 3

uint32_t vgb_qd_pixman_to_drm(uint32_t pixman_format)
{
	switch (pixman_format) {
	case PIXMAN_CODE(32, PIXMAN_TYPE_ARGB, 0, 8, 8, 8):
		return DRM_FORMAT_XRGB8888;
	case PIXMAN_CODE(32, PIXMAN_TYPE_ARGB, 8, 8, 8, 8):
		return DRM_FORMAT_ARGB8888;
	case PIXMAN_CODE(32, PIXMAN_TYPE_ABGR, 0, 8, 8, 8):
		return DRM_FORMAT_XBGR8888;
	case PIXMAN_CODE(32, PIXMAN_TYPE_ABGR, 8, 8, 8, 8):
		return DRM_FORMAT_ABGR8888;
	}
	return 0;
}

void vgb_qd_map_unref(struct qd_map *m)
{
	if (!m || --m->refs > 0)
		return;
	if (m->base)
		munmap(m->base, m->len);
	if (m->fd >= 0)
		close(m->fd);
	free(m);
}

static struct qd_map *map_ref(struct qd_map *m)
{
	m->refs++;
	return m;
}

/* ---- replies ---- */

static gboolean reply_error(struct qd_console *c, GDBusMethodInvocation *inv, int r,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static gboolean reply_error(struct qd_console *c, GDBusMethodInvocation *inv, int r,
			    const char *fmt, ...)
{
	GDBusError code = G_DBUS_ERROR_FAILED;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	switch (r) {
	case -EINVAL:
	case -EOVERFLOW:
	case -E2BIG:
		code = G_DBUS_ERROR_INVALID_ARGS;
		break;
	case -EOPNOTSUPP:
		code = G_DBUS_ERROR_NOT_SUPPORTED;
		break;
	case -ENOMEM:
		code = G_DBUS_ERROR_NO_MEMORY;
		break;
	}
	c->q->stats.bad_calls++;
	vgb_log_ratelimited(VGB_LOG_WARN, "console %u: %s", c->qemu_id, msg);
	g_dbus_method_invocation_return_error_literal(inv, G_DBUS_ERROR, code, msg);
	return TRUE;
}

static void reply_ok(GDBusMethodInvocation *inv)
{
	g_dbus_method_invocation_return_value(inv, NULL);
}

/* ---- frames ---- */

struct frame_rec {
	struct qd_console *c;
	struct qd_map *map;
	struct vgb_cpu_view cpu;
	GDBusMethodInvocation *reply; /* UpdateDMABUF: answered when the sink is done */
};

static void frame_rec_free(struct frame_rec *rec)
{
	vgb_qd_map_unref(rec->map);
	vgb_qd_console_unref(rec->c);
	free(rec);
}

static void frame_done(void *data, int status)
{
	struct frame_rec *rec = data;

	if (rec->reply) {
		/* QEMU holds the guest until this answer: the buffer is free again. */
		if (!rec->c->dead)
			g_dbus_method_invocation_return_value(rec->reply, NULL);
		else
			g_object_unref(rec->reply);
		rec->reply = NULL;
	}
	if (status == -EIO && rec->c->kind == QD_MAP && rec->c->src == rec->map) {
		/* The guarded copy faulted: the memfd shrank under our mapping. */
		rec->c->q->stats.map_faults++;
	}
	frame_rec_free(rec);
}

/*
 * Hands the current source to the sink with @damage. Takes ownership of @reply (answered when
 * the frame is done, or at once when it could not be presented).
 */
static int present(struct qd_console *c, struct vgb_rect damage, GDBusMethodInvocation *reply)
{
	struct vgb_qemu_dbus *q = c->q;
	struct frame_rec *rec = calloc(1, sizeof(*rec));
	struct vgb_frame f = {
		.scanout = c->index,
		.width = c->width,
		.height = c->height,
		.fourcc = c->fourcc,
		.damage = damage,
		.flush_ns = vgb_now_ns(),
	};
	bool sink_copy = false;
	int r;

	if (!rec) {
		if (reply)
			g_dbus_method_invocation_return_error_literal(reply, G_DBUS_ERROR,
								      G_DBUS_ERROR_NO_MEMORY, "no memory");
		return -ENOMEM;
	}
	rec->c = vgb_qd_console_ref(c);
	rec->reply = reply;
	rec->cpu.memfd = -1;
	if (c->kind == QD_MAP && c->priv) {
		rec->map = map_ref(c->priv);
		rec->cpu.data = c->priv->base;
		rec->cpu.stride = c->priv_stride;
		rec->cpu.memfd = c->priv->fd;
		rec->cpu.memfd_size = c->priv->len;
		f.buffer_id = c->priv->id;
		f.cpu = &rec->cpu;
	} else if (c->kind == QD_MAP || c->kind == QD_SCANOUT) {
		rec->map = map_ref(c->src);
		rec->cpu.data = c->src->base + c->src_offset;
		rec->cpu.stride = c->stride;
		if (c->direct) {
			rec->cpu.memfd = c->src->fd;
			rec->cpu.memfd_offset = c->src_offset;
			rec->cpu.memfd_size = c->src->len;
			f.buffer_id = c->src->id;
		} else {
			sink_copy = c->kind == QD_MAP;
		}
		f.cpu = &rec->cpu;
	} else if (c->kind == QD_DMABUF) {
		f.dmabuf = &c->dmabuf;
		f.buffer_id = c->dmabuf_id;
		if (c->dmabuf_view) {
			rec->map = map_ref(c->dmabuf_view);
			rec->cpu.data = c->dmabuf_view->base + c->dmabuf.offset[0];
			rec->cpu.stride = c->dmabuf.stride[0];
			f.cpu = &rec->cpu;
		}
	}
	f.done = frame_done;
	f.done_data = rec;
	if (!q->opts.display) {
		frame_done(rec, 0);
		return 0;
	}
	c->enabled = true;
	r = vgb_display_present(q->opts.display, &f);
	if (r < 0) {
		vgb_log_ratelimited(VGB_LOG_WARN, "console %u: the sink refused a %ux%u frame: %s",
				    c->qemu_id, c->width, c->height, strerror(-r));
		frame_done(rec, r);
		return r;
	}
	q->stats.frames_presented++;
	if (c->direct && c->kind == QD_MAP)
		q->stats.frames_direct++;
	if (sink_copy)
		q->stats.frames_sink_copy++;
	{
		struct vgb_rect d = damage;
		if (vgb_rect_is_empty(&d) || !vgb_rect_clip(&d, c->width, c->height))
			d = (struct vgb_rect){ 0, 0, c->width, c->height };
		q->stats.damage_bytes += (uint64_t)d.width * d.height * c->bpp;
	}
	return 0;
}

static struct vgb_rect full(const struct qd_console *c)
{
	return (struct vgb_rect){ 0, 0, c->width, c->height };
}

/* Drops the frame source; the sink forgets its cached buffer. */
static void drop_source(struct qd_console *c)
{
	struct vgb_display *d = c->q->opts.display;

	if (c->src) {
		if (c->direct)
			vgb_display_forget(d, c->src->id);
		vgb_qd_map_unref(c->src);
		c->src = NULL;
	}
	if (c->priv) {
		vgb_display_forget(d, c->priv->id);
		vgb_qd_map_unref(c->priv);
		c->priv = NULL;
	}
	if (c->kind == QD_DMABUF)
		vgb_display_forget(d, c->dmabuf_id);
	vgb_qd_map_unref(c->dmabuf_view);
	c->dmabuf_view = NULL;
	vgb_dmabuf_finish(&c->dmabuf);
	c->kind = QD_NONE;
	c->direct = false;
}

void vgb_qd_listener_reset(struct qd_console *c)
{
	drop_source(c);
	free(c->cursor);
	c->cursor = NULL;
	if (c->enabled)
		vgb_display_disable_scanout(c->q->opts.display, c->index);
	c->enabled = false;
}

/*
 * Checks a width/height/stride/format quadruple. Returns 0 with *@ret_bytes = stride * height,
 * or -errno with @msg filled.
 */
static int check_layout(uint32_t width, uint32_t height, uint32_t stride, uint32_t fourcc,
			uint64_t *ret_bytes, char *msg, size_t msg_len)
{
	uint32_t bpp = vgb_format_bpp(fourcc);
	uint64_t bytes;

	if (width == 0 || height == 0 || width > QD_MAX_DIM || height > QD_MAX_DIM) {
		snprintf(msg, msg_len, "size %ux%u is outside 1x1..%ux%u", width, height,
			 QD_MAX_DIM, QD_MAX_DIM);
		return -EINVAL;
	}
	if (bpp == 0) {
		snprintf(msg, msg_len, "format 0x%08x is not one we show", fourcc);
		return -EOPNOTSUPP;
	}
	if ((uint64_t)stride < (uint64_t)width * bpp) {
		snprintf(msg, msg_len, "stride %u is smaller than width %u x %u bytes", stride,
			 width, bpp);
		return -EINVAL;
	}
	if (__builtin_mul_overflow((uint64_t)stride, (uint64_t)height, &bytes) ||
	    bytes > QD_MAX_FRAME_BYTES) {
		snprintf(msg, msg_len, "stride %u x height %u is more than %llu bytes", stride, height,
			 (unsigned long long)QD_MAX_FRAME_BYTES);
		return -E2BIG;
	}
	*ret_bytes = bytes;
	return 0;
}

/* An update rectangle inside the scanout; false when it is not (negative, past the edge). */
static bool check_rect(const struct qd_console *c, int32_t x, int32_t y, int32_t w, int32_t h,
		       struct vgb_rect *ret)
{
	if (x < 0 || y < 0 || w < 0 || h < 0)
		return false;
	if ((uint64_t)x + (uint64_t)w > c->width || (uint64_t)y + (uint64_t)h > c->height)
		return false;
	*ret = (struct vgb_rect){ (uint32_t)x, (uint32_t)y, (uint32_t)w, (uint32_t)h };
	return true;
}

/* Takes the one fd of a call that must carry exactly one. Returns the fd (ours) or -errno. */
static int take_one_fd(GUnixFDList *fds, GVariant *handle, char *msg, size_t msg_len)
{
	int n = fds ? g_unix_fd_list_get_length(fds) : 0;
	gint32 idx = g_variant_get_handle(handle);
	int fd;

	if (n != 1 || idx != 0) {
		snprintf(msg, msg_len, "expected exactly 1 fd at handle 0, got %d fd(s), handle %d",
			 n, idx);
		return -EINVAL;
	}
	fd = g_unix_fd_list_get(fds, 0, NULL);
	if (fd < 0) {
		snprintf(msg, msg_len, "could not take the fd");
		return -EBADF;
	}
	return fd;
}

/* A new memfd of ours, @len bytes, sealed so the compositor can map it safely. */
static struct qd_map *new_own_map(struct vgb_qemu_dbus *q, size_t len)
{
	_cleanup_close_ int fd = memfd_create("vgb-qemu-scanout", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct qd_map *m;

	if (fd < 0 || ftruncate(fd, (off_t)len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m->base == MAP_FAILED) {
		free(m);
		return NULL;
	}
	m->refs = 1;
	m->len = len;
	m->fd = TAKE_FD(fd);
	m->ours = true;
	m->id = ++q->next_buffer_id;
	return m;
}

/* Makes (or reuses) our own sealed buffer of the scanout's size for Scanout/Update. */
static int own_buffer(struct qd_console *c, uint32_t width, uint32_t height, uint32_t fourcc)
{
	uint32_t stride = width * 4;
	struct qd_map *m;

	if (c->kind == QD_SCANOUT && c->src && c->width == width && c->height == height &&
	    c->fourcc == fourcc && c->src->refs == 1)
		return 0;
	m = new_own_map(c->q, (size_t)stride * height);
	if (!m)
		return -ENOMEM;
	drop_source(c);
	c->src = m;
	c->src_offset = 0;
	c->kind = QD_SCANOUT;
	c->width = width;
	c->height = height;
	c->stride = stride;
	c->fourcc = fourcc;
	c->bpp = 4;
	c->direct = !c->q->opts.tear_free;
	return 0;
}

/*
 * Copies @rect of QEMU's memfd into our own copy of it. Guarded: a memfd that shrank under the
 * mapping gives -EIO, never SIGBUS.
 */
static int copy_to_priv(struct qd_console *c, const struct vgb_rect *rect)
{
	const uint8_t *src = c->src->base + c->src_offset + (size_t)rect->y * c->stride +
			     (size_t)rect->x * c->bpp;
	uint8_t *dst = c->priv->base + (size_t)rect->y * c->priv_stride + (size_t)rect->x * c->bpp;
	size_t row = (size_t)rect->width * c->bpp;
	int r = vgb_guarded_copy_2d(dst, c->priv_stride, src, c->stride, row, rect->height);

	if (r < 0)
		return r;
	c->q->stats.bytes_copied += (uint64_t)row * rect->height;
	return 0;
}

/* Copies @rect of a payload (rows @stride apart, starting at the rectangle) into our buffer. */
static void blit_payload(struct qd_console *c, const struct vgb_rect *rect, const uint8_t *data,
			 uint32_t stride)
{
	uint8_t *dst = c->src->base + (size_t)rect->y * c->stride + (size_t)rect->x * c->bpp;
	size_t row = (size_t)rect->width * c->bpp;

	for (uint32_t y = 0; y < rect->height; y++)
		memcpy(dst + (size_t)y * c->stride, data + (size_t)y * stride, row);
	c->q->stats.bytes_copied += (uint64_t)row * rect->height;
}

/* ---- org.qemu.Display1.Listener ---- */

static gboolean on_scanout(VgbDbusListener *o, GDBusMethodInvocation *inv, guint width,
			   guint height, guint stride, guint pixman_format, GVariant *data,
			   gpointer user_data)
{
	struct qd_console *c = user_data;
	uint32_t fourcc = vgb_qd_pixman_to_drm(pixman_format);
	char msg[256];
	uint64_t need;
	gsize len;
	const uint8_t *bytes = g_variant_get_fixed_array(data, &len, 1);
	int r;

	c->q->stats.calls++;
	c->q->stats.scanouts++;
	if (!fourcc)
		return reply_error(c, inv, -EOPNOTSUPP, "Scanout: unknown pixman format 0x%08x",
				   pixman_format);
	r = check_layout(width, height, stride, fourcc, &need, msg, sizeof(msg));
	if (r < 0)
		return reply_error(c, inv, r, "Scanout: %s", msg);
	if (len < need)
		return reply_error(c, inv, -EINVAL,
				   "Scanout: %zu bytes of data for stride %u x height %u", (size_t)len,
				   stride, height);
	r = own_buffer(c, width, height, fourcc);
	if (r < 0)
		return reply_error(c, inv, r, "Scanout: no buffer: %s", strerror(-r));
	blit_payload(c, &(struct vgb_rect){ 0, 0, width, height }, bytes, stride);
	present(c, full(c), NULL);
	reply_ok(inv);
	return TRUE;
}

static gboolean on_update(VgbDbusListener *o, GDBusMethodInvocation *inv, gint x, gint y,
			  gint width, gint height, guint stride, guint pixman_format,
			  GVariant *data, gpointer user_data)
{
	struct qd_console *c = user_data;
	struct vgb_rect rect;
	gsize len;
	const uint8_t *bytes = g_variant_get_fixed_array(data, &len, 1);
	uint64_t need;

	c->q->stats.calls++;
	c->q->stats.updates++;
	if (c->kind != QD_SCANOUT)
		return reply_error(c, inv, -EINVAL, "Update before any Scanout");
	if (vgb_qd_pixman_to_drm(pixman_format) != c->fourcc)
		return reply_error(c, inv, -EINVAL,
				   "Update: pixman format 0x%08x differs from the scanout's",
				   pixman_format);
	if (!check_rect(c, x, y, width, height, &rect))
		return reply_error(c, inv, -EINVAL, "Update: rectangle %dx%d+%d+%d is outside %ux%u",
				   width, height, x, y, c->width, c->height);
	if (vgb_rect_is_empty(&rect)) {
		reply_ok(inv);
		return TRUE;
	}
	if ((uint64_t)stride < (uint64_t)rect.width * c->bpp)
		return reply_error(c, inv, -EINVAL, "Update: stride %u is smaller than width %u x %u",
				   stride, rect.width, c->bpp);
	need = (uint64_t)stride * (rect.height - 1) + (uint64_t)rect.width * c->bpp;
	if (len < need)
		return reply_error(c, inv, -EINVAL, "Update: %zu bytes of data, %" PRIu64 " needed",
				   (size_t)len, need);
	blit_payload(c, &rect, bytes, stride);
	present(c, rect, NULL);
	reply_ok(inv);
	return TRUE;
}

/* A CPU view of a dmabuf when the exporter allows mmap (vgem, udmabuf); NULL otherwise. */
static struct qd_map *dmabuf_view(const struct vgb_dmabuf *b)
{
	uint64_t len = (uint64_t)b->offset[0] + (uint64_t)b->stride[0] * b->height;
	struct qd_map *m;
	void *p;
	off_t end;

	if (b->n_planes != 1 || len > QD_MAX_FRAME_BYTES)
		return NULL;
	/* Mapping past the buffer's end would be SIGBUS for whoever reads the view. */
	end = lseek(b->fd[0], 0, SEEK_END);
	if (end >= 0 && (uint64_t)end < len)
		return NULL;
	p = mmap(NULL, len, PROT_READ, MAP_SHARED, b->fd[0], 0);
	if (p == MAP_FAILED)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		munmap(p, len);
		return NULL;
	}
	m->refs = 1;
	m->fd = -1;
	m->base = p;
	m->len = len;
	return m;
}

static void set_dmabuf(struct qd_console *c, struct vgb_dmabuf *b, bool y0_top)
{
	drop_source(c);
	c->dmabuf = *b;
	vgb_dmabuf_init(b);
	c->kind = QD_DMABUF;
	c->width = c->dmabuf.width;
	c->height = c->dmabuf.height;
	c->fourcc = c->dmabuf.fourcc;
	c->bpp = vgb_format_bpp(c->fourcc);
	c->stride = c->dmabuf.stride[0];
	c->y0_top = y0_top;
	c->dmabuf_id = ++c->q->next_buffer_id;
	c->dmabuf_view = dmabuf_view(&c->dmabuf);
	if (!y0_top)
		vgb_log_ratelimited(VGB_LOG_WARN,
				    "console %u: bottom-up dmabuf scanouts are shown upside down",
				    c->qemu_id);
}

static gboolean on_scanout_dmabuf(VgbDbusListener *o, GDBusMethodInvocation *inv,
				  GUnixFDList *fds, GVariant *handle, guint width, guint height,
				  guint stride, guint fourcc, guint64 modifier, gboolean y0_top,
				  gpointer user_data)
{
	struct qd_console *c = user_data;
	struct vgb_dmabuf b;
	char msg[256];
	uint64_t need;
	int fd, r;

	c->q->stats.calls++;
	c->q->stats.scanout_dmabufs++;
	fd = take_one_fd(fds, handle, msg, sizeof(msg));
	if (fd < 0)
		return reply_error(c, inv, fd, "ScanoutDMABUF: %s", msg);
	r = check_layout(width, height, stride, fourcc, &need, msg, sizeof(msg));
	if (r < 0) {
		close(fd);
		return reply_error(c, inv, r, "ScanoutDMABUF: %s", msg);
	}
	/* A dmabuf knows its size (SEEK_END); one too small for the layout is QEMU's bug. */
	off_t end = lseek(fd, 0, SEEK_END);
	if (end >= 0 && (uint64_t)end < need) {
		close(fd);
		return reply_error(c, inv, -EINVAL,
				   "ScanoutDMABUF: the dmabuf holds %lld bytes, stride %u x height %u "
				   "needs %llu", (long long)end, stride, height,
				   (unsigned long long)need);
	}
	vgb_dmabuf_init(&b);
	b.width = width;
	b.height = height;
	b.fourcc = fourcc;
	b.modifier = modifier;
	b.n_planes = 1;
	b.stride[0] = stride;
	b.fd[0] = fd;
	set_dmabuf(c, &b, y0_top);
	present(c, full(c), NULL);
	reply_ok(inv);
	return TRUE;
}

static gboolean on_update_dmabuf(VgbDbusListener *o, GDBusMethodInvocation *inv, gint x, gint y,
				 gint width, gint height, gpointer user_data)
{
	struct qd_console *c = user_data;
	struct vgb_rect rect;

	c->q->stats.calls++;
	c->q->stats.update_dmabufs++;
	if (c->kind != QD_DMABUF)
		return reply_error(c, inv, -EINVAL, "UpdateDMABUF before any ScanoutDMABUF");
	if (!check_rect(c, x, y, width, height, &rect))
		return reply_error(c, inv, -EINVAL,
				   "UpdateDMABUF: rectangle %dx%d+%d+%d is outside %ux%u", width,
				   height, x, y, c->width, c->height);
	/* The answer releases the guest: it goes when the sink no longer needs the buffer. */
	present(c, rect, g_object_ref(inv));
	g_object_unref(inv);
	return TRUE;
}

static gboolean on_disable(VgbDbusListener *o, GDBusMethodInvocation *inv, gpointer user_data)
{
	struct qd_console *c = user_data;

	c->q->stats.calls++;
	c->q->stats.disables++;
	if (c->enabled)
		vgb_display_disable_scanout(c->q->opts.display, c->index);
	c->enabled = false;
	reply_ok(inv);
	return TRUE;
}

static void show_cursor(struct qd_console *c)
{
	struct vgb_display *d = c->q->opts.display;

	if (c->cursor && c->cursor_on)
		vgb_display_set_cursor(d, c->index, c->cursor, c->cursor_w, c->cursor_h,
				       c->cursor_hot_x, c->cursor_hot_y);
	else
		vgb_display_set_cursor(d, c->index, NULL, 0, 0, 0, 0);
}

static gboolean on_mouse_set(VgbDbusListener *o, GDBusMethodInvocation *inv, gint x, gint y,
			     gint on, gpointer user_data)
{
	struct qd_console *c = user_data;
	bool was_on = c->cursor_on;

	c->q->stats.calls++;
	c->q->stats.mouse_sets++;
	c->cursor_on = on != 0;
	if (c->cursor_on != was_on)
		show_cursor(c);
	if (c->cursor_on)
		vgb_display_move_cursor(c->q->opts.display, c->index, x, y);
	reply_ok(inv);
	return TRUE;
}

static gboolean on_cursor_define(VgbDbusListener *o, GDBusMethodInvocation *inv, gint width,
				 gint height, gint hot_x, gint hot_y, GVariant *data,
				 gpointer user_data)
{
	struct qd_console *c = user_data;
	gsize len;
	const void *bytes = g_variant_get_fixed_array(data, &len, 1);
	uint32_t *argb;

	c->q->stats.calls++;
	c->q->stats.cursor_defines++;
	if (width <= 0 || height <= 0 || width > VGB_CURSOR_MAX || height > VGB_CURSOR_MAX)
		return reply_error(c, inv, -EINVAL, "CursorDefine: size %dx%d is outside 1x1..%ux%u",
				   width, height, VGB_CURSOR_MAX, VGB_CURSOR_MAX);
	if (hot_x < 0 || hot_y < 0 || hot_x >= width || hot_y >= height)
		return reply_error(c, inv, -EINVAL, "CursorDefine: hot spot %d,%d is outside %dx%d",
				   hot_x, hot_y, width, height);
	if (len != (gsize)width * (gsize)height * 4)
		return reply_error(c, inv, -EINVAL, "CursorDefine: %zu bytes of data for %dx%d ARGB",
				   (size_t)len, width, height);
	argb = malloc(len);
	if (!argb)
		return reply_error(c, inv, -ENOMEM, "CursorDefine: no memory");
	memcpy(argb, bytes, len);
	free(c->cursor);
	c->cursor = argb;
	c->cursor_w = (uint32_t)width;
	c->cursor_h = (uint32_t)height;
	c->cursor_hot_x = (uint32_t)hot_x;
	c->cursor_hot_y = (uint32_t)hot_y;
	show_cursor(c);
	reply_ok(inv);
	return TRUE;
}

/* ---- org.qemu.Display1.Listener.Unix.Map ---- */

static gboolean on_scanout_map(VgbDbusListenerUnixMap *o, GDBusMethodInvocation *inv,
			       GUnixFDList *fds, GVariant *handle, guint offset, guint width,
			       guint height, guint stride, guint pixman_format, gpointer user_data)
{
	struct qd_console *c = user_data;
	uint32_t fourcc = vgb_qd_pixman_to_drm(pixman_format);
	_cleanup_close_ int fd = -1;
	struct qd_map *m;
	struct stat st;
	uint64_t need, end;
	char msg[256];
	int seals, r;

	c->q->stats.calls++;
	c->q->stats.scanout_maps++;
	fd = take_one_fd(fds, handle, msg, sizeof(msg));
	if (fd < 0)
		return reply_error(c, inv, fd, "ScanoutMap: %s", msg);
	if (!fourcc)
		return reply_error(c, inv, -EOPNOTSUPP, "ScanoutMap: unknown pixman format 0x%08x",
				   pixman_format);
	r = check_layout(width, height, stride, fourcc, &need, msg, sizeof(msg));
	if (r < 0)
		return reply_error(c, inv, r, "ScanoutMap: %s", msg);
	end = need + offset;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return reply_error(c, inv, -EINVAL, "ScanoutMap: the fd is not a memfd");
	if ((uint64_t)st.st_size < end)
		return reply_error(c, inv, -EINVAL,
				   "ScanoutMap: memfd of %lld bytes is smaller than offset %u + "
				   "stride %u x height %u = %" PRIu64,
				   (long long)st.st_size, offset, stride, height, end);
	seals = fcntl(fd, F_GET_SEALS);
	c->q->stats.last_map_seals = seals;
	m = calloc(1, sizeof(*m));
	if (!m)
		return reply_error(c, inv, -ENOMEM, "ScanoutMap: no memory");
	m->base = mmap(NULL, end, PROT_READ, MAP_SHARED, fd, 0);
	if (m->base == MAP_FAILED) {
		r = -errno;
		free(m);
		return reply_error(c, inv, r, "ScanoutMap: mmap of %" PRIu64 " bytes: %s", end,
				   strerror(-r));
	}
	m->refs = 1;
	m->len = end;
	m->fd = TAKE_FD(fd);
	m->id = ++c->q->next_buffer_id;
	drop_source(c);
	c->src = m;
	c->src_offset = offset;
	c->kind = QD_MAP;
	c->width = width;
	c->height = height;
	c->stride = stride;
	c->fourcc = fourcc;
	c->bpp = vgb_format_bpp(fourcc);
	/*
	 * Only a memfd sealed against shrinking may reach the compositor: one that shrinks under
	 * its mapping makes it fault, and it drops our whole connection for that. Anything else
	 * is copied by the sink (guarded: a fault fails the frame instead of killing us).
	 */
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		c->q->stats.map_unsealed++;
		c->direct = false;
	} else {
		c->direct = !c->q->opts.tear_free;
	}
	/*
	 * Not sealed and not tear-free: the damage goes once into a sealed memfd of ours, which
	 * the sink shows directly (exactly the damage copied, guarded). Tear-free: the sink copies
	 * into buffers the compositor has released.
	 */
	if (!c->direct && !c->q->opts.tear_free) {
		c->priv_stride = width * c->bpp;
		c->priv = new_own_map(c->q, (size_t)c->priv_stride * height);
		if (!c->priv) {
			drop_source(c);
			return reply_error(c, inv, -ENOMEM, "ScanoutMap: no memory for a copy");
		}
		r = copy_to_priv(c, &(struct vgb_rect){ 0, 0, width, height });
		if (r < 0) {
			c->q->stats.map_faults++;
			drop_source(c);
			return reply_error(c, inv, r, "ScanoutMap: the memfd could not be read (%s)",
					   strerror(-r));
		}
	}
	vgb_log(VGB_LOG_DEBUG, "console %u: ScanoutMap %ux%u stride %u offset %u seals 0x%x (%s)",
		c->qemu_id, width, height, stride, offset, seals < 0 ? 0 : seals,
		c->direct ? "direct" : c->priv ? "copied into our memfd" : "the sink copies");
	present(c, full(c), NULL);
	reply_ok(inv);
	return TRUE;
}

static gboolean on_update_map(VgbDbusListenerUnixMap *o, GDBusMethodInvocation *inv, gint x,
			      gint y, gint width, gint height, gpointer user_data)
{
	struct qd_console *c = user_data;
	struct vgb_rect rect;
	struct stat st;

	c->q->stats.calls++;
	c->q->stats.update_maps++;
	if (c->kind != QD_MAP)
		return reply_error(c, inv, -EINVAL, "UpdateMap before any ScanoutMap");
	if (!check_rect(c, x, y, width, height, &rect))
		return reply_error(c, inv, -EINVAL, "UpdateMap: rectangle %dx%d+%d+%d is outside %ux%u",
				   width, height, x, y, c->width, c->height);
	/*
	 * A memfd that is not sealed can have shrunk since ScanoutMap: stop using it before
	 * anything reads past its end (reads that race this check are guarded copies).
	 */
	if (!c->direct && (fstat(c->src->fd, &st) < 0 || (uint64_t)st.st_size < c->src->len)) {
		long long size = (long long)st.st_size;
		c->q->stats.map_faults++;
		drop_source(c);
		return reply_error(c, inv, -EINVAL,
				   "UpdateMap: the memfd shrank to %lld bytes; send a new ScanoutMap",
				   size);
	}
	if (c->priv && !vgb_rect_is_empty(&rect)) {
		int r = copy_to_priv(c, &rect);
		if (r < 0) {
			c->q->stats.map_faults++;
			drop_source(c);
			return reply_error(c, inv, -EINVAL,
					   "UpdateMap: the memfd shrank under its mapping; send a new "
					   "ScanoutMap");
		}
	}
	if (!vgb_rect_is_empty(&rect))
		present(c, rect, NULL);
	reply_ok(inv);
	return TRUE;
}

/* ---- org.qemu.Display1.Listener.Unix.ScanoutDMABUF2 ---- */

static gboolean on_scanout_dmabuf2(VgbDbusListenerUnixScanoutDMABUF2 *o,
				   GDBusMethodInvocation *inv, GUnixFDList *fds, GVariant *handles,
				   guint x, guint y, guint width, guint height, GVariant *offsets,
				   GVariant *strides, guint num_planes, guint fourcc,
				   guint backing_width, guint backing_height, guint64 modifier,
				   gboolean y0_top, gpointer user_data)
{
	struct qd_console *c = user_data;
	int n_fds = fds ? g_unix_fd_list_get_length(fds) : 0;
	gsize n_handles = g_variant_n_children(handles);
	gsize n_off, n_str;
	const guint32 *off = g_variant_get_fixed_array(offsets, &n_off, sizeof(guint32));
	const guint32 *str = g_variant_get_fixed_array(strides, &n_str, sizeof(guint32));
	struct vgb_dmabuf b;
	char msg[256];
	uint64_t need;
	uint32_t bpp = vgb_format_bpp(fourcc);
	GVariant *h0;
	gint32 idx;
	int r;

	c->q->stats.calls++;
	c->q->stats.scanout_dmabufs++;
	if (num_planes == 0 || num_planes > VGB_DMABUF_MAX_PLANES || n_handles != num_planes ||
	    n_off != num_planes || n_str != num_planes || (gsize)n_fds != num_planes)
		return reply_error(c, inv, -EINVAL,
				   "ScanoutDMABUF2: num_planes %u, %zu handles, %zu offsets, "
				   "%zu strides, %d fds",
				   num_planes, (size_t)n_handles, (size_t)n_off, (size_t)n_str, n_fds);
	if (num_planes != 1)
		return reply_error(c, inv, -EOPNOTSUPP,
				   "ScanoutDMABUF2: %u planes (only single-plane formats are shown)",
				   num_planes);
	r = check_layout(backing_width, backing_height, str[0], fourcc, &need, msg, sizeof(msg));
	if (r < 0)
		return reply_error(c, inv, r, "ScanoutDMABUF2: %s", msg);
	if (width == 0 || height == 0 || (uint64_t)x + width > backing_width ||
	    (uint64_t)y + height > backing_height)
		return reply_error(c, inv, -EINVAL,
				   "ScanoutDMABUF2: rectangle %ux%u+%u+%u is outside the %ux%u backing",
				   width, height, x, y, backing_width, backing_height);
	if ((uint64_t)off[0] + need > QD_MAX_FRAME_BYTES)
		return reply_error(c, inv, -E2BIG, "ScanoutDMABUF2: offset %u is too large", off[0]);
	h0 = g_variant_get_child_value(handles, 0);
	idx = g_variant_get_handle(h0);
	g_variant_unref(h0);
	if (idx < 0 || idx >= n_fds)
		return reply_error(c, inv, -EINVAL, "ScanoutDMABUF2: handle %d names no fd", idx);
	vgb_dmabuf_init(&b);
	b.fd[0] = g_unix_fd_list_get(fds, idx, NULL);
	if (b.fd[0] < 0)
		return reply_error(c, inv, -EBADF, "ScanoutDMABUF2: could not take fd %d", idx);
	/* The shown rectangle starts x pixels and y rows into the plane. */
	b.width = width;
	b.height = height;
	b.fourcc = fourcc;
	b.modifier = modifier;
	b.n_planes = 1;
	b.stride[0] = str[0];
	b.offset[0] = off[0] + y * str[0] + x * bpp;
	set_dmabuf(c, &b, y0_top);
	present(c, full(c), NULL);
	reply_ok(inv);
	return TRUE;
}

/* ---- export ---- */

int vgb_qd_listener_export(struct qd_console *c)
{
	static const char *const ifaces[] = {
		"org.qemu.Display1.Listener.Unix.Map",
		"org.qemu.Display1.Listener.Unix.ScanoutDMABUF2",
		NULL,
	};
	GError *err = NULL;

	c->skel = vgb_dbus_listener_skeleton_new();
	c->map_skel = vgb_dbus_listener_unix_map_skeleton_new();
	c->dmabuf2_skel = vgb_dbus_listener_unix_scanout_dmabuf2_skeleton_new();
	vgb_dbus_listener_set_interfaces(c->skel, ifaces);
	g_signal_connect(c->skel, "handle-scanout", G_CALLBACK(on_scanout), c);
	g_signal_connect(c->skel, "handle-update", G_CALLBACK(on_update), c);
	g_signal_connect(c->skel, "handle-scanout-dmabuf", G_CALLBACK(on_scanout_dmabuf), c);
	g_signal_connect(c->skel, "handle-update-dmabuf", G_CALLBACK(on_update_dmabuf), c);
	g_signal_connect(c->skel, "handle-disable", G_CALLBACK(on_disable), c);
	g_signal_connect(c->skel, "handle-mouse-set", G_CALLBACK(on_mouse_set), c);
	g_signal_connect(c->skel, "handle-cursor-define", G_CALLBACK(on_cursor_define), c);
	g_signal_connect(c->map_skel, "handle-scanout-map", G_CALLBACK(on_scanout_map), c);
	g_signal_connect(c->map_skel, "handle-update-map", G_CALLBACK(on_update_map), c);
	g_signal_connect(c->dmabuf2_skel, "handle-scanout-dmabuf2", G_CALLBACK(on_scanout_dmabuf2),
			 c);
	if (!g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(c->skel), c->conn,
					      QD_LISTENER_PATH, &err) ||
	    !g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(c->map_skel), c->conn,
					      QD_LISTENER_PATH, &err) ||
	    !g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(c->dmabuf2_skel), c->conn,
					      QD_LISTENER_PATH, &err)) {
		vgb_log(VGB_LOG_ERROR, "console %u: cannot export the listener: %s", c->qemu_id,
			err->message);
		g_error_free(err);
		vgb_qd_listener_unexport(c);
		return -EIO;
	}
	return 0;
}

void vgb_qd_listener_unexport(struct qd_console *c)
{
	GDBusInterfaceSkeleton *sk[] = {
		c->skel ? G_DBUS_INTERFACE_SKELETON(c->skel) : NULL,
		c->map_skel ? G_DBUS_INTERFACE_SKELETON(c->map_skel) : NULL,
		c->dmabuf2_skel ? G_DBUS_INTERFACE_SKELETON(c->dmabuf2_skel) : NULL,
	};

	for (unsigned i = 0; i < VGB_ARRAY_SIZE(sk); i++) {
		if (!sk[i])
			continue;
		/* Calls already queued for us find no handler: GDBus answers them itself. */
		g_signal_handlers_disconnect_by_data(sk[i], c);
		if (g_dbus_interface_skeleton_get_connection(sk[i]))
			g_dbus_interface_skeleton_unexport(sk[i]);
		g_object_unref(sk[i]);
	}
	c->skel = NULL;
	c->map_skel = NULL;
	c->dmabuf2_skel = NULL;
}
