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

static void test_cli(void)
{
	pid_t pid;
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

	pid = fork();
	if (pid == 0) {
		dup2(devnull, 1);
		execl(daemon_path, daemon_path, "--help", (char *)NULL);
		_exit(127);
	}
	tap_is_int(wait_exit(pid), 0, "--help exits 0");
	pid = fork();
	if (pid == 0) {
		dup2(devnull, 2);
		execl(daemon_path, daemon_path, "--max-clients", "many", (char *)NULL);
		_exit(127);
	}
	tap_is_int(wait_exit(pid), 2, "a bad option value exits 2");
	pid = fork();
	if (pid == 0) {
		dup2(devnull, 2);
		execl(daemon_path, daemon_path, "--display", "none", "--virtual-device", "bar9=1M",
		      "--socket", "/nonexistent/x.sock", (char *)NULL);
		_exit(127);
	}
	tap_is_int(wait_exit(pid), 1, "a bad virtual device spec exits 1");
	close(devnull);
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
	rmdir(dir);
	return tap_done();
}
