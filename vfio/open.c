/* SPDX-License-Identifier: MIT */
/*
 * Opening a VFIO device by PCI address: the dispatcher above the two kernel ways of opening
 * one, the VFIO cdev + iommufd (vfio/cdev.c) and the legacy container/group (vfio/ops-kernel.c).
 * Both end in vgb_vfio_kernel_wrap(); neither calls the other, and only this file knows both.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cdev.h"
#include "kernel.h"
#include "vgb/log.h"
#include "vgb/vfio.h"

/* "0000:00:03.0" (or "00:03.0", which means domain 0000) into canonical lower case. */
static int parse_bdf(const char *in, char out[13])
{
	unsigned domain = 0, bus, dev, fn;
	int n = 0;

	if (!in)
		return -EINVAL;
	for (const char *p = in; *p; p++)
		if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
			return -EINVAL;
	if (sscanf(in, "%4x:%2x:%2x.%1x%n", &domain, &bus, &dev, &fn, &n) == 4 &&
	    (size_t)n == strlen(in) && n == 12)
		;
	else if (domain = 0, n = 0,
		 sscanf(in, "%2x:%2x.%1x%n", &bus, &dev, &fn, &n) == 3 && (size_t)n == strlen(in) &&
			 n == 7)
		;
	else
		return -EINVAL;
	if (dev > 0x1f || fn > 7)
		return -EINVAL;
	snprintf(out, 13, "%04x:%02x:%02x.%x", domain, bus, dev, fn);
	return 0;
}

/*
 * The cdev attempt: /dev/vfio/devices/vfioN + iommufd (vfio/cdev.c), tried before the legacy
 * path. Without VGB_VFIO_HAVE_CDEV the answer is -EOPNOTSUPP: the capability is absent from
 * this build, which callers treat like any missing capability.
 */
static int open_cdev_by_bdf(const char *bdf, struct vgb_vfio_device **ret)
{
#if VGB_VFIO_HAVE_CDEV
	char path[PATH_MAX];
	int r = vgb_vfio_kernel_cdev_path(bdf, path, sizeof(path));

	if (r >= 0)
		r = vgb_vfio_kernel_open_cdev(path, ret);
	if (r >= 0) /* named by BDF, as the legacy path names it */
		snprintf((*ret)->name, sizeof((*ret)->name), "%s", bdf);
	return r;
#else
	(void)bdf;
	(void)ret;
	return -EOPNOTSUPP;
#endif
}

int vgb_vfio_kernel_cdev_path(const char *bdf, char *buf, size_t size)
{
	char dir[PATH_MAX], canon[13];
	struct dirent *e;
	DIR *d;
	int r;

	r = parse_bdf(bdf, canon);
	if (r < 0)
		return r;
	snprintf(dir, sizeof(dir), "%s/sys/bus/pci/devices/%s/vfio-dev", vgb_vfio_kernel_get_root(), canon);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? -ENODEV : -errno;
	r = -ENODEV;
	while ((e = readdir(d))) {
		unsigned n;
		int len;

		if (sscanf(e->d_name, "vfio%u%n", &n, &len) != 1 || e->d_name[len])
			continue;
		len = snprintf(buf, size, "%s/dev/vfio/devices/vfio%u", vgb_vfio_kernel_get_root(), n);
		r = len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
		break;
	}
	closedir(d);
	return r;
}

int vgb_vfio_kernel_open(const char *bdf, uint32_t flags, struct vgb_vfio_device **ret)
{
	char canon[13];
	int r;

	if (!ret || (flags & ~(VGB_VFIO_OPEN_LEGACY | VGB_VFIO_OPEN_CDEV)) ||
	    (flags & VGB_VFIO_OPEN_LEGACY && flags & VGB_VFIO_OPEN_CDEV))
		return -EINVAL;
	r = parse_bdf(bdf, canon);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "\"%s\" is not a PCI address", bdf ? bdf : "");

	if (!(flags & VGB_VFIO_OPEN_LEGACY)) {
		r = open_cdev_by_bdf(canon, ret);
		if (r >= 0 || flags & VGB_VFIO_OPEN_CDEV)
			return r;
		vgb_log_errno(VGB_LOG_DEBUG, r, "%s: cdev open, trying the legacy path", canon);
	}
	return vgb_vfio_kernel_open_legacy(canon, ret);
}
