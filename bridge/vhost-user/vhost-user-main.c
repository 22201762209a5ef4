/* SPDX-License-Identifier: MIT */
/*
 * vgbridged --vhost-user: the vhost-user-gpu backend daemon. One epoll loop over the listening
 * socket (or the inherited connection), each front end's dev fd, the display sink's fd and a
 * signalfd. A front end that goes away (QEMU killed mid-frame) is torn down alone; the daemon
 * keeps listening for the next VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"

#include "gpu.h"
#include "plumbing.h"
#include "vhost-user.h"

#define MAX_CONNS 16u

enum { TAG_LISTEN = 1, TAG_CONN, TAG_DISPLAY, TAG_SIGNAL };
#define TAG(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))

struct conn {
	struct vgb_vhost_dev *dev;
	uint64_t serial;
};

struct daemon {
	int epoll_fd, signal_fd;
	struct vgb_listen_socket listen;
	struct vgb_display_watch display_watch;
	const char *socket_path;
	const char *stats_path;
	bool single; /* --fd: serve one connection, then exit */
	bool stop;
	struct vgb_display *display;
	struct vgb_vhost_options opts;
	struct conn conns[MAX_CONNS];
	uint64_t serial, connections, disconnects;
};

/* "vgbridge-vhost-user-gpu" or "vgbridged --vhost-user", as the user typed it. */
static const char *prog = "vgbridge-vhost-user-gpu";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s (--socket-path PATH | --fd N) [options]\n"
		"       %s --print-capabilities\n"
		"\n"
		"A vhost-user-gpu backend for QEMU's vhost-user-gpu-pci device.\n"
		"  --socket-path PATH   listen on PATH; serve each VM that connects (under systemd\n"
		"                       socket activation, the passed socket instead)\n"
		"  --fd N               serve the connected socket N (inherited), then exit\n"
		"  --print-capabilities print the backend's capabilities as JSON and exit\n"
		"  --qemu-display       send frames to QEMU's UI instead of the compositor\n"
		"  --display KIND       " VGB_DAEMON_DISPLAY_CHOICES " (default: wayland when\n"
		"                       $WAYLAND_DISPLAY is set, else none)\n"
		"  --wayland-display N  compositor socket (default $WAYLAND_DISPLAY)\n"
		"  --width W --height H display size reported to the guest (default 1280x800)\n"
		"  --stats-file PATH    write counters to PATH on SIGUSR1 and after each VM\n"
		"  --log-level LEVEL    error, warn, info, debug\n"
		"  --help               show this text\n"
		"\n"
		"Readiness goes to $NOTIFY_SOCKET (sd_notify). SIGTERM or SIGINT stop it.\n",
		prog, prog);
}

/* For the leak checks of the vm suite: what the daemon holds now. */
static int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	int n = 0, ch;
	if (!f)
		return -1;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static void write_stats(struct daemon *d)
{
	if (!d->stats_path)
		return;
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", d->stats_path) >= (int)sizeof(tmp))
		return;
	FILE *f = fopen(tmp, "we");
	if (!f)
		return;

	unsigned live = 0;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		live += d->conns[i].dev != NULL;
	fprintf(f, "connections %" PRIu64 "\ndisconnects %" PRIu64 "\nlive %u\n", d->connections,
		d->disconnects, live);
	fprintf(f, "fds %d\nmaps %d\n", vgb_daemon_count_fds(), count_maps());
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &d->conns[i];
		if (!c->dev)
			continue;
		struct vgb_vhost_stats vs;
		vgb_vhost_dev_get_stats(c->dev, &vs);
		fprintf(f,
			"vm %" PRIu64 " messages %" PRIu64 " bad_messages %" PRIu64 " commands %" PRIu64
			" deferred %" PRIu64 " bad_chains %" PRIu64 " interrupts %" PRIu64
			" gpu_msgs %" PRIu64 " update_bytes %" PRIu64 " regions %u pending %u"
			" gpu_socket %d\n",
			c->serial, vs.messages, vs.bad_messages, vs.commands, vs.deferred,
			vs.bad_chains, vs.interrupts, vs.gpu_msgs_sent, vs.update_bytes, vs.regions,
			vs.pending, vs.gpu_socket);
		struct vgb_gpu *gpu = vgb_vhost_dev_get_gpu(c->dev);
		if (gpu) {
			struct vgb_gpu_stats gs;
			vgb_gpu_get_stats(gpu, &gs);
			fprintf(f, "vm %" PRIu64 " gpu", c->serial);
			for (unsigned k = 0; k < VGB_GPU_STAT_COUNT; k++)
				fprintf(f, " %s %" PRIu64, vgb_gpu_cmd_stat_name(k), gs.commands[k]);
			fprintf(f,
				" errors %" PRIu64 " resources %u flushes %" PRIu64
				" frames_presented %" PRIu64 " fences_completed %" PRIu64
				" fences_timed_out %" PRIu64 " copies %" PRIu64 " bytes_copied %" PRIu64
				"\n",
				gs.errors, gs.resources, gs.flushes, gs.frames_presented,
				gs.fences_completed, gs.fences_timed_out, gs.copies, gs.bytes_copied);
		}
	}
	if (d->display) {
		struct vgb_display_stats ds = { 0 };
		vgb_display_get_stats(d->display, &ds);
		fprintf(f,
			"display frames_presented %" PRIu64 " frames_dropped %" PRIu64
			" bytes_copied %" PRIu64 " copies %" PRIu64 " path %s connected %d"
			" latency_p50_ns %" PRIu64 "\n",
			ds.frames_presented, ds.frames_dropped, ds.bytes_copied, ds.copies,
			vgb_present_path_name(ds.last_path), ds.connected, ds.latency_p50_ns);
	}
	if (fclose(f) == 0)
		rename(tmp, d->stats_path);
	else
		unlink(tmp);
}

static int add_conn(struct daemon *d, int fd)
{
	unsigned slot = MAX_CONNS;
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (!d->conns[i].dev) {
			slot = i;
			break;
		}
	}
	if (slot == MAX_CONNS) {
		close(fd);
		return -EMFILE;
	}

	struct vgb_vhost_options o = d->opts;
	o.scanout_base = slot; /* VMs sharing the compositor get distinct windows */
	int r = vgb_vhost_dev_create(fd, &o, &d->conns[slot].dev);
	if (r < 0) {
		close(fd);
		return r;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(TAG_CONN, slot) };
	if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, vgb_vhost_dev_get_fd(d->conns[slot].dev), &ev) < 0) {
		r = -errno;
		vgb_vhost_dev_destroy(d->conns[slot].dev);
		d->conns[slot].dev = NULL;
		return r;
	}
	d->conns[slot].serial = ++d->serial;
	d->connections++;
	vgb_log(VGB_LOG_INFO, "vhost-user: VM %" PRIu64 " connected", d->conns[slot].serial);
	return 0;
}

static void drop_conn(struct daemon *d, unsigned slot, int why)
{
	struct conn *c = &d->conns[slot];
	if (!c->dev)
		return;
	vgb_log(VGB_LOG_INFO, "vhost-user: VM %" PRIu64 " gone (%s)", c->serial, strerror(-why));
	epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, vgb_vhost_dev_get_fd(c->dev), NULL);
	vgb_vhost_dev_destroy(c->dev);
	c->dev = NULL;
	d->disconnects++;
	write_stats(d);
	if (d->single)
		d->stop = true;
}

static int next_timeout(struct daemon *d)
{
	int t = d->display ? vgb_display_next_timeout_ms(d->display) : -1;
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (!d->conns[i].dev)
			continue;
		int ct = vgb_vhost_dev_next_timeout_ms(d->conns[i].dev);
		if (ct >= 0 && (t < 0 || ct < t))
			t = ct;
	}
	return t;
}

static int run(struct daemon *d)
{
	while (!d->stop) {
		struct epoll_event evs[16];

		vgb_daemon_display_watch(&d->display_watch, d->display, d->epoll_fd,
					 TAG(TAG_DISPLAY, 0));
		int n = epoll_wait(d->epoll_fd, evs, VGB_ARRAY_SIZE(evs), next_timeout(d));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
			uint32_t idx = (uint32_t)evs[i].data.u64;
			switch (kind) {
			case TAG_LISTEN: {
				int fd = accept4(d->listen.fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0) {
					int r = add_conn(d, fd);
					if (r < 0)
						vgb_log_errno(VGB_LOG_WARN, r, "vhost-user: connection refused");
				}
				break;
			}
			case TAG_CONN:
				if (idx < MAX_CONNS && d->conns[idx].dev) {
					int r = vgb_vhost_dev_dispatch(d->conns[idx].dev);
					if (r < 0)
						drop_conn(d, idx, r);
				}
				break;
			case TAG_DISPLAY:
				if (vgb_display_dispatch(d->display) < 0)
					vgb_log(VGB_LOG_DEBUG, "display dispatch failed");
				break;
			case TAG_SIGNAL: {
				int sig = vgb_daemon_signal_next(d->signal_fd);
				if (sig == 0)
					break;
				if (sig == SIGUSR1)
					write_stats(d);
				else
					d->stop = true;
				break;
			}
			}
		}
		/* Deadlines: the display's (frame waits) and each VM's fences. */
		if (d->display && vgb_display_next_timeout_ms(d->display) == 0)
			vgb_display_dispatch(d->display);
		for (unsigned i = 0; i < MAX_CONNS; i++)
			if (d->conns[i].dev && vgb_vhost_dev_next_timeout_ms(d->conns[i].dev) == 0)
				vgb_vhost_dev_dispatch_timeouts(d->conns[i].dev);
	}
	return 0;
}

/* A number option: the one parser, the bad value named. */
static int parse_u32_option(const char *name, const char *s, uint32_t max, uint32_t *ret)
{
	uint64_t v;

	if (vgb_parse_u64(s, max, &v) < 0) {
		fprintf(stderr, "%s: bad value for --%s: '%s' (a number from 0 to %u)\n", prog, name,
			s, max);
		return -EINVAL;
	}
	*ret = (uint32_t)v;
	return 0;
}

int vgb_vhost_user_main(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_FD, O_CAPS, O_QEMU, O_DISPLAY, O_WL, O_W, O_H, O_STATS, O_LOG,
	       O_VHOST, O_HELP };
	static const struct option longopts[] = {
		{ "socket-path", required_argument, NULL, O_SOCKET },
		{ "fd", required_argument, NULL, O_FD },
		{ "print-capabilities", no_argument, NULL, O_CAPS },
		{ "qemu-display", no_argument, NULL, O_QEMU },
		{ "display", required_argument, NULL, O_DISPLAY },
		{ "wayland-display", required_argument, NULL, O_WL },
		{ "width", required_argument, NULL, O_W },
		{ "height", required_argument, NULL, O_H },
		{ "stats-file", required_argument, NULL, O_STATS },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "vhost-user", no_argument, NULL, O_VHOST },
		{ "help", no_argument, NULL, O_HELP },
		{ 0 },
	};
	struct daemon d = { .epoll_fd = -1, .listen = { .fd = -1 }, .signal_fd = -1,
			    .display_watch = { .fd = -1 } };
	const char *display_kind = NULL, *wl_name = NULL;
	char err[512];
	uint32_t fd_arg = 0;
	int conn_fd = -1, c, r, status = 1, lfd;
	bool caps = false;

	prog = "vgbridge-vhost-user-gpu";
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--vhost-user") == 0)
			prog = "vgbridged --vhost-user";

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET: d.socket_path = optarg; break;
		case O_FD:
			if (parse_u32_option("fd", optarg, INT32_MAX, &fd_arg) < 0)
				return 2;
			conn_fd = (int)fd_arg;
			break;
		case O_CAPS: caps = true; break;
		case O_QEMU: d.opts.qemu_display = true; break;
		case O_DISPLAY: display_kind = optarg; break;
		case O_WL: wl_name = optarg; break;
		case O_W:
		case O_H:
			if (parse_u32_option(c == O_W ? "width" : "height", optarg, 16384,
					     c == O_W ? &d.opts.display_width
						      : &d.opts.display_height) < 0)
				return 2;
			break;
		case O_STATS: d.stats_path = optarg; break;
		case O_LOG:
			r = vgb_log_parse_level(optarg);
			if (r < 0) {
				fprintf(stderr, "%s: bad value for --log-level: '%s' (error, warn, "
					"info or debug)\n", prog, optarg);
				return 2;
			}
			vgb_log_set_level((enum vgb_log_level)r);
			break;
		case O_VHOST: break;
		case O_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
		return 2;
	}
	if (caps) {
		vgb_vhost_print_capabilities(stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	lfd = vgb_daemon_activation_fd();
	if (lfd == -EINVAL) {
		fprintf(stderr, "%s: malformed LISTEN_PID/LISTEN_FDS in the environment\n", prog);
		return 2;
	}
	if (lfd < 0 && (d.socket_path != NULL) == (conn_fd >= 0)) {
		fprintf(stderr, "%s: give exactly one of --socket-path and --fd\n", prog);
		return 2;
	}

	d.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (d.epoll_fd < 0)
		return 1;

	d.signal_fd = vgb_daemon_signals_open(true);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(TAG_SIGNAL, 0) };
	if (d.signal_fd < 0 || epoll_ctl(d.epoll_fd, EPOLL_CTL_ADD, d.signal_fd, &ev) < 0)
		goto out;

	if (!d.opts.qemu_display) {
		r = vgb_daemon_display_create(display_kind, wl_name, "vgbridge vhost-user-gpu",
					      false, &d.display, err, sizeof(err));
		if (r < 0) {
			fprintf(stderr, "%s: %s\n", prog, err);
			status = r == -EINVAL ? 2 : 1;
			goto out;
		}
		d.opts.display = d.display;
	}

	if (lfd >= 0) {
		r = vgb_listen_socket_adopt(lfd, SOCK_STREAM, &d.listen);
		if (r < 0) {
			vgb_log(VGB_LOG_ERROR, "socket activation: fd %d is not a listening AF_UNIX "
				"stream socket (ListenStream= in the .socket unit)", lfd);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "vhost-user: listening on the socket systemd passed");
	} else if (d.socket_path) {
		r = vgb_listen_socket_open(d.socket_path, SOCK_STREAM, geteuid(), &d.listen);
		if (r == -EADDRINUSE)
			vgb_log(VGB_LOG_ERROR, "%s: another backend is listening there (stop it, or "
				"give another --socket-path)", d.socket_path);
		else if (r == -EEXIST)
			vgb_log(VGB_LOG_ERROR, "%s exists and is not a socket: remove it or give "
				"another --socket-path", d.socket_path);
		else if (r < 0)
			vgb_log_errno(VGB_LOG_ERROR, r, "cannot listen on %s", d.socket_path);
		if (r < 0)
			goto out;
		vgb_log(VGB_LOG_INFO, "vhost-user: listening on %s", d.socket_path);
	}
	if (d.listen.fd >= 0) {
		ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG(TAG_LISTEN, 0) };
		if (epoll_ctl(d.epoll_fd, EPOLL_CTL_ADD, d.listen.fd, &ev) < 0)
			goto out;
	} else {
		int fd = fcntl(conn_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) {
			vgb_log(VGB_LOG_ERROR, "--fd %d is not an open descriptor", conn_fd);
			goto out;
		}
		close(conn_fd);
		d.single = true;
		r = add_conn(&d, fd);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r, "--fd %d", conn_fd);
			goto out;
		}
	}
	r = vgb_daemon_notify("READY=1");
	if (r < 0)
		vgb_log_errno(VGB_LOG_WARN, r, "sd_notify");

	r = run(&d);
	vgb_daemon_notify("STOPPING=1");
	status = r < 0 ? 1 : 0;
out:
	for (unsigned i = 0; i < MAX_CONNS; i++)
		drop_conn(&d, i, -ESHUTDOWN);
	write_stats(&d);
	vgb_listen_socket_close(&d.listen);
	vgb_display_destroy(d.display);
	vgb_close(d.signal_fd);
	vgb_close(d.epoll_fd);
	return status;
}
