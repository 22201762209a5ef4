/* SPDX-License-Identifier: MIT */
#ifndef VGB_QEMU_DBUS_CONSOLE_H
#define VGB_QEMU_DBUS_CONSOLE_H

/*
 * Private to bridge/qemu-dbus/: one QEMU console and its listener. qemu-dbus.c owns the
 * connection to QEMU and the console table; listener.c decodes the listener's method calls
 * and turns them into frames for the sink.
 */

#include <gio/gio.h>
#include <stdbool.h>
#include <stdint.h>

#include "display1.h"
#include "qemu-dbus.h"
#include "vgb/display.h"
#include "vgb/dmabuf.h"
#include "gloop.h"

#define QD_MAX_CONSOLES VGB_DISPLAY_MAX_SCANOUTS
#define QD_LISTENER_PATH "/org/qemu/Display1/Listener"
#define QD_BUS_NAME "org.qemu"
#define QD_MAX_DIM 16384u
#define QD_MAX_FRAME_BYTES (1ull << 30)

/* A read-only mapping of a memfd (QEMU's, or one of ours), shared by the frames using it. */
struct qd_map {
	int refs;
	int fd;          /* owned */
	uint8_t *base;
	size_t len;      /* mapped bytes (from offset 0) */
	uint64_t id;     /* buffer_id for the sink's wl_buffer cache */
	bool ours;       /* our own sealed buffer (Scanout/Update), written by us */
};

enum qd_kind {
	QD_NONE = 0,
	QD_MAP,     /* ScanoutMap: QEMU's memfd */
	QD_SCANOUT, /* Scanout: payloads copied into our own memfd */
	QD_DMABUF,  /* ScanoutDMABUF(2) */
};

struct qd_console {
	struct vgb_qemu_dbus *q;
	int refs;
	bool dead;        /* torn down; frames in flight still hold references */
	uint32_t index;   /* the sink's scanout */
	uint32_t qemu_id; /* /org/qemu/Display1/Console_<qemu_id> */
	GCancellable *cancel;
	VgbDbusConsole *proxy;
	VgbDbusKeyboard *kbd;
	VgbDbusMouse *mouse;
	GDBusConnection *conn; /* the listener's peer-to-peer connection */
	gulong closed_id;
	VgbDbusListener *skel;
	VgbDbusListenerUnixMap *map_skel;
	VgbDbusListenerUnixScanoutDMABUF2 *dmabuf2_skel;
	bool registered;

	enum qd_kind kind;
	bool enabled;
	uint32_t width, height, stride, fourcc, bpp;
	struct qd_map *src;   /* QD_MAP and QD_SCANOUT */
	uint32_t src_offset;
	bool direct;          /* src may be handed to the compositor as is */
	struct qd_map *priv;  /* QD_MAP not direct, not tear-free: our sealed copy of src */
	uint32_t priv_stride;
	struct vgb_dmabuf dmabuf;  /* QD_DMABUF, owned */
	struct qd_map *dmabuf_view; /* its CPU view when mmap works (fd not owned: -1) */
	bool y0_top;
	uint64_t dmabuf_id;

	uint32_t *cursor;     /* ARGB, cursor_w * cursor_h */
	uint32_t cursor_w, cursor_h, cursor_hot_x, cursor_hot_y;
	bool cursor_on;

	uint8_t keys_down[32];  /* bitmap of xtkbd codes we pressed */
	uint32_t buttons_down;  /* bitmap of buttons we pressed */
};

struct vgb_qemu_dbus {
	struct vgb_gloop loop;
	struct vgb_qemu_dbus_options opts;
	char *address;
	int p2p_fd;
	GCancellable *cancel;
	GDBusConnection *conn; /* to QEMU (p2p) or to the bus */
	gulong closed_id;
	guint watch_id;
	GSource *retry;
	VgbDbusVM *vm;
	bool qemu_present;
	struct qd_console *consoles[QD_MAX_CONSOLES];
	uint64_t next_buffer_id;
	unsigned pending; /* async calls whose callbacks have not run yet */
	struct vgb_qemu_dbus_stats stats;
};

/* Reference counting: frames in flight and async callbacks keep a console alive. */
struct qd_console *vgb_qd_console_ref(struct qd_console *c);
void vgb_qd_console_unref(struct qd_console *c);

void vgb_qd_map_unref(struct qd_map *m);

/* listener.c: exports the listener interfaces on c->conn. 0 or -errno. */
int vgb_qd_listener_export(struct qd_console *c);
/* listener.c: drops the frame source (mapping, dmabuf) and the cursor; hides the window. */
void vgb_qd_listener_reset(struct qd_console *c);
/* listener.c: unexports and frees the skeletons. */
void vgb_qd_listener_unexport(struct qd_console *c);

/* Pixman format code (PIXMAN_x8r8g8b8, ...) to a DRM fourcc; 0 when we do not handle it. */
uint32_t vgb_qd_pixman_to_drm(uint32_t pixman_format);

#endif
