/* SPDX-License-Identifier: MIT */
/*
 * The QEMU D-Bus display front end against a peer that plays QEMU's side of org.qemu.Display1
 * (written from the interface XML, with the same generated bindings): a peer-to-peer
 * connection like QMP add_client gives, the VM and Console_0 objects, RegisterListener done as
 * QEMU does it (answer, then the server side of the listener's handshake), the Interfaces read,
 * then every listener method, malformed calls (fd counts, short memfds, stride and size
 * overflow, unknown formats, calls before any scanout), a Map memfd that shrinks under us, and
 * input and SetUIInfo coming back. Frames land in a recording sink. Everything runs on this
 * thread: the peer's objects and calls use the front end's own GMainContext, pumped through
 * vgb_qemu_dbus_dispatch() as the daemon's loop does.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <drm_fourcc.h>
#include <gio/gio.h>
#include <gio/gunixfdlist.h>

#include "display1.h"
#include "leak.h"
#include "qemu-dbus.h"
#include "record-sink.h"
#include "tap.h"
#include "vgb/util.h"

#define PIXMAN_x8r8g8b8 0x20020888u
#define PIXMAN_a8r8g8b8 0x20028888u
#define LISTENER "/org/qemu/Display1/Listener"
#define IFACE_LISTENER "org.qemu.Display1.Listener"
#define IFACE_MAP "org.qemu.Display1.Listener.Unix.Map"
#define IFACE_DMABUF2 "org.qemu.Display1.Listener.Unix.ScanoutDMABUF2"

static struct vgb_qemu_dbus *q;
static struct record_sink *sink;

/* ---- the QEMU side ---- */

struct peer {
	GDBusConnection *conn;     /* QEMU's end of the p2p display connection */
	GDBusConnection *listener; /* QEMU's end of the listener connection */
	VgbDbusVM *vm;
	VgbDbusConsole *console;
	VgbDbusKeyboard *kbd;
	VgbDbusMouse *mouse;
	GDBusObjectManagerServer *om;
	char *listener_ifaces;     /* the Interfaces property as QEMU read it */
	uint32_t keys[32];
	bool key_down[32];
	unsigned n_keys;
	unsigned ui_w, ui_h, n_ui;
	unsigned n_buttons;
	bool ready;
};
static struct peer peer;

static void pump_once(void)
{
	int t = vgb_qemu_dbus_dispatch(q);
	struct pollfd p = { .fd = vgb_qemu_dbus_get_fd(q), .events = POLLIN };

	vgb_display_dispatch(&sink->base);
	poll(&p, 1, t < 0 || t > 20 ? 20 : t);
	vgb_qemu_dbus_dispatch(q);
}

/* Pumps until @cond (re-evaluated) holds or about 5 s pass. */
#define PUMP_UNTIL(cond)                                               \
	({                                                             \
		for (int _i = 0; _i < 250 && !(cond); _i++)            \
			pump_once();                                   \
		(bool)(cond);                                          \
	})

static void props_got(GObject *src, GAsyncResult *res, gpointer data)
{
	GVariant *v = g_dbus_connection_call_finish(G_DBUS_CONNECTION(src), res, NULL);
	GVariant *inner;

	if (!v) {
		peer.listener_ifaces = g_strdup("(error)");
		return;
	}
	g_variant_get(v, "(v)", &inner);
	peer.listener_ifaces = g_variant_print(inner, FALSE);
	g_variant_unref(inner);
	g_variant_unref(v);
}

static void peer_listener_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	GError *err = NULL;

	peer.listener = g_dbus_connection_new_finish(res, &err);
	if (!peer.listener) {
		tap_diag("peer: listener handshake: %s", err->message);
		g_error_free(err);
		return;
	}
	/* What QEMU does first: read the listener's Interfaces property. */
	g_dbus_connection_call(peer.listener, NULL, LISTENER, "org.freedesktop.DBus.Properties",
			       "Get", g_variant_new("(ss)", IFACE_LISTENER, "Interfaces"),
			       G_VARIANT_TYPE("(v)"), G_DBUS_CALL_FLAGS_NONE, -1, NULL, props_got,
			       NULL);
}

static gboolean on_register_listener(VgbDbusConsole *o, GDBusMethodInvocation *inv,
				     GUnixFDList *fds, GVariant *handle, gpointer data)
{
	int fd = g_unix_fd_list_get(fds, g_variant_get_handle(handle), NULL);
	GSocket *sock = g_socket_new_from_fd(fd, NULL);
	GSocketConnection *stream = g_socket_connection_factory_create_connection(sock);
	char *guid = g_dbus_generate_guid();

	/* As QEMU: answer first, then be the server of the listener's connection. */
	vgb_dbus_console_complete_register_listener(o, inv, NULL);
	g_dbus_connection_new(G_IO_STREAM(stream), guid, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER,
			      NULL, NULL, peer_listener_ready, NULL);
	g_free(guid);
	g_object_unref(stream);
	g_object_unref(sock);
	return TRUE;
}

static gboolean on_set_ui_info(VgbDbusConsole *o, GDBusMethodInvocation *inv, guint16 wmm,
			       guint16 hmm, gint x, gint y, guint w, guint h, gpointer data)
{
	peer.ui_w = w;
	peer.ui_h = h;
	peer.n_ui++;
	vgb_dbus_console_complete_set_uiinfo(o, inv);
	return TRUE;
}

static gboolean on_key(VgbDbusKeyboard *o, GDBusMethodInvocation *inv, guint code, gpointer data)
{
	bool down = GPOINTER_TO_INT(data);

	if (peer.n_keys < VGB_ARRAY_SIZE(peer.keys)) {
		peer.keys[peer.n_keys] = code;
		peer.key_down[peer.n_keys++] = down;
	}
	g_dbus_method_invocation_return_value(inv, NULL);
	return TRUE;
}

static gboolean on_button(VgbDbusMouse *o, GDBusMethodInvocation *inv, guint b, gpointer data)
{
	peer.n_buttons++;
	g_dbus_method_invocation_return_value(inv, NULL);
	return TRUE;
}

static void peer_conn_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	GError *err = NULL;
	GDBusObjectSkeleton *vm_obj, *con_obj;
	static const guint32 ids[] = { 0 };

	peer.conn = g_dbus_connection_new_finish(res, &err);
	if (!peer.conn) {
		tap_diag("peer: %s", err->message);
		g_error_free(err);
		return;
	}
	peer.om = g_dbus_object_manager_server_new("/org/qemu/Display1");
	peer.vm = vgb_dbus_vm_skeleton_new();
	vgb_dbus_vm_set_name(peer.vm, "test-peer");
	vgb_dbus_vm_set_console_ids(peer.vm, g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, ids, 1,
								       sizeof(guint32)));
	vm_obj = g_dbus_object_skeleton_new("/org/qemu/Display1/VM");
	g_dbus_object_skeleton_add_interface(vm_obj, G_DBUS_INTERFACE_SKELETON(peer.vm));

	peer.console = vgb_dbus_console_skeleton_new();
	vgb_dbus_console_set_type_(peer.console, "Graphic");
	vgb_dbus_console_set_width(peer.console, 64);
	vgb_dbus_console_set_height(peer.console, 32);
	g_signal_connect(peer.console, "handle-register-listener", G_CALLBACK(on_register_listener),
			 NULL);
	g_signal_connect(peer.console, "handle-set-uiinfo", G_CALLBACK(on_set_ui_info), NULL);
	peer.kbd = vgb_dbus_keyboard_skeleton_new();
	g_signal_connect(peer.kbd, "handle-press", G_CALLBACK(on_key), GINT_TO_POINTER(1));
	g_signal_connect(peer.kbd, "handle-release", G_CALLBACK(on_key), GINT_TO_POINTER(0));
	peer.mouse = vgb_dbus_mouse_skeleton_new();
	g_signal_connect(peer.mouse, "handle-press", G_CALLBACK(on_button), NULL);
	g_signal_connect(peer.mouse, "handle-release", G_CALLBACK(on_button), NULL);
	con_obj = g_dbus_object_skeleton_new("/org/qemu/Display1/Console_0");
	g_dbus_object_skeleton_add_interface(con_obj, G_DBUS_INTERFACE_SKELETON(peer.console));
	g_dbus_object_skeleton_add_interface(con_obj, G_DBUS_INTERFACE_SKELETON(peer.kbd));
	g_dbus_object_skeleton_add_interface(con_obj, G_DBUS_INTERFACE_SKELETON(peer.mouse));
	g_dbus_object_manager_server_export(peer.om, vm_obj);
	g_dbus_object_manager_server_export(peer.om, con_obj);
	g_object_unref(vm_obj);
	g_object_unref(con_obj);
	g_dbus_object_manager_server_set_connection(peer.om, peer.conn);
	g_dbus_connection_start_message_processing(peer.conn);
	peer.ready = true;
}

/* ---- calls on the listener, as QEMU makes them ---- */

struct call {
	bool done;
	GError *err;
};

static void call_done(GObject *src, GAsyncResult *res, gpointer data)
{
	struct call *c = data;
	GVariant *v = g_dbus_connection_call_with_unix_fd_list_finish(G_DBUS_CONNECTION(src), NULL,
								      res, &c->err);
	if (v)
		g_variant_unref(v);
	c->done = true;
}

/* Starts a call; the caller pumps until c->done. Takes @fds (may be NULL). */
static void call_start(struct call *c, const char *iface, const char *method, GVariant *args,
		       GUnixFDList *fds)
{
	memset(c, 0, sizeof(*c));
	g_dbus_connection_call_with_unix_fd_list(peer.listener, NULL, LISTENER, iface, method, args,
						 NULL, G_DBUS_CALL_FLAGS_NONE, 5000, fds, NULL,
						 call_done, c);
	if (fds)
		g_object_unref(fds);
}

/*
 * Makes a call and waits for the answer. Returns NULL on success, or the error message
 * (static, overwritten by the next call); "(no answer)" when none came.
 */
static const char *call(const char *iface, const char *method, GVariant *args, GUnixFDList *fds)
{
	static char msg[512];
	struct call c;

	call_start(&c, iface, method, args, fds);
	if (!PUMP_UNTIL(c.done))
		return "(no answer)";
	if (!c.err)
		return NULL;
	snprintf(msg, sizeof(msg), "%s", c.err->message);
	g_error_free(c.err);
	return msg;
}

static bool is_error(const char *r, const char *needle, const char *what)
{
	bool ok = r && strstr(r, needle);

	if (!ok)
		tap_diag("%s: got %s, want an error mentioning '%s'", what, r ? r : "success",
			 needle);
	return tap_ok(ok, "%s is refused (%s)", what, needle);
}

static GUnixFDList *fd_list(int n, int fd)
{
	GUnixFDList *l = g_unix_fd_list_new();

	for (int i = 0; i < n; i++)
		g_unix_fd_list_append(l, fd, NULL);
	return l;
}

static uint32_t pattern(uint32_t x, uint32_t y, uint32_t salt)
{
	return 0xff000000u | ((x * 7 + salt) & 0xff) << 16 | ((y * 13) & 0xff) << 8 | ((x ^ y) & 0xff);
}

/* A memfd with a WxH XRGB pattern, stride @stride, @sealed against shrinking or not. */
static int make_memfd(uint32_t w, uint32_t h, uint32_t stride, uint32_t salt, bool allow_seal,
		      bool sealed)
{
	int fd = memfd_create("peer-surface", MFD_CLOEXEC | (allow_seal ? MFD_ALLOW_SEALING : 0));
	uint8_t *p;

	if (fd < 0 || ftruncate(fd, (off_t)stride * h) < 0)
		tap_bail("memfd: %s", strerror(errno));
	p = mmap(NULL, (size_t)stride * h, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++)
			((uint32_t *)(p + (size_t)y * stride))[x] = pattern(x, y, salt);
	munmap(p, (size_t)stride * h);
	if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
		tap_bail("seal: %s", strerror(errno));
	return fd;
}

static bool frame_is_pattern(const struct record_frame *rf, uint32_t salt)
{
	const uint32_t *px = (const uint32_t *)rf->pixels;

	if (!px)
		return false;
	for (uint32_t y = 0; y < rf->frame.height; y++)
		for (uint32_t x = 0; x < rf->frame.width; x++)
			if ((px[y * rf->frame.width + x] & 0xffffff) != (pattern(x, y, salt) & 0xffffff))
				return false;
	return true;
}

static struct record_frame *last_frame(void)
{
	return sink->n_frames ? &sink->frames[sink->n_frames - 1] : NULL;
}

static struct vgb_qemu_dbus_stats stats(void)
{
	struct vgb_qemu_dbus_stats s;

	vgb_qemu_dbus_get_stats(q, &s);
	return s;
}

/* ---- cases ---- */

static void test_before_scanout(void)
{
	unsigned frames = sink->n_frames;

	is_error(call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 0, 0, 4, 4), NULL),
		 "before any ScanoutMap", "UpdateMap before ScanoutMap");
	is_error(call(IFACE_LISTENER, "Update",
		      g_variant_new("(iiiiuu@ay)", 0, 0, 1, 1, 4u, PIXMAN_x8r8g8b8,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, "abcd", 4, 1)),
		      NULL),
		 "before any Scanout", "Update before Scanout");
	is_error(call(IFACE_LISTENER, "UpdateDMABUF", g_variant_new("(iiii)", 0, 0, 4, 4), NULL),
		 "before any ScanoutDMABUF", "UpdateDMABUF before ScanoutDMABUF");
	tap_is_uint(sink->n_frames, frames, "no frame reached the sink");
}

static void test_map_malformed(void)
{
	int fd = make_memfd(64, 32, 256, 1, true, true);
	unsigned frames = sink->n_frames;
	struct leak_snapshot before;
	struct {
		int n_fds;
		int handle;
		uint32_t offset, w, h, stride, format;
		const char *needle, *what;
	} cases[] = {
		{ 0, 0, 0, 64, 32, 256, PIXMAN_x8r8g8b8, "exactly 1 fd", "ScanoutMap without an fd" },
		{ 2, 0, 0, 64, 32, 256, PIXMAN_x8r8g8b8, "exactly 1 fd", "ScanoutMap with 2 fds" },
		{ 1, 1, 0, 64, 32, 256, PIXMAN_x8r8g8b8, "handle 1", "ScanoutMap naming fd 1 of 1" },
		{ 1, 0, 0, 64, 64, 256, PIXMAN_x8r8g8b8, "smaller than offset",
		  "a memfd smaller than stride x height" },
		{ 1, 0, 4096, 64, 32, 256, PIXMAN_x8r8g8b8, "smaller than offset",
		  "an offset past the memfd's end" },
		{ 1, 0, 0, 64, 32, 128, PIXMAN_x8r8g8b8, "stride 128 is smaller",
		  "a stride shorter than a row" },
		{ 1, 0, 0, 16384, 16384, 0xffffffffu, PIXMAN_x8r8g8b8, "more than",
		  "stride x height overflowing" },
		{ 1, 0, 0xffffffffu, 64, 32, 256, PIXMAN_x8r8g8b8, "smaller than offset",
		  "offset + size past 4 GiB" },
		{ 1, 0, 0, 0, 32, 256, PIXMAN_x8r8g8b8, "outside 1x1", "a zero width" },
		{ 1, 0, 0, 20000, 32, 80000, PIXMAN_x8r8g8b8, "outside 1x1", "a width over 16384" },
		{ 1, 0, 0, 64, 32, 256, 0x10020565 /* r5g6b5-like, unknown here */,
		  "unknown pixman format", "an unknown pixman format" },
	};

	leak_snapshot(&before);
	for (unsigned i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		const char *r = call(IFACE_MAP, "ScanoutMap",
				     g_variant_new("(huuuuu)", cases[i].handle, cases[i].offset,
						   cases[i].w, cases[i].h, cases[i].stride,
						   cases[i].format),
				     cases[i].n_fds ? fd_list(cases[i].n_fds, fd) : NULL);
		is_error(r, cases[i].needle, cases[i].what);
	}
	tap_is_uint(sink->n_frames, frames, "no malformed ScanoutMap reached the sink");
	tap_is_uint(stats().bad_calls >= VGB_ARRAY_SIZE(cases), 1, "bad_calls counts them");
	leak_check(&before, "malformed ScanoutMaps leave no fd or mapping behind");
	close(fd);
}

static void test_map_sealed(void)
{
	int fd = make_memfd(64, 32, 256, 1, true, true);
	unsigned frames = sink->n_frames;
	struct vgb_qemu_dbus_stats s0 = stats(), s;
	struct record_frame *rf;
	const char *r;

	r = call(IFACE_MAP, "ScanoutMap",
		 g_variant_new("(huuuuu)", 0, 0u, 64u, 32u, 256u, PIXMAN_x8r8g8b8), fd_list(1, fd));
	tap_ok(r == NULL, "ScanoutMap of a sealed memfd is accepted (%s)", r ? r : "ok");
	tap_is_uint(sink->n_frames, frames + 1, "it shows one frame");
	rf = last_frame();
	if (!rf || sink->n_frames != frames + 1)
		return;
	tap_ok(rf->had_cpu && rf->memfd >= 0, "the frame carries QEMU's memfd (shm-direct)");
	tap_ok(rf->memfd >= 0 && (fcntl(rf->memfd, F_GET_SEALS) & F_SEAL_SHRINK),
	       "and that memfd is sealed against shrinking");
	tap_ok(rf->frame.fourcc == DRM_FORMAT_XRGB8888 && rf->frame.width == 64 &&
		       rf->frame.height == 32 && rf->cpu_stride == 256,
	       "64x32 XRGB8888, stride 256");
	tap_ok(frame_is_pattern(rf, 1), "its pixels are the peer's");
	tap_ok(rf->frame.buffer_id != 0, "with a buffer id, so the sink caches one wl_buffer");

	r = call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 8, 4, 16, 8), NULL);
	tap_ok(r == NULL, "UpdateMap is accepted (%s)", r ? r : "ok");
	rf = last_frame();
	tap_ok(sink->n_frames == frames + 2 && rf->frame.damage.x == 8 && rf->frame.damage.y == 4 &&
		       rf->frame.damage.width == 16 && rf->frame.damage.height == 8,
	       "it presents exactly the damage rectangle 16x8+8+4");
	is_error(call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 60, 0, 8, 8), NULL),
		 "outside", "an UpdateMap past the right edge");
	is_error(call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", -1, 0, 8, 8), NULL),
		 "outside", "an UpdateMap at a negative x");
	s = stats();
	tap_is_uint(s.frames_direct - s0.frames_direct, 2, "both frames went direct (0 copies)");
	tap_is_uint(s.bytes_copied - s0.bytes_copied, 0, "the front end copied nothing");
	tap_is_int(s.last_map_seals & F_SEAL_SHRINK, F_SEAL_SHRINK, "the seals are reported");
	close(fd);
}

static void test_map_unsealed_and_shrink(void)
{
	int fd = make_memfd(64, 32, 256, 2, false, false);
	unsigned frames = sink->n_frames;
	struct vgb_qemu_dbus_stats s0 = stats(), s;
	const char *r;
	bool unsealed_seen = false;

	/* QEMU 10's memfds: created without MFD_ALLOW_SEALING, so they carry F_SEAL_SEAL only. */
	r = call(IFACE_MAP, "ScanoutMap",
		 g_variant_new("(huuuuu)", 0, 0u, 64u, 32u, 256u, PIXMAN_x8r8g8b8), fd_list(1, fd));
	tap_ok(r == NULL, "ScanoutMap of an unsealed memfd is accepted (%s)", r ? r : "ok");
	r = call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 0, 0, 64, 32), NULL);
	tap_ok(r == NULL, "UpdateMap on it is accepted");
	for (unsigned i = frames; i < sink->n_frames; i++)
		unsealed_seen |= sink->frames[i].memfd < 0 ||
				 !(fcntl(sink->frames[i].memfd, F_GET_SEALS) & F_SEAL_SHRINK);
	tap_ok(sink->n_frames == frames + 2 && !unsealed_seen,
	       "its frames reach the sink from our own sealed memfd, never from the unsealed one");
	tap_ok(last_frame() && frame_is_pattern(last_frame(), 2), "with the peer's pixels");
	s = stats();
	tap_is_uint(s.map_unsealed - s0.map_unsealed, 1, "map_unsealed counts it");
	tap_is_uint(s.frames_direct - s0.frames_direct, 0, "none of them went direct");
	tap_is_uint(s.bytes_copied - s0.bytes_copied, 2 * 64 * 32 * 4,
		    "the front end copied the map once, then exactly the damage");
	tap_is_int(s.last_map_seals, F_SEAL_SEAL, "its seals (F_SEAL_SEAL only) are reported");

	/* Now it shrinks under our mapping. */
	if (ftruncate(fd, 0) < 0)
		tap_bail("ftruncate: %s", strerror(errno));
	frames = sink->n_frames;
	is_error(call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 0, 0, 64, 32), NULL),
		 "shrank", "an UpdateMap after the memfd shrank");
	tap_is_uint(sink->n_frames, frames, "nothing is presented from the shrunk memfd");
	tap_is_uint(stats().map_faults - s0.map_faults, 1, "map_faults counts it");
	is_error(call(IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 0, 0, 8, 8), NULL),
		 "before any ScanoutMap", "and the shrunk map is dropped");
	close(fd);
}

static void test_scanout_update(void)
{
	const uint32_t w = 16, h = 8, stride = 16 * 4 + 8;
	uint8_t *buf = calloc(stride, h);
	struct vgb_qemu_dbus_stats s0 = stats(), s;
	unsigned frames = sink->n_frames;
	struct record_frame *rf;
	const char *r;
	uint32_t patch[4 * 4];

	for (uint32_t y = 0; y < h; y++)
		for (uint32_t x = 0; x < w; x++)
			((uint32_t *)(buf + y * stride))[x] = pattern(x, y, 3);
	is_error(call(IFACE_LISTENER, "Scanout",
		      g_variant_new("(uuuu@ay)", w, h, stride, PIXMAN_x8r8g8b8,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, buf,
							      stride * h - 1, 1)),
		      NULL),
		 "bytes of data", "a Scanout one byte short");
	is_error(call(IFACE_LISTENER, "Scanout",
		      g_variant_new("(uuuu@ay)", w, h, stride, 0x12345678u,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, buf, stride * h, 1)),
		      NULL),
		 "unknown pixman format", "a Scanout in an unknown format");
	r = call(IFACE_LISTENER, "Scanout",
		 g_variant_new("(uuuu@ay)", w, h, stride, PIXMAN_x8r8g8b8,
			       g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, buf, stride * h, 1)),
		 NULL);
	tap_ok(r == NULL, "Scanout with a padded stride is accepted (%s)", r ? r : "ok");
	rf = last_frame();
	tap_ok(sink->n_frames == frames + 1 && rf && frame_is_pattern(rf, 3),
	       "its frame has the payload's pixels");
	tap_ok(rf && rf->memfd >= 0 && (fcntl(rf->memfd, F_GET_SEALS) & F_SEAL_SHRINK),
	       "from our own sealed memfd (shown directly)");
	for (unsigned i = 0; i < 16; i++)
		patch[i] = pattern(i % 4 + 2, i / 4 + 2, 9);
	r = call(IFACE_LISTENER, "Update",
		 g_variant_new("(iiiiuu@ay)", 2, 2, 4, 4, 16u, PIXMAN_x8r8g8b8,
			       g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, patch, sizeof(patch), 1)),
		 NULL);
	tap_ok(r == NULL, "Update of 4x4+2+2 is accepted (%s)", r ? r : "ok");
	rf = last_frame();
	tap_ok(rf && rf->frame.damage.x == 2 && rf->frame.damage.width == 4 &&
		       ((uint32_t *)rf->pixels)[3 * w + 3] == pattern(3, 3, 9),
	       "the update shows, damage 4x4+2+2");
	s = stats();
	tap_is_uint(s.bytes_copied - s0.bytes_copied, (uint64_t)w * h * 4 + sizeof(patch),
		    "the front end copied the scanout once and then exactly the damage");
	is_error(call(IFACE_LISTENER, "Update",
		      g_variant_new("(iiiiuu@ay)", 14, 0, 4, 4, 16u, PIXMAN_x8r8g8b8,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, patch,
							      sizeof(patch), 1)),
		      NULL),
		 "outside", "an Update past the edge");
	is_error(call(IFACE_LISTENER, "Update",
		      g_variant_new("(iiiiuu@ay)", 0, 0, 4, 4, 16u, PIXMAN_x8r8g8b8,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, patch, 40, 1)),
		      NULL),
		 "bytes of data", "an Update with too little data");
	is_error(call(IFACE_LISTENER, "Update",
		      g_variant_new("(iiiiuu@ay)", 0, 0, 4, 4, 16u, PIXMAN_a8r8g8b8,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, patch,
							      sizeof(patch), 1)),
		      NULL),
		 "differs", "an Update in another format");
	free(buf);
}

static void test_dmabuf(void)
{
	/* A memfd stands in for the dmabuf: the recording sink only looks at the descriptor. */
	int fd = make_memfd(64, 32, 256, 4, true, true);
	unsigned frames = sink->n_frames;
	struct record_frame *rf;
	struct call c;
	const char *r;

	is_error(call(IFACE_LISTENER, "ScanoutDMABUF",
		      g_variant_new("(huuuutb)", 0, 64u, 32u, 256u, DRM_FORMAT_XRGB8888,
				    (guint64)DRM_FORMAT_MOD_LINEAR, TRUE),
		      NULL),
		 "exactly 1 fd", "ScanoutDMABUF without its fd");
	/* Found by fuzz-qemu-dbus: a dmabuf smaller than its layout was mapped for the CPU view
	 * and the sink's first read past its end was SIGBUS. */
	{
		int small = make_memfd(64, 8, 256, 4, true, true);
		unsigned before = sink->n_frames;
		is_error(call(IFACE_LISTENER, "ScanoutDMABUF",
			      g_variant_new("(huuuutb)", 0, 64u, 32u, 256u, DRM_FORMAT_XRGB8888,
					    (guint64)DRM_FORMAT_MOD_LINEAR, TRUE),
			      fd_list(1, small)),
			 "needs", "ScanoutDMABUF of a dmabuf smaller than stride x height");
		tap_is_uint(sink->n_frames, before, "no frame reaches the sink from it");
		close(small);
	}
	is_error(call(IFACE_LISTENER, "ScanoutDMABUF",
		      g_variant_new("(huuuutb)", 0, 64u, 32u, 256u, 0x20203859u /* 'Y8  ' */,
				    (guint64)DRM_FORMAT_MOD_LINEAR, TRUE),
		      fd_list(1, fd)),
		 "not one we show", "ScanoutDMABUF in an unknown fourcc");
	r = call(IFACE_LISTENER, "ScanoutDMABUF",
		 g_variant_new("(huuuutb)", 0, 64u, 32u, 256u, DRM_FORMAT_XRGB8888,
			       (guint64)DRM_FORMAT_MOD_LINEAR, TRUE),
		 fd_list(1, fd));
	tap_ok(r == NULL, "ScanoutDMABUF is accepted (%s)", r ? r : "ok");
	rf = last_frame();
	tap_ok(sink->n_frames == frames + 1 && rf->had_dmabuf && rf->dmabuf.n_planes == 1 &&
		       rf->dmabuf.stride[0] == 256 && rf->dmabuf.fourcc == DRM_FORMAT_XRGB8888,
	       "the sink gets a one-plane dmabuf");
	tap_ok(rf && rf->had_cpu && frame_is_pattern(rf, 4), "and a CPU view of it (mmap)");

	/* UpdateDMABUF holds QEMU (and the guest) until the sink is done with the frame. */
	sink->auto_complete = false;
	frames = sink->n_frames;
	call_start(&c, IFACE_LISTENER, "UpdateDMABUF", g_variant_new("(iiii)", 0, 0, 8, 8), NULL);
	PUMP_UNTIL(sink->n_frames > frames);
	for (int i = 0; i < 10; i++)
		pump_once();
	tap_ok(sink->n_frames == frames + 1 && !c.done,
	       "UpdateDMABUF is not answered while the sink holds the frame");
	record_sink_complete(sink, sink->n_frames - 1, 0);
	tap_ok(PUMP_UNTIL(c.done) && !c.err, "and is answered once the sink is done");
	if (c.err)
		g_error_free(c.err);
	sink->auto_complete = true;

	is_error(call(IFACE_DMABUF2, "ScanoutDMABUF2",
		      g_variant_new("(@ahuuuu@au@auuuuutb)",
				    g_variant_new_array(G_VARIANT_TYPE_HANDLE, (GVariant *[]){ g_variant_new_handle(0) }, 1),
				    0u, 0u, 64u, 32u,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 0, 0 }, 2, 4),
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 256 }, 1, 4),
				    1u, DRM_FORMAT_XRGB8888, 64u, 32u, (guint64)0, TRUE),
		      fd_list(1, fd)),
		 "num_planes", "ScanoutDMABUF2 with 2 offsets for 1 plane");
	is_error(call(IFACE_DMABUF2, "ScanoutDMABUF2",
		      g_variant_new("(@ahuuuu@au@auuuuutb)",
				    g_variant_new_array(G_VARIANT_TYPE_HANDLE, (GVariant *[]){ g_variant_new_handle(0) }, 1),
				    0u, 0u, 64u, 32u,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 0 }, 1, 4),
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 256 }, 1, 4),
				    1u, DRM_FORMAT_XRGB8888, 64u, 32u, (guint64)0, TRUE),
		      fd_list(2, fd)),
		 "num_planes", "ScanoutDMABUF2 with 2 fds for 1 plane");
	is_error(call(IFACE_DMABUF2, "ScanoutDMABUF2",
		      g_variant_new("(@ahuuuu@au@auuuuutb)",
				    g_variant_new_array(G_VARIANT_TYPE_HANDLE, (GVariant *[]){ g_variant_new_handle(0) }, 1),
				    32u, 0u, 64u, 32u,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 0 }, 1, 4),
				    g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 256 }, 1, 4),
				    1u, DRM_FORMAT_XRGB8888, 64u, 32u, (guint64)0, TRUE),
		      fd_list(1, fd)),
		 "outside the", "ScanoutDMABUF2 with a rectangle past its backing");
	frames = sink->n_frames;
	r = call(IFACE_DMABUF2, "ScanoutDMABUF2",
		 g_variant_new("(@ahuuuu@au@auuuuutb)",
			       g_variant_new_array(G_VARIANT_TYPE_HANDLE, (GVariant *[]){ g_variant_new_handle(0) }, 1),
			       8u, 4u, 32u, 16u,
			       g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 0 }, 1, 4),
			       g_variant_new_fixed_array(G_VARIANT_TYPE_UINT32, (guint32[]){ 256 }, 1, 4),
			       1u, DRM_FORMAT_XRGB8888, 64u, 32u, (guint64)0, FALSE),
		 fd_list(1, fd));
	tap_ok(r == NULL, "ScanoutDMABUF2 of a 32x16+8+4 rectangle is accepted (%s)", r ? r : "ok");
	rf = last_frame();
	tap_ok(sink->n_frames == frames + 1 && rf->frame.width == 32 && rf->frame.height == 16 &&
		       rf->dmabuf.offset[0] == 4 * 256 + 8 * 4,
	       "the frame is the rectangle: 32x16, plane offset 4 rows + 8 pixels");
	close(fd);
}

static void test_cursor_disable(void)
{
	uint32_t argb[8 * 8];
	unsigned sets = sink->n_cursor_sets, moves = sink->n_cursor_moves;
	unsigned disables = sink->n_disables;
	const char *r;

	for (unsigned i = 0; i < 64; i++)
		argb[i] = 0xff00ff00u;
	is_error(call(IFACE_LISTENER, "CursorDefine",
		      g_variant_new("(iiii@ay)", 8, 8, 1, 1,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, argb, 100, 1)),
		      NULL),
		 "bytes of data", "CursorDefine with the wrong amount of data");
	is_error(call(IFACE_LISTENER, "CursorDefine",
		      g_variant_new("(iiii@ay)", 8, 8, 9, 1,
				    g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, argb, sizeof(argb), 1)),
		      NULL),
		 "hot spot", "CursorDefine with the hot spot outside");
	r = call(IFACE_LISTENER, "MouseSet", g_variant_new("(iii)", 10, 12, 1), NULL);
	tap_ok(r == NULL, "MouseSet is accepted");
	r = call(IFACE_LISTENER, "CursorDefine",
		 g_variant_new("(iiii@ay)", 8, 8, 1, 1,
			       g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, argb, sizeof(argb), 1)),
		 NULL);
	tap_ok(r == NULL && sink->n_cursor_sets > sets && sink->cursor_w == 8 &&
		       sink->cursor_first_pixel == 0xff00ff00u,
	       "CursorDefine sets the sink's 8x8 cursor");
	tap_ok(sink->n_cursor_moves > moves && sink->cursor_x == 10 && sink->cursor_y == 12,
	       "MouseSet moved it to 10,12");
	r = call(IFACE_LISTENER, "MouseSet", g_variant_new("(iii)", 0, 0, 0), NULL);
	tap_ok(r == NULL && !sink->cursor_visible, "MouseSet off hides it");
	r = call(IFACE_LISTENER, "Disable", NULL, NULL);
	tap_ok(r == NULL && sink->n_disables == disables + 1, "Disable hides the window");
}

static void test_input(void)
{
	int r;

	peer.n_keys = 0;
	r = vgb_qemu_dbus_key(q, 0, 0x1e, true);
	r |= vgb_qemu_dbus_key(q, 0, 0x30, true);
	r |= vgb_qemu_dbus_key(q, 0, 0x30, false);
	tap_is_int(r, 0, "three key events sent");
	PUMP_UNTIL(peer.n_keys >= 3);
	tap_ok(peer.n_keys == 3 && peer.keys[0] == 0x1e && peer.key_down[0] && peer.keys[1] == 0x30 &&
		       peer.key_down[1] && peer.keys[2] == 0x30 && !peer.key_down[2],
	       "QEMU's Keyboard got Press(0x1e) Press(0x30) Release(0x30), in order");
	vgb_qemu_dbus_button(q, 0, 0, true);
	vgb_qemu_dbus_release_all(q, 0);
	PUMP_UNTIL(peer.n_keys >= 4 && peer.n_buttons >= 2);
	tap_ok(peer.n_keys == 4 && peer.keys[3] == 0x1e && !peer.key_down[3] && peer.n_buttons == 2,
	       "release_all releases the key and the button still down");
	tap_is_int(vgb_qemu_dbus_key(q, 0, 0x100, true), -EINVAL, "a key number over 0xff");
	tap_is_int(vgb_qemu_dbus_key(q, 5, 0x1e, true), -ENODEV, "a console that does not exist");
	tap_is_int(vgb_qemu_dbus_set_ui_info(q, 0, 1024, 768, 0, 0), 0, "SetUIInfo sent");
	tap_ok(PUMP_UNTIL(peer.n_ui == 1) && peer.ui_w == 1024 && peer.ui_h == 768,
	       "QEMU's Console got SetUIInfo 1024x768");
	tap_is_int(vgb_qemu_dbus_set_ui_info(q, 0, 0, 768, 0, 0), -EINVAL, "a zero width");
}

int main(void)
{
	struct vgb_qemu_dbus_options o = { .p2p_fd = -1 };
	int file_maps = leak_count_file_maps();
	GSocketConnection *stream;
	GSocket *sock;
	char *guid;
	int sv[2], r;

	tap_plan_lazy();
	sink = record_sink_create();
	sink->auto_complete = true;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair: %s", strerror(errno));
	o.p2p_fd = sv[0];
	o.display = &sink->base;
	r = vgb_qemu_dbus_create(&o, &q); /* makes its context thread-default: the peer uses it */
	tap_is_int(r, 0, "the front end starts on a p2p socket");
	if (r < 0)
		return tap_done();

	/* QEMU's side of add_client: the server of the p2p connection. */
	sock = g_socket_new_from_fd(sv[1], NULL);
	stream = g_socket_connection_factory_create_connection(sock);
	guid = g_dbus_generate_guid();
	g_dbus_connection_new(G_IO_STREAM(stream), guid,
			      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER |
				      G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
			      NULL, NULL, peer_conn_ready, NULL);
	g_free(guid);
	g_object_unref(stream);
	g_object_unref(sock);

	tap_ok(PUMP_UNTIL(stats().consoles == 1 && peer.listener && peer.listener_ifaces),
	       "a listener registers for Console_0");
	tap_ok(peer.listener_ifaces && strstr(peer.listener_ifaces, IFACE_MAP) &&
		       strstr(peer.listener_ifaces, IFACE_DMABUF2),
	       "its Interfaces property lists Unix.Map and Unix.ScanoutDMABUF2 (%s)",
	       peer.listener_ifaces ? peer.listener_ifaces : "none");
	if (!peer.listener)
		tap_bail("no listener connection");

	test_before_scanout();
	test_map_malformed();
	test_map_sealed();
	test_map_unsealed_and_shrink();
	test_scanout_update();
	test_dmabuf();
	test_cursor_disable();
	test_input();

	/* QEMU goes away: the window goes, the front end stays. */
	{
		unsigned disables;
		struct call c;
		uint32_t px[4] = { 0 };

		/* A window on screen, so its going away shows. */
		call(IFACE_LISTENER, "Scanout",
		     g_variant_new("(uuuu@ay)", 2u, 2u, 8u, PIXMAN_x8r8g8b8,
				   g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, px, sizeof(px), 1)),
		     NULL);
		disables = sink->n_disables;
		call_start(&c, IFACE_MAP, "UpdateMap", g_variant_new("(iiii)", 0, 0, 1, 1), NULL);
		g_dbus_connection_close_sync(peer.listener, NULL, NULL);
		g_dbus_connection_close_sync(peer.conn, NULL, NULL);
		tap_ok(PUMP_UNTIL(stats().consoles == 0 && !stats().connected && c.done),
		       "QEMU closing its connections tears the console down");
		if (c.err)
			g_error_free(c.err);
		tap_is_uint(sink->n_disables, disables + 1, "its window is hidden");
		tap_is_int(vgb_qemu_dbus_key(q, 0, 0x1e, true), -ENODEV,
			   "input for the gone console is refused");
	}
	g_clear_object(&peer.listener);
	g_clear_object(&peer.conn);
	g_clear_object(&peer.om);
	g_clear_object(&peer.vm);
	g_clear_object(&peer.console);
	g_clear_object(&peer.kbd);
	g_clear_object(&peer.mouse);
	g_free(peer.listener_ifaces);
	vgb_qemu_dbus_destroy(q);
	record_sink_destroy(sink);
	/* GDBus keeps a worker thread and its wakeup fds for the process's life: count file maps. */
	tap_is_int(leak_count_file_maps(), file_maps, "no file mapping left behind");
	return tap_done();
}
