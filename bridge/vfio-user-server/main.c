/* SPDX-License-Identifier: MIT */
/* vgbridge-vfio-user-server: the virtual GPU as a vfio-user server. See --help. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "vus.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: vgbridge-vfio-user-server --socket PATH [--virtual-device SPEC] [OPTIONS]\n"
		"Serves the virtual GPU as a PCI device over vfio-user (docs/vfio-user.md), e.g. to\n"
		"QEMU 10.1 or later: -device vfio-user-pci,socket=PATH. One client at a time; when it\n"
		"goes, the next one is served.\n"
		"\n"
		"  --socket PATH            AF_UNIX stream socket to create (a stale one is replaced)\n"
		"  --virtual-device SPEC    the device (docs/virtual-device.md; default 'default');\n"
		"                           BAR and ROM sizes must be powers of two\n"
		"  --max-xfer BYTES         max_data_xfer_size we announce (default 1M, at most 64M)\n"
		"  --log-level LEVEL        error | warn | info | debug (default info, or $VGB_LOG)\n"
		"  --help                   show this text\n"
		"\n"
		"SIGTERM or SIGINT shut it down and remove the socket.\n");
}

static int make_listener(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "vgbridge-vfio-user-server: socket path '%s' is longer than %zu bytes\n",
			path, sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	/* Replace a stale socket, never another kind of file. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "vgbridge-vfio-user-server: '%s' exists and is not a socket\n",
				path);
			return -EEXIST;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0) {
		int r = -errno;

		fprintf(stderr, "vgbridge-vfio-user-server: cannot listen on '%s': %s\n", path,
			strerror(-r));
		close(fd);
		return r;
	}
	return fd;
}

int main(int argc, char **argv)
{
	enum { OPT_SOCKET = 256, OPT_VDEV, OPT_XFER, OPT_LOG, OPT_HELP };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "virtual-device", required_argument, NULL, OPT_VDEV },
		{ "max-xfer", required_argument, NULL, OPT_XFER },
		{ "log-level", required_argument, NULL, OPT_LOG },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct vgb_vus_options opts = { 0 };
	const char *sock_path = NULL, *spec = "default";
	struct vgb_vus *s = NULL;
	struct pollfd pfd[2];
	sigset_t mask;
	int opt, r, lfd, sfd;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_SOCKET:
			sock_path = optarg;
			break;
		case OPT_VDEV:
			spec = optarg;
			break;
		case OPT_XFER: {
			uint64_t v;

			if (vgb_parse_u64(optarg, 64u << 20, &v) < 0 || v < 4096) {
				fprintf(stderr,
					"vgbridge-vfio-user-server: --max-xfer '%s': give 4K to 64M\n",
					optarg);
				return 2;
			}
			opts.max_data_xfer_size = (uint32_t)v;
			break;
		}
		case OPT_LOG:
			r = vgb_log_parse_level(optarg);
			if (r >= 0)
				vgb_log_set_level((enum vgb_log_level)r);
			if (r < 0) {
				fprintf(stderr,
					"vgbridge-vfio-user-server: --log-level '%s': give error, warn, info or debug\n",
					optarg);
				return 2;
			}
			break;
		case OPT_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!sock_path || optind != argc) {
		fprintf(stderr, "vgbridge-vfio-user-server: --socket PATH is required (see --help)\n");
		return 2;
	}
	r = vgb_vus_create(spec, &opts, &s);
	if (r < 0) {
		fprintf(stderr,
			"vgbridge-vfio-user-server: virtual device '%s': %s (see docs/virtual-device.md;"
			" BARs must be powers of two)\n", spec, strerror(-r));
		return 1;
	}
	lfd = make_listener(sock_path);
	if (lfd < 0 || vgb_vus_listen(s, lfd) < 0) {
		vgb_vus_destroy(s);
		return 1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	vgb_log(VGB_LOG_INFO, "vfio-user server: '%s' on %s", spec, sock_path);

	pfd[0] = (struct pollfd){ .fd = vgb_vus_get_fd(s), .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents && vgb_vus_dispatch(s, 0) < 0)
			break;
	}
	vgb_log(VGB_LOG_INFO, "vfio-user server: shutting down");
	vgb_vus_destroy(s);
	close(sfd);
	unlink(sock_path);
	return 0;
}
