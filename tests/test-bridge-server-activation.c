/* SPDX-License-Identifier: MIT */
/*
 * vgbridged as a process (argv[1] is its path): systemd socket activation (LISTEN_FDS /
 * LISTEN_PID, fd 3), sd_notify readiness and stopping over NOTIFY_SOCKET, SIGTERM shutdown,
 * LISTEN_PID meant for another process, and the command line (--help, bad options).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "tap.h"

static const char *daemon_path;
static char dir[] = "/tmp/vgb-test-activation-XXXXXX";

static int bind_unix(int type, const char *path, bool do_listen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		tap_bail("socket");
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (do_listen && listen(fd, 8) < 0))
		tap_bail("bind %s: %s", path, strerror(errno));
	return fd;
}

/* Waits (bounded, not timed) for one datagram on @fd. */
static bool recv_notify(int fd, char *buf, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, 30000) <= 0)
		return false;
	n = recv(fd, buf, size - 1, 0);
	if (n < 0)
		return false;
	buf[n] = 0;
	return true;
}

/* Starts vgbridged with @listen_fd as fd 3 and LISTEN_PID = its pid (+ @pid_delta). */
static pid_t spawn(int listen_fd, int pid_delta, const char *notify, char *const extra[])
{
	pid_t pid = fork();

	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		char *argv[16] = { (char *)daemon_path, "--display", "none", "--log-level", "warn",
				   "--virtual-device", "bar2=1M,dmabuf=off" };
		unsigned n = 7;
		char num[32];

		for (unsigned i = 0; extra && extra[i] && n < 15; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		if (listen_fd >= 0) {
			/* fd 3 without CLOEXEC, as systemd passes it */
			if (listen_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(listen_fd, 3) < 0)
				_exit(120);
			snprintf(num, sizeof(num), "%d", (int)getpid() + pid_delta);
			setenv("LISTEN_PID", num, 1);
			setenv("LISTEN_FDS", "1", 1);
		}
		setenv("NOTIFY_SOCKET", notify, 1);
		/* Never outlive the test (a bail-out must not leave a daemon holding its stdout). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(2, 1) < 0)
			_exit(126);
		execv(daemon_path, argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status = 0;

	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_activation(void)
{
	char sock[128], notify_path[128], buf[256];
	struct vgb_msg_hello_reply h;
	struct vgb_client *c;
	int lfd, nfd, memfd;
	pid_t pid;

	snprintf(sock, sizeof(sock), "%s/act.sock", dir);
	snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
	lfd = bind_unix(SOCK_SEQPACKET, sock, true);
	nfd = bind_unix(SOCK_DGRAM, notify_path, false);

	pid = spawn(lfd, 0, notify_path, NULL);
	close(lfd);
	tap_ok(recv_notify(nfd, buf, sizeof(buf)) && strcmp(buf, "READY=1") == 0,
	       "socket activation: READY=1 over NOTIFY_SOCKET ('%s')", buf);
	if (!tap_is_int(vgb_client_connect(sock, &c), 0, "connect to the activated socket"))
		tap_bail("no daemon to talk to");
	tap_is_int(vgb_client_hello(c, &h), 0, "HELLO over the passed socket");
	tap_is_uint(h.n_devices, 1, "the --virtual-device is device 1");
	memfd = memfd_create("ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, 1 << 20) < 0)
		tap_bail("memfd");
	tap_is_int(vgb_client_add_ram(c, memfd, 0, 1 << 20, 0), 0, "ADD_RAM");
	tap_is_int(vgb_client_map_window(c, 1 << 24, 1 << 20, 1, 2, 0), 0,
		   "MAP_VFIO_WINDOW on the daemon's virtual device");
	close(memfd);

	kill(pid, SIGTERM);
	tap_ok(recv_notify(nfd, buf, sizeof(buf)) && strcmp(buf, "STOPPING=1") == 0,
	       "SIGTERM: STOPPING=1 ('%s')", buf);
	tap_is_int(wait_exit(pid), 0, "SIGTERM: exit status 0");
	tap_ok(access(sock, F_OK) == 0, "an activated socket file is left to its owner (systemd)");
	vgb_client_destroy(c);
	unlink(sock);

	/* LISTEN_PID names another process: the variables are not ours, listen on --socket. */
	char other[128];
	snprintf(other, sizeof(other), "%s/own.sock", dir);
	lfd = bind_unix(SOCK_SEQPACKET, sock, true);
	char *extra[] = { "--socket", other, NULL };
	pid = spawn(lfd, 1000000, notify_path, extra);
	close(lfd);
	tap_ok(recv_notify(nfd, buf, sizeof(buf)) && strcmp(buf, "READY=1") == 0,
	       "foreign LISTEN_PID: READY=1");
	struct stat st = { 0 };
	int r = stat(other, &st);
	tap_ok(r == 0 && (st.st_mode & 0777) == 0600, "foreign LISTEN_PID: own socket, mode 0600");
	if (!tap_is_int(vgb_client_connect(other, &c), 0, "connect to the daemon's own socket"))
		tap_bail("no daemon to talk to");
	tap_is_int(vgb_client_hello(c, NULL), 0, "HELLO");
	vgb_client_destroy(c);
	kill(pid, SIGTERM);
	recv_notify(nfd, buf, sizeof(buf));
	tap_is_int(wait_exit(pid), 0, "SIGTERM: exit status 0");
	tap_ok(access(other, F_OK) < 0, "the daemon removed its own socket");
	unlink(sock);
	close(nfd);
	unlink(notify_path);
}

/*
 * Runs vgbridged with @args (NULL-terminated) and @env ("NAME=value" entries set, "NAME" entries
 * unset), stderr into @out. Returns the exit status.
 */
static int run_capture(char *const args[], char *const env[], char *out, size_t size)
{
	char path[160];
	char *argv[16] = { (char *)daemon_path };
	unsigned n = 1;
	int fd, status;
	ssize_t got;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/stderr", dir);
	for (unsigned i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		int efd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (efd < 0 || devnull < 0 || dup2(efd, 2) < 0 || dup2(devnull, 1) < 0)
			_exit(126);
		for (unsigned i = 0; env && env[i]; i++) {
			char *kv = strdup(env[i]), *eq = kv ? strchr(kv, '=') : NULL;
			if (!kv)
				_exit(125);
			if (eq) {
				*eq = 0;
				setenv(kv, eq + 1, 1);
			} else {
				unsetenv(env[i]);
			}
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(daemon_path, argv);
		_exit(127);
	}
	status = wait_exit(pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	got = fd >= 0 ? read(fd, out, size - 1) : -1;
	out[got > 0 ? got : 0] = 0;
	if (fd >= 0)
		close(fd);
	unlink(path);
	for (char *l = out; *l;) {
		char *nl = strchr(l, '\n');
		tap_diag("stderr: %.*s", nl ? (int)(nl - l) : (int)strlen(l), l);
		if (!nl)
			break;
		l = nl + 1;
	}
	return status;
}

static void test_cli(void)
{
	char err[4096], want[256];
	pid_t pid;
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

	pid = fork();
	if (pid == 0) {
		dup2(devnull, 1);
		execl(daemon_path, daemon_path, "--help", (char *)NULL);
		_exit(127);
	}
	tap_is_int(wait_exit(pid), 0, "--help exits 0");
	close(devnull);

	char *bad_num[] = { "--max-clients", "many", NULL };
	tap_is_int(run_capture(bad_num, NULL, err, sizeof(err)), 2, "a bad option value exits 2");
	tap_ok(strstr(err, "'many'") && strstr(err, "4096"),
	       "the error names the bad value and the range");

	char *bad_display[] = { "--display", "bogus", NULL };
	tap_is_int(run_capture(bad_display, NULL, err, sizeof(err)), 2,
		   "--display bogus: usage error (exit 2)");
	tap_ok(strstr(err, "'bogus'") && strstr(err, "wayland, capture:DIR, null, none"),
	       "--display bogus: names it and lists the valid values");

	/* No compositor behind the name: the socket tried is named, with what to do instead. */
	char rt[160];
	snprintf(rt, sizeof(rt), "XDG_RUNTIME_DIR=%s", dir);
	char *wl_env[] = { rt, "WAYLAND_DISPLAY=vgb-no-compositor", NULL };
	char *wl_args[] = { "--display", "wayland", "--socket", "/nonexistent/x.sock", NULL };
	tap_is_int(run_capture(wl_args, wl_env, err, sizeof(err)), 1,
		   "--display wayland without a compositor exits 1");
	snprintf(want, sizeof(want), "%s/vgb-no-compositor", dir);
	tap_ok(strstr(err, want) && strstr(err, "--display capture:DIR"),
	       "it names the socket tried (%s) and what to do instead", want);
	char *wl_env2[] = { rt, "WAYLAND_DISPLAY", NULL };
	run_capture(wl_args, wl_env2, err, sizeof(err));
	snprintf(want, sizeof(want), "%s/wayland-0", dir);
	tap_ok(strstr(err, want) && strstr(err, "WAYLAND_DISPLAY is not set"),
	       "without $WAYLAND_DISPLAY it names libwayland's default (%s)", want);

	char *bad_vdev[] = { "--display", "none", "--virtual-device", "bar9=1M", "--socket",
			     "/nonexistent/x.sock", NULL };
	tap_is_int(run_capture(bad_vdev, NULL, err, sizeof(err)), 1,
		   "a bad virtual device spec exits 1");
	tap_ok(strstr(err, "'bar9=1M'") && strstr(err, "vgbctl vfio-info --virtual"),
	       "--virtual-device: says how to find out why");
	tap_ok(!strstr(err, ".c:"), "user-facing errors carry no source location");
	char *bad_vdev_dbg[] = { "--display", "none", "--virtual-device", "bar9=1M", "--log-level",
				 "debug", "--socket", "/nonexistent/x.sock", NULL };
	run_capture(bad_vdev_dbg, NULL, err, sizeof(err));
	tap_ok(strstr(err, ".c:") != NULL, "--log-level debug keeps source locations");
}

/*
 * --allowed-uid: the socket is handed to that uid, and a peer with another uid (root here) is
 * refused with EACCES while the daemon logs why.
 */
static void test_allowed_uid(void)
{
	char sock[128], notify_path[128], buf[256], logp[160], log[4096] = "";
	struct vgb_client *c;
	struct stat st = { 0 };
	int nfd, lf;
	pid_t pid;

	if (geteuid() != 0) {
		tap_skip("not root", "--allowed-uid hands the socket over only as root");
		return;
	}
	snprintf(sock, sizeof(sock), "%s/uid.sock", dir);
	snprintf(notify_path, sizeof(notify_path), "%s/notify-uid", dir);
	snprintf(logp, sizeof(logp), "%s/uid.log", dir);
	nfd = bind_unix(SOCK_DGRAM, notify_path, false);
	lf = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	char *extra[] = { "--socket", sock, "--allowed-uid", "65534", NULL };
	int saved = dup(2);
	dup2(lf, 2); /* the child inherits it as its stderr */
	pid = spawn(-1, 0, notify_path, extra);
	dup2(saved, 2);
	close(saved);
	close(lf);
	tap_ok(recv_notify(nfd, buf, sizeof(buf)) && strcmp(buf, "READY=1") == 0,
	       "--allowed-uid 65534: ready");
	int sr = stat(sock, &st);
	tap_ok(sr == 0 && st.st_uid == 65534 && (st.st_mode & 0777) == 0600,
	       "the socket belongs to uid 65534, mode 0600 (owner %u)", (unsigned)st.st_uid);
	if (vgb_client_connect(sock, &c) == 0) {
		tap_is_int(vgb_client_hello(c, NULL), -EACCES, "root is refused and told why (EACCES)");
		vgb_client_destroy(c);
	} else {
		tap_ok(false, "root could not even connect");
	}
	kill(pid, SIGTERM);
	recv_notify(nfd, buf, sizeof(buf));
	wait_exit(pid);
	int fd = open(logp, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, log, sizeof(log) - 1);
		log[n > 0 ? n : 0] = 0;
		close(fd);
	}
	tap_ok(strstr(log, "uid 0 is not the allowed uid 65534") != NULL,
	       "the daemon logs why it refused");
	unlink(logp);
	close(nfd);
	unlink(notify_path);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		tap_bail("usage: %s PATH-TO-VGBRIDGED", argv[0]);
	daemon_path = argv[1];
	signal(SIGPIPE, SIG_IGN);
	tap_plan_lazy();
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	test_activation();
	test_cli();
	test_allowed_uid();
	rmdir(dir);
	return tap_done();
}
