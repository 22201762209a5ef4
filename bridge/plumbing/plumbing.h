/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_PLUMBING_PLUMBING_H
#define VGB_BRIDGE_PLUMBING_PLUMBING_H

/*
 * What every front-end daemon (vgbridged, vgbridged --vhost-user, vgbridge-vhost-user-gpu) does
 * the same way: the listening socket (stale files, mode, owner), systemd socket activation and
 * sd_notify readiness (listen.c), and the choice of the display sink (display-choice.c).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vgb_display;

/* ---- listen.c ---- */

struct vgb_listen_socket {
	int fd;      /* listening, non-blocking, CLOEXEC; -1 when closed */
	char *path;  /* the file we created (unlinked on close), NULL for an inherited socket */
	dev_t dev;   /* identity of that file: a newer daemon may have replaced it */
	ino_t ino;
};

/*
 * Creates a listening AF_UNIX socket of @type (SOCK_SEQPACKET or SOCK_STREAM) at @path.
 * - A file that is not a socket gives -EEXIST; a socket someone accepts on gives -EADDRINUSE;
 *   a stale socket (connection refused) is replaced.
 * - The socket is bound with mode 0600 from the start. When @allowed_uid is not our effective
 *   uid it is handed to that uid: chown when we may (root), otherwise mode 0666 so that the
 *   peer-credential check of the server is what admits it (logged once at info).
 * Returns 0 and fills @ret, or -errno (-ENAMETOOLONG for a path longer than sun_path).
 */
int vgb_listen_socket_open(const char *path, int type, uid_t allowed_uid,
			   struct vgb_listen_socket *ret);

/*
 * Adopts an inherited listening socket @fd (socket activation): checks that it is AF_UNIX,
 * @type and listening, and makes it CLOEXEC and non-blocking. Takes ownership of @fd on success
 * only. Returns 0, -EINVAL (not such a socket) or -errno.
 */
int vgb_listen_socket_adopt(int fd, int type, struct vgb_listen_socket *ret);

/* Closes the socket and unlinks its file if it is still ours. Accepts a closed one. */
void vgb_listen_socket_close(struct vgb_listen_socket *ls);

/*
 * The fd systemd passed (LISTEN_PID and LISTEN_FDS; extra fds are closed with a warning), and
 * clears the variables. Returns the fd, -ENOENT when the process was not socket-activated, or
 * -EINVAL for malformed variables.
 */
int vgb_daemon_activation_fd(void);

/*
 * sd_notify(3) without libsystemd: one datagram with @state to $NOTIFY_SOCKET. Returns 1 when
 * sent, 0 when there is no $NOTIFY_SOCKET, or -errno.
 */
int vgb_daemon_notify(const char *state);

/*
 * The default socket path for @name ("vgbridge.sock"): $XDG_RUNTIME_DIR/@name, else
 * /tmp/<stem>-UID.sock. Returns 0 or -ENAMETOOLONG.
 */
int vgb_daemon_default_socket(const char *name, char *buf, size_t size);

/* ---- display-choice.c ---- */

/* The valid --display values, for help texts and errors. */
#define VGB_DAEMON_DISPLAY_CHOICES "wayland, capture:DIR, null, none"

/*
 * Creates the sink @spec names: "wayland" (a compositor; lost ones are retried every second),
 * "capture:DIR", "null", or "none" (*ret = NULL: flushes complete at once). NULL means "wayland"
 * when $WAYLAND_DISPLAY is set, else "none" (said once at info). @wayland_socket (may be NULL:
 * $WAYLAND_DISPLAY), @title and @fullscreen apply to the wayland sink.
 * On failure writes a sentence for the user to @err (naming the compositor socket tried and
 * what to do instead) and returns -errno: -EINVAL for an unknown @spec.
 */
int vgb_daemon_display_create(const char *spec, const char *wayland_socket, const char *title,
			      bool fullscreen, struct vgb_display **ret, char *err,
			      size_t err_size);

/* ---- signals.c ---- */

/*
 * Blocks SIGTERM and SIGINT (and SIGUSR1 with @stats_signal) for the calling thread, ignores
 * SIGPIPE, and returns a non-blocking CLOEXEC signalfd for them, or -errno.
 */
int vgb_daemon_signals_open(bool stats_signal);

/* The next signal waiting on @fd (from vgb_daemon_signals_open()), or 0 when none is. */
int vgb_daemon_signal_next(int fd);

/* How many fds this process has open (for the daemons' stats files), or -errno. */
int vgb_daemon_count_fds(void);

/* ---- display-watch.c ---- */

/* A daemon's view of its sink: the fd it polls and what it last said about the connection. */
struct vgb_display_watch {
	int fd;              /* registered in the daemon's epoll set, or -1 (initialise to -1) */
	uint64_t reconnects; /* the sink's count when @fd was registered */
	bool connected;      /* last seen state */
	bool warned;         /* a loss was reported and no reconnect since */
};

/*
 * Once per loop iteration, before waiting: keeps the sink's fd registered in @epoll_fd with
 * @data (a reconnect changes the fd, or reuses the number of the one it closed), and reports a
 * lost compositor once (warning) and its return once (info), however many frames fail in
 * between. @d may be NULL.
 */
void vgb_daemon_display_watch(struct vgb_display_watch *w, struct vgb_display *d, int epoll_fd,
			      uint64_t data);

#endif
