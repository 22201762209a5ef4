/* SPDX-License-Identifier: MIT */
/* Built without wayland-client (meson option wayland=disabled, or the libraries are missing). */
#include <errno.h>

#include "vgb/display.h"

int vgb_display_create_wayland(const char *socket_name, const struct vgb_display_options *opts,
			       struct vgb_display **ret)
{
	/* A capability, not an error worth logging. */
	return -EOPNOTSUPP;
}
