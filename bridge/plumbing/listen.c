/* SPDX-License-Identifier: MIT */
/* The listening socket, socket activation and readiness of every front-end daemon. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "plumbing.h"
#include "vgb/log.h"
#include "vgb/util.h"

#define SD_LISTEN_FDS_START 3

/* Whether someone accepts on @path (a stale file refuses the connection). */
static bool socket_is_live(const char *path, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return true; /* cannot tell: do not remove it */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return true;
	/* EPROTOTYPE: a live socket of the other type is still somebody's. */
	return errno != ECONNREFUSED;
}

/* Lets @uid connect: chown when we may, else open the mode and rely on SO_PEERCRED. */
static int hand_to_uid(const char *path, uid_t uid)
{
	if (uid == geteuid())
		return 0;
	if (chown(path, uid, (gid_t)-1) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	vgb_log(VGB_LOG_INFO,
		"cannot give %s to uid %u (not root): mode 0666, the peer uid check admits it", path,
		(unsigned)uid);
	return chmod(path, 0666) < 0 ? -errno : 0;
}

int vgb_listen_socket_open(const char *path, int type, uid_t allowed_uid,
			   struct vgb_listen_socket *ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	struct stat st;
	mode_t old;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (socket_is_live(path, type))
			return -EADDRINUSE;
		vgb_log(VGB_LOG_DEBUG, "replacing stale socket %s", path);
		unlink(path);
	}
	/* Created 0600 from the start: no window in which another user could connect. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0)
		return -errno;
	if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		unlink(path);
		return r;
	}
	r = hand_to_uid(path, allowed_uid);
	if (r == 0 && stat(path, &st) < 0)
		r = -errno;
	if (r < 0) {
		unlink(path);
		return r;
	}
	ret->path = strdup(path);
	if (!ret->path) {
		unlink(path);
		return -ENOMEM;
	}
	ret->dev = st.st_dev;
	ret->ino = st.st_ino;
	ret->fd = TAKE_FD(fd);
	return 0;
}

int vgb_listen_socket_adopt(int fd, int type, struct vgb_listen_socket *ret)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int t = 0, acc = 0, fl;
	socklen_t l1 = sizeof(t), l2 = sizeof(acc);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l1) < 0)
		return -errno;
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	if (sa.sun_family != AF_UNIX || t != type)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l2) < 0)
		return -errno;
	if (!acc)
		return -EINVAL;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	*ret = (struct vgb_listen_socket){ .fd = fd };
	return 0;
}

void vgb_listen_socket_close(struct vgb_listen_socket *ls)
{
	struct stat st;

	ls->fd = vgb_close(ls->fd);
	if (!ls->path)
		return;
	/* Only our own socket: a newer daemon may have replaced it. */
	if (stat(ls->path, &st) == 0 && st.st_dev == ls->dev && st.st_ino == ls->ino)
		unlink(ls->path);
	free(ls->path);
	ls->path = NULL;
}

int vgb_daemon_activation_fd(void)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	uint64_t pid, n;
	int r;

	if (!pid_s || !fds_s)
		return -ENOENT;
	r = vgb_parse_u64(pid_s, INT_MAX, &pid);
	if (r < 0)
		return -EINVAL;
	if ((pid_t)pid != getpid())
		return -ENOENT; /* meant for another process */
	r = vgb_parse_u64(fds_s, 64, &n);
	if (r < 0)
		return -EINVAL;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n == 0)
		return -ENOENT;
	for (int fd = SD_LISTEN_FDS_START + 1; fd < SD_LISTEN_FDS_START + (int)n; fd++) {
		vgb_log(VGB_LOG_WARN, "socket activation: ignoring extra fd %d", fd);
		close(fd);
	}
	return SD_LISTEN_FDS_START;
}

int vgb_daemon_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	_cleanup_close_ int fd = -1;
	size_t n;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		return -errno;
	return 1;
}

int vgb_daemon_default_socket(const char *name, char *buf, size_t size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	const char *dot = strrchr(name, '.');
	int n;

	if (rt && *rt)
		n = snprintf(buf, size, "%s/%s", rt, name);
	else
		n = snprintf(buf, size, "/tmp/%.*s-%u%s", (int)(dot ? dot - name : (ptrdiff_t)strlen(name)),
			     name, (unsigned)getuid(), dot ? dot : "");
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
