/* SPDX-License-Identifier: MIT */
/*
 * The connection to QEMU's D-Bus display: bus or peer-to-peer, the console table, one
 * listener per graphic console, input and SetUIInfo back to QEMU, and the counters.
 * Everything asynchronous: no call here waits for QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gunixfdlist.h>

#include "console.h"
#include "vgb/log.h"
#include "vgb/util.h"

#define MAX_ROUNDS 64

static void connect_start(struct vgb_qemu_dbus *q);

/* ---- consoles ---- */

/* Tears a console down; callbacks and frames still holding it see c->dead. */
static void console_destroy(struct qd_console *c)
{
	struct vgb_qemu_dbus *q;

	if (!c)
		return;
	q = c->q;
	/* Keys still down stay down in the guest unless released while QEMU listens. */
	if (!c->dead && c->kbd)
		vgb_qemu_dbus_release_all(q, c->index);
	c->dead = true;
	g_cancellable_cancel(c->cancel);
	vgb_qd_listener_unexport(c);
	vgb_qd_listener_reset(c);
	if (c->conn) {
		if (c->closed_id)
			g_signal_handler_disconnect(c->conn, c->closed_id);
		g_dbus_connection_close(c->conn, NULL, NULL, NULL);
		g_clear_object(&c->conn);
	}
	g_clear_object(&c->proxy);
	g_clear_object(&c->kbd);
	g_clear_object(&c->mouse);
	if (c->registered && q->stats.consoles)
		q->stats.consoles--;
	q->consoles[c->index] = NULL;
	vgb_qd_console_unref(c);
}

static void consoles_destroy_all(struct vgb_qemu_dbus *q)
{
	for (unsigned i = 0; i < QD_MAX_CONSOLES; i++)
		console_destroy(q->consoles[i]);
}

static struct qd_console *console_get(struct vgb_qemu_dbus *q, uint32_t scanout)
{
	if (scanout >= QD_MAX_CONSOLES || !q->consoles[scanout] || q->consoles[scanout]->dead)
		return NULL;
	return q->consoles[scanout];
}

static const char *bus_name(const struct vgb_qemu_dbus *q)
{
	return q->address ? QD_BUS_NAME : NULL;
}

static void listener_closed(GDBusConnection *conn, gboolean remote_vanished, GError *error,
			    gpointer data)
{
	struct qd_console *c = data;

	vgb_log(VGB_LOG_INFO, "console %u: QEMU closed the listener connection", c->qemu_id);
	console_destroy(c);
}

static void listener_conn_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct qd_console *c = data;
	GError *err = NULL;
	GDBusConnection *conn = g_dbus_connection_new_finish(res, &err);

	c->q->pending--;
	if (!conn) {
		if (!c->dead)
			vgb_log(VGB_LOG_WARN, "console %u: listener handshake failed: %s",
				c->qemu_id, err->message);
		g_error_free(err);
		goto out;
	}
	if (c->dead) {
		g_dbus_connection_close(conn, NULL, NULL, NULL);
		g_object_unref(conn);
		goto out;
	}
	c->conn = conn;
	if (vgb_qd_listener_export(c) < 0) {
		console_destroy(c);
		goto out;
	}
	c->closed_id = g_signal_connect(conn, "closed", G_CALLBACK(listener_closed), c);
	/* QEMU reads our Interfaces property first: it must find the object exported. */
	g_dbus_connection_start_message_processing(conn);
	c->registered = true;
	c->q->stats.consoles++;
	vgb_log(VGB_LOG_INFO, "console %u: listener registered (scanout %u)", c->qemu_id,
		c->index);
out:
	vgb_qd_console_unref(c);
}

static void register_done(GObject *src, GAsyncResult *res, gpointer data)
{
	struct qd_console *c = data;
	GError *err = NULL;

	c->q->pending--;
	if (!vgb_dbus_console_call_register_listener_finish(VGB_DBUS_CONSOLE(src), NULL, res,
							   &err)) {
		if (!c->dead)
			vgb_log(VGB_LOG_WARN, "console %u: RegisterListener failed: %s", c->qemu_id,
				err->message);
		g_error_free(err);
		if (!c->dead)
			console_destroy(c);
	}
	vgb_qd_console_unref(c);
}

/*
 * One end of a socketpair goes to QEMU in RegisterListener; on the other we run the
 * connection as the authenticating client. Both run at once: QEMU answers the call, then does
 * its side of the handshake synchronously.
 */
static int console_register(struct qd_console *c)
{
	struct vgb_qemu_dbus *q = c->q;
	GError *err = NULL;
	GUnixFDList *fdl;
	GSocket *sock;
	GSocketConnection *stream;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	fdl = g_unix_fd_list_new_from_array(&sv[0], 1); /* owns sv[0] */
	sock = g_socket_new_from_fd(sv[1], &err);
	if (!sock) {
		close(sv[1]);
		g_object_unref(fdl);
		vgb_log(VGB_LOG_WARN, "console %u: %s", c->qemu_id, err->message);
		g_error_free(err);
		return -EIO;
	}
	stream = g_socket_connection_factory_create_connection(sock);
	g_object_unref(sock);
	q->pending += 2;
	g_dbus_connection_new(G_IO_STREAM(stream), NULL,
			      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
				      G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
			      NULL, c->cancel, listener_conn_ready, vgb_qd_console_ref(c));
	g_object_unref(stream);
	vgb_dbus_console_call_register_listener(c->proxy, g_variant_new_handle(0), fdl, c->cancel,
						register_done, vgb_qd_console_ref(c));
	g_object_unref(fdl);
	return 0;
}

static void kbd_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct qd_console *c = data;
	VgbDbusKeyboard *kbd = vgb_dbus_keyboard_proxy_new_finish(res, NULL);

	c->q->pending--;
	if (kbd && !c->dead)
		c->kbd = kbd;
	else if (kbd)
		g_object_unref(kbd);
	vgb_qd_console_unref(c);
}

static void mouse_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct qd_console *c = data;
	VgbDbusMouse *mouse = vgb_dbus_mouse_proxy_new_finish(res, NULL);

	c->q->pending--;
	if (mouse && !c->dead)
		c->mouse = mouse;
	else if (mouse)
		g_object_unref(mouse);
	vgb_qd_console_unref(c);
}

static void console_proxy_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct qd_console *c = data;
	struct vgb_qemu_dbus *q = c->q;
	GError *err = NULL;
	VgbDbusConsole *proxy = vgb_dbus_console_proxy_new_finish(res, &err);
	const char *type;
	char path[64];
	int r;

	q->pending--;
	if (!proxy) {
		if (!c->dead) {
			vgb_log(VGB_LOG_WARN, "console %u: %s", c->qemu_id, err->message);
			console_destroy(c);
		}
		g_error_free(err);
		goto out;
	}
	if (c->dead) {
		g_object_unref(proxy);
		goto out;
	}
	c->proxy = proxy;
	type = vgb_dbus_console_get_type_(proxy);
	if (type && strcmp(type, "Graphic") != 0) {
		vgb_log(VGB_LOG_DEBUG, "console %u: %s console, not shown", c->qemu_id, type);
		console_destroy(c);
		goto out;
	}
	snprintf(path, sizeof(path), "/org/qemu/Display1/Console_%u", c->qemu_id);
	q->pending += 2;
	vgb_dbus_keyboard_proxy_new(q->conn, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, bus_name(q),
				    path, c->cancel, kbd_ready, vgb_qd_console_ref(c));
	vgb_dbus_mouse_proxy_new(q->conn, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, bus_name(q), path,
				 c->cancel, mouse_ready, vgb_qd_console_ref(c));
	r = console_register(c);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_WARN, r, "console %u: cannot register a listener", c->qemu_id);
		console_destroy(c);
	}
out:
	vgb_qd_console_unref(c);
}

static void console_add(struct vgb_qemu_dbus *q, uint32_t qemu_id)
{
	struct qd_console *c;
	unsigned slot = QD_MAX_CONSOLES;
	char path[64];

	for (unsigned i = 0; i < QD_MAX_CONSOLES; i++) {
		if (!q->consoles[i]) {
			slot = i;
			break;
		}
	}
	if (slot == QD_MAX_CONSOLES) {
		vgb_log(VGB_LOG_WARN, "console %u: more than %u consoles, not shown", qemu_id,
			QD_MAX_CONSOLES);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->q = q;
	c->refs = 1;
	c->index = slot;
	c->qemu_id = qemu_id;
	c->cancel = g_cancellable_new();
	vgb_dmabuf_init(&c->dmabuf);
	q->consoles[slot] = c;
	snprintf(path, sizeof(path), "/org/qemu/Display1/Console_%u", qemu_id);
	q->pending++;
	vgb_dbus_console_proxy_new(q->conn, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, bus_name(q), path,
				   c->cancel, console_proxy_ready, vgb_qd_console_ref(c));
}

/* ---- the VM object ---- */

static void vm_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct vgb_qemu_dbus *q = data;
	GError *err = NULL;
	VgbDbusVM *vm = vgb_dbus_vm_proxy_new_finish(res, &err);
	GVariant *ids;

	q->pending--;
	if (!vm) {
		if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED))
			vgb_log(VGB_LOG_WARN, "QEMU's VM object: %s", err->message);
		g_error_free(err);
		return;
	}
	if (!q->qemu_present) {
		g_object_unref(vm);
		return;
	}
	g_clear_object(&q->vm);
	q->vm = vm;
	ids = vgb_dbus_vm_get_console_ids(vm);
	if (!ids) {
		vgb_log(VGB_LOG_WARN, "QEMU's VM object has no ConsoleIDs: is this -display dbus?");
		return;
	}
	vgb_log(VGB_LOG_INFO, "QEMU '%s': %zu console(s)",
		vgb_dbus_vm_get_name(vm) ? vgb_dbus_vm_get_name(vm) : "",
		(size_t)g_variant_n_children(ids));
	for (gsize i = 0; i < g_variant_n_children(ids); i++) {
		guint32 id;
		g_variant_get_child(ids, i, "u", &id);
		console_add(q, id);
	}
}

static void qemu_appeared(struct vgb_qemu_dbus *q)
{
	q->qemu_present = true;
	q->stats.connects++;
	q->pending++;
	vgb_dbus_vm_proxy_new(q->conn, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START, bus_name(q),
			      "/org/qemu/Display1/VM", q->cancel, vm_ready, q);
}

static void qemu_vanished(struct vgb_qemu_dbus *q)
{
	if (q->qemu_present)
		q->stats.disconnects++;
	q->qemu_present = false;
	consoles_destroy_all(q);
	g_clear_object(&q->vm);
}

static void name_appeared(GDBusConnection *conn, const gchar *name, const gchar *owner,
			  gpointer data)
{
	struct vgb_qemu_dbus *q = data;

	vgb_log(VGB_LOG_INFO, "QEMU is on the bus (%s)", owner);
	qemu_vanished(q); /* a new owner: start over */
	qemu_appeared(q);
}

static void name_vanished(GDBusConnection *conn, const gchar *name, gpointer data)
{
	struct vgb_qemu_dbus *q = data;

	if (q->qemu_present)
		vgb_log(VGB_LOG_INFO, "QEMU left the bus; waiting for it to come back");
	qemu_vanished(q);
}

/* ---- the connection ---- */

static gboolean retry_cb(gpointer data)
{
	struct vgb_qemu_dbus *q = data;

	g_source_unref(q->retry);
	q->retry = NULL;
	connect_start(q);
	return G_SOURCE_REMOVE;
}

static void schedule_retry(struct vgb_qemu_dbus *q)
{
	if (!q->address || q->retry || g_cancellable_is_cancelled(q->cancel))
		return;
	q->retry = g_timeout_source_new((guint)(q->opts.reconnect_ms > 0 ? q->opts.reconnect_ms
									  : 1000));
	g_source_set_callback(q->retry, retry_cb, q, NULL);
	g_source_attach(q->retry, q->loop.ctx);
}

static void conn_drop(struct vgb_qemu_dbus *q)
{
	if (q->watch_id)
		g_bus_unwatch_name(q->watch_id);
	q->watch_id = 0;
	qemu_vanished(q);
	if (q->conn) {
		if (q->closed_id)
			g_signal_handler_disconnect(q->conn, q->closed_id);
		q->closed_id = 0;
		g_dbus_connection_close(q->conn, NULL, NULL, NULL);
		g_clear_object(&q->conn);
	}
	q->stats.connected = false;
}

static void conn_closed(GDBusConnection *conn, gboolean remote_vanished, GError *error,
			gpointer data)
{
	struct vgb_qemu_dbus *q = data;

	vgb_log(VGB_LOG_INFO, "the connection to %s closed%s", q->address ? "the bus" : "QEMU",
		q->address ? "; reconnecting" : "");
	conn_drop(q);
	schedule_retry(q);
}

static void conn_ready(GObject *src, GAsyncResult *res, gpointer data)
{
	struct vgb_qemu_dbus *q = data;
	GError *err = NULL;
	GDBusConnection *conn = q->address ? g_dbus_connection_new_for_address_finish(res, &err)
					   : g_dbus_connection_new_finish(res, &err);

	q->pending--;
	if (!conn) {
		if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
			vgb_log_ratelimited(VGB_LOG_WARN, "cannot connect to %s: %s",
					    q->address ? q->address : "QEMU", err->message);
			schedule_retry(q);
		}
		g_error_free(err);
		return;
	}
	if (g_cancellable_is_cancelled(q->cancel)) {
		g_object_unref(conn);
		return;
	}
	q->conn = conn;
	q->stats.connected = true;
	q->closed_id = g_signal_connect(conn, "closed", G_CALLBACK(conn_closed), q);
	if (q->address) {
		vgb_log(VGB_LOG_INFO, "connected to the bus %s; watching %s", q->address,
			QD_BUS_NAME);
		q->watch_id = g_bus_watch_name_on_connection(conn, QD_BUS_NAME,
							     G_BUS_NAME_WATCHER_FLAGS_NONE,
							     name_appeared, name_vanished, q, NULL);
	} else {
		vgb_log(VGB_LOG_INFO, "connected to QEMU (peer to peer)");
		qemu_appeared(q);
	}
}

static void connect_start(struct vgb_qemu_dbus *q)
{
	if (q->address) {
		q->pending++;
		g_dbus_connection_new_for_address(q->address,
						  G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT |
							  G_DBUS_CONNECTION_FLAGS_MESSAGE_BUS_CONNECTION,
						  NULL, q->cancel, conn_ready, q);
		return;
	}
	if (q->p2p_fd >= 0) {
		GError *err = NULL;
		GSocket *sock = g_socket_new_from_fd(q->p2p_fd, &err);
		GSocketConnection *stream;

		if (!sock) {
			vgb_log(VGB_LOG_ERROR, "--qemu-dbus-fd %d: %s", q->p2p_fd, err->message);
			g_error_free(err);
			return;
		}
		q->p2p_fd = -1; /* the socket owns it */
		stream = g_socket_connection_factory_create_connection(sock);
		g_object_unref(sock);
		q->pending++;
		g_dbus_connection_new(G_IO_STREAM(stream), NULL,
				      G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL, q->cancel,
				      conn_ready, q);
		g_object_unref(stream);
	}
}

int vgb_qemu_dbus_create(const struct vgb_qemu_dbus_options *opts, struct vgb_qemu_dbus **ret)
{
	struct vgb_qemu_dbus *q;
	int fd = opts->p2p_fd, r;

	if (!opts->address == (fd < 0)) {
		vgb_close(fd);
		return -EINVAL;
	}
	if (opts->address && !g_dbus_is_address(opts->address)) {
		vgb_log(VGB_LOG_ERROR, "'%s' is not a D-Bus address (e.g. unix:path=/run/qemu-bus)",
			opts->address);
		return -EINVAL;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		vgb_close(fd);
		return -ENOMEM;
	}
	r = vgb_gloop_init(&q->loop);
	if (r < 0) {
		vgb_close(fd);
		free(q);
		return r;
	}
	q->opts = *opts;
	q->address = opts->address ? strdup(opts->address) : NULL;
	q->opts.address = q->address;
	q->p2p_fd = fd;
	q->cancel = g_cancellable_new();
	q->stats.last_map_seals = -1;
	connect_start(q);
	*ret = q;
	return 0;
}

int vgb_qemu_dbus_get_fd(struct vgb_qemu_dbus *q)
{
	return vgb_gloop_get_fd(&q->loop);
}

int vgb_qemu_dbus_dispatch(struct vgb_qemu_dbus *q)
{
	return vgb_gloop_dispatch(&q->loop, MAX_ROUNDS);
}

void vgb_qemu_dbus_get_stats(struct vgb_qemu_dbus *q, struct vgb_qemu_dbus_stats *ret)
{
	*ret = q->stats;
	ret->qemu_present = q->qemu_present;
}

void vgb_qemu_dbus_print_stats(struct vgb_qemu_dbus *q, FILE *f)
{
	struct vgb_qemu_dbus_stats s;

	vgb_qemu_dbus_get_stats(q, &s);
	fprintf(f,
		"connected %d\nqemu_present %d\nconsoles %u\nconnects %" PRIu64
		"\ndisconnects %" PRIu64 "\ncalls %" PRIu64 "\nbad_calls %" PRIu64
		"\nscanout_maps %" PRIu64 "\nupdate_maps %" PRIu64 "\nscanouts %" PRIu64
		"\nupdates %" PRIu64 "\nscanout_dmabufs %" PRIu64 "\nupdate_dmabufs %" PRIu64
		"\ndisables %" PRIu64 "\ncursor_defines %" PRIu64 "\nmouse_sets %" PRIu64
		"\nframes_presented %" PRIu64 "\nframes_direct %" PRIu64
		"\nframes_sink_copy %" PRIu64 "\nbytes_copied %" PRIu64 "\ndamage_bytes %" PRIu64
		"\nmap_faults %" PRIu64 "\nmap_unsealed %" PRIu64 "\nlast_map_seals %d"
		"\ninput_events %" PRIu64 "\ninput_errors %" PRIu64 "\nui_infos %" PRIu64 "\n",
		s.connected, s.qemu_present, s.consoles, s.connects, s.disconnects, s.calls,
		s.bad_calls, s.scanout_maps, s.update_maps, s.scanouts, s.updates,
		s.scanout_dmabufs, s.update_dmabufs, s.disables, s.cursor_defines, s.mouse_sets,
		s.frames_presented, s.frames_direct, s.frames_sink_copy, s.bytes_copied,
		s.damage_bytes, s.map_faults, s.map_unsealed, s.last_map_seals, s.input_events,
		s.input_errors, s.ui_infos);
}

/* ---- input and SetUIInfo ---- */

static void input_done(GObject *src, GAsyncResult *res, gpointer data)
{
	struct vgb_qemu_dbus *q = data;
	GError *err = NULL;
	GVariant *v = g_dbus_proxy_call_finish(G_DBUS_PROXY(src), res, &err);

	q->pending--;
	if (v)
		g_variant_unref(v);
	if (err) {
		if (!g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
			q->stats.input_errors++;
			vgb_log_ratelimited(VGB_LOG_WARN, "QEMU refused an input event: %s",
					    err->message);
		}
		g_error_free(err);
	}
}

/* Sends @method(@args) on @proxy; GDBus keeps the order of calls on one connection. */
static int send_call(struct vgb_qemu_dbus *q, void *proxy, const char *method, GVariant *args)
{
	if (!proxy) {
		g_variant_unref(g_variant_ref_sink(args));
		return -ENODEV;
	}
	q->pending++;
	g_dbus_proxy_call(G_DBUS_PROXY(proxy), method, args, G_DBUS_CALL_FLAGS_NO_AUTO_START, -1,
			  q->cancel, input_done, q);
	return 0;
}

int vgb_qemu_dbus_key(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t xtkbd, bool pressed)
{
	struct qd_console *c = console_get(q, scanout);
	int r;

	if (!c)
		return -ENODEV;
	if (xtkbd == 0 || xtkbd > 0xff)
		return -EINVAL;
	r = send_call(q, c->kbd, pressed ? "Press" : "Release", g_variant_new("(u)", xtkbd));
	if (r < 0)
		return r;
	if (pressed)
		c->keys_down[xtkbd / 8] |= (uint8_t)(1u << (xtkbd % 8));
	else
		c->keys_down[xtkbd / 8] &= (uint8_t)~(1u << (xtkbd % 8));
	q->stats.input_events++;
	return 0;
}

int vgb_qemu_dbus_button(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t button, bool pressed)
{
	struct qd_console *c = console_get(q, scanout);
	int r;

	if (!c)
		return -ENODEV;
	if (button > 6)
		return -EINVAL;
	r = send_call(q, c->mouse, pressed ? "Press" : "Release", g_variant_new("(u)", button));
	if (r < 0)
		return r;
	if (pressed)
		c->buttons_down |= 1u << button;
	else
		c->buttons_down &= ~(1u << button);
	q->stats.input_events++;
	return 0;
}

int vgb_qemu_dbus_motion_abs(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t x, uint32_t y)
{
	struct qd_console *c = console_get(q, scanout);
	int r;

	if (!c)
		return -ENODEV;
	if (c->width && (x >= c->width || y >= c->height))
		return -EINVAL;
	r = send_call(q, c->mouse, "SetAbsPosition", g_variant_new("(uu)", x, y));
	if (r == 0)
		q->stats.input_events++;
	return r;
}

int vgb_qemu_dbus_motion_rel(struct vgb_qemu_dbus *q, uint32_t scanout, int32_t dx, int32_t dy)
{
	struct qd_console *c = console_get(q, scanout);
	int r;

	if (!c)
		return -ENODEV;
	r = send_call(q, c->mouse, "RelMotion", g_variant_new("(ii)", dx, dy));
	if (r == 0)
		q->stats.input_events++;
	return r;
}

bool vgb_qemu_dbus_pointer_is_absolute(struct vgb_qemu_dbus *q, uint32_t scanout)
{
	struct qd_console *c = console_get(q, scanout);

	return c && c->mouse && vgb_dbus_mouse_get_is_absolute(c->mouse);
}

void vgb_qemu_dbus_release_all(struct vgb_qemu_dbus *q, uint32_t scanout)
{
	struct qd_console *c = scanout < QD_MAX_CONSOLES ? q->consoles[scanout] : NULL;

	if (!c)
		return;
	for (uint32_t k = 1; k < 256; k++)
		if (c->keys_down[k / 8] & (1u << (k % 8)))
			vgb_qemu_dbus_key(q, scanout, k, false);
	for (uint32_t b = 0; b <= 6; b++)
		if (c->buttons_down & (1u << b))
			vgb_qemu_dbus_button(q, scanout, b, false);
	memset(c->keys_down, 0, sizeof(c->keys_down));
	c->buttons_down = 0;
}

int vgb_qemu_dbus_set_ui_info(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t width,
			      uint32_t height, uint16_t width_mm, uint16_t height_mm)
{
	struct qd_console *c = console_get(q, scanout);
	int r;

	if (!c)
		return -ENODEV;
	if (width == 0 || height == 0 || width > QD_MAX_DIM || height > QD_MAX_DIM)
		return -EINVAL;
	r = send_call(q, c->proxy, "SetUIInfo",
		      g_variant_new("(qqiiuu)", width_mm, height_mm, 0, 0, width, height));
	if (r == 0)
		q->stats.ui_infos++;
	return r;
}

void vgb_qemu_dbus_destroy(struct vgb_qemu_dbus *q)
{
	if (!q)
		return;
	g_cancellable_cancel(q->cancel);
	if (q->retry) {
		g_source_destroy(q->retry);
		g_source_unref(q->retry);
		q->retry = NULL;
	}
	conn_drop(q);
	/* Every async call was cancelled: let their callbacks run while q is still here. */
	for (unsigned i = 0; i < 2000 && q->pending; i++)
		if (!g_main_context_iteration(q->loop.ctx, FALSE))
			g_usleep(1000);
	if (q->pending)
		vgb_log(VGB_LOG_WARN, "%u D-Bus call(s) still pending at exit", q->pending);
	vgb_close(q->p2p_fd);
	g_clear_object(&q->cancel);
	vgb_gloop_finish(&q->loop);
	free(q->address);
	free(q);
}
