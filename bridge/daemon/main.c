/* SPDX-License-Identifier: MIT */
/* vgbridged: the vgbridge service. See docs/protocol.md and `vgbridged --help`. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "memmap.h"
#include "protocol.h"
#include "server.h"
#include "vhost-user.h"
#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define SD_LISTEN_FDS_START 3
#define MAX_DEVICES 16

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vgbridged [OPTIONS]\n"
		"Serves the vgbridge protocol (docs/protocol.md) on an AF_UNIX SOCK_SEQPACKET socket.\n"
		"\n"
		"  --socket PATH            socket to create (default $XDG_RUNTIME_DIR/vgbridge.sock,\n"
		"                           or /tmp/vgbridge-UID.sock); ignored under socket activation\n"
		"  --vhost-user ...         run as QEMU's vhost-user-gpu backend (--vhost-user --help)\n"
		"  --display SINK           wayland | capture:DIR | null | none (default: wayland when\n"
		"                           $WAYLAND_DISPLAY is set, else none)\n"
		"  --virtual-device SPEC    add the built-in virtual GPU (docs/virtual-device.md);\n"
		"                           e.g. 'default' or 'bar2=64M,dmabuf=off'; repeatable\n"
		"  --vfio BDF               add a host VFIO device (0000:00:03.0); repeatable\n"
		"  --vfio-user SOCKET       add the device of a vfio-user server (docs/vfio-user.md);\n"
		"                           repeatable\n"
		"  --allowed-uid UID        peer uid allowed to connect (default: ours)\n"
		"  --max-clients N          (default 64)\n"
		"  --max-entries N          entries per blob (default 16384)\n"
		"  --max-blob-size BYTES    bytes per blob, K/M/G suffixes (default 256M)\n"
		"  --max-resources N        resources per client (default 1024)\n"
		"  --max-windows N          memory windows per client (default and most 4096)\n"
		"  --max-pending N          fenced replies pending per client before the daemon\n"
		"                           stops reading from it (default 256)\n"
		"  --scanouts N             scanouts per client, 1..16 (default 1)\n"
		"  --fence-timeout-ms N     deadline of a fenced flush (default 20)\n"
		"  --no-device-paths        refuse ADD_VFIO_DEVICE requests that name a path\n"
		"  --log-level LEVEL        error | warn | info | debug (default info, or $VGB_LOG)\n"
		"  --help                   show this text\n"
		"\n"
		"Supports systemd socket activation (LISTEN_FDS) and readiness (NOTIFY_SOCKET).\n"
		"SIGTERM or SIGINT shut it down cleanly.\n");
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
static int notify(const char *state)
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

/* The fd systemd passed (LISTEN_PID/LISTEN_FDS), -ENOENT when not activated, or -errno. */
static int listen_fd_from_env(void)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	uint64_t pid, n;
	int r;

	if (!pid_s || !fds_s)
		return -ENOENT;
	r = vgb_parse_u64(pid_s, INT_MAX, &pid);
	if (r < 0)
		return r;
	if ((pid_t)pid != getpid())
		return -ENOENT; /* meant for another process */
	r = vgb_parse_u64(fds_s, 64, &n);
	if (r < 0)
		return r;
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

static int create_display(const char *spec, struct vgb_display **ret)
{
	if (!spec)
		spec = getenv("WAYLAND_DISPLAY") ? "wayland" : "none";
	if (strcmp(spec, "none") == 0) {
		*ret = NULL;
		return 0;
	}
	if (strcmp(spec, "null") == 0)
		return vgb_display_create_null(ret);
	if (strcmp(spec, "wayland") == 0) {
		/* A compositor that goes away (restart, crash) is retried every second. */
		struct vgb_display_options o = { .reconnect_ms = 1000 };
		return vgb_display_create_wayland(NULL, &o, ret);
	}
	if (strncmp(spec, "capture:", 8) == 0 && spec[8])
		return vgb_display_create_capture(spec + 8, ret);
	return -EINVAL;
}

enum {
	OPT_SOCKET = 256,
	OPT_DISPLAY,
	OPT_VDEV,
	OPT_VFIO,
	OPT_VFIO_USER,
	OPT_UID,
	OPT_MAX_CLIENTS,
	OPT_MAX_ENTRIES,
	OPT_MAX_BLOB,
	OPT_MAX_RES,
	OPT_MAX_WINDOWS,
	OPT_MAX_PENDING,
	OPT_SCANOUTS,
	OPT_FENCE,
	OPT_NO_PATHS,
	OPT_LOG,
	OPT_HELP,
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "display", required_argument, NULL, OPT_DISPLAY },
		{ "virtual-device", required_argument, NULL, OPT_VDEV },
		{ "vfio", required_argument, NULL, OPT_VFIO },
		{ "vfio-user", required_argument, NULL, OPT_VFIO_USER },
		{ "allowed-uid", required_argument, NULL, OPT_UID },
		{ "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
		{ "max-entries", required_argument, NULL, OPT_MAX_ENTRIES },
		{ "max-blob-size", required_argument, NULL, OPT_MAX_BLOB },
		{ "max-resources", required_argument, NULL, OPT_MAX_RES },
		{ "max-windows", required_argument, NULL, OPT_MAX_WINDOWS },
		{ "max-pending", required_argument, NULL, OPT_MAX_PENDING },
		{ "scanouts", required_argument, NULL, OPT_SCANOUTS },
		{ "fence-timeout-ms", required_argument, NULL, OPT_FENCE },
		{ "no-device-paths", no_argument, NULL, OPT_NO_PATHS },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	struct vgb_server_options opts;
	const char *socket_path = NULL, *display_spec = NULL;
	const char *vdevs[MAX_DEVICES], *bdfs[MAX_DEVICES], *vusocks[MAX_DEVICES];
	unsigned n_vdevs = 0, n_bdfs = 0, n_vusocks = 0;
	struct vgb_display *display = NULL;
	struct vgb_server *server = NULL;
	char default_path[108];
	uint64_t v;
	int o, r, lfd;

	/* The vhost-user-gpu backend (bridge/vhost-user/vhost-user.h) has its own loop and QEMU's options. */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--vhost-user") == 0)
			return vgb_vhost_user_main(argc, argv);

	vgb_server_options_init(&opts);
	while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		r = 0;
		switch (o) {
		case OPT_SOCKET:
			socket_path = optarg;
			break;
		case OPT_DISPLAY:
			display_spec = optarg;
			break;
		case OPT_VDEV:
		case OPT_VFIO:
		case OPT_VFIO_USER:
			if (n_vdevs + n_bdfs + n_vusocks >= MAX_DEVICES) {
				fprintf(stderr, "vgbridged: at most %d devices\n", MAX_DEVICES);
				return 2;
			}
			if (o == OPT_VDEV)
				vdevs[n_vdevs++] = optarg;
			else if (o == OPT_VFIO)
				bdfs[n_bdfs++] = optarg;
			else
				vusocks[n_vusocks++] = optarg;
			break;
		case OPT_UID:
			r = vgb_parse_u64(optarg, UINT32_MAX - 1, &v);
			opts.allowed_uid = (uid_t)v;
			break;
		case OPT_MAX_CLIENTS:
			r = vgb_parse_u64(optarg, 4096, &v);
			opts.max_clients = (unsigned)v;
			break;
		case OPT_MAX_ENTRIES:
			/* One blob's entries must fit one packet: 16 bytes each after the
			 * headers (protocol, VIRTIO_GPU_CMD prefix, RESOURCE_CREATE_BLOB). */
			r = vgb_parse_u64(optarg, (VGB_PROTO_MAX_MSG - 16 - 8 - 48) / 16, &v);
			opts.max_entries = (uint32_t)v;
			break;
		case OPT_MAX_BLOB:
			r = vgb_parse_u64(optarg, 1ull << 40, &v);
			opts.max_blob_size = v;
			break;
		case OPT_MAX_RES:
			r = vgb_parse_u64(optarg, 1u << 20, &v);
			opts.max_resources = (uint32_t)v;
			break;
		case OPT_MAX_WINDOWS:
			r = vgb_parse_u64(optarg, VGB_MEMMAP_MAX_WINDOWS, &v);
			opts.max_windows = (uint32_t)v;
			break;
		case OPT_MAX_PENDING:
			r = vgb_parse_u64(optarg, 65536, &v);
			opts.max_pending = (uint32_t)v;
			break;
		case OPT_SCANOUTS:
			r = vgb_parse_u64(optarg, 16, &v);
			opts.num_scanouts = (uint32_t)v;
			break;
		case OPT_FENCE:
			r = vgb_parse_u64(optarg, 10000, &v);
			opts.fence_timeout_ms = (uint32_t)v;
			break;
		case OPT_NO_PATHS:
			opts.allow_device_paths = false;
			break;
		case OPT_LOG:
			r = vgb_log_parse_level(optarg);
			if (r >= 0) {
				vgb_log_set_level((enum vgb_log_level)r);
				r = 0;
			}
			break;
		case OPT_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "vgbridged: bad value for --%s: '%s'\n",
				longopts[o - OPT_SOCKET].name, optarg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vgbridged: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	r = create_display(display_spec, &display);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_ERROR, r, "display '%s'", display_spec ? display_spec : "");
		return 1;
	}
	opts.display = display;
	r = vgb_server_create(&opts, &server);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_ERROR, r, "cannot create the server (check the limits)");
		goto out;
	}
	for (unsigned i = 0; i < n_vdevs; i++) {
		struct vgb_vfio_device *dev;
		const char *spec = vdevs[i];

		r = vgb_vfio_vdev_create(spec, &dev);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r, "virtual device '%s'", vdevs[i]);
			goto out;
		}
		r = vgb_server_add_device(server, dev);
		if (r < 0) {
			vgb_vfio_device_destroy(dev);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "device %d: virtual '%s' (%u regions, caps 0x%x)", r,
			dev->name, dev->num_regions, dev->caps);
	}
	for (unsigned i = 0; i < n_bdfs; i++) {
		struct vgb_vfio_device *dev;

		r = vgb_vfio_kernel_open(bdfs[i], 0, &dev);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r, "vfio device %s", bdfs[i]);
			goto out;
		}
		r = vgb_server_add_device(server, dev);
		if (r < 0) {
			vgb_vfio_device_destroy(dev);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "device %d: vfio %s (caps 0x%x)", r, dev->name, dev->caps);
	}
	for (unsigned i = 0; i < n_vusocks; i++) {
		struct vgb_vfio_device *dev;

		r = vgb_vfio_user_connect(vusocks[i], &dev);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r,
				      "vfio-user server at %s (is vgbridge-vfio-user-server running?)",
				      vusocks[i]);
			goto out;
		}
		r = vgb_server_add_device(server, dev);
		if (r < 0) {
			vgb_vfio_device_destroy(dev);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "device %d: vfio-user %s (%u regions, caps 0x%x)", r, dev->name,
			dev->num_regions, dev->caps);
	}

	lfd = listen_fd_from_env();
	if (lfd >= 0) {
		r = vgb_server_adopt_listen_fd(server, lfd);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r, "socket activation: fd %d", lfd);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "listening on the socket systemd passed");
	} else if (lfd != -ENOENT) {
		r = lfd;
		vgb_log_errno(VGB_LOG_ERROR, r, "bad LISTEN_PID/LISTEN_FDS");
		goto out;
	} else {
		if (!socket_path) {
			const char *rt = getenv("XDG_RUNTIME_DIR");
			if (rt && *rt)
				snprintf(default_path, sizeof(default_path), "%s/vgbridge.sock", rt);
			else
				snprintf(default_path, sizeof(default_path), "/tmp/vgbridge-%u.sock",
					 (unsigned)getuid());
			socket_path = default_path;
		}
		r = vgb_server_listen(server, socket_path);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r, "cannot listen on %s", socket_path);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "listening on %s", socket_path);
	}
	r = vgb_server_watch_signals(server);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_ERROR, r, "signalfd");
		goto out;
	}
	vgb_log(VGB_LOG_INFO, "ready: display %s, %d daemon device(s), allowed uid %u",
		display ? display->ops->name : "none", (int)(n_vdevs + n_bdfs + n_vusocks),
		(unsigned)opts.allowed_uid);
	r = notify("READY=1");
	if (r < 0)
		vgb_log_errno(VGB_LOG_WARN, r, "sd_notify");

	r = vgb_server_run(server);
	notify("STOPPING=1");
out:
	vgb_server_destroy(server);
	vgb_display_destroy(display);
	if (r == 0)
		vgb_log(VGB_LOG_INFO, "stopped");
	return r < 0 ? 1 : 0;
}
