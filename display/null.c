/* SPDX-License-Identifier: MIT */
/* The null sink: takes every valid frame and completes it at once. */
#include <errno.h>
#include <stdlib.h>

#include "display-private.h"
#include "vgb/util.h"

struct null_sink {
	struct vgb_display base;
	struct vgb_display_stats stats;
};

static const struct vgb_display_ops null_ops;

static struct null_sink *null_sink_from(struct vgb_display *d)
{
	return vgb_container_of(d, struct null_sink, base);
}

static int null_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	struct null_sink *s = null_sink_from(d);
	int r = vgb_frame_check(frame);

	if (r < 0)
		return r;
	s->stats.frames_presented++;
	s->stats.last_path = VGB_PATH_NONE;
	vgb_frame_complete(frame, 0);
	return 0;
}

static void null_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	*ret = null_sink_from(d)->stats;
}

static void null_destroy(struct vgb_display *d)
{
	free(null_sink_from(d));
}

static const struct vgb_display_ops null_ops = {
	.name = "null",
	.present = null_present,
	.get_stats = null_get_stats,
	.destroy = null_destroy,
};

int vgb_display_create_null(struct vgb_display **ret)
{
	struct null_sink *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->base.ops = &null_ops;
	s->stats.connected = true;
	*ret = &s->base;
	return 0;
}
