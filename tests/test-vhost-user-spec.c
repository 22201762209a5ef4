/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user-gpu backend against front ends written from QEMU's docs/interop/vhost-user.rst
 * and vhost-user-gpu.rst, several at once over socketpairs, each with its own memfd RAM, rings,
 * eventfds and (in qemu_display mode) its own display socket:
 * - one VM never stalls another: VM A stops reading its display socket while full-frame UPDATEs
 *   pile up, its call fd is a full pipe or an eventfd at its maximum count, and it sends
 *   requests without reading the replies; VM B, served by the same thread, still gets its
 *   GET_DISPLAY_INFO answered (a watchdog fails the test if the thread ever blocks);
 * - a kick fd that hangs up (a pipe whose writer closed) is dropped, and the ring's error fd says so;
 * - a ring made malformed by the driver signals its error fd, or closes the connection without one;
 * - every pixel format reaches QEMU's display as x8r8g8b8 (vhost-user-gpu.rst's UPDATE format);
 * - requests that always have a reply get one (or the connection closes), malformed or not;
 * - REPLY_ACK is non-zero for what the backend cannot honour;
 * - a memory table out of guest-address order is accepted;
 * - a new cursor shape carries its position;
 * - a blob command is refused when RESOURCE_BLOB was not negotiated.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "leak.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "vhost-user.h"

#define MEM_SIZE (8u << 20)
#define QVA_BASE 0x7f0000000000ull
#define QSZ 64u
#define DESC(q) (0x1000u + (q) * 0x4000u)
#define AVAIL(q) (DESC(q) + QSZ * 16)
#define USED(q) (DESC(q) + 0x2000u)
#define CMD_AT 0x10000u
#define RESP_AT 0x18000u
#define RESP_SIZE 0x800u
#define BACKING_AT 0x100000u /* resource backing: up to 7 MiB */

/* Everything one front end (one VM) holds. */
struct fe {
	const char *name;
	int sock;              /* our end of the vhost-user socket */
	int gpu;               /* our end of the display socket (QEMU's side), or -1 */
	int memfd;
	uint8_t *mem;
	int kick[2], call[2], err[2]; /* what we read/write; the backend got its own copies */
	int call_w[2];         /* the write end when the call fd is a pipe, else -1 */
	uint16_t avail_idx[2], slot;
	struct vgb_vhost_dev *dev;
	struct vgb_display *sink;
};

static void watchdog(int sig)
{
	static const char msg[] = "not ok - the event loop blocked (watchdog)\nBail out!\n";
	(void)sig;
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/* ---- the front end's messages ---- */

static int fe_send(struct fe *f, uint32_t req, uint32_t flags, const void *p, uint32_t size,
		   const int *fds, unsigned n_fds)
{
	struct vgb_vhost_user_header h = { req, flags | VGB_VHOST_USER_VERSION, size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, size } };
	union {
		struct cmsghdr a;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };

	if (n_fds) {
		memset(&ctl, 0, sizeof(ctl));
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	return sendmsg(f->sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)(sizeof(h) + size)
		       ? 0 : -errno;
}

/* Runs the backend of every front end in @fes until nothing is ready (bounded rounds). */
static void pump(struct fe **fes, unsigned n)
{
	for (int round = 0; round < 64; round++) {
		bool any = false;
		for (unsigned i = 0; i < n; i++) {
			if (!fes[i]->dev)
				continue;
			struct pollfd p = { .fd = vgb_vhost_dev_get_fd(fes[i]->dev), .events = POLLIN };
			if (poll(&p, 1, 0) != 1)
				continue;
			any = true;
			if (vgb_vhost_dev_dispatch(fes[i]->dev) < 0) {
				vgb_vhost_dev_destroy(fes[i]->dev);
				fes[i]->dev = NULL;
			}
		}
		if (!any)
			return;
	}
}

static void pump1(struct fe *f)
{
	pump(&f, 1);
}

/*
 * Reads one reply on the vhost-user socket after pumping. Returns its payload size, -ECONNRESET
 * when the backend closed the connection, or -ETIMEDOUT when nothing came.
 */
static int fe_recv(struct fe *f, uint32_t *ret_req, void *payload, size_t cap)
{
	struct vgb_vhost_user_header h;
	struct pollfd p = { .fd = f->sock, .events = POLLIN };
	ssize_t n;

	if (f->dev)
		pump1(f);
	if (poll(&p, 1, 2000) != 1)
		return -ETIMEDOUT;
	n = recv(f->sock, &h, sizeof(h), MSG_WAITALL);
	if (n == 0 || (n < 0 && errno == ECONNRESET))
		return -ECONNRESET;
	if (n != sizeof(h) || h.size > cap)
		return -EPROTO;
	if (h.size && recv(f->sock, payload, h.size, MSG_WAITALL) != (ssize_t)h.size)
		return -EPROTO;
	if (ret_req)
		*ret_req = h.request;
	return (int)h.size;
}

/* Sends with NEED_REPLY and returns the REPLY_ACK value, or -errno (-ECONNRESET: closed). */
static long long fe_ack(struct fe *f, uint32_t req, const void *p, uint32_t size, const int *fds,
			unsigned n_fds)
{
	uint64_t v;
	uint32_t rq;
	int r;

	if (fe_send(f, req, VGB_VHOST_USER_FLAG_NEED_REPLY, p, size, fds, n_fds) < 0)
		return -EIO;
	r = fe_recv(f, &rq, &v, sizeof(v));
	if (r < 0)
		return r;
	return r == sizeof(v) && rq == req ? (long long)v : -EPROTO;
}

static uint64_t fe_get_u64(struct fe *f, uint32_t req)
{
	uint64_t v = ~0ull;

	fe_send(f, req, 0, NULL, 0, NULL, 0);
	if (fe_recv(f, NULL, &v, sizeof(v)) != sizeof(v))
		return ~0ull;
	return v;
}

/* ---- the guest side of the rings ---- */

static void put_desc(struct fe *f, unsigned q, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct vring_desc *d = (struct vring_desc *)(f->mem + DESC(q)) + i;
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static uint16_t used_idx(struct fe *f, unsigned q)
{
	return __atomic_load_n(&((struct vring_used *)(f->mem + USED(q)))->idx, __ATOMIC_ACQUIRE);
}

static void make_avail(struct fe *f, unsigned q, uint16_t head)
{
	struct vring_avail *a = (struct vring_avail *)(f->mem + AVAIL(q));
	a->ring[f->avail_idx[q] % QSZ] = head;
	f->avail_idx[q]++;
	__atomic_store_n(&a->idx, f->avail_idx[q], __ATOMIC_RELEASE);
}

static void kick(struct fe *f, unsigned q)
{
	uint64_t one = 1;
	if (write(f->kick[q], &one, sizeof(one)) != sizeof(one))
		tap_bail("kick");
}

/*
 * Submits @cmd on queue @q without running the backend. Returns the used index to wait for.
 */
static uint16_t submit_nowait(struct fe *f, unsigned q, const void *cmd, size_t len)
{
	uint16_t head = (uint16_t)((f->slot++ * 2) % QSZ);
	uint32_t at = CMD_AT + (uint32_t)(head / 2) * 0x100u;
	uint32_t resp = RESP_AT + (uint32_t)(head / 2) * 0x100u;

	if (len > 0x100 || q != 0) {
		at = CMD_AT;
		resp = RESP_AT;
	}
	memcpy(f->mem + at, cmd, len);
	memset(f->mem + resp, 0, q == 0 && len <= 0x100 ? 0x100 : RESP_SIZE);
	put_desc(f, q, head, at, (uint32_t)len, VRING_DESC_F_NEXT, (uint16_t)(head + 1));
	put_desc(f, q, head + 1u, resp, q == 0 && len <= 0x100 ? 0x100 : RESP_SIZE,
		 VRING_DESC_F_WRITE, 0);
	make_avail(f, q, head);
	kick(f, q);
	return (uint16_t)(used_idx(f, q) + 1);
}

/* Submits, runs the backend, and returns the response type (0: not answered). */
static uint32_t submit(struct fe *f, unsigned q, const void *cmd, size_t len, void *resp,
		       size_t resp_len)
{
	uint16_t before = used_idx(f, q);
	uint16_t head = (uint16_t)((f->slot * 2) % QSZ);

	submit_nowait(f, q, cmd, len);
	pump1(f);
	if (used_idx(f, q) == before)
		return 0;
	const struct virtio_gpu_ctrl_hdr *h = (const void *)(f->mem + ((struct vring_desc *)(f->mem + DESC(q)))[head + 1].addr);
	if (resp)
		memcpy(resp, h, resp_len);
	return h->type;
}

/* ---- a front end from start to rings running ---- */

enum call_kind { CALL_EVENTFD, CALL_PIPE };

struct fe_opts {
	bool qemu_display;
	bool no_err_fd;
	bool kick_pipe;           /* the kick fd is a pipe (we keep the write end in kick[]) */
	enum call_kind call;
	uint64_t features;        /* SET_FEATURES; 0: VERSION_1 | PROTOCOL_FEATURES | EDID */
};

static void setup_ring(struct fe *f, unsigned q, const struct fe_opts *o)
{
	struct vgb_vhost_user_vring_state num = { q, QSZ }, base = { q, 0 }, en = { q, 1 };
	struct vgb_vhost_user_vring_addr a = {
		.index = q,
		.desc_user_addr = QVA_BASE + DESC(q),
		.avail_user_addr = QVA_BASE + AVAIL(q),
		.used_user_addr = QVA_BASE + USED(q),
	};
	uint64_t idx = q;
	int kick_backend, call_backend, err_backend, p[2];
	long long r = 0;

	if (o->kick_pipe) {
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
			tap_bail("pipe");
		kick_backend = p[0];
		f->kick[q] = p[1];
	} else {
		f->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		kick_backend = f->kick[q];
	}
	if (o->call == CALL_PIPE) {
		/* A blocking pipe, as a front end without eventfds has (vhost-user.rst). */
		if (pipe2(p, O_CLOEXEC) < 0)
			tap_bail("pipe");
		f->call[q] = p[0];
		f->call_w[q] = p[1];
		call_backend = p[1];
	} else {
		f->call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		f->call_w[q] = -1;
		call_backend = f->call[q];
	}
	f->err[q] = o->no_err_fd ? -1 : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	err_backend = f->err[q];

	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0);
	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_BASE, &base, sizeof(base), NULL, 0);
	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0);
	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_CALL, &idx, 8, &call_backend, 1);
	if (err_backend >= 0)
		r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_ERR, &idx, 8, &err_backend, 1);
	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_KICK, &idx, 8, &kick_backend, 1);
	r |= fe_ack(f, VGB_VHOST_USER_SET_VRING_ENABLE, &en, sizeof(en), NULL, 0);
	if (o->kick_pipe)
		close(kick_backend);
	if (r)
		tap_bail("%s: ring %u setup failed (%lld)", f->name, q, r);
}

/* Answers the display socket's handshake as QEMU does (no protocol features). */
static void gpu_handshake(struct fe *f)
{
	struct vgb_vhost_user_header h;
	uint64_t zero = 0, set;

	pump1(f);
	if (recv(f->gpu, &h, sizeof(h), MSG_WAITALL) != sizeof(h) ||
	    h.request != VGB_VHOST_GPU_GET_PROTOCOL_FEATURES)
		tap_bail("%s: no GET_PROTOCOL_FEATURES on the display socket", f->name);
	struct vgb_vhost_user_header rh = { VGB_VHOST_GPU_GET_PROTOCOL_FEATURES,
					   VGB_VHOST_GPU_FLAG_REPLY, 8 };
	if (send(f->gpu, &rh, sizeof(rh), 0) != sizeof(rh) || send(f->gpu, &zero, 8, 0) != 8)
		tap_bail("handshake reply");
	pump1(f);
	if (recv(f->gpu, &h, sizeof(h), MSG_WAITALL) != sizeof(h) ||
	    h.request != VGB_VHOST_GPU_SET_PROTOCOL_FEATURES ||
	    recv(f->gpu, &set, 8, MSG_WAITALL) != 8)
		tap_bail("%s: no SET_PROTOCOL_FEATURES", f->name);
}

static void fe_start(struct fe *f, const char *name, const struct fe_opts *o)
{
	struct vgb_vhost_options vo = { .qemu_display = o->qemu_display };
	int sv[2];

	memset(f, 0, sizeof(*f));
	f->name = name;
	f->gpu = -1;
	for (unsigned q = 0; q < 2; q++)
		f->kick[q] = f->call[q] = f->err[q] = f->call_w[q] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair");
	f->sock = sv[0];
	if (!o->qemu_display) {
		if (vgb_display_create_null(&f->sink) < 0)
			tap_bail("null sink");
		vo.display = f->sink;
	}
	if (vgb_vhost_dev_create(sv[1], &vo, &f->dev) < 0)
		tap_bail("vgb_vhost_dev_create");

	f->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (f->memfd < 0 || ftruncate(f->memfd, MEM_SIZE) < 0)
		tap_bail("memfd");
	f->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	if (f->mem == MAP_FAILED)
		tap_bail("mmap");

	uint64_t feats = o->features ? o->features
				     : (1ull << VIRTIO_F_VERSION_1) |
					       (1ull << VGB_VHOST_F_PROTOCOL_FEATURES) |
					       (1ull << VIRTIO_GPU_F_EDID);
	uint64_t pf = (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) |
		      (1ull << VGB_VHOST_USER_PROTOCOL_F_CONFIG) |
		      (1ull << VGB_VHOST_USER_PROTOCOL_F_MQ);
	fe_get_u64(f, VGB_VHOST_USER_GET_FEATURES);
	fe_get_u64(f, VGB_VHOST_USER_GET_PROTOCOL_FEATURES);
	fe_send(f, VGB_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0);
	if (fe_ack(f, VGB_VHOST_USER_SET_FEATURES, &feats, 8, NULL, 0) != 0)
		tap_bail("%s: SET_FEATURES", name);
	fe_send(f, VGB_VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0);
	struct vgb_vhost_user_memory m = { .nregions = 1 };
	m.regions[0] = (struct vgb_vhost_user_region){ 0, MEM_SIZE, QVA_BASE, 0 };
	if (fe_ack(f, VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &f->memfd, 1) != 0)
		tap_bail("%s: SET_MEM_TABLE", name);
	for (unsigned q = 0; q < 2; q++)
		setup_ring(f, q, o);
	if (o->qemu_display) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			tap_bail("socketpair");
		f->gpu = sv[0];
		if (fe_ack(f, VGB_VHOST_USER_GPU_SET_SOCKET, NULL, 0, &sv[1], 1) != 0)
			tap_bail("%s: GPU_SET_SOCKET", name);
		close(sv[1]);
		gpu_handshake(f);
	}
}

static void fe_stop(struct fe *f)
{
	vgb_vhost_dev_destroy(f->dev);
	f->dev = NULL;
	vgb_display_destroy(f->sink);
	for (unsigned q = 0; q < 2; q++) {
		vgb_close(f->kick[q]);
		vgb_close(f->call[q]);
		vgb_close(f->call_w[q]);
		vgb_close(f->err[q]);
	}
	vgb_close(f->gpu);
	vgb_close(f->sock);
	munmap(f->mem, MEM_SIZE);
	close(f->memfd);
}

/* A 2D resource @id of @w x @h in @format, backed at BACKING_AT, shown on scanout 0. */
static void show_resource(struct fe *f, uint32_t id, uint32_t format, uint32_t w, uint32_t h)
{
	struct virtio_gpu_resource_create_2d c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, .resource_id = id, .format = format,
		.width = w, .height = h,
	};
	struct {
		struct virtio_gpu_resource_attach_backing a;
		struct virtio_gpu_mem_entry e;
	} ab = {
		.a = { .hdr.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, .resource_id = id,
		       .nr_entries = 1 },
		.e = { .addr = BACKING_AT, .length = w * h * 4 },
	};
	struct virtio_gpu_set_scanout s = {
		.hdr.type = VIRTIO_GPU_CMD_SET_SCANOUT, .r = { 0, 0, w, h }, .scanout_id = 0,
		.resource_id = id,
	};
	if (submit(f, 0, &c, sizeof(c), NULL, 0) != VIRTIO_GPU_RESP_OK_NODATA ||
	    submit(f, 0, &ab, sizeof(ab), NULL, 0) != VIRTIO_GPU_RESP_OK_NODATA ||
	    submit(f, 0, &s, sizeof(s), NULL, 0) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("%s: resource %u not shown", f->name, id);
}

static void transfer_flush_cmds(uint32_t id, uint32_t w, uint32_t h,
				struct virtio_gpu_transfer_to_host_2d *t,
				struct virtio_gpu_resource_flush *fl)
{
	*t = (struct virtio_gpu_transfer_to_host_2d){
		.hdr.type = VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, .r = { 0, 0, w, h },
		.resource_id = id,
	};
	*fl = (struct virtio_gpu_resource_flush){
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_FLUSH, .r = { 0, 0, w, h }, .resource_id = id,
	};
}

/*
 * Reads exactly @n bytes of @f's display socket, running the backend while it waits (the backend
 * writes only from its loop). Returns 0, or -1 when nothing more comes.
 */
static int gpu_read(struct fe *f, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(f->gpu, (uint8_t *)buf + got, n - got, MSG_DONTWAIT);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return -1;
		if (f->dev)
			pump1(f);
		struct pollfd p = { .fd = f->gpu, .events = POLLIN };
		if (poll(&p, 1, 500) != 1)
			return -1;
	}
	return 0;
}

/* Reads one display-socket message; *@ret_pl is malloc()ed. Returns its size or -1. */
static int gpu_msg(struct fe *f, uint32_t *ret_req, uint8_t **ret_pl)
{
	struct vgb_vhost_user_header h;
	uint8_t *pl;

	if (gpu_read(f, &h, sizeof(h)) < 0)
		return -1;
	pl = malloc(h.size ? h.size : 1);
	if (!pl || gpu_read(f, pl, h.size) < 0) {
		free(pl);
		return -1;
	}
	*ret_req = h.request;
	*ret_pl = pl;
	return (int)h.size;
}

/* Reads display-socket messages until one of type @want; its payload (up to @cap) goes to @buf. */
static int gpu_expect(struct fe *f, uint32_t want, void *buf, size_t cap)
{
	for (int i = 0; i < 64; i++) {
		uint32_t req;
		uint8_t *pl;
		int n = gpu_msg(f, &req, &pl);
		if (n < 0)
			return -ETIMEDOUT;
		if (req == want)
			memcpy(buf, pl, VGB_MIN((size_t)n, cap));
		free(pl);
		if (req == want)
			return n;
	}
	return -ENOENT;
}

/* ---- one VM never stalls another ---- */

static void fill_pipe(int w)
{
	uint8_t junk[4096] = { 0 };
	int fl = fcntl(w, F_GETFL);

	fcntl(w, F_SETPIPE_SZ, 4096);
	fcntl(w, F_SETFL, fl | O_NONBLOCK);
	while (write(w, junk, sizeof(junk)) > 0)
		;
	while (write(w, junk, 1) > 0)
		;
	fcntl(w, F_SETFL, fl); /* blocking again, as the backend's copy is */
}

static void test_blocked_writer(enum call_kind call)
{
	struct fe a, b;
	struct fe *both[2] = { &a, &b };
	const uint32_t W = 1024, H = 768;
	const char *what = call == CALL_PIPE ? "call pipe full" : "call eventfd at its maximum";

	fe_start(&a, "vm-a", &(struct fe_opts){ .qemu_display = true, .call = call });
	fe_start(&b, "vm-b", &(struct fe_opts){ 0 });
	show_resource(&a, 1, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W, H);

	/* A stops reading everything: its display socket, its call fd, its replies. */
	if (call == CALL_PIPE) {
		fill_pipe(a.call_w[0]);
	} else {
		uint64_t max = 0xfffffffffffffffeull;
		uint64_t v;
		while (read(a.call[0], &v, 8) == 8)
			;
		if (write(a.call[0], &max, 8) != 8)
			tap_bail("eventfd max");
	}
	alarm(20);
	struct virtio_gpu_transfer_to_host_2d t;
	struct virtio_gpu_resource_flush fl;
	transfer_flush_cmds(1, W, H, &t, &fl);
	for (uint32_t frame = 0; frame < 40; frame++) {
		memset(a.mem + BACKING_AT, (int)frame, (size_t)W * H * 4);
		submit_nowait(&a, 0, &t, sizeof(t));
		submit_nowait(&a, 0, &fl, sizeof(fl));
		pump(both, 2);
	}
	/* ... and floods requests without reading their replies. */
	unsigned sent = 0;
	while (sent < 100000 && fe_send(&a, VGB_VHOST_USER_GET_FEATURES, 0, NULL, 0, NULL, 0) == 0)
		sent++;
	pump(both, 2);
	tap_diag("%s: A sent %u GET_FEATURES it never reads", what, sent);

	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	struct virtio_gpu_resp_display_info di = { 0 };
	tap_is_uint(submit(&b, 0, &gdi, sizeof(gdi), &di, sizeof(di)), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "%s: VM B's GET_DISPLAY_INFO is answered while A reads nothing", what);
	uint64_t bf = fe_get_u64(&b, VGB_VHOST_USER_GET_FEATURES);
	tap_ok(bf != ~0ull && (bf & (1ull << VIRTIO_F_VERSION_1)), "%s: and B's GET_FEATURES", what);
	alarm(0);

	struct vgb_vhost_stats st = { 0 };
	if (a.dev)
		vgb_vhost_dev_get_stats(a.dev, &st);
	tap_diag("A: %llu display messages written, %llu update bytes queued",
		 (unsigned long long)st.gpu_msgs_sent, (unsigned long long)st.update_bytes);
	/* Latest frame wins: what A's display finally reads is the last frame. */
	uint8_t last = 0xaa;
	bool got_update = false;
	size_t total = 0;
	for (int i = 0; i < 100000; i++) {
		uint32_t req;
		uint8_t *pl;
		int n = gpu_msg(&a, &req, &pl);
		if (n < 0)
			break;
		total += (size_t)n;
		if (req == VGB_VHOST_GPU_UPDATE && n > 20) {
			last = pl[20];
			got_update = true;
		}
		free(pl);
	}
	tap_ok(got_update && last == 39, "A's display gets the latest frame at last (byte %u)", last);
	tap_ok(total < ((size_t)W * H * 4 + 4096) * 8,
	       "A's display queue stayed bounded (%zu bytes for 40 full frames)", total);
	fe_stop(&a);
	fe_stop(&b);
}

/* ---- kick fd hang-up, broken rings ---- */

static uint64_t read_eventfd(int fd)
{
	uint64_t v = 0;
	return read(fd, &v, 8) == 8 ? v : 0;
}

static void test_kick_hangup(void)
{
	struct fe f;

	fe_start(&f, "vm-hup", &(struct fe_opts){ .kick_pipe = true });
	close(f.kick[0]); /* the only writer */
	f.kick[0] = -1;
	pump1(&f);
	tap_ok(read_eventfd(f.err[0]) > 0, "kick pipe hung up: the ring's error fd is signalled");
	struct pollfd p = { .fd = vgb_vhost_dev_get_fd(f.dev), .events = POLLIN };
	tap_is_int(poll(&p, 1, 0), 0, "kick pipe hung up: no longer polled (no busy loop)");
	tap_ok(fe_get_u64(&f, VGB_VHOST_USER_GET_FEATURES) != ~0ull,
	       "kick pipe hung up: the connection still answers");
	fe_stop(&f);
}

static void test_broken_ring(bool err_fd)
{
	struct fe f;
	const char *what = err_fd ? "with an error fd" : "without an error fd";

	fe_start(&f, "vm-broken", &(struct fe_opts){ .no_err_fd = !err_fd });
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	tap_is_uint(submit(&f, 0, &gdi, sizeof(gdi), NULL, 0), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "%s: a command before", what);
	/* The driver publishes an avail index more than a ring ahead. */
	struct vring_avail *av = (struct vring_avail *)(f.mem + AVAIL(0));
	__atomic_store_n(&av->idx, (uint16_t)(f.avail_idx[0] + QSZ + 5), __ATOMIC_RELEASE);
	kick(&f, 0);
	pump1(&f);
	if (err_fd) {
		tap_ok(read_eventfd(f.err[0]) > 0, "%s: the error fd is signalled", what);
	} else {
		char c;
		struct pollfd p = { .fd = f.sock, .events = POLLIN };
		tap_ok(poll(&p, 1, 2000) == 1 && recv(f.sock, &c, 1, MSG_DONTWAIT) == 0,
		       "%s: the connection is closed", what);
	}
	fe_stop(&f);
}

/* ---- formats through QEMU's display ---- */

static void test_formats(void)
{
	/* virtio-gpu 2D formats name their bytes in memory order. */
	static const struct {
		uint32_t format;
		const char *name;
		char order[5]; /* what each byte in memory is: R, G, B, A or X */
	} fmts[] = {
		{ VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, "B8G8R8A8", "BGRA" },
		{ VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, "B8G8R8X8", "BGRX" },
		{ VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, "A8R8G8B8", "ARGB" },
		{ VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM, "X8R8G8B8", "XRGB" },
		{ VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM, "R8G8B8A8", "RGBA" },
		{ VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM, "X8B8G8R8", "XBGR" },
		{ VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM, "A8B8G8R8", "ABGR" },
		{ VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM, "R8G8B8X8", "RGBX" },
	};
	struct fe f;

	fe_start(&f, "vm-formats", &(struct fe_opts){ .qemu_display = true });
	for (unsigned i = 0; i < VGB_ARRAY_SIZE(fmts); i++) {
		const uint8_t r = 0x11, g = 0x77, bl = 0xcc;
		uint8_t px[4];
		for (unsigned k = 0; k < 4; k++)
			px[k] = fmts[i].order[k] == 'R' ? r : fmts[i].order[k] == 'G' ? g
				: fmts[i].order[k] == 'B' ? bl : 0x80;
		for (unsigned k = 0; k < 16 * 16; k++)
			memcpy(f.mem + BACKING_AT + k * 4, px, 4);
		show_resource(&f, 10 + i, fmts[i].format, 16, 16);
		struct virtio_gpu_transfer_to_host_2d t;
		struct virtio_gpu_resource_flush fl;
		transfer_flush_cmds(10 + i, 16, 16, &t, &fl);
		uint32_t rt = submit(&f, 0, &t, sizeof(t), NULL, 0);
		uint32_t rf = submit(&f, 0, &fl, sizeof(fl), NULL, 0);
		uint8_t buf[20 + 16 * 16 * 4];
		int n = gpu_expect(&f, VGB_VHOST_GPU_UPDATE, buf, sizeof(buf));
		/* PIXMAN_x8r8g8b8: a native (little-endian) word 0xXXRRGGBB, bytes B, G, R, X. */
		tap_ok(rt == VIRTIO_GPU_RESP_OK_NODATA && rf == VIRTIO_GPU_RESP_OK_NODATA &&
			       n == (int)sizeof(buf) && buf[20] == bl && buf[21] == g && buf[22] == r,
		       "%s reaches QEMU's display as x8r8g8b8 (%02x %02x %02x)", fmts[i].name,
		       n > 22 ? buf[20] : 0, n > 22 ? buf[21] : 0, n > 22 ? buf[22] : 0);
	}
	fe_stop(&f);
}

/* ---- requests that always have a reply ---- */

static void expect_answer(const char *what, uint32_t req, const void *p, uint32_t size,
			  const int *fds, unsigned n_fds)
{
	struct fe f;
	uint8_t buf[512];

	fe_start(&f, "vm-reply", &(struct fe_opts){ 0 });
	fe_send(&f, req, 0, p, size, fds, n_fds);
	int r = fe_recv(&f, NULL, buf, sizeof(buf));
	tap_ok(r >= 0 || r == -ECONNRESET, "%s: answered or closed, never silence (%s)", what,
	       r >= 0 ? "answered" : strerror(-r));
	fe_stop(&f);
}

static void test_reply_required(void)
{
	int efd = eventfd(0, EFD_CLOEXEC);
	struct vgb_vhost_user_vring_state bad = { 7, 0 };
	uint32_t shorty = 0;
	struct fe f;
	uint8_t buf[512];

	expect_answer("GET_VRING_BASE with a short payload", VGB_VHOST_USER_GET_VRING_BASE, &shorty,
		      4, NULL, 0);
	expect_answer("GET_VRING_BASE of queue 7", VGB_VHOST_USER_GET_VRING_BASE, &bad, 8, NULL, 0);
	expect_answer("GET_VRING_BASE with a stray fd", VGB_VHOST_USER_GET_VRING_BASE,
		      &(struct vgb_vhost_user_vring_state){ 0, 0 }, 8, &efd, 1);
	expect_answer("GET_FEATURES with a stray fd", VGB_VHOST_USER_GET_FEATURES, NULL, 0, &efd,
		      1);
	expect_answer("GET_PROTOCOL_FEATURES with a stray fd",
		      VGB_VHOST_USER_GET_PROTOCOL_FEATURES, NULL, 0, &efd, 1);
	expect_answer("GET_QUEUE_NUM with a stray fd", VGB_VHOST_USER_GET_QUEUE_NUM, NULL, 0, &efd,
		      1);

	fe_start(&f, "vm-config", &(struct fe_opts){ 0 });
	fe_send(&f, VGB_VHOST_USER_GET_CONFIG, 0, &shorty, 4, NULL, 0);
	tap_is_int(fe_recv(&f, NULL, buf, sizeof(buf)), 0,
		   "GET_CONFIG with a short payload: a zero-length reply (the spec's error)");
	struct vgb_vhost_user_config c = { .offset = 0, .size = 200 };
	fe_send(&f, VGB_VHOST_USER_GET_CONFIG, 0, &c, 12 + 200, NULL, 0);
	tap_is_int(fe_recv(&f, NULL, buf, sizeof(buf)), 0,
		   "GET_CONFIG past the config space: a zero-length reply");
	c = (struct vgb_vhost_user_config){ .offset = 8, .size = 4 };
	fe_send(&f, VGB_VHOST_USER_GET_CONFIG, 0, &c, 12 + 4, NULL, 0);
	tap_is_int(fe_recv(&f, NULL, buf, sizeof(buf)), 12 + 4,
		   "GET_CONFIG of num_scanouts: the reply has the request's size");
	fe_stop(&f);
	close(efd);
}

/* ---- REPLY_ACK honesty ---- */

static void test_acks(void)
{
	struct fe f;

	fe_start(&f, "vm-ack", &(struct fe_opts){ 0 });
	struct vgb_vhost_user_vring_state num = { 0, QSZ };
	tap_is_int(fe_ack(&f, VGB_VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0), 0,
		   "a valid SET_VRING_NUM: ack 0");
	struct vgb_vhost_user_vring_addr a = { .index = 1, .desc_user_addr = 0x1000,
					       .avail_user_addr = 0x2000, .used_user_addr = 0x3000 };
	tap_ok(fe_ack(&f, VGB_VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0) > 0,
	       "ring addresses outside every region: ack non-zero");
	uint64_t nofd = 1 | VGB_VHOST_USER_VRING_NOFD;
	tap_ok(fe_ack(&f, VGB_VHOST_USER_SET_VRING_KICK, &nofd, 8, NULL, 0) > 0,
	       "a kick without fd (polling, which we do not do): ack non-zero");
	struct vgb_vhost_user_config c = { .offset = 8, .size = 4 };
	uint32_t scanouts = 4;
	memcpy(c.region, &scanouts, 4);
	tap_ok(fe_ack(&f, VGB_VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL, 0) > 0,
	       "SET_CONFIG of the read-only num_scanouts: ack non-zero");
	c = (struct vgb_vhost_user_config){ .offset = 4, .size = 4 };
	tap_is_int(fe_ack(&f, VGB_VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL, 0), 0,
		   "SET_CONFIG of events_clear: ack 0");
	uint64_t pf = (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) | (1ull << 20);
	tap_ok(fe_ack(&f, VGB_VHOST_USER_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0) > 0,
	       "SET_PROTOCOL_FEATURES with a bit never offered: ack non-zero");
	pf = (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) |
	     (1ull << VGB_VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS);
	tap_is_int(fe_ack(&f, VGB_VHOST_USER_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0), -ECONNRESET,
		   "in-band notifications without the back-end channel: connection closed");
	fe_stop(&f);
}

/* ---- memory table order, cursor, features ---- */

static void test_unsorted_mem_table(void)
{
	struct fe f;

	fe_start(&f, "vm-mem", &(struct fe_opts){ 0 });
	/* The same memfd as two regions, the higher guest address first. */
	struct vgb_vhost_user_memory m = { .nregions = 2 };
	m.regions[0] = (struct vgb_vhost_user_region){ 0x100000000ull, MEM_SIZE / 2,
						       QVA_BASE + MEM_SIZE / 2, MEM_SIZE / 2 };
	m.regions[1] = (struct vgb_vhost_user_region){ 0, MEM_SIZE / 2, QVA_BASE, 0 };
	int fds[2] = { f.memfd, f.memfd };
	tap_is_int(fe_ack(&f, VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 2 * 32, fds, 2), 0,
		   "a memory table out of guest-address order: ack 0");
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	tap_is_uint(submit(&f, 0, &gdi, sizeof(gdi), NULL, 0), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "and the rings keep working on it");
	fe_stop(&f);
}

static void test_cursor_position(void)
{
	struct fe f;
	struct vgb_vhost_gpu_cursor_update cu;

	fe_start(&f, "vm-cursor", &(struct fe_opts){ .qemu_display = true });
	show_resource(&f, 5, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64);
	struct virtio_gpu_transfer_to_host_2d t;
	struct virtio_gpu_resource_flush fl;
	transfer_flush_cmds(5, 64, 64, &t, &fl);
	submit(&f, 0, &t, sizeof(t), NULL, 0);
	struct virtio_gpu_update_cursor uc = {
		.hdr.type = VIRTIO_GPU_CMD_UPDATE_CURSOR,
		.pos = { .scanout_id = 0, .x = 123, .y = 45 },
		.resource_id = 5, .hot_x = 1, .hot_y = 2,
	};
	submit(&f, 1, &uc, sizeof(uc), NULL, 0);
	/* The first cursor message must be the shape, already at (123, 45). */
	int n = -1;
	for (int i = 0; i < 16; i++) {
		uint32_t req;
		uint8_t *pl;
		int sz = gpu_msg(&f, &req, &pl);
		if (sz < 0)
			break;
		bool cursor = req == VGB_VHOST_GPU_CURSOR_POS || req == VGB_VHOST_GPU_CURSOR_UPDATE;
		if (cursor) {
			n = req == VGB_VHOST_GPU_CURSOR_UPDATE ? sz : 0;
			if (n == (int)sizeof(cu))
				memcpy(&cu, pl, sizeof(cu));
		}
		free(pl);
		if (cursor)
			break;
	}
	tap_ok(n == (int)sizeof(cu) && cu.pos.x == 123 && cu.pos.y == 45 && cu.hot_x == 1,
	       "CURSOR_UPDATE comes first and carries the new position (%u, %u)",
	       n == (int)sizeof(cu) ? cu.pos.x : 0, n == (int)sizeof(cu) ? cu.pos.y : 0);
	fe_stop(&f);
}

static void test_blob_not_negotiated(void)
{
	struct fe f;
	struct {
		struct virtio_gpu_resource_create_blob b;
		struct virtio_gpu_mem_entry e;
	} cb = {
		.b = { .hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, .resource_id = 9,
		       .blob_mem = VIRTIO_GPU_BLOB_MEM_GUEST,
		       .blob_flags = VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, .nr_entries = 1,
		       .size = 4096 },
		.e = { .addr = BACKING_AT, .length = 4096 },
	};

	fe_start(&f, "vm-blob", &(struct fe_opts){ 0 });
	tap_is_uint(submit(&f, 0, &cb, sizeof(cb), NULL, 0), VIRTIO_GPU_RESP_ERR_UNSPEC,
		    "RESOURCE_CREATE_BLOB without RESOURCE_BLOB negotiated: an error");
	fe_stop(&f);
}

/* The response type of the last used element of queue @q. */
static uint32_t last_resp_type(struct fe *f, unsigned q)
{
	const struct vring_used *u = (const void *)(f->mem + USED(q));
	uint16_t i = (uint16_t)(used_idx(f, q) - 1);
	uint32_t head = u->ring[i % QSZ].id;
	const struct vring_desc *d = (const void *)(f->mem + DESC(q));

	return ((const struct virtio_gpu_ctrl_hdr *)(f->mem + d[head + 1].addr))->type;
}

/* A QEMU that never answers GET_DISPLAY_INFO holds the guest's control queue only until a deadline. */
static void test_query_timeout(void)
{
	struct fe f;
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };

	fe_start(&f, "vm-query", &(struct fe_opts){ .qemu_display = true });
	uint16_t before = used_idx(&f, 0);
	submit_nowait(&f, 0, &gdi, sizeof(gdi));
	pump1(&f);
	tap_is_uint(used_idx(&f, 0), before, "qemu-display GET_DISPLAY_INFO waits for QEMU");
	int t = vgb_vhost_dev_next_timeout_ms(f.dev);
	tap_ok(t > 0, "with a deadline (%d ms)", t);
	poll(NULL, 0, t > 0 ? t + 20 : 0); /* until the deadline the backend itself reports */
	vgb_vhost_dev_dispatch_timeouts(f.dev);
	tap_ok(used_idx(&f, 0) == (uint16_t)(before + 1) &&
		       last_resp_type(&f, 0) == VIRTIO_GPU_RESP_ERR_UNSPEC,
	       "QEMU never answers: the command gets an error at the deadline");
	struct virtio_gpu_resource_create_2d c = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, .resource_id = 1,
		.format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, .width = 8, .height = 8,
	};
	tap_is_uint(submit(&f, 0, &c, sizeof(c), NULL, 0), VIRTIO_GPU_RESP_OK_NODATA,
		    "and the control queue runs again");
	fe_stop(&f);
}

int main(void)
{
	int fds_before, maps_before;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	tap_plan_lazy();
	/* File mappings only (the guest RAM memfds we and the backend map): the allocator's own
	 * anonymous mappings of large frames are not ours to count (ASan keeps freed ones). */
	fds_before = leak_count_fds();
	maps_before = leak_count_file_maps();

	test_blocked_writer(CALL_PIPE);
	test_blocked_writer(CALL_EVENTFD);
	test_kick_hangup();
	test_broken_ring(true);
	test_broken_ring(false);
	test_formats();
	test_reply_required();
	test_acks();
	test_unsorted_mem_table();
	test_cursor_position();
	test_blob_not_negotiated();
	test_query_timeout();

	int fds_after = leak_count_fds(), maps_after = leak_count_file_maps();
	tap_ok(fds_after == fds_before && maps_after == maps_before,
	       "the whole run leaks nothing: fds %d -> %d, file mappings %d -> %d", fds_before,
	       fds_after, maps_before, maps_after);
	return tap_done();
}
