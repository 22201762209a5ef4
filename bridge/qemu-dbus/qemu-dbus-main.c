/* SPDX-License-Identifier: MIT */
/*
 * vgbridged --qemu-dbus: a viewer for QEMU's D-Bus display. One epoll loop over the D-Bus
 * front end's fd (its private GMainContext, see gloop.h), the display sink's fd and a
 * signalfd. QEMU going away never stops the daemon: its windows close, and in bus mode the
 * consoles come back when QEMU reappears on the bus.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "plumbing.h"
#include "qemu-dbus.h"
#include "qemu-dbus-main.h"
#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"

enum { TAG_DBUS = 1, TAG_DISPLAY, TAG_SIGNAL };

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vgbridged --qemu-dbus ADDRESS [options]\n"
		"       vgbridged --qemu-dbus-fd N [options]\n"
		"\n"
		"Shows the consoles of QEMU's D-Bus display (-display dbus) on the compositor and\n"
		"sends keyboard and pointer input back. docs/qemu-dbus.md has the details.\n"
		"  --qemu-dbus ADDRESS   bus mode: the D-Bus address of the bus QEMU was started on\n"
		"                        (-display dbus,addr=ADDRESS); reconnects when QEMU comes back\n"
		"  --qemu-dbus-fd N      p2p mode: inherited socket N, already handed to QEMU with QMP\n"
		"                        getfd + add_client protocol=@dbus-display (-display dbus,p2p=yes)\n"
		"  --display KIND        wayland (default), capture:DIR, null or none\n"
		"  --wayland-display N   compositor socket (default $WAYLAND_DISPLAY)\n"
		"  --fullscreen          show each console fullscreen\n"
		"  --tear-free           2D shared-memory scanouts: copy each damaged rectangle into\n"
		"                        buffers the compositor has released (1 copy) instead of\n"
		"                        showing QEMU's memory directly (0 copies, may tear)\n"
		"  --stats-file PATH     write counters to PATH on SIGUSR1 and at exit\n"
		"  --log-level LEVEL     error, warn, info, debug\n"
		"  --help                show this text\n");
}

struct daemon {
	int epoll_fd, signal_fd;
	struct vgb_display *display;
	struct vgb_display_watch watch; /* the sink's fd changes when it reconnects */
	struct vgb_qemu_dbus *q;
	const char *stats_path;
	bool stop;
};

/* What the daemon holds now, for the vm suite's leak checks. */
static int count_file_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	/* File mappings only (inode != 0): memfds and dmabufs are what this daemon maps. */
	while (fgets(line, sizeof(line), f)) {
		unsigned long long inode = 0;
		if (sscanf(line, "%*s %*s %*s %*s %llu", &inode) == 1 && inode != 0)
			n++;
	}
	fclose(f);
	return n;
}

static void write_stats(struct daemon *d)
{
	char tmp[4096];
	FILE *f;

	if (!d->stats_path || !d->q)
		return;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", d->stats_path) >= (int)sizeof(tmp))
		return;
	f = fopen(tmp, "we");
	if (!f)
		return;
	vgb_qemu_dbus_print_stats(d->q, f);
	fprintf(f, "fds %d\nfile_maps %d\n", vgb_daemon_count_fds(), count_file_maps());
	if (d->display) {
		struct vgb_display_stats ds;
		vgb_display_get_stats(d->display, &ds);
		fprintf(f,
			"display_frames_presented %llu\ndisplay_frames_dropped %llu\n"
			"display_bytes_copied %llu\ndisplay_copies %llu\ndisplay_path %s\n"
			"display_connected %d\ndisplay_latency_p50_ns %llu\n",
			(unsigned long long)ds.frames_presented,
			(unsigned long long)ds.frames_dropped, (unsigned long long)ds.bytes_copied,
			(unsigned long long)ds.copies, vgb_present_path_name(ds.last_path),
			ds.connected, (unsigned long long)ds.latency_p50_ns);
	}
	if (fclose(f) == 0)
		rename(tmp, d->stats_path);
	else
		unlink(tmp);
}

static int run(struct daemon *d)
{
	int qt = vgb_qemu_dbus_dispatch(d->q);

	while (!d->stop) {
		struct epoll_event evs[8];
		int t = d->display ? vgb_display_next_timeout_ms(d->display) : -1;
		int n;

		if (qt < 0 && qt != -1)
			return qt;
		if (qt >= 0 && (t < 0 || qt < t))
			t = qt;
		vgb_daemon_display_watch(&d->watch, d->display, d->epoll_fd, TAG_DISPLAY);
		n = epoll_wait(d->epoll_fd, evs, VGB_ARRAY_SIZE(evs), t);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u64) {
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
		if (d->display && vgb_display_next_timeout_ms(d->display) == 0)
			vgb_display_dispatch(d->display);
		/* Always: it is cheap when idle, and it refreshes the fds and timeout to wait on. */
		qt = vgb_qemu_dbus_dispatch(d->q);
	}
	return 0;
}

int vgb_qemu_dbus_main(int argc, char **argv)
{
	enum { O_ADDR = 256, O_FD, O_DISPLAY, O_WL, O_FULL, O_TEAR, O_STATS, O_LOG, O_HELP };
	static const struct option longopts[] = {
		{ "qemu-dbus", required_argument, NULL, O_ADDR },
		{ "qemu-dbus-fd", required_argument, NULL, O_FD },
		{ "display", required_argument, NULL, O_DISPLAY },
		{ "wayland-display", required_argument, NULL, O_WL },
		{ "fullscreen", no_argument, NULL, O_FULL },
		{ "tear-free", no_argument, NULL, O_TEAR },
		{ "stats-file", required_argument, NULL, O_STATS },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "help", no_argument, NULL, O_HELP },
		{ 0 },
	};
	struct daemon d = { .epoll_fd = -1, .signal_fd = -1, .watch = { .fd = -1 } };
	struct vgb_qemu_dbus_options o = { .p2p_fd = -1, .reconnect_ms = 1000 };
	const char *display_kind = NULL, *wl_name = NULL;
	bool fullscreen = false;
	struct epoll_event ev;
	char err[512];
	uint64_t v;
	int c, r, status = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_ADDR:
			o.address = optarg;
			break;
		case O_FD:
			if (vgb_parse_u64(optarg, INT32_MAX, &v) < 0 || v < 3) {
				fprintf(stderr,
					"vgbridged: bad --qemu-dbus-fd '%s' (an inherited fd, 3 or more)\n",
					optarg);
				return 2;
			}
			o.p2p_fd = (int)v;
			break;
		case O_DISPLAY:
			display_kind = optarg;
			break;
		case O_WL:
			wl_name = optarg;
			break;
		case O_FULL:
			fullscreen = true;
			break;
		case O_TEAR:
			o.tear_free = true;
			break;
		case O_STATS:
			d.stats_path = optarg;
			break;
		case O_LOG:
			r = vgb_log_parse_level(optarg);
			if (r < 0) {
				fprintf(stderr, "vgbridged: bad --log-level '%s'\n", optarg);
				return 2;
			}
			vgb_log_set_level((enum vgb_log_level)r);
			break;
		case O_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vgbridged: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o.address == (o.p2p_fd < 0)) {
		fprintf(stderr, "vgbridged: give exactly one of --qemu-dbus and --qemu-dbus-fd\n");
		return 2;
	}
	if (o.p2p_fd >= 0) {
		int fd = fcntl(o.p2p_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) {
			fprintf(stderr, "vgbridged: --qemu-dbus-fd %d is not open\n", o.p2p_fd);
			return 2;
		}
		close(o.p2p_fd);
		o.p2p_fd = fd;
	}

	d.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (d.epoll_fd < 0)
		goto out;
	d.signal_fd = vgb_daemon_signals_open(true);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
	if (d.signal_fd < 0 || epoll_ctl(d.epoll_fd, EPOLL_CTL_ADD, d.signal_fd, &ev) < 0)
		goto out;

	/* No --display means the compositor here, as QEMU's own UI would. */
	r = vgb_daemon_display_create(display_kind ? display_kind : "wayland", wl_name,
				      "vgbridge qemu", fullscreen, &d.display, err, sizeof(err));
	if (r < 0) {
		vgb_log(VGB_LOG_ERROR, "%s", err);
		goto out;
	}
	o.display = d.display;
	r = vgb_qemu_dbus_create(&o, &d.q);
	o.p2p_fd = -1; /* taken */
	if (r < 0) {
		vgb_log_errno(VGB_LOG_ERROR, r, "QEMU D-Bus display");
		goto out;
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_DBUS };
	if (epoll_ctl(d.epoll_fd, EPOLL_CTL_ADD, vgb_qemu_dbus_get_fd(d.q), &ev) < 0)
		goto out;
	vgb_log(VGB_LOG_INFO, "qemu-dbus: %s %s, display %s", o.address ? "bus" : "p2p",
		o.address ? o.address : "socket", d.display ? d.display->ops->name : "none");

	r = run(&d);
	if (r < 0)
		vgb_log_errno(VGB_LOG_ERROR, r, "qemu-dbus loop");
	status = r < 0 ? 1 : 0;
out:
	write_stats(&d);
	vgb_qemu_dbus_destroy(d.q);
	vgb_close(o.p2p_fd);
	vgb_display_destroy(d.display);
	vgb_close(d.signal_fd);
	vgb_close(d.epoll_fd);
	return status;
}
