/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_SERVER_H
#define VGB_BRIDGE_SERVER_H

/*
 * The vgbridged service loop: one epoll loop that accepts clients on an AF_UNIX
 * SOCK_SEQPACKET socket, serves the wire protocol (bridge/server/protocol.h, docs/protocol.md), and
 * polls the display sink's fd and the fence deadlines of every client.
 *
 * Each client has its own memory map, devices, and virtio-gpu processor (resources, scanouts,
 * fences); ids a client uses (window gpas, device ids, resource ids) are looked up only in its
 * own tables. A disconnect frees everything the client held.
 *
 * Single-threaded: every function is called from the thread that runs the loop.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct vgb_server;
struct vgb_display;
struct vgb_vfio_device;

struct vgb_server_options {
	uid_t allowed_uid;          /* SO_PEERCRED uid allowed to connect; default getuid(). Other
				     * peers get -EACCES as the reply to their first request. */
	unsigned max_clients;       /* default 64 */
	uint32_t max_entries;       /* entries per blob; default 16384 */
	uint64_t max_blob_size;     /* bytes per blob; default 256 MiB */
	uint32_t max_resources;     /* resources per client; default 1024 */
	uint32_t max_windows;       /* windows per client; default 4096 */
	uint32_t max_devices;       /* devices a client may add; default 16 */
	uint32_t max_pending;       /* deferred (fenced) replies per client before the daemon
				     * stops reading from it; default 256 */
	uint32_t max_msg;           /* largest packet accepted; default VGB_PROTO_MAX_MSG */
	uint32_t num_scanouts;      /* per client; default 1 */
	uint32_t fence_timeout_ms;  /* 0: the gpu's default */
	bool allow_device_paths;    /* ADD_VFIO_DEVICE may name a path the daemon opens;
				     * default true */
	/* Borrowed; may be NULL (flushes complete at once). Must outlive the server. */
	struct vgb_display *display;
};

/* Fills @ret with the defaults above. */
void vgb_server_options_init(struct vgb_server_options *ret);

/* Creates a server with no socket yet. Returns 0, -EINVAL (a zero cap) or -errno. */
int vgb_server_create(const struct vgb_server_options *opts, struct vgb_server **ret);

/*
 * Binds and listens on @path with mode 0600, handed to opts.allowed_uid when that is another
 * uid (bridge/plumbing/plumbing.h, vgb_listen_socket_open). A stale socket file (nobody accepting)
 * is replaced; a live one gives -EADDRINUSE, a file that is not a socket -EEXIST. The file is
 * unlinked by vgb_server_destroy() if it is still ours. Returns 0 or -errno.
 */
int vgb_server_listen(struct vgb_server *s, const char *path);

/*
 * Serves on an already listening SOCK_SEQPACKET socket (systemd socket activation). Takes
 * ownership of @fd on success only. Returns 0, -ENOTSOCK / -EINVAL for an fd that is not a
 * listening AF_UNIX SOCK_SEQPACKET socket, or -errno.
 */
int vgb_server_adopt_listen_fd(struct vgb_server *s, int fd);

/*
 * Adds a daemon device that every client sees, with ids 1, 2, ... in the order added (before
 * the client's own devices). Takes ownership of @dev on success only. Must be called before
 * the first client connects. Returns the id or -errno.
 */
int vgb_server_add_device(struct vgb_server *s, struct vgb_vfio_device *dev);

/*
 * Blocks SIGTERM and SIGINT in the calling thread and watches them through a signalfd: when
 * one arrives the loop stops. Returns 0 or -errno.
 */
int vgb_server_watch_signals(struct vgb_server *s);

/*
 * Runs one loop iteration: waits at most @timeout_ms (-1: until something happens, bounded by
 * the next fence or display deadline) and handles what is ready. Returns 0, or -errno for a
 * failure of the loop itself (not of a client).
 */
int vgb_server_dispatch(struct vgb_server *s, int timeout_ms);

/* Runs until vgb_server_stop() or a watched signal. Returns 0 or -errno. */
int vgb_server_run(struct vgb_server *s);

/* Makes vgb_server_run() return after the current iteration. */
void vgb_server_stop(struct vgb_server *s);

/* Whether the loop was asked to stop (signal or vgb_server_stop()). */
bool vgb_server_is_stopping(const struct vgb_server *s);

/* The epoll fd, for embedding the loop in another one (readable: call dispatch(s, 0)). */
int vgb_server_get_fd(const struct vgb_server *s);

/* Connected clients right now. */
unsigned vgb_server_client_count(const struct vgb_server *s);

/*
 * Disconnects every client (freeing what each held), closes and unlinks the socket, closes
 * the daemon devices and the signalfd. Does not destroy the display (borrowed). Accepts NULL.
 */
void vgb_server_destroy(struct vgb_server *s);

#endif
