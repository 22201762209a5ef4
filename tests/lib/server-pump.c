/* SPDX-License-Identifier: MIT */
#include <poll.h>

#include "server-pump.h"
#include "server.h"

void server_pump_for(struct vgb_server *s, int fd, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 0) > 0)
			return;
		if (vgb_server_dispatch(s, 25) < 0)
			return;
	}
}

void server_pump(void *data, int fd)
{
	server_pump_for(data, fd, 400);
}
