/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/virtio_gpu.h>

#include "gpu.h"
#include "memmap.h"
#include "protocol.h"
#include "server.h"
#include "vgb/display.h"
#include "vgb/iommufd.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#include "server-private.h"

static const struct vgb_server_options defaults = {
	.max_clients = 64,
	.max_entries = 16384,
	.max_blob_size = 256ull << 20,
	.max_resources = 1024,
	.max_windows = VGB_MEMMAP_MAX_WINDOWS,
	.max_devices = 16,
	.max_pending = 256,
	.max_msg = VGB_PROTO_MAX_MSG,
	.num_scanouts = 1,
	.allow_device_paths = true,
};

void vgb_server_options_init(struct vgb_server_options *ret)
{
	*ret = defaults;
	ret->allowed_uid = getuid();
}

int vgb_server_create(const struct vgb_server_options *opts, struct vgb_server **ret)
{
	struct vgb_server *s;
	struct vgb_server_options o;

	if (opts)
		o = *opts;
	else
		vgb_server_options_init(&o);
	if (!o.max_clients || !o.max_entries || !o.max_blob_size || !o.max_resources ||
	    !o.max_windows || !o.max_pending || o.max_windows > VGB_MEMMAP_MAX_WINDOWS ||
	    o.num_scanouts < 1 || o.num_scanouts > 16 ||
	    o.max_msg < sizeof(struct vgb_msg_header) + 64 || o.max_msg > VGB_PROTO_MAX_MSG)
		return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = o;
	s->listen.fd = s->signal_fd = s->display_watch.fd = -1;
	for (unsigned i = 0; i < MAX_REFUSED; i++)
		s->refused[i].fd = -1;
	s->listen_src.kind = SOURCE_LISTEN;
	s->signal_src.kind = SOURCE_SIGNAL;
	s->display_src.kind = SOURCE_DISPLAY;
	s->next_client_id = 1;
	s->start_ns = vgb_now_ns();
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->rxbuf = malloc(o.max_msg);
	s->slots = calloc(o.max_clients, sizeof(*s->slots));
	if (s->epoll_fd < 0 || !s->rxbuf || !s->slots) {
		int r = s->epoll_fd < 0 ? -errno : -ENOMEM;
		vgb_server_destroy(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* ---- the loop ---- */

static void handle_signal(struct vgb_server *s)
{
	struct signalfd_siginfo si;

	while (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		vgb_log(VGB_LOG_INFO, "signal %u: shutting down", si.ssi_signo);
		s->stopping = true;
	}
}

static int next_timeout(struct vgb_server *s, int timeout_ms)
{
	int t = timeout_ms;

#define FOLD(x) do { int x_ = (x); if (x_ >= 0 && (t < 0 || x_ < t)) t = x_; } while (0)
	if (s->opts.display)
		FOLD(vgb_display_next_timeout_ms(s->opts.display));
	for (struct client *c = s->clients; c; c = c->next)
		if (!c->dead)
			FOLD(vgb_gpu_next_timeout_ms(c->gpu));
#undef FOLD
	return t;
}

int vgb_server_dispatch(struct vgb_server *s, int timeout_ms)
{
	struct epoll_event evs[32];
	bool display_ready = false;
	int n;

	vgb_daemon_display_watch(&s->display_watch, s->opts.display, s->epoll_fd,
				 (uint64_t)(uintptr_t)&s->display_src);
	n = epoll_wait(s->epoll_fd, evs, (int)VGB_ARRAY_SIZE(evs), next_timeout(s, timeout_ms));
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		struct source *src = evs[i].data.ptr;

		switch (src->kind) {
		case SOURCE_LISTEN:
			vgb_server_handle_accept(s);
			break;
		case SOURCE_SIGNAL:
			handle_signal(s);
			break;
		case SOURCE_DISPLAY:
			display_ready = true;
			break;
		case SOURCE_CLIENT: {
			struct client *c = vgb_container_of(src, struct client, src);
			if (!c->dead)
				vgb_server_handle_client(c, evs[i].events);
			break;
		}
		case SOURCE_REFUSED:
			vgb_server_handle_refused(s, vgb_container_of(src, struct refused, src));
			break;
		case SOURCE_FAULTS:
			vgb_server_handle_faults(s, vgb_container_of(src, struct fault_watch, src));
			break;
		}
	}
	/* The display completes frames (fence_done may run), then fence deadlines. */
	if (s->opts.display && (display_ready || vgb_display_next_timeout_ms(s->opts.display) == 0)) {
		/* A lost compositor is reported once, by the watch below. */
		int r = vgb_display_dispatch(s->opts.display);
		if (r < 0)
			vgb_log_ratelimited(VGB_LOG_DEBUG, "display: %s", strerror(-r));
	}

	for (struct client *c = s->clients; c; c = c->next)
		if (!c->dead && vgb_gpu_next_timeout_ms(c->gpu) == 0)
			vgb_gpu_dispatch_timeouts(c->gpu);
	vgb_server_reap_dead(s);
	vgb_server_free_unwatched(s);
	return 0;
}

int vgb_server_run(struct vgb_server *s)
{
	while (!s->stopping) {
		int r = vgb_server_dispatch(s, -1);
		if (r < 0)
			return vgb_log_errno(VGB_LOG_ERROR, r, "event loop");
	}
	return 0;
}

void vgb_server_stop(struct vgb_server *s)
{
	s->stopping = true;
}

bool vgb_server_is_stopping(const struct vgb_server *s)
{
	return s->stopping;
}

int vgb_server_get_fd(const struct vgb_server *s)
{
	return s->epoll_fd;
}

unsigned vgb_server_client_count(const struct vgb_server *s)
{
	return s->n_clients;
}

/* ---- setup ---- */

static int watch_listen_socket(struct vgb_server *s, struct vgb_listen_socket *ls)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->listen_src };

	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, ls->fd, &ev) < 0)
		return -errno;
	s->listen = *ls;
	return 0;
}

int vgb_server_adopt_listen_fd(struct vgb_server *s, int fd)
{
	struct vgb_listen_socket ls;
	int r;

	if (s->listen.fd >= 0)
		return -EBUSY;
	r = vgb_listen_socket_adopt(fd, SOCK_SEQPACKET, &ls);
	if (r < 0)
		return r;
	r = watch_listen_socket(s, &ls);
	/* On failure the fd stays the caller's. */
	return r;
}

int vgb_server_listen(struct vgb_server *s, const char *path)
{
	struct vgb_listen_socket ls;
	int r;

	if (s->listen.fd >= 0)
		return -EBUSY;
	r = vgb_listen_socket_open(path, SOCK_SEQPACKET, s->opts.allowed_uid, &ls);
	if (r < 0)
		return r;
	r = watch_listen_socket(s, &ls);
	if (r < 0)
		vgb_listen_socket_close(&ls);
	return r;
}

int vgb_server_add_device(struct vgb_server *s, struct vgb_vfio_device *dev)
{
	struct vgb_vfio_device **d;

	if (s->n_clients || s->clients_accepted)
		return -EBUSY;
	d = realloc(s->devices, (s->n_devices + 1) * sizeof(*d));
	if (!d)
		return -ENOMEM;
	s->devices = d;
	d[s->n_devices++] = dev;
	vgb_server_watch_faults(s, dev);
	return (int)s->n_devices;
}

int vgb_server_watch_signals(struct vgb_server *s)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->signal_src };
	sigset_t set;
	int fd;

	if (s->signal_fd >= 0)
		return 0;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	s->signal_fd = fd;
	return 0;
}

void vgb_server_destroy(struct vgb_server *s)
{
	if (!s)
		return;
	while (s->clients)
		vgb_server_client_destroy(s->clients);
	vgb_listen_socket_close(&s->listen);
	for (unsigned i = 0; i < MAX_REFUSED; i++)
		vgb_server_refused_close(s, &s->refused[i]);
	if (s->signal_fd >= 0)
		close(s->signal_fd);
	for (uint32_t i = 0; i < s->n_devices; i++) {
		vgb_server_unwatch_faults(s, s->devices[i]);
		vgb_vfio_device_destroy(s->devices[i]);
	}
	free(s->devices);
	vgb_server_free_unwatched(s);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	free(s->rxbuf);
	free(s->slots);
	free(s);
}
