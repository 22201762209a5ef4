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
#include <sys/socket.h>
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

int main(int argc, char **argv)
{
	int notify_fd, r;
	char notify_path[160], buf[64], bad_path[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
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

	/* The daemon tells us when it is ready (sd_notify), so no polling for the socket. */
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, notify_path, strlen(notify_path) + 1);
	if (notify_fd < 0 || bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		tap_bail("notify socket: %s", strerror(errno));
	daemon = fork();
	if (daemon == 0) {
		setenv("NOTIFY_SOCKET", notify_path, 1);
		execl(vgbridged, vgbridged, "--socket", sock, "--display", "none", "--log-level",
		      "error", "--virtual-device", "bar0=4K,bar2=16M,name=replay-gpu", (char *)NULL);
		_exit(127);
	}
	struct pollfd p = { .fd = notify_fd, .events = POLLIN };
	if (poll(&p, 1, 30000) <= 0 || recv(notify_fd, buf, sizeof(buf), 0) <= 0)
		tap_bail("vgbridged did not get ready");

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
	close(notify_fd);
	unlink(notify_path);
	unlink(out_path);
	unlink(bad_path);
	rmdir(dir);
	return tap_done();
}
