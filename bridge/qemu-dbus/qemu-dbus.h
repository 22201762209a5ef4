/* SPDX-License-Identifier: MIT */
#ifndef VGB_QEMU_DBUS_H
#define VGB_QEMU_DBUS_H

/*
 * QEMU's D-Bus display (-display dbus, org.qemu.Display1) as a frame source.
 *
 * vgbridged connects to QEMU as a display client: in bus mode to a D-Bus address on which
 * QEMU owns "org.qemu", in p2p mode over a socket QEMU serves directly (QMP getfd +
 * add_client). For every graphic console it registers one listener: a socketpair whose one
 * end goes to QEMU in Console.RegisterListener and whose other end runs a peer-to-peer D-Bus
 * connection on which we are the authenticating client and export
 * /org/qemu/Display1/Listener. Each console is one scanout (window) of the display sink.
 *
 * Frames reach the sink as follows (docs/qemu-dbus.md has the trade-offs):
 *   ScanoutMap + UpdateMap   QEMU's memfd as a CPU view. Sealed against shrinking: shm-direct
 *                            (0 copies). Not sealed, or tear_free: the sink copies the damage
 *                            into its own released-buffer rotation (1 copy). The memfd is never
 *                            handed to the compositor unsealed.
 *   Scanout + Update         the payload's rectangle is copied once into our own sealed memfd,
 *                            which the sink shows shm-direct (1 copy of the damage).
 *   ScanoutDMABUF(2) + UpdateDMABUF   a dmabuf (linux-dmabuf, EGL, CPU view through mmap);
 *                            UpdateDMABUF is answered when the sink is done with the frame.
 *   CursorDefine, MouseSet   the sink's cursor; Disable hides the window.
 *
 * Single-threaded: every function must be called from the thread that created the object
 * (GDBus's own worker thread only ever talks to our private GMainContext).
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct vgb_display;
struct vgb_qemu_dbus;

struct vgb_qemu_dbus_options {
	const char *address;   /* bus mode: D-Bus address of the bus QEMU is on; NULL: p2p */
	int p2p_fd;            /* p2p mode: connected socket QEMU serves; -1 in bus mode */
	struct vgb_display *display; /* borrowed; must outlive the object; may be NULL */
	bool tear_free;        /* Map path: always let the sink copy the damage */
	int reconnect_ms;      /* bus mode: retry a lost bus this often (default 1000) */
};

struct vgb_qemu_dbus_stats {
	bool connected;            /* the D-Bus connection to QEMU (or its bus) is up */
	bool qemu_present;         /* bus mode: org.qemu has an owner; p2p: connected */
	uint32_t consoles;         /* listeners registered */
	uint64_t connects;         /* successful connections to QEMU (bus: name appeared) */
	uint64_t disconnects;
	uint64_t calls;            /* listener method calls handled */
	uint64_t bad_calls;        /* answered with an error */
	uint64_t scanout_maps, update_maps;
	uint64_t scanouts, updates;
	uint64_t scanout_dmabufs, update_dmabufs;
	uint64_t disables, cursor_defines, mouse_sets;
	uint64_t frames_presented;  /* handed to the sink */
	uint64_t frames_direct;     /* of those: QEMU's sealed memfd shown directly (0 copies) */
	uint64_t frames_sink_copy;  /* of those: the sink copies the damage from QEMU's memfd */
	uint64_t bytes_copied;      /* by the front end (Scanout/Update payloads) */
	uint64_t damage_bytes;      /* sum of the damage rectangles presented (w * h * bpp) */
	uint64_t map_faults;        /* a Map memfd that shrank under us (guarded read failed) */
	uint64_t map_unsealed;      /* ScanoutMaps whose memfd lacked F_SEAL_SHRINK */
	int32_t last_map_seals;     /* F_GET_SEALS of the last ScanoutMap memfd (-1: none yet) */
	uint64_t input_events;      /* key/button/motion calls sent to QEMU */
	uint64_t input_errors;      /* answered with an error by QEMU */
	uint64_t ui_infos;          /* SetUIInfo calls sent */
};

/*
 * Starts connecting (asynchronously: the result shows in the stats). Takes ownership of
 * opts->p2p_fd, on failure too. Returns 0, -EINVAL (neither or both of address and p2p_fd),
 * or -errno.
 */
int vgb_qemu_dbus_create(const struct vgb_qemu_dbus_options *opts, struct vgb_qemu_dbus **ret);

/* The fd for the caller's epoll (EPOLLIN: call vgb_qemu_dbus_dispatch()). */
int vgb_qemu_dbus_get_fd(struct vgb_qemu_dbus *q);

/*
 * Handles whatever D-Bus traffic is ready, never waiting. Returns the timeout in ms after
 * which it must be called again even if the fd stays quiet (-1: none), or -errno.
 */
int vgb_qemu_dbus_dispatch(struct vgb_qemu_dbus *q);

void vgb_qemu_dbus_get_stats(struct vgb_qemu_dbus *q, struct vgb_qemu_dbus_stats *ret);

/* Writes the stats as "key value" lines (vgbridged's --stats-file). */
void vgb_qemu_dbus_print_stats(struct vgb_qemu_dbus *q, FILE *f);

/*
 * Input back to QEMU, for console @scanout (the sink's scanout index). Every call is sent
 * asynchronously, in order; none waits. Returns 0, -ENODEV (no such console or QEMU gone),
 * -EINVAL.
 *   key:      @xtkbd is QEMU's key number (PC XT set 1, 0xe0-prefixed codes as 0x80 | code).
 *   button:   0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down, 5 side, 6 extra.
 *   abs:      pixels in the console's size; only when QEMU reports IsAbsolute.
 *   rel:      relative motion; only when it does not.
 */
int vgb_qemu_dbus_key(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t xtkbd, bool pressed);
int vgb_qemu_dbus_button(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t button, bool pressed);
int vgb_qemu_dbus_motion_abs(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t x, uint32_t y);
int vgb_qemu_dbus_motion_rel(struct vgb_qemu_dbus *q, uint32_t scanout, int32_t dx, int32_t dy);
/* Whether QEMU wants absolute pointer positions for @scanout (its IsAbsolute property). */
bool vgb_qemu_dbus_pointer_is_absolute(struct vgb_qemu_dbus *q, uint32_t scanout);
/* Releases every key and button we pressed on @scanout (focus loss). */
void vgb_qemu_dbus_release_all(struct vgb_qemu_dbus *q, uint32_t scanout);

/*
 * Tells QEMU the window of console @scanout is now @width x @height pixels
 * (Console.SetUIInfo); a guest with EDID/hot-plug support then offers that mode. @width_mm
 * and @height_mm may be 0. Returns 0, -ENODEV, -EINVAL (a zero size).
 */
int vgb_qemu_dbus_set_ui_info(struct vgb_qemu_dbus *q, uint32_t scanout, uint32_t width,
			      uint32_t height, uint16_t width_mm, uint16_t height_mm);

/* Closes the connections and hides every window. Accepts NULL. */
void vgb_qemu_dbus_destroy(struct vgb_qemu_dbus *q);

#endif
