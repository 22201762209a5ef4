/* SPDX-License-Identifier: MIT */
/* One line when the compositor goes, one when it is back: not one per frame. */
#include "plumbing.h"
#include "vgb/display.h"
#include "vgb/log.h"

void vgb_daemon_display_watch(struct vgb_display_watch *w, struct vgb_display *d)
{
	struct vgb_display_stats st = { 0 };

	if (!d)
		return;
	vgb_display_get_stats(d, &st);
	if (w->connected && !st.connected) {
		vgb_log(VGB_LOG_WARN, "display %s: compositor lost; frames are dropped until it is "
			"back (retrying every second)", d->ops->name);
		w->warned = true;
	} else if (!w->connected && st.connected && w->warned) {
		vgb_log(VGB_LOG_INFO, "display %s: compositor back", d->ops->name);
		w->warned = false;
	}
	w->connected = st.connected;
}
