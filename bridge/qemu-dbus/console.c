/* SPDX-License-Identifier: MIT */
/*
 * A console's reference count: the front end (qemu-dbus.c) and the listener's frames in flight
 * (listener.c) both hold consoles, so the count lives below both of them.
 */
#include <stdlib.h>

#include <gio/gio.h>

#include "console.h"

struct qd_console *vgb_qd_console_ref(struct qd_console *c)
{
	c->refs++;
	return c;
}

void vgb_qd_console_unref(struct qd_console *c)
{
	if (!c || --c->refs > 0)
		return;
	g_clear_object(&c->cancel);
	free(c);
}
