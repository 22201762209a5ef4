/* SPDX-License-Identifier: MIT */
/*
 * vgbridged --display wayland on a real weston that dies while a client flushes frames: the
 * daemon says once that the compositor is lost (not once per frame) and once that it is back
 * after weston restarts, and keeps serving the client throughout. argv[1] is vgbridged.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "client.h"
#include "guest.h"
#include "tap.h"
#include "weston-harness.h"

#define W 64
#define H 64

static char dir[] = "/tmp/vgb-test-daemon-weston-XXXXXX";

static int notify_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		tap_bail("notify socket: %s", strerror(errno));
	return fd;
}

static bool wait_ready(int nfd)
{
	struct pollfd p = { .fd = nfd, .events = POLLIN };
	char buf[64];
	ssize_t n;

	if (poll(&p, 1, 30000) != 1)
		return false;
	n = recv(nfd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strcmp(buf, "READY=1") == 0;
}

/* Occurrences of @needle in the file @path. */
static unsigned count_in_file(const char *path, const char *needle, unsigned *ret_warnings)
{
	static char buf[1 << 20];
	unsigned n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	buf[got > 0 ? got : 0] = 0;
	for (const char *p = buf; (p = strstr(p, needle)); p++)
		n++;
	if (ret_warnings) {
		*ret_warnings = 0;
		for (const char *p = buf; (p = strstr(p, "vgb warn")); p++)
			(*ret_warnings)++;
	}
	return n;
}

static int64_t call_cmd(struct vgb_client *c, const void *buf, size_t len)
{
	uint8_t resp[512];
	size_t rlen = 0;
	int r = vgb_client_gpu_cmd(c, VGB_GPU_QUEUE_CONTROL, buf, len, resp, sizeof(resp), &rlen);

	return r < 0 ? r : (int64_t)vgb_guest_resp_type(resp, rlen);
}

static void flush_frame(struct vgb_client *c)
{
	uint8_t buf[256];

	call_cmd(c, buf, vgb_guest_transfer_2d(buf, sizeof(buf), 1, 0, 0, W, H, 0, 0));
	call_cmd(c, buf, vgb_guest_flush(buf, sizeof(buf), 1, 0, 0, W, H, 0));
}

int main(int argc, char **argv)
{
	char sock[128], notify[128], logp[128];
	struct weston w;
	struct vgb_client *c;
	uint8_t buf[256];
	int nfd, memfd;
	pid_t pid;

	if (argc < 2)
		tap_bail("usage: %s PATH-TO-VGBRIDGED", argv[0]);
	tap_plan_lazy();
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	if (weston_start(&w, 320, 240) < 0)
		tap_bail("weston did not start");
	snprintf(sock, sizeof(sock), "%s/vgb.sock", dir);
	snprintf(notify, sizeof(notify), "%s/notify", dir);
	snprintf(logp, sizeof(logp), "%s/daemon.log", dir);
	nfd = notify_socket(notify);

	pid = fork();
	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		int lf = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (lf < 0 || dup2(lf, 2) < 0 || dup2(lf, 1) < 0)
			_exit(126);
		setenv("WAYLAND_DISPLAY", w.socket, 1);
		setenv("NOTIFY_SOCKET", notify, 1);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(argv[1], argv[1], "--display", "wayland", "--socket", sock, "--log-level",
		      "info", (char *)NULL);
		_exit(127);
	}
	if (!tap_ok(wait_ready(nfd), "vgbridged --display wayland is ready"))
		tap_bail("no daemon");
	if (vgb_client_connect(sock, &c) < 0 || vgb_client_hello(c, NULL) < 0)
		tap_bail("client");
	memfd = memfd_create("ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, 1 << 20) < 0 || vgb_client_add_ram(c, memfd, 0, 1 << 20, 0) < 0)
		tap_bail("ADD_RAM");
	struct virtio_gpu_mem_entry e = { .addr = 0, .length = W * H * 4 };
	int64_t r1 = call_cmd(c, buf, vgb_guest_create_2d(buf, sizeof(buf), 1,
							 VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H));
	int64_t r2 = call_cmd(c, buf, vgb_guest_attach_backing(buf, sizeof(buf), 1, &e, 1));
	int64_t r3 = call_cmd(c, buf, vgb_guest_set_scanout(buf, sizeof(buf), 0, 1, 0, 0, W, H));
	tap_ok(r1 == VIRTIO_GPU_RESP_OK_NODATA && r2 == VIRTIO_GPU_RESP_OK_NODATA &&
		       r3 == VIRTIO_GPU_RESP_OK_NODATA,
	       "a 2D resource on scanout 0");
	flush_frame(c);

	weston_kill(&w);
	for (int i = 0; i < 40; i++) {
		flush_frame(c);
		usleep(10000);
	}
	tap_is_int(count_in_file(logp, "compositor lost", NULL), 1,
		   "the loss is logged once over 40 frames");

	if (weston_restart(&w) < 0)
		tap_bail("weston did not restart");
	/* The daemon retries every second: flush until it says it is back (bounded). */
	for (int i = 0; i < 300 && count_in_file(logp, "compositor back", NULL) == 0; i++) {
		flush_frame(c);
		usleep(20000);
	}
	unsigned warnings = 0;
	tap_is_int(count_in_file(logp, "compositor back", &warnings), 1,
		   "the return is logged once");
	tap_is_int(warnings, 1, "the only warning in the daemon's log is that one");
	tap_is_int(call_cmd(c, buf, vgb_guest_flush(buf, sizeof(buf), 1, 0, 0, W, H, 0)),
		   VIRTIO_GPU_RESP_OK_NODATA, "the client is still served");

	vgb_client_destroy(c);
	close(memfd);
	kill(pid, SIGTERM);
	int status = 0;
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: clean exit");
	weston_stop(&w);
	close(nfd);
	unlink(notify);
	unlink(logp);
	unlink(sock);
	rmdir(dir);
	return tap_done();
}
