/* SPDX-License-Identifier: MIT */
/* The one --display choice of every front-end daemon. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plumbing.h"
#include "vgb/display.h"
#include "vgb/log.h"

/* Where libwayland looks for @name (wayland_display_connect: $XDG_RUNTIME_DIR/name or a path). */
static void describe_compositor(const char *name, char *err, size_t size)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	const char *what = name && *name ? name : "wayland-0";
	const char *hint = "start a compositor (or set $WAYLAND_DISPLAY to the one running), or use "
			   "--display capture:DIR to write PNG files, or --display null";

	if (what[0] == '/')
		snprintf(err, size, "no Wayland compositor answers at %s: %s", what, hint);
	else if (!rt || !*rt)
		snprintf(err, size,
			 "no Wayland compositor: $XDG_RUNTIME_DIR is not set, so socket '%s' cannot "
			 "be found: %s",
			 what, hint);
	else
		snprintf(err, size, "no Wayland compositor answers at %s/%s%s: %s", rt, what,
			 name && *name ? "" : " ($WAYLAND_DISPLAY is not set)", hint);
}

int vgb_daemon_display_create(const char *spec, const char *wayland_socket, const char *title,
			      bool fullscreen, struct vgb_display **ret, char *err,
			      size_t err_size)
{
	int r;

	if (!spec) {
		if (getenv("WAYLAND_DISPLAY") || wayland_socket) {
			spec = "wayland";
		} else {
			vgb_log(VGB_LOG_INFO, "no $WAYLAND_DISPLAY: frames are not shown "
				"(--display capture:DIR writes them to PNG files)");
			spec = "none";
		}
	}
	if (strcmp(spec, "none") == 0) {
		*ret = NULL;
		return 0;
	}
	if (strcmp(spec, "null") == 0)
		return vgb_display_create_null(ret);
	if (strcmp(spec, "wayland") == 0) {
		/* A compositor that goes away (restart, crash) is retried every second. */
		struct vgb_display_options o = { .title = title, .timeout_ms = 1000,
						 .reconnect_ms = 1000, .fullscreen = fullscreen };
		const char *name = wayland_socket ? wayland_socket : getenv("WAYLAND_DISPLAY");

		r = vgb_display_create_wayland(wayland_socket, &o, ret);
		if (r < 0) {
			if (r == -EOPNOTSUPP)
				snprintf(err, err_size, "this build has no Wayland sink: use "
					 "--display capture:DIR or --display null");
			else
				describe_compositor(name, err, err_size);
		}
		return r;
	}
	if (strncmp(spec, "capture:", 8) == 0 && spec[8]) {
		r = vgb_display_create_capture(spec + 8, ret);
		if (r < 0)
			snprintf(err, err_size, "cannot write captures to '%s': %s", spec + 8,
				 strerror(-r));
		return r;
	}
	snprintf(err, err_size, "unknown display '%s': use one of %s", spec,
		 VGB_DAEMON_DISPLAY_CHOICES);
	return -EINVAL;
}
