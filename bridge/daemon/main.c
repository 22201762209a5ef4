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
#include "plumbing.h"
#include "protocol.h"
#include "server.h"
#include "vhost-user.h"
#ifdef VGB_HAVE_QEMU_DBUS
#include "qemu-dbus-main.h"
#endif
#include "vgb/display.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

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
		"  --qemu-dbus ADDRESS ...  show QEMU's D-Bus display (-display dbus); also\n"
		"  --qemu-dbus-fd N ...     --qemu-dbus-fd N for p2p (--qemu-dbus --help)\n"
		"  --display SINK           " VGB_DAEMON_DISPLAY_CHOICES " (default: wayland\n"
		"                           when $WAYLAND_DISPLAY is set, else none)\n"
		"  --virtual-device SPEC    add the built-in virtual GPU (docs/virtual-device.md);\n"
		"                           e.g. 'default' or 'bar2=64M,dmabuf=off'; repeatable\n"
		"  --vfio BDF               add a host VFIO device (0000:00:03.0); repeatable\n"
		"  --vfio-user SOCKET       add the device of a vfio-user server (docs/vfio-user.md);\n"
		"                           repeatable\n"
		"  --allowed-uid UID        the peer uid allowed to connect (default: ours); the socket\n"
		"                           is handed to that uid (others are told EACCES)\n"
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
	char default_path[108], err[512];
	uint64_t v, lim;
	int o, r, lfd;

	/* The vhost-user-gpu backend (bridge/vhost-user/vhost-user.h) has its own loop and QEMU's options. */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--vhost-user") == 0)
			return vgb_vhost_user_main(argc, argv);
	/* QEMU's D-Bus display front end (bridge/qemu-dbus/) has its own loop too. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--qemu-dbus") == 0 || strcmp(argv[i], "--qemu-dbus-fd") == 0 ||
		    strncmp(argv[i], "--qemu-dbus=", 12) == 0 ||
		    strncmp(argv[i], "--qemu-dbus-fd=", 15) == 0) {
#ifdef VGB_HAVE_QEMU_DBUS
			return vgb_qemu_dbus_main(argc, argv);
#else
			fprintf(stderr, "vgbridged: built without the QEMU D-Bus display front end "
					"(install libglib2.0-dev and rebuild)\n");
			return 2;
#endif
		}
	}

	vgb_server_options_init(&opts);
	while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		r = 0;
		lim = 0;
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
			r = vgb_parse_u64(optarg, lim = UINT32_MAX - 1, &v);
			opts.allowed_uid = (uid_t)v;
			break;
		case OPT_MAX_CLIENTS:
			r = vgb_parse_u64(optarg, lim = 4096, &v);
			opts.max_clients = (unsigned)v;
			break;
		case OPT_MAX_ENTRIES:
			/* One blob's entries must fit one packet: 16 bytes each after the
			 * headers (protocol, VIRTIO_GPU_CMD prefix, RESOURCE_CREATE_BLOB). */
			r = vgb_parse_u64(optarg, lim = (VGB_PROTO_MAX_MSG - 16 - 8 - 48) / 16, &v);
			opts.max_entries = (uint32_t)v;
			break;
		case OPT_MAX_BLOB:
			r = vgb_parse_u64(optarg, lim = 1ull << 40, &v);
			opts.max_blob_size = v;
			break;
		case OPT_MAX_RES:
			r = vgb_parse_u64(optarg, lim = 1u << 20, &v);
			opts.max_resources = (uint32_t)v;
			break;
		case OPT_MAX_WINDOWS:
			r = vgb_parse_u64(optarg, lim = VGB_MEMMAP_MAX_WINDOWS, &v);
			opts.max_windows = (uint32_t)v;
			break;
		case OPT_MAX_PENDING:
			r = vgb_parse_u64(optarg, lim = 65536, &v);
			opts.max_pending = (uint32_t)v;
			break;
		case OPT_SCANOUTS:
			r = vgb_parse_u64(optarg, lim = 16, &v);
			opts.num_scanouts = (uint32_t)v;
			break;
		case OPT_FENCE:
			r = vgb_parse_u64(optarg, lim = 10000, &v);
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
			if (o == OPT_LOG)
				fprintf(stderr, "vgbridged: bad value for --log-level: '%s' (error, "
					"warn, info or debug)\n", optarg);
			else
				fprintf(stderr, "vgbridged: bad value for --%s: '%s' (a number from 0 "
					"to %llu)\n", longopts[o - OPT_SOCKET].name, optarg,
					(unsigned long long)lim);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vgbridged: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}

	r = vgb_daemon_display_create(display_spec, NULL, NULL, false, &display, err,
				      sizeof(err));
	if (r < 0) {
		fprintf(stderr, "vgbridged: %s\n", err);
		return r == -EINVAL ? 2 : 1;
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
			vgb_log_errno(VGB_LOG_ERROR, r,
				      "virtual device '%s' (docs/virtual-device.md; run "
				      "`vgbctl vfio-info --virtual '%s'` or add --log-level debug to "
				      "see why)", spec, spec);
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

	lfd = vgb_daemon_activation_fd();
	if (lfd >= 0) {
		r = vgb_server_adopt_listen_fd(server, lfd);
		if (r < 0) {
			vgb_log_errno(VGB_LOG_ERROR, r,
				      "socket activation: fd %d is not a listening AF_UNIX "
				      "SOCK_SEQPACKET socket (ListenSequentialPacket= in the .socket unit)",
				      lfd);
			goto out;
		}
		vgb_log(VGB_LOG_INFO, "listening on the socket systemd passed");
	} else if (lfd != -ENOENT) {
		r = lfd;
		vgb_log(VGB_LOG_ERROR, "malformed LISTEN_PID/LISTEN_FDS in the environment");
		goto out;
	} else {
		if (!socket_path) {
			r = vgb_daemon_default_socket("vgbridge.sock", default_path,
						      sizeof(default_path));
			if (r < 0) {
				vgb_log(VGB_LOG_ERROR, "$XDG_RUNTIME_DIR is too long for a socket "
					"path: give --socket PATH");
				goto out;
			}
			socket_path = default_path;
		}
		r = vgb_server_listen(server, socket_path);
		if (r == -EADDRINUSE)
			vgb_log(VGB_LOG_ERROR, "%s: another daemon is listening there (stop it, or "
				"give another --socket)", socket_path);
		else if (r == -EEXIST)
			vgb_log(VGB_LOG_ERROR, "%s exists and is not a socket: remove it or give "
				"another --socket", socket_path);
		else if (r < 0)
			vgb_log_errno(VGB_LOG_ERROR, r, "cannot listen on %s", socket_path);
		if (r < 0)
			goto out;
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
	r = vgb_daemon_notify("READY=1");
	if (r < 0)
		vgb_log_errno(VGB_LOG_WARN, r, "sd_notify");

	r = vgb_server_run(server);
	vgb_daemon_notify("STOPPING=1");
out:
	vgb_server_destroy(server);
	vgb_display_destroy(display);
	if (r == 0)
		vgb_log(VGB_LOG_INFO, "stopped");
	return r < 0 ? 1 : 0;
}
