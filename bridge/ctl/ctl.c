/* SPDX-License-Identifier: MIT */
/*
 * vgbctl: the command-line tool. main() is a dispatcher over the command table; each command
 * parses its own arguments and returns the exit status (0 ok, 1 failed, 2 usage).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bridge.h"
#include "vgb/log.h"
#include "vgb/vfio.h"

struct command {
	const char *name;
	const char *args;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static const char *errno_hint(int r)
{
	switch (-r) {
	case EACCES:
	case EPERM:
		return " (VFIO needs access to /dev/vfio: run as root or join the device's group)";
	case ENODEV:
		return " (no such device, or no VFIO here: is it bound to vfio-pci?)";
	case ENXIO:
		return " (the device has no IOMMU group: enable the IOMMU)";
	case EBUSY:
		return " (another device of its IOMMU group is bound to a host driver)";
	case EOPNOTSUPP:
		return " (not supported by this build or kernel)";
	default:
		return "";
	}
}

/* ---- vfio-info ---- */

static int cmd_vfio_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "virtual", required_argument, NULL, 'v' },
		{ "vfio-user", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vgb_vfio_device *dev = NULL;
	const char *spec = NULL, *vu_sock = NULL, *target;
	bool json = false;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jv:u:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'v':
			spec = optarg;
			break;
		case 'u':
			vu_sock = optarg;
			break;
		case 'h':
			printf("usage: vgbctl vfio-info <BDF | /dev/vfio/devices/vfioN | --virtual SPEC |\n"
			       "                        --vfio-user SOCKET> [--json]\n"
			       "Prints a VFIO device's regions (size, offset, flags, sparse mmap areas,\n"
			       "type) and capabilities with the DMA_BUF probe answer.\n"
			       "  BDF            a PCI address bound to vfio-pci, e.g. 0000:00:03.0\n"
			       "  --virtual SPEC the built-in virtual device (\"default\"; grammar in\n"
			       "                 docs/virtual-device.md)\n"
			       "  --vfio-user SOCKET  a vfio-user server's socket (docs/vfio-user.md)\n"
			       "  --json         one JSON object instead of text\n");
			return 0;
		default:
			return 2;
		}
	}
	if ((spec != NULL) + (vu_sock != NULL) + (argc - optind) != 1) {
		fprintf(stderr, "vgbctl vfio-info: give exactly one device (see --help)\n");
		return 2;
	}
	target = spec ? spec : vu_sock ? vu_sock : argv[optind];

	if (vu_sock) {
		r = vgb_vfio_user_connect(vu_sock, &dev);
	} else if (spec) {
		r = vgb_vfio_vdev_create(spec, &dev);
	} else if (target[0] == '/') {
#if VGB_VFIO_HAVE_CDEV
		r = vgb_vfio_kernel_open_cdev(target, &dev);
#else
		r = -EOPNOTSUPP;
#endif
	} else {
		r = vgb_vfio_kernel_open(target, 0, &dev);
	}
	if (r < 0) {
		fprintf(stderr, "vgbctl vfio-info: %s%s: %s%s\n",
			spec ? "virtual device " : vu_sock ? "vfio-user server " : "", target,
			strerror(-r),
			r == -EINVAL && spec ? " (bad spec; VGB_LOG=debug says why)"
			: vu_sock ? (r == -ENOENT || r == -ECONNREFUSED
					     ? " (is vgbridge-vfio-user-server running there?)"
					     : r == -EPROTO ? " (not a vfio-user server we understand;"
							      " VGB_LOG=debug says why)" : "")
			: errno_hint(r));
		return 1;
	}
	r = vgb_vfio_info_print(dev, stdout, json);
	vgb_vfio_device_destroy(dev);
	if (r < 0) {
		fprintf(stderr, "vgbctl vfio-info: writing: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}

/* ---- dispatcher ---- */

static const struct command commands[] = {
	{ "vfio-info",
	  "<BDF | /dev/vfio/devices/vfioN | --virtual SPEC | --vfio-user SOCKET> [--json]",
	  "print a VFIO device's regions and capabilities", cmd_vfio_info },
	{ "stats", "[--socket PATH]",
	  "print vgbridged's counters: blobs by strategy, commands, fences, display path",
	  vgb_ctl_stats },
	{ "replay", "[--socket PATH] [--quiet] FILE",
	  "play a scripted guest (docs/replay.md) against vgbridged", vgb_ctl_replay },
	{ "scenario", "[--socket PATH] [--frames N] [--memory ram|bar|mixed] ...",
	  "play a Linux 6.1 guest's dumb framebuffer (blob, T2D, scanout, fenced flushes)",
	  vgb_ctl_scenario },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: vgbctl <command> [args]   (vgbctl <command> --help for more)\n\n"
		     "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n  %-10s   %s\n", commands[i].name, commands[i].args, "",
			commands[i].summary);
	fprintf(out, "\nenvironment: VGB_LOG=error|warn|info|debug sets the log level.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "vgbctl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
