/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wayland-client.h>

#include "tap.h"
#include "vgb/util.h"
#include "weston-harness.h"
#include "weston-screenshooter-client-protocol.h"
#include "xdg-shell-client-protocol.h"

#define MAX_WESTONS 8
/* Generous: under TCG with llvmpipe (the vm suite) weston has taken more than 10 s. */
#define START_TIMEOUT_MS 150000 /* weston --use-gl on llvmpipe in a TCG guest on a loaded host */

struct harness_conn {
	struct wl_display *display;
	struct wl_registry *registry;
	struct wl_shm *shm;
	struct wl_output *output;
	struct weston_screenshooter *shooter;
	struct wl_compositor *compositor;
	struct xdg_wm_base *wm_base;
	bool have_wm_base;
	bool configured;
	bool frame_done;
	bool shot_done;
};

static struct weston *registered[MAX_WESTONS];
static bool hooks_installed;

static void kill_all(void)
{
	for (int i = 0; i < MAX_WESTONS; i++)
		if (registered[i])
			weston_stop(registered[i]);
}

static void fatal_signal(int sig)
{
	/* Only async-signal-safe calls: kill the compositors, then die of the same signal. */
	for (int i = 0; i < MAX_WESTONS; i++)
		if (registered[i] && registered[i]->pid > 0)
			kill(registered[i]->pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_hooks(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGSEGV, SIGABRT, SIGBUS, SIGFPE };

	if (hooks_installed)
		return;
	hooks_installed = true;
	atexit(kill_all);
	for (size_t i = 0; i < VGB_ARRAY_SIZE(sigs); i++)
		signal(sigs[i], fatal_signal);
	/* A dying compositor must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void registry_global(void *data, struct wl_registry *registry, uint32_t name,
			    const char *interface, uint32_t version)
{
	struct harness_conn *c = data;

	if (strcmp(interface, "wl_shm") == 0 && !c->shm)
		c->shm = wl_registry_bind(registry, name, &wl_shm_interface, 1);
	else if (strcmp(interface, "wl_output") == 0 && !c->output)
		c->output = wl_registry_bind(registry, name, &wl_output_interface, 1);
	else if (strcmp(interface, "weston_screenshooter") == 0 && !c->shooter)
		c->shooter = wl_registry_bind(registry, name, &weston_screenshooter_interface, 1);
	else if (strcmp(interface, "wl_compositor") == 0 && !c->compositor)
		c->compositor = wl_registry_bind(registry, name, &wl_compositor_interface, 4);
	else if (strcmp(interface, "xdg_wm_base") == 0 && !c->wm_base) {
		c->wm_base = wl_registry_bind(registry, name, &xdg_wm_base_interface, 1);
		c->have_wm_base = true;
	}
}

static void registry_global_remove(void *data, struct wl_registry *registry, uint32_t name)
{
}

static const struct wl_registry_listener registry_listener = {
	.global = registry_global,
	.global_remove = registry_global_remove,
};

static void shot_done(void *data, struct weston_screenshooter *shooter)
{
	((struct harness_conn *)data)->shot_done = true;
}

static const struct weston_screenshooter_listener shooter_listener = {
	.done = shot_done,
};

static void wm_base_ping(void *data, struct xdg_wm_base *wm_base, uint32_t serial)
{
	xdg_wm_base_pong(wm_base, serial);
}

static const struct xdg_wm_base_listener wm_base_listener = { .ping = wm_base_ping };

static void conn_destroy(struct harness_conn *c)
{
	if (!c)
		return;
	if (c->shooter)
		weston_screenshooter_destroy(c->shooter);
	if (c->wm_base)
		xdg_wm_base_destroy(c->wm_base);
	if (c->compositor)
		wl_compositor_destroy(c->compositor);
	if (c->output)
		wl_output_destroy(c->output);
	if (c->shm)
		wl_shm_destroy(c->shm);
	if (c->registry)
		wl_registry_destroy(c->registry);
	if (c->display)
		wl_display_disconnect(c->display);
	free(c);
}

/* Dispatches until @flag or the deadline; never blocks past it. */
static int conn_wait(struct harness_conn *c, bool *flag, uint64_t deadline)
{
	while (!*flag) {
		struct pollfd pfd = { .fd = wl_display_get_fd(c->display), .events = POLLIN };
		uint64_t now = now_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		while (wl_display_prepare_read(c->display) != 0)
			if (wl_display_dispatch_pending(c->display) < 0)
				return -EPIPE;
		wl_display_flush(c->display);
		if (poll(&pfd, 1, (int)(deadline - now)) > 0) {
			if (wl_display_read_events(c->display) < 0)
				return -EPIPE;
		} else {
			wl_display_cancel_read(c->display);
		}
		if (wl_display_dispatch_pending(c->display) < 0)
			return -EPIPE;
	}
	return 0;
}

static void sync_done(void *data, struct wl_callback *cb, uint32_t serial)
{
	*(bool *)data = true;
}

static const struct wl_callback_listener sync_listener = { .done = sync_done };

static int conn_roundtrip(struct harness_conn *c, uint64_t deadline)
{
	bool done = false;
	struct wl_callback *cb = wl_display_sync(c->display);
	int r;

	wl_callback_add_listener(cb, &sync_listener, &done);
	r = conn_wait(c, &done, deadline);
	wl_callback_destroy(cb);
	return r;
}

static int conn_create(struct weston *w, uint64_t deadline, struct harness_conn **ret)
{
	struct harness_conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->display = wl_display_connect(w->socket);
	if (!c->display) {
		free(c);
		return -ECONNREFUSED;
	}
	c->registry = wl_display_get_registry(c->display);
	wl_registry_add_listener(c->registry, &registry_listener, c);
	r = conn_roundtrip(c, deadline);
	if (r == 0)
		r = conn_roundtrip(c, deadline); /* wl_output's events */
	if (r == 0 && (!c->shm || !c->output || !c->shooter || !c->have_wm_base || !c->compositor))
		r = -EAGAIN; /* the shell is not up yet */
	if (r < 0) {
		conn_destroy(c);
		return r;
	}
	weston_screenshooter_add_listener(c->shooter, &shooter_listener, c);
	xdg_wm_base_add_listener(c->wm_base, &wm_base_listener, c);
	*ret = c;
	return 0;
}

static int write_config(struct weston *w)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/weston.ini", w->dir);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	const char *window = getenv("VGB_WESTON_REPAINT_WINDOW");

	fprintf(f, "[core]\n"
		   "require-input=false\n"
		   "shell=%s\n"
		   "%s%s%s"

		   "[shell]\n"
		   "startup-animation=none\n"
		   "close-animation=none\n"
		   "animation=none\n"
		   "panel-position=none\n"
		   "background-color=0xff000000\n",
		getenv("VGB_TEST_SHELL") ? getenv("VGB_TEST_SHELL") : "desktop-shell.so",
		window ? "repaint-window=" : "", window ? window : "", window ? "\n" : "");
	return fclose(f) == 0 ? 0 : -EIO;
}

static int spawn(struct weston *w)
{
	char config[128], log[128], width[32], height[32], socket[64];
	uint64_t deadline;
	pid_t pid;
	int r;

	snprintf(config, sizeof(config), "--config=%s/weston.ini", w->dir);
	snprintf(log, sizeof(log), "%s/weston.log", w->dir);
	snprintf(width, sizeof(width), "--width=%u", w->width);
	snprintf(height, sizeof(height), "--height=%u", w->height);
	snprintf(socket, sizeof(socket), "--socket=%s", w->socket);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		setenv("XDG_RUNTIME_DIR", w->dir, 1);
		unsetenv("WAYLAND_DISPLAY");
		unsetenv("DISPLAY");
		/* $VGB_WESTON_RENDERER=gl: the GL renderer (the vm suite's vgem guest). */
		const char *renderer = getenv("VGB_WESTON_RENDERER");
		execlp("weston", "weston", "--backend=headless-backend.so",
		       renderer && strcmp(renderer, "gl") == 0 ? "--use-gl" : "--use-pixman",
		       "--debug", config, socket, width, height, (char *)NULL);
		_exit(127);
	}
	w->pid = pid;

	/* Ready when a client sees the shell and the screenshooter. */
	deadline = now_ms() + START_TIMEOUT_MS;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			w->pid = 0;
			tap_diag("weston exited during startup (status 0x%x); log in %s", status, log);
			return -ECHILD;
		}
		r = conn_create(w, deadline, &w->conn);
		if (r == 0)
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(20000);
	}
}

int weston_start(struct weston *w, uint32_t width, uint32_t height)
{
	static unsigned counter;
	int slot = -1, r;

	install_hooks();
	memset(w, 0, sizeof(*w));
	for (int i = 0; i < MAX_WESTONS; i++)
		if (!registered[i] && slot < 0)
			slot = i;
	if (slot < 0)
		return -EBUSY;
	/* $TMPDIR when short enough (the vm guest's chroot has a read-only /tmp). */
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 32)
		tmp = "/tmp";
	snprintf(w->dir, sizeof(w->dir), "%s/vgb-weston-XXXXXX", tmp);
	if (!mkdtemp(w->dir))
		return -errno;
	chmod(w->dir, 0700);
	snprintf(w->socket, sizeof(w->socket), "vgb-test-%d-%u", (int)getpid(), counter++);
	w->width = width;
	w->height = height;
	registered[slot] = w;
	setenv("XDG_RUNTIME_DIR", w->dir, 1);
	r = write_config(w);
	if (r == 0)
		r = spawn(w);
	if (r < 0)
		weston_stop(w);
	return r;
}

int weston_restart(struct weston *w)
{
	conn_destroy(w->conn);
	w->conn = NULL;
	return spawn(w);
}

void weston_kill(struct weston *w)
{
	conn_destroy(w->conn);
	w->conn = NULL;
	if (w->pid > 0) {
		kill(w->pid, SIGKILL);
		waitpid(w->pid, NULL, 0);
	}
	w->pid = 0;
}

static void remove_dir(const char *dir)
{
	static const char *const names[] = { "weston.ini", "weston.log" };
	char path[160];

	for (size_t i = 0; i < VGB_ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	/* Sockets and lock files weston left behind after a kill. */
	for (unsigned n = 0; n < 64; n++) {
		snprintf(path, sizeof(path), "%s/vgb-test-%d-%u", dir, (int)getpid(), n);
		unlink(path);
		snprintf(path, sizeof(path), "%s/vgb-test-%d-%u.lock", dir, (int)getpid(), n);
		unlink(path);
	}
	rmdir(dir);
}

void weston_stop(struct weston *w)
{
	if (!w)
		return;
	conn_destroy(w->conn);
	w->conn = NULL;
	if (w->pid > 0) {
		uint64_t deadline = now_ms() + 3000;
		kill(w->pid, SIGTERM);
		while (waitpid(w->pid, NULL, WNOHANG) == 0) {
			if (now_ms() >= deadline) {
				kill(w->pid, SIGKILL);
				waitpid(w->pid, NULL, 0);
				break;
			}
			usleep(10000);
		}
		w->pid = 0;
	}
	if (w->dir[0]) {
		if (getenv("VGB_KEEP_WESTON_LOG")) {
			char cmd[256];
			snprintf(cmd, sizeof(cmd), "cat %s/weston.log >&2", w->dir);
			if (system(cmd) != 0)
				tap_diag("could not print the weston log");
		}
		remove_dir(w->dir);
		w->dir[0] = '\0';
	}
	for (int i = 0; i < MAX_WESTONS; i++)
		if (registered[i] == w)
			registered[i] = NULL;
}

static void overlay_configure(void *data, struct xdg_surface *xdg_surface, uint32_t serial)
{
	xdg_surface_ack_configure(xdg_surface, serial);
	((struct harness_conn *)data)->configured = true;
}

static const struct xdg_surface_listener overlay_listener = { .configure = overlay_configure };

/* A memfd of @size bytes, mapped shared read-write at *@ret_data. Returns the fd or -errno. */
static int mapped_memfd(const char *name, size_t size, void **ret_data)
{
	void *data;
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -errno;
	}
	data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (data == MAP_FAILED) {
		close(fd);
		return -errno;
	}
	*ret_data = data;
	return fd;
}

static void overlay_frame(void *data, struct wl_callback *cb, uint32_t time)
{
	((struct harness_conn *)data)->frame_done = true;
}

static const struct wl_callback_listener overlay_frame_listener = { .done = overlay_frame };

/*
 * weston repaints only what was damaged, and its screenshooter reads the output as it is: a
 * surface whose buffer holds stale pixels outside its damage would still look right. Mapping a
 * fullscreen overlay and unmapping it damages the whole output, so the next repaint draws every
 * surface again from its current buffer.
 */
static int force_full_repaint(struct weston *w)
{
	struct harness_conn *c = w->conn;
	size_t size = (size_t)w->width * w->height * 4;
	uint64_t deadline = now_ms() + 60000;
	struct wl_surface *surface;
	struct xdg_surface *xdg_surface;
	struct xdg_toplevel *toplevel;
	struct wl_callback *cb;
	struct wl_shm_pool *pool;
	struct wl_buffer *buffer;
	void *data;
	int fd, r;

	fd = mapped_memfd("overlay", size, &data);
	if (fd < 0)
		return fd;
	for (size_t i = 0; i < size / 4; i++)
		((uint32_t *)data)[i] = 0xffff00ffu; /* magenta: never a test pattern's whole frame */
	pool = wl_shm_create_pool(c->shm, fd, (int32_t)size);
	close(fd);
	buffer = wl_shm_pool_create_buffer(pool, 0, (int32_t)w->width, (int32_t)w->height,
					   (int32_t)w->width * 4, WL_SHM_FORMAT_XRGB8888);
	wl_shm_pool_destroy(pool);
	munmap(data, size);

	surface = wl_compositor_create_surface(c->compositor);
	xdg_surface = xdg_wm_base_get_xdg_surface(c->wm_base, surface);
	xdg_surface_add_listener(xdg_surface, &overlay_listener, c);
	toplevel = xdg_surface_get_toplevel(xdg_surface);
	xdg_toplevel_set_fullscreen(toplevel, NULL);
	c->configured = false;
	wl_surface_commit(surface);
	r = conn_wait(c, &c->configured, deadline);
	if (r == 0) {
		wl_surface_attach(surface, buffer, 0, 0);
		wl_surface_damage(surface, 0, 0, (int32_t)w->width, (int32_t)w->height);
		cb = wl_surface_frame(surface);
		c->frame_done = false;
		wl_callback_add_listener(cb, &overlay_frame_listener, c);
		wl_surface_commit(surface);
		r = conn_wait(c, &c->frame_done, deadline);
		wl_callback_destroy(cb);
	}
	xdg_toplevel_destroy(toplevel);
	xdg_surface_destroy(xdg_surface);
	wl_surface_destroy(surface);
	wl_buffer_destroy(buffer);
	if (r == 0)
		r = conn_roundtrip(c, deadline);
	return r;
}

int weston_screenshot(struct weston *w, uint32_t *ret)
{
	struct harness_conn *c = w->conn;
	size_t size = (size_t)w->width * w->height * 4;
	struct wl_shm_pool *pool;
	struct wl_buffer *buffer;
	void *data;
	int fd, r;

	if (!c)
		return -ENOTCONN;
	r = force_full_repaint(w);
	if (r < 0)
		return r;
	fd = mapped_memfd("screenshot", size, &data);
	if (fd < 0)
		return fd;
	pool = wl_shm_create_pool(c->shm, fd, (int32_t)size);
	close(fd);
	buffer = wl_shm_pool_create_buffer(pool, 0, (int32_t)w->width, (int32_t)w->height,
					   (int32_t)w->width * 4, WL_SHM_FORMAT_ARGB8888);
	wl_shm_pool_destroy(pool);
	c->shot_done = false;
	weston_screenshooter_take_shot(c->shooter, c->output, buffer);
	r = conn_wait(c, &c->shot_done, now_ms() + 60000);
	if (r == 0)
		memcpy(ret, data, size);
	wl_buffer_destroy(buffer);
	wl_display_flush(c->display);
	munmap(data, size);
	return r;
}

unsigned compare_pixels(const uint32_t *got, const uint32_t *want, uint32_t width,
			uint32_t height)
{
	unsigned bad = 0;

	for (uint32_t y = 0; y < height; y++) {
		for (uint32_t x = 0; x < width; x++) {
			/* The output is XRGB8888: its alpha byte means nothing (pixman leaves 0). */
			uint32_t g = got[y * width + x] & 0xffffff, e = want[y * width + x] & 0xffffff;
			if (g == e)
				continue;
			if (bad < 5)
				tap_diag("pixel (%u,%u): got 0x%08x, want 0x%08x", x, y, g, e);
			bad++;
		}
	}
	if (bad)
		tap_diag("%u of %u pixels differ", bad, width * height);
	return bad;
}

bool pump_until(struct vgb_display *d, bool (*cond)(void *data), void *data, int timeout_ms)
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

	while (!cond || !cond(data)) {
		uint64_t now = now_ms();
		int wait, t, fd;
		if (now >= deadline)
			return cond == NULL;
		wait = (int)(deadline - now);
		t = vgb_display_next_timeout_ms(d);
		if (t >= 0 && t < wait)
			wait = t;
		fd = vgb_display_get_fd(d);
		if (fd >= 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			poll(&pfd, 1, wait);
		} else {
			usleep((useconds_t)wait * 1000);
		}
		vgb_display_dispatch(d);
	}
	return true;
}

void pump_for(struct vgb_display *d, int ms)
{
	pump_until(d, NULL, NULL, ms);
}

static bool settled(void *data)
{
	struct vgb_display_stats st;

	vgb_display_get_stats(data, &st);
	return st.frames_pending == 0 &&
	       st.frames_presented + st.frames_discarded + st.frames_lost >= st.commits;
}

bool settle(struct vgb_display *d, int timeout_ms)
{
	return pump_until(d, settled, d, timeout_ms);
}

static unsigned done_calls;
static int done_last;

void frame_done(void *data, int status)
{
	done_calls++;
	done_last = status;
}

static bool done_seen(void *data)
{
	return done_calls >= *(unsigned *)data;
}

int present_and_wait(struct vgb_display *d, const struct vgb_frame *f)
{
	unsigned want = done_calls + 1;
	int r = vgb_display_present(d, f);

	if (r < 0)
		return r;
	/* Generous: a GL weston in a TCG guest on a loaded host takes tens of seconds. */
	if (!pump_until(d, done_seen, &want, 90000)) {
		tap_diag("present_and_wait: the frame did not complete in 90 s");
		return -ETIMEDOUT;
	}
	if (done_last == 0 && !settle(d, 90000)) {
		struct vgb_display_stats st;
		vgb_display_get_stats(d, &st);
		tap_diag("present_and_wait: commits not all answered in 90 s (%llu commits, %llu "
			 "presented, %llu discarded, %llu lost, %u pending)",
			 (unsigned long long)st.commits, (unsigned long long)st.frames_presented,
			 (unsigned long long)st.frames_discarded, (unsigned long long)st.frames_lost,
			 st.frames_pending);
		return -ETIMEDOUT;
	}
	if (done_last < 0)
		tap_diag("present_and_wait: the frame completed with %d", done_last);
	return done_last;
}
