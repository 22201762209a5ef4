/* SPDX-License-Identifier: MIT */
/*
 * vgbctl against a real vgbridged process: `replay` of tests/replay/dumb-fb.replay (every line
 * carries its expected answer), a replay with a wrong expectation (must fail), the built-in
 * `scenario` on RAM, BAR and mixed memory, and `stats`.
 * argv: VGBRIDGED VGBCTL DUMB-FB.REPLAY
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

static char dir[] = "/tmp/vgb-test-replay-XXXXXX";
static char sock[128], out_path[160];
static const char *vgbridged, *vgbctl;

static int wait_exit(pid_t pid)
{
	int status = 0;

	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs vgbctl with @args (NULL-terminated), output to out_path. Returns its exit status. */
static int ctl(const char *const *args)
{
	const char *argv[16] = { vgbctl };
	unsigned n = 1;
	pid_t pid;

	for (; args[n - 1] && n < 15; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		execv(vgbctl, (char *const *)argv);
		_exit(127);
	}
	return wait_exit(pid);
}

/* Whether the last vgbctl output contains @s. */
static bool output_has(const char *s)
{
	char buf[65536];
	FILE *f = fopen(out_path, "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, s) != NULL;
}

static void dump_output(void)
{
	char line[512];
	FILE *f = fopen(out_path, "re");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		tap_diag("%s", strtok(line, "\n") ? line : "");
	fclose(f);
}

static int notify_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		tap_bail("notify socket: %s", strerror(errno));
	return fd;
}

/* Starts vgbridged on @socket_path with @display; the daemon says when it is ready (sd_notify),
 * so there is no polling for the socket. */
static pid_t start_daemon(int notify_fd, const char *notify_path, const char *socket_path,
			  const char *display)
{
	struct pollfd p = { .fd = notify_fd, .events = POLLIN };
	char buf[64];
	pid_t pid = fork();

	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		setenv("NOTIFY_SOCKET", notify_path, 1);
		/* Never outlive the test (a bail-out must not leave a daemon holding its stdout). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(2, 1) < 0)
			_exit(126);
		execl(vgbridged, vgbridged, "--socket", socket_path, "--display", display,
		      "--log-level", "error", "--virtual-device", "bar0=4K,bar2=16M,name=replay-gpu",
		      (char *)NULL);
		_exit(127);
	}
	/* (STOPPING=1 of an earlier daemon may still be queued.) */
	for (;;) {
		ssize_t n;

		if (poll(&p, 1, 30000) <= 0 || (n = recv(notify_fd, buf, sizeof(buf) - 1, 0)) <= 0)
			tap_bail("vgbridged did not get ready");
		buf[n] = 0;
		if (strcmp(buf, "READY=1") == 0)
			return pid;
	}
}

/* The crc32=XXXXXXXX values in @path, in order. Returns how many (at most @max). */
static unsigned read_crcs(const char *path, unsigned long *crcs, unsigned max)
{
	char line[512];
	unsigned n = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (n < max && fgets(line, sizeof(line), f)) {
		char *c = strstr(line, "crc32=");
		if (c)
			crcs[n++] = strtoul(c + 6, NULL, 16);
	}
	fclose(f);
	return n;
}

/*
 * Byte-exact, end to end: the scenario prints the CRC-32 of each frame the guest drew into its
 * scattered pages; the capture sink records the CRC-32 of the pixels it was handed. They must
 * match, frame for frame, for RAM pages and for BAR pages.
 */
static void test_capture(int notify_fd, const char *notify_path)
{
	char cap_sock[160], cap_dir[160], index[200];
	unsigned long drawn[16], shown[16];
	unsigned n_drawn = 0, n_shown;
	pid_t pid;

	snprintf(cap_sock, sizeof(cap_sock), "%s/cap.sock", dir);
	snprintf(cap_dir, sizeof(cap_dir), "capture:%s/frames", dir);
	snprintf(index, sizeof(index), "%s/frames/frames.txt", dir);
	mkdir(cap_dir + 8, 0700);
	pid = start_daemon(notify_fd, notify_path, cap_sock, cap_dir);

	const char *ram[] = { "scenario", "--socket", cap_sock, "--frames", "3", "--interval-ms",
			      "0", "--width", "320", "--height", "200", NULL };
	if (!tap_is_int(ctl(ram), 0, "scenario (RAM) against a capture sink"))
		dump_output();
	n_drawn += read_crcs(out_path, drawn + n_drawn, 3);
	const char *bar[] = { "scenario", "--socket", cap_sock, "--frames", "3", "--interval-ms",
			      "0", "--width", "320", "--height", "200", "--memory", "bar", NULL };
	if (!tap_is_int(ctl(bar), 0, "scenario (BAR) against a capture sink"))
		dump_output();
	n_drawn += read_crcs(out_path, drawn + n_drawn, 3);

	kill(pid, SIGTERM);
	tap_is_int(wait_exit(pid), 0, "capture daemon exits 0");
	n_shown = read_crcs(index, shown, 16);
	tap_is_uint(n_drawn, 6, "the scenario printed 6 frame CRCs");
	tap_is_uint(n_shown, 6, "the capture sink recorded 6 frames");
	unsigned same = 0;
	for (unsigned i = 0; i < 6 && i < n_drawn && i < n_shown; i++) {
		if (drawn[i] == shown[i])
			same++;
		else
			tap_diag("frame %u: drawn %08lx, captured %08lx", i, drawn[i], shown[i]);
	}
	tap_is_uint(same, 6, "every captured frame is byte for byte what the guest drew");
	tap_ok(n_drawn == 6 && drawn[0] != drawn[1], "the frames differ (the pattern moves)");

	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s/frames", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s/frames", dir);
	unlink(cap_sock);
}

int main(int argc, char **argv)
{
	int notify_fd, r;
	char notify_path[160], bad_path[160];
	pid_t daemon;

	if (argc < 4)
		tap_bail("usage: %s VGBRIDGED VGBCTL REPLAY-FILE", argv[0]);
	vgbridged = argv[1];
	vgbctl = argv[2];
	tap_plan_lazy();
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	snprintf(sock, sizeof(sock), "%s/vgb.sock", dir);
	snprintf(out_path, sizeof(out_path), "%s/out.txt", dir);
	snprintf(notify_path, sizeof(notify_path), "%s/notify", dir);
	snprintf(bad_path, sizeof(bad_path), "%s/bad.replay", dir);

	notify_fd = notify_socket(notify_path);
	daemon = start_daemon(notify_fd, notify_path, sock, "none");

	const char *replay[] = { "replay", "--socket", sock, argv[3], NULL };
	r = ctl(replay);
	if (!tap_is_int(r, 0, "replay %s: every expectation met", argv[3]))
		dump_output();
	tap_ok(output_has("0 failed"), "replay prints its summary");
	tap_ok(output_has("RESOURCE_FLUSH"), "replay prints each command");

	/* A wrong expectation must make replay fail (the checks can fail). */
	FILE *f = fopen(bad_path, "we");
	if (!f)
		tap_bail("bad.replay");
	fprintf(f, "memfd m 1M\nram 0 1M m => 0\nram 0 1M m => 0   # overlaps: EEXIST\n"
		   "gpu RESOURCE_FLUSH res=5 rect=0,0,16,16 => OK_NODATA\n");
	fclose(f);
	const char *bad[] = { "replay", "--quiet", "--socket", sock, bad_path, NULL };
	tap_is_int(ctl(bad), 1, "replay with wrong expectations exits 1");
	tap_ok(output_has("2 failed"), "both wrong expectations are reported");

	f = fopen(bad_path, "we");
	fprintf(f, "gpu RESOURCE_FLUSH res=1 colour=red\n");
	fclose(f);
	tap_is_int(ctl(bad), 1, "a script error (unknown key) exits 1");
	tap_ok(output_has("line 1"), "the script error names its line");

	const char *scen_ram[] = { "scenario", "--socket", sock, "--frames", "5", "--interval-ms",
				   "0", "--width", "320", "--height", "200", NULL };
	r = ctl(scen_ram);
	if (!tap_is_int(r, 0, "scenario on RAM pages"))
		dump_output();
	tap_ok(output_has("summary: 5 frames; strategy"), "scenario prints the strategy");
	tap_ok(output_has("fences 5 completed"), "scenario: 5 fenced flushes completed");

	const char *scen_bar[] = { "scenario", "--socket", sock, "--frames", "3", "--interval-ms",
				   "0", "--width", "320", "--height", "200", "--memory", "bar", NULL };
	r = ctl(scen_bar);
	if (!tap_is_int(r, 0, "scenario on the virtual device's BAR2"))
		dump_output();
	tap_ok(output_has("replay-gpu"), "scenario names the device it used");

	const char *scen_mixed[] = { "scenario", "--socket", sock, "--frames", "3", "--interval-ms",
				     "0", "--width", "320", "--height", "200", "--memory", "mixed",
				     NULL };
	r = ctl(scen_mixed);
	if (!tap_is_int(r, 0, "scenario on mixed RAM and BAR pages"))
		dump_output();
	tap_ok(output_has("strategy cpu-view"), "mixed memory can only have a CPU view");

	const char *stats[] = { "stats", "--socket", sock, NULL };
	tap_is_int(ctl(stats), 0, "stats");
	tap_ok(output_has("accepted"), "stats prints the daemon's counters");

	kill(daemon, SIGTERM);
	tap_is_int(wait_exit(daemon), 0, "vgbridged exits 0 on SIGTERM");

	test_capture(notify_fd, notify_path);
	close(notify_fd);
	unlink(notify_path);
	unlink(out_path);
	unlink(bad_path);
	rmdir(dir);
	return tap_done();
}
