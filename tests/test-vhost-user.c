/* SPDX-License-Identifier: MIT */
/*
 * The vhost-user-gpu backend driven by a front end written here, over a socketpair, the way
 * QEMU's vhost-user-gpu-pci drives it: feature negotiation, the memory table (real memfds, two
 * regions, one above 4 GiB), vring setup with kick/call eventfds, virtio-gpu commands through
 * the control and cursor rings (display info, a 2D resource shown and flushed with a fence that
 * completes only when the sink takes the frame), QEMU's display socket (protocol handshake,
 * EDID forwarded, and in qemu_display mode SCANOUT + UPDATE carrying only the damage), stop
 * with GET_VRING_BASE, and malformed messages. Open fds and mappings are compared at the end.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "gpu.h"
#include "vhost-user.h"

#define MEM_SIZE (4u << 20)
#define QVA_BASE 0x7f0000000000ull
/* Region 0: gpa 0, the first 2 MiB of the memfd. Region 1: gpa 4 GiB, the second 2 MiB. */
#define R1_GPA 0x100000000ull
#define QSZ 64u

/* Guest layout inside region 0 (gpa == memfd offset). */
#define DESC(q) (0x1000u + (q) * 0x4000u)
#define AVAIL(q) (DESC(q) + QSZ * 16)
#define USED(q) (DESC(q) + 0x2000u)
#define CMD_AT 0x10000u
#define RESP_AT 0x18000u
#define RESP_SIZE 0x800u /* fits the largest response, OK_EDID (1056 bytes) */

static int sock = -1;
static uint8_t *mem;
static int memfd = -1;
static struct vgb_vhost_dev *dev;
static int kick[2] = { -1, -1 }, call[2] = { -1, -1 };
static uint16_t avail_idx[2];

/* ---- a display sink that holds frames until the test lets them go ---- */

struct test_sink {
	struct vgb_display base;
	unsigned presented;
	struct vgb_rect last_damage;
	uint32_t last_w, last_h;
	uint32_t pixel_0_0, pixel_5_7;
	bool hold;
	vgb_frame_done_fn held_done;
	void *held_data;
};

static int sink_present(struct vgb_display *d, const struct vgb_frame *f)
{
	struct test_sink *s = (struct test_sink *)d;
	s->presented++;
	s->last_damage = f->damage;
	s->last_w = f->width;
	s->last_h = f->height;
	if (f->cpu && f->cpu->data) {
		memcpy(&s->pixel_0_0, f->cpu->data, 4);
		memcpy(&s->pixel_5_7, (const uint8_t *)f->cpu->data + 7 * f->cpu->stride + 5 * 4, 4);
	}
	if (s->hold) {
		s->held_done = f->done;
		s->held_data = f->done_data;
	} else if (f->done) {
		f->done(f->done_data, 0);
	}
	return 0;
}

static const struct vgb_display_ops sink_ops = { .name = "test", .present = sink_present };
static struct test_sink sink = { .base = { .ops = &sink_ops } };

/* ---- front end side ---- */

static int send_msg(uint32_t req, uint32_t flags, const void *p, uint32_t size, const int *fds,
		    unsigned n_fds)
{
	struct vgb_vhost_user_header h = { req, flags | VGB_VHOST_USER_VERSION, size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, size } };
	union {
		struct cmsghdr a;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} ctl;
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	if (n_fds) {
		m.msg_control = ctl.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)(sizeof(h) + size) ? 0 : -errno;
}

/* Reads one reply (blocking, bounded by the alarm). Returns the payload size or -errno. */
static int recv_reply(int fd, uint32_t *ret_req, void *payload, size_t cap)
{
	struct vgb_vhost_user_header h;
	if (recv(fd, &h, sizeof(h), MSG_WAITALL) != sizeof(h))
		return -EIO;
	if (h.size > cap)
		return -E2BIG;
	if (h.size && recv(fd, payload, h.size, MSG_WAITALL) != (ssize_t)h.size)
		return -EIO;
	if (ret_req)
		*ret_req = h.request;
	return (int)h.size;
}

static bool reply_pending(int fd)
{
	char c;
	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static int dispatch(void)
{
	return vgb_vhost_dev_dispatch(dev);
}

/* Sends, dispatches, reads the REPLY_ACK; returns the ack value (0 ok) or -errno. */
static long long call_ack(uint32_t req, const void *p, uint32_t size, const int *fds,
			  unsigned n_fds)
{
	if (send_msg(req, VGB_VHOST_USER_FLAG_NEED_REPLY, p, size, fds, n_fds) < 0)
		return -EIO;
	int r = dispatch();
	if (r < 0)
		return r;
	uint64_t v;
	uint32_t rq;
	if (recv_reply(sock, &rq, &v, sizeof(v)) != sizeof(v) || rq != req)
		return -EPROTO;
	return (long long)v;
}

static uint64_t get_u64(uint32_t req)
{
	uint64_t v = 0;
	send_msg(req, 0, NULL, 0, NULL, 0);
	dispatch();
	if (recv_reply(sock, NULL, &v, sizeof(v)) != sizeof(v))
		return ~0ull;
	return v;
}

/* ---- the guest side of the rings ---- */

static void put_desc(unsigned q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vring_desc *d = (struct vring_desc *)(mem + DESC(q)) + i;
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

static uint16_t used_idx(unsigned q)
{
	return __atomic_load_n(&((struct vring_used *)(mem + USED(q)))->idx, __ATOMIC_ACQUIRE);
}

static struct vring_used_elem used_elem(unsigned q, uint16_t i)
{
	return ((struct vring_used *)(mem + USED(q)))->ring[i % QSZ];
}

static void kick_queue(unsigned q, uint16_t head)
{
	struct vring_avail *a = (struct vring_avail *)(mem + AVAIL(q));
	a->ring[avail_idx[q] % QSZ] = head;
	avail_idx[q]++;
	__atomic_store_n(&a->idx, avail_idx[q], __ATOMIC_RELEASE);
	uint64_t one = 1;
	if (write(kick[q], &one, sizeof(one)) != sizeof(one))
		tap_bail("kick");
	dispatch();
}

static uint64_t read_call(unsigned q)
{
	uint64_t v = 0;
	if (read(call[q], &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

/*
 * Puts @cmd (@len bytes) at CMD_AT and a response buffer at RESP_AT, submits it on the control
 * queue and returns the response type written (0 when nothing was written yet).
 */
static uint32_t submit(const void *cmd, size_t len, uint32_t *ret_used_len)
{
	static uint16_t slot;
	uint16_t head = (uint16_t)((slot++ * 2) % QSZ);
	memcpy(mem + CMD_AT, cmd, len);
	memset(mem + RESP_AT, 0, RESP_SIZE);
	put_desc(0, head, CMD_AT, (uint32_t)len, VRING_DESC_F_NEXT, (uint16_t)(head + 1));
	put_desc(0, head + 1u, RESP_AT, RESP_SIZE, VRING_DESC_F_WRITE, 0);
	uint16_t before = used_idx(0);
	kick_queue(0, head);
	if (used_idx(0) == before)
		return 0;
	if (ret_used_len)
		*ret_used_len = used_elem(0, before).len;
	return ((struct virtio_gpu_ctrl_hdr *)(mem + RESP_AT))->type;
}

static void setup_ring(unsigned q)
{
	struct vgb_vhost_user_vring_state num = { q, QSZ }, base = { q, 0 }, en = { q, 1 };
	struct vgb_vhost_user_vring_addr a = {
		.index = q,
		.desc_user_addr = QVA_BASE + DESC(q),
		.avail_user_addr = QVA_BASE + AVAIL(q),
		.used_user_addr = QVA_BASE + USED(q),
	};
	uint64_t fdidx = q;

	kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0), 0,
		   "q%u: SET_VRING_NUM", q);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_BASE, &base, sizeof(base), NULL, 0), 0,
		   "q%u: SET_VRING_BASE", q);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), 0,
		   "q%u: SET_VRING_ADDR", q);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_KICK, &fdidx, 8, &kick[q], 1), 0,
		   "q%u: SET_VRING_KICK", q);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_CALL, &fdidx, 8, &call[q], 1), 0,
		   "q%u: SET_VRING_CALL", q);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_VRING_ENABLE, &en, sizeof(en), NULL, 0), 0,
		   "q%u: SET_VRING_ENABLE", q);
}

static void test_negotiation(void)
{
	uint64_t f = get_u64(VGB_VHOST_USER_GET_FEATURES);
	tap_ok(f & (1ull << VIRTIO_F_VERSION_1), "features: VERSION_1");
	tap_ok(f & (1ull << VGB_VHOST_F_PROTOCOL_FEATURES), "features: PROTOCOL_FEATURES");
	tap_ok(f & (1ull << VIRTIO_GPU_F_EDID), "features: EDID");
	tap_ok(!(f & (1ull << VIRTIO_GPU_F_VIRGL)), "features: no VIRGL");

	uint64_t pf = get_u64(VGB_VHOST_USER_GET_PROTOCOL_FEATURES);
	uint64_t want = (1ull << VGB_VHOST_USER_PROTOCOL_F_CONFIG) |
			(1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) |
			(1ull << VGB_VHOST_USER_PROTOCOL_F_MQ);
	tap_is_uint(pf & want, want, "protocol features: CONFIG, REPLY_ACK, MQ");
	send_msg(VGB_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0);
	dispatch();
	tap_ok(!reply_pending(sock), "SET_PROTOCOL_FEATURES: no reply without NEED_REPLY");
	tap_is_uint(get_u64(VGB_VHOST_USER_GET_QUEUE_NUM), 2, "GET_QUEUE_NUM: 2");
	tap_is_int(call_ack(VGB_VHOST_USER_SET_OWNER, NULL, 0, NULL, 0), 0, "SET_OWNER acked");

	/* QEMU passes the guest's acks through, with transport bits we never offered. */
	uint64_t acked = (1ull << VIRTIO_F_VERSION_1) | (1ull << VGB_VHOST_F_PROTOCOL_FEATURES) |
			 (1ull << VIRTIO_RING_F_INDIRECT_DESC) | (1ull << VIRTIO_F_RING_RESET) |
			 (1ull << VIRTIO_GPU_F_EDID);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_FEATURES, &acked, 8, NULL, 0), 0,
		   "SET_FEATURES acked");

	struct vgb_vhost_user_config c = { .offset = 0, .size = 16 };
	send_msg(VGB_VHOST_USER_GET_CONFIG, 0, &c, 12 + 16, NULL, 0);
	dispatch();
	struct vgb_vhost_user_config got = { 0 };
	tap_is_int(recv_reply(sock, NULL, &got, sizeof(got)), 12 + 16, "GET_CONFIG: 16 bytes");
	struct virtio_gpu_config *cfg = (struct virtio_gpu_config *)got.region;
	tap_is_uint(cfg->num_scanouts, 1, "config: one scanout");
	tap_is_uint(cfg->num_capsets, 0, "config: no capsets");

	c = (struct vgb_vhost_user_config){ .offset = 8, .size = 300 };
	send_msg(VGB_VHOST_USER_GET_CONFIG, 0, &c, 12, NULL, 0);
	dispatch();
	tap_is_int(recv_reply(sock, NULL, &got, sizeof(got)), 0,
		   "GET_CONFIG past the config: zero-length reply (vhost-user.rst's error)");
	c = (struct vgb_vhost_user_config){ .offset = 4, .size = 4 };
	uint32_t clear = 1;
	memcpy(c.region, &clear, 4);
	tap_is_int(call_ack(VGB_VHOST_USER_SET_CONFIG, &c, 12 + 4, NULL, 0), 0,
		   "SET_CONFIG events_clear acked");
}

static void test_mem_table(void)
{
	struct vgb_vhost_user_memory m = { .nregions = 2 };
	m.regions[0] = (struct vgb_vhost_user_region){ 0, MEM_SIZE / 2, QVA_BASE, 0 };
	m.regions[1] = (struct vgb_vhost_user_region){ R1_GPA, MEM_SIZE / 2, QVA_BASE + MEM_SIZE / 2,
						       MEM_SIZE / 2 };
	int fds[2] = { memfd, memfd };
	tap_is_int(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 2 * 32, fds, 2), 0,
		   "SET_MEM_TABLE with two regions");
	struct vgb_vhost_stats st;
	vgb_vhost_dev_get_stats(dev, &st);
	tap_is_uint(st.regions, 2, "two regions mapped");
}

static void test_commands(void)
{
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	uint32_t ulen = 0;

	read_call(0);
	tap_is_uint(submit(&gdi, sizeof(gdi), &ulen), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "GET_DISPLAY_INFO through the ring");
	tap_is_uint(ulen, sizeof(struct virtio_gpu_resp_display_info), "used length");
	struct virtio_gpu_resp_display_info *di = (void *)(mem + RESP_AT);
	tap_ok(di->pmodes[0].enabled && di->pmodes[0].r.width == 1280 &&
		       di->pmodes[0].r.height == 800,
	       "display 0: 1280x800 enabled (%ux%u)", di->pmodes[0].r.width,
	       di->pmodes[0].r.height);
	tap_ok(read_call(0) >= 1, "call eventfd signalled");

	/* F_EDID is offered: without QEMU's display socket the backend answers GET_EDID itself. */
	struct virtio_gpu_cmd_get_edid ge = { .hdr.type = VIRTIO_GPU_CMD_GET_EDID, .scanout = 0 };
	tap_is_uint(submit(&ge, sizeof(ge), &ulen), VIRTIO_GPU_RESP_OK_EDID,
		    "GET_EDID without QEMU's display socket: OK_EDID");
	tap_is_uint(ulen, sizeof(struct virtio_gpu_resp_edid), "  used length");
	{
		struct virtio_gpu_resp_edid *ed = (void *)(mem + RESP_AT);
		uint8_t sum = 0;
		for (unsigned i = 0; i < 128; i++)
			sum = (uint8_t)(sum + ed->edid[i]);
		unsigned w = ed->edid[56] | (ed->edid[58] >> 4) << 8;
		unsigned h = ed->edid[59] | (ed->edid[61] >> 4) << 8;
		tap_ok(ed->size == 128 && sum == 0 && ed->edid[1] == 0xff && w == 1280 && h == 800,
		       "  a valid 128-byte block, preferred mode 1280x800 (%ux%u)", w, h);
	}
	ge.scanout = 5;
	tap_is_uint(submit(&ge, sizeof(ge), &ulen), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
		    "GET_EDID of scanout 5: ERR_INVALID_SCANOUT_ID");
	read_call(0);

	/* A 2D resource whose backing lies in region 1, above 4 GiB. */
	struct virtio_gpu_resource_create_2d c2d = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, .resource_id = 7,
		.format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, .width = 64, .height = 64,
	};
	tap_is_uint(submit(&c2d, sizeof(c2d), NULL), VIRTIO_GPU_RESP_OK_NODATA, "CREATE_2D");

	uint32_t *px = (uint32_t *)(mem + MEM_SIZE / 2 + 0x10000);
	for (unsigned i = 0; i < 64 * 64; i++)
		px[i] = 0x00010203u * (i % 64) + (i / 64);
	struct {
		struct virtio_gpu_resource_attach_backing ab;
		struct virtio_gpu_mem_entry e;
	} ab = {
		.ab = { .hdr.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, .resource_id = 7,
			.nr_entries = 1 },
		.e = { .addr = R1_GPA + 0x10000, .length = 64 * 64 * 4 },
	};
	tap_is_uint(submit(&ab, sizeof(ab), NULL), VIRTIO_GPU_RESP_OK_NODATA,
		    "ATTACH_BACKING in guest RAM above 4 GiB");

	struct virtio_gpu_transfer_to_host_2d t2d = {
		.hdr.type = VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, .resource_id = 7,
		.r = { 0, 0, 64, 64 },
	};
	tap_is_uint(submit(&t2d, sizeof(t2d), NULL), VIRTIO_GPU_RESP_OK_NODATA, "TRANSFER_TO_HOST_2D");
	struct virtio_gpu_set_scanout ss = {
		.hdr.type = VIRTIO_GPU_CMD_SET_SCANOUT, .scanout_id = 0, .resource_id = 7,
		.r = { 0, 0, 64, 64 },
	};
	tap_is_uint(submit(&ss, sizeof(ss), NULL), VIRTIO_GPU_RESP_OK_NODATA, "SET_SCANOUT");

	/* A fenced flush: the answer waits until the sink has taken the frame. */
	sink.hold = true;
	struct virtio_gpu_resource_flush fl = {
		.hdr = { .type = VIRTIO_GPU_CMD_RESOURCE_FLUSH, .flags = VIRTIO_GPU_FLAG_FENCE,
			 .fence_id = 42 },
		.resource_id = 7, .r = { 4, 6, 10, 3 },
	};
	uint16_t before = used_idx(0);
	tap_is_uint(submit(&fl, sizeof(fl), NULL), 0, "fenced flush: no answer while the sink holds the frame");
	tap_is_uint(sink.presented, 1, "one frame presented");
	tap_ok(sink.last_damage.x == 4 && sink.last_damage.y == 6 && sink.last_damage.width == 10 &&
		       sink.last_damage.height == 3,
	       "damage is the flushed rectangle");
	tap_is_uint(sink.pixel_5_7, px[7 * 64 + 5], "frame pixel (5,7) is the guest's");
	struct vgb_vhost_stats st;
	vgb_vhost_dev_get_stats(dev, &st);
	tap_is_uint(st.pending, 1, "one deferred command");
	tap_ok(sink.held_done != NULL, "the sink holds a completion");
	if (sink.held_done)
		sink.held_done(sink.held_data, 0);
	sink.hold = false;
	sink.held_done = NULL;
	tap_is_uint(used_idx(0), (uint16_t)(before + 1), "fence completed once the frame was taken");
	struct virtio_gpu_ctrl_hdr *h = (void *)(mem + RESP_AT);
	tap_ok(h->type == VIRTIO_GPU_RESP_OK_NODATA && (h->flags & VIRTIO_GPU_FLAG_FENCE) &&
		       h->fence_id == 42,
	       "fence response: OK_NODATA, fence 42 (type 0x%x flags %u id %llu)", h->type,
	       h->flags, (unsigned long long)h->fence_id);
	tap_ok(read_call(0) >= 1, "call eventfd signalled for the fence");

	/* An indirect chain. */
	struct vring_desc *ind = (struct vring_desc *)(mem + 0x20000);
	memcpy(mem + CMD_AT, &gdi, sizeof(gdi));
	ind[0] = (struct vring_desc){ CMD_AT, sizeof(gdi), VRING_DESC_F_NEXT, 1 };
	ind[1] = (struct vring_desc){ RESP_AT, 512, VRING_DESC_F_WRITE, 0 };
	put_desc(0, 60, 0x20000, 32, VRING_DESC_F_INDIRECT, 0);
	before = used_idx(0);
	kick_queue(0, 60);
	tap_is_uint(used_idx(0), (uint16_t)(before + 1), "indirect chain served");

	/* A malformed chain: a loop. The guest gets the head back; we keep going. */
	put_desc(0, 50, CMD_AT, 24, VRING_DESC_F_NEXT, 51);
	put_desc(0, 51, CMD_AT, 24, VRING_DESC_F_NEXT, 50);
	before = used_idx(0);
	kick_queue(0, 50);
	tap_is_uint(used_idx(0), (uint16_t)(before + 1), "looping chain returned to the guest");
	vgb_vhost_dev_get_stats(dev, &st);
	tap_is_uint(st.bad_chains, 1, "bad chain counted");
	tap_is_uint(submit(&gdi, sizeof(gdi), NULL), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "ring still works after the bad chain");

	/* A command shorter than a header. */
	tap_is_uint(submit(&gdi, 8, NULL), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		    "8-byte command: ERR_INVALID_PARAMETER");

	/* Cursor queue: MOVE_CURSOR, no response buffer. */
	struct virtio_gpu_update_cursor cur = { .hdr.type = VIRTIO_GPU_CMD_MOVE_CURSOR,
						.pos = { .scanout_id = 0, .x = 10, .y = 20 } };
	memcpy(mem + CMD_AT + 0x1000, &cur, sizeof(cur));
	put_desc(1, 0, CMD_AT + 0x1000, sizeof(cur), 0, 0);
	before = used_idx(1);
	kick_queue(1, 0);
	tap_is_uint(used_idx(1), (uint16_t)(before + 1), "cursor command served");
}

/* Back-pressure: with max_pending 1, a second fenced flush waits in the ring (not taken) until
 * the sink has taken the first frame. */
static void test_backpressure(void)
{
	struct vgb_gpu_stats gs;
	struct virtio_gpu_resource_flush fl = {
		.hdr = { .type = VIRTIO_GPU_CMD_RESOURCE_FLUSH, .flags = VIRTIO_GPU_FLAG_FENCE,
			 .fence_id = 100 },
		.resource_id = 7, .r = { 0, 0, 8, 8 },
	};
	uint16_t before = used_idx(0);
	unsigned presented = sink.presented;

	sink.hold = true;
	tap_is_uint(submit(&fl, sizeof(fl), NULL), 0, "back-pressure: first fenced flush deferred");
	vgb_gpu_get_stats(vgb_vhost_dev_get_gpu(dev), &gs);
	uint64_t flushes = gs.flushes;
	vgb_frame_done_fn done1 = sink.held_done;
	void *data1 = sink.held_data;
	fl.hdr.fence_id = 101;
	tap_is_uint(submit(&fl, sizeof(fl), NULL), 0, "back-pressure: second flush not answered");
	vgb_gpu_get_stats(vgb_vhost_dev_get_gpu(dev), &gs);
	tap_is_uint(gs.flushes, flushes, "back-pressure: second flush left in the ring");
	tap_is_uint(sink.presented, presented + 1, "back-pressure: one frame at the sink");
	tap_ok(done1 != NULL, "the sink holds the first frame");
	if (!done1)
		return;
	done1(data1, 0);
	tap_is_uint(used_idx(0), (uint16_t)(before + 1), "first fence answered when its frame was taken");
	tap_is_uint(sink.presented, presented + 2, "then the waiting flush was taken from the ring");
	sink.hold = false;
	if (sink.held_done)
		sink.held_done(sink.held_data, 0);
	sink.held_done = NULL;
	tap_is_uint(used_idx(0), (uint16_t)(before + 2), "second fence answered");
	struct virtio_gpu_ctrl_hdr *h = (void *)(mem + RESP_AT);
	tap_is_uint(h->fence_id, 101, "last answer carries fence 101");
}

static void test_gpu_socket(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair");
	send_msg(VGB_VHOST_USER_GPU_SET_SOCKET, 0, NULL, 0, &sv[1], 1);
	close(sv[1]);
	dispatch();
	uint32_t req = 0;
	tap_is_int(recv_reply(sv[0], &req, NULL, 0), 0, "display socket: a request arrives");
	tap_is_uint(req, VGB_VHOST_GPU_GET_PROTOCOL_FEATURES, "it is GET_PROTOCOL_FEATURES");

	/* Commands wait while the handshake is open. */
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	tap_is_uint(submit(&gdi, sizeof(gdi), NULL), 0, "command waits for the handshake");

	uint64_t pf = 1ull << VGB_VHOST_GPU_PROTOCOL_F_EDID;
	struct vgb_vhost_user_header h = { VGB_VHOST_GPU_GET_PROTOCOL_FEATURES,
					   VGB_VHOST_GPU_FLAG_REPLY, 8 };
	if (send(sv[0], &h, sizeof(h), 0) != sizeof(h) || send(sv[0], &pf, 8, 0) != 8)
		tap_bail("send");
	dispatch();
	uint64_t set = 0;
	tap_is_int(recv_reply(sv[0], &req, &set, 8), 8, "SET_PROTOCOL_FEATURES sent");
	tap_ok(req == VGB_VHOST_GPU_SET_PROTOCOL_FEATURES && set == pf, "with EDID only");
	tap_is_uint(((struct virtio_gpu_ctrl_hdr *)(mem + RESP_AT))->type,
		    VIRTIO_GPU_RESP_OK_DISPLAY_INFO, "waiting command answered after the handshake");

	/* GET_EDID goes to QEMU, its answer to the guest. */
	struct virtio_gpu_cmd_get_edid ge = { .hdr.type = VIRTIO_GPU_CMD_GET_EDID, .scanout = 0 };
	tap_is_uint(submit(&ge, sizeof(ge), NULL), 0, "GET_EDID waits for QEMU");
	struct vgb_vhost_gpu_edid_request er = { 99 };
	tap_is_int(recv_reply(sv[0], &req, &er, sizeof(er)), 4, "GET_EDID forwarded");
	tap_ok(req == VGB_VHOST_GPU_GET_EDID && er.scanout_id == 0, "for scanout 0");
	struct virtio_gpu_resp_edid edid = { .hdr.type = VIRTIO_GPU_RESP_OK_EDID, .size = 128 };
	edid.edid[0] = 0x00;
	edid.edid[1] = 0xff;
	h = (struct vgb_vhost_user_header){ VGB_VHOST_GPU_GET_EDID, VGB_VHOST_GPU_FLAG_REPLY,
					    sizeof(edid) };
	if (send(sv[0], &h, sizeof(h), 0) != sizeof(h) ||
	    send(sv[0], &edid, sizeof(edid), 0) != sizeof(edid))
		tap_bail("send");
	dispatch();
	struct virtio_gpu_resp_edid *got = (void *)(mem + RESP_AT);
	tap_ok(got->hdr.type == VIRTIO_GPU_RESP_OK_EDID && got->size == 128 && got->edid[1] == 0xff,
	       "guest got QEMU's EDID");

	/* QEMU going away from the display socket leaves the rings working. */
	close(sv[0]);
	dispatch();
	struct vgb_vhost_stats st;
	vgb_vhost_dev_get_stats(dev, &st);
	tap_ok(!st.gpu_socket, "display socket closed");
	tap_is_uint(submit(&gdi, sizeof(gdi), NULL), VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
		    "rings still served without the display socket");
}

static void test_stop(void)
{
	struct vgb_vhost_user_vring_state st = { 0, 0 };
	send_msg(VGB_VHOST_USER_GET_VRING_BASE, 0, &st, sizeof(st), NULL, 0);
	dispatch();
	struct vgb_vhost_user_vring_state got = { 9, 9 };
	tap_is_int(recv_reply(sock, NULL, &got, sizeof(got)), 8, "GET_VRING_BASE reply");
	tap_ok(got.index == 0 && got.num == avail_idx[0], "base is the next avail index (%u, want %u)",
	       got.num, avail_idx[0]);
	/* Stopped: a new buffer is not taken. */
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	memcpy(mem + CMD_AT, &gdi, sizeof(gdi));
	put_desc(0, 2, CMD_AT, sizeof(gdi), 0, 0);
	struct vring_avail *a = (struct vring_avail *)(mem + AVAIL(0));
	uint16_t before = used_idx(0);
	a->ring[avail_idx[0]++ % QSZ] = 2;
	a->idx = avail_idx[0];
	dispatch();
	tap_is_uint(used_idx(0), before, "stopped ring is left alone");
}

static void test_malformed(void)
{
	struct vgb_vhost_user_vring_state bad_idx = { 5, 64 }, bad_num = { 0, 3 };
	tap_ok(call_ack(99, NULL, 0, NULL, 0) > 0, "unknown request: nack");
	tap_ok(call_ack(VGB_VHOST_USER_SET_VRING_NUM, &bad_idx, 8, NULL, 0) > 0,
	       "vring index out of range: nack");
	tap_ok(call_ack(VGB_VHOST_USER_SET_VRING_NUM, &bad_num, 8, NULL, 0) > 0,
	       "vring size not a power of two: nack");
	tap_ok(call_ack(VGB_VHOST_USER_SET_VRING_NUM, &bad_num, 4, NULL, 0) > 0,
	       "short payload: nack");
	uint64_t idx = 0;
	tap_ok(call_ack(VGB_VHOST_USER_SET_VRING_KICK, &idx, 8, NULL, 0) > 0,
	       "SET_VRING_KICK without an fd: nack");

	struct leak_snapshot snap;
	leak_snapshot(&snap);
	int efd = eventfd(0, EFD_CLOEXEC);
	tap_ok(call_ack(VGB_VHOST_USER_SET_OWNER, NULL, 0, &efd, 1) > 0,
	       "fds on a request that takes none: nack");
	close(efd);
	leak_check(&snap, "stray fds closed");

	struct vgb_vhost_user_memory m = { .nregions = 9 };
	tap_ok(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8, NULL, 0) > 0, "9 regions: nack");
	m.nregions = 1;
	m.regions[0] = (struct vgb_vhost_user_region){ 0, MEM_SIZE, QVA_BASE, 0 };
	tap_ok(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, NULL, 0) > 0,
	       "region without its fd: nack");
	m.regions[0].memory_size = 2 * MEM_SIZE;
	tap_ok(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &memfd, 1) > 0,
	       "region past the end of the memfd: nack (no SIGBUS later)");
	m.regions[0] = (struct vgb_vhost_user_region){ UINT64_MAX - 10, MEM_SIZE, QVA_BASE, 0 };
	tap_ok(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &memfd, 1) > 0,
	       "region wrapping the address space: nack");
	m.regions[0] = (struct vgb_vhost_user_region){ 0, 0, QVA_BASE, 0 };
	tap_ok(call_ack(VGB_VHOST_USER_SET_MEM_TABLE, &m, 8 + 32, &memfd, 1) > 0,
	       "empty region: nack");
	struct vgb_vhost_stats st;
	vgb_vhost_dev_get_stats(dev, &st);
	tap_is_uint(st.regions, 2, "the old memory table is still in place");
	tap_ok(st.bad_messages >= 11, "bad messages counted (%llu)",
	       (unsigned long long)st.bad_messages);
	tap_is_uint(get_u64(VGB_VHOST_USER_GET_QUEUE_NUM), 2, "still answering");
}

static void test_framing_errors(void)
{
	/* Each in its own dev: a framing error ends the connection. */
	struct {
		const char *name;
		struct vgb_vhost_user_header h;
		int want;
	} cases[] = {
		{ "payload larger than any request", { 1, VGB_VHOST_USER_VERSION, 1u << 20 }, -EPROTO },
		{ "wrong version", { 1, 0x2, 0 }, -EPROTO },
	};
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		int sv[2];
		struct vgb_vhost_dev *d;
		struct vgb_vhost_options o = { 0 };
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		tap_is_int(vgb_vhost_dev_create(sv[1], &o, &d), 0, "%s: create", cases[i].name);
		if (send(sv[0], &cases[i].h, sizeof(cases[i].h), 0) != sizeof(cases[i].h))
			tap_bail("send");
		tap_is_int(vgb_vhost_dev_dispatch(d), cases[i].want, "%s", cases[i].name);
		vgb_vhost_dev_destroy(d);
		close(sv[0]);
	}

	/* Half a header, then the front end dies. */
	int sv[2];
	struct vgb_vhost_dev *d;
	struct vgb_vhost_options o = { 0 };
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	vgb_vhost_dev_create(sv[1], &o, &d);
	if (send(sv[0], "\x01\x00\x00\x00\x01", 5, 0) != 5)
		tap_bail("send");
	tap_is_int(vgb_vhost_dev_dispatch(d), 0, "half a header: waits for more");
	close(sv[0]);
	tap_is_int(vgb_vhost_dev_dispatch(d), -ECONNRESET, "front end gone mid-message");
	vgb_vhost_dev_destroy(d);
}

/* qemu_display: frames go to QEMU's UI as SCANOUT + UPDATE carrying only the damage. */
static void test_qemu_display(void)
{
	int sv[2], gsv[2];
	struct vgb_vhost_options o = { .qemu_display = true };
	struct vgb_vhost_dev *saved = dev;
	int saved_sock = sock;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gsv);
	if (vgb_vhost_dev_create(sv[1], &o, &dev) < 0)
		tap_bail("create");
	sock = sv[0];
	memset(mem, 0, 0x30000);
	avail_idx[0] = avail_idx[1] = 0;
	for (unsigned q = 0; q < 2; q++) {
		close(kick[q]);
		close(call[q]);
	}
	uint64_t pf = (1ull << VGB_VHOST_USER_PROTOCOL_F_REPLY_ACK) |
		      (1ull << VGB_VHOST_USER_PROTOCOL_F_CONFIG);
	send_msg(VGB_VHOST_USER_SET_PROTOCOL_FEATURES, 0, &pf, 8, NULL, 0);
	uint64_t acked = (1ull << VIRTIO_F_VERSION_1) | (1ull << VGB_VHOST_F_PROTOCOL_FEATURES);
	send_msg(VGB_VHOST_USER_SET_FEATURES, 0, &acked, 8, NULL, 0);
	dispatch();
	test_mem_table();
	send_msg(VGB_VHOST_USER_GPU_SET_SOCKET, 0, NULL, 0, &gsv[1], 1);
	close(gsv[1]);
	dispatch();
	uint32_t req;
	recv_reply(gsv[0], &req, NULL, 0);
	uint64_t gpf = 0;
	struct vgb_vhost_user_header h = { VGB_VHOST_GPU_GET_PROTOCOL_FEATURES,
					   VGB_VHOST_GPU_FLAG_REPLY, 8 };
	if (send(gsv[0], &h, sizeof(h), 0) != sizeof(h) || send(gsv[0], &gpf, 8, 0) != 8)
		tap_bail("send");
	for (unsigned q = 0; q < 2; q++)
		setup_ring(q);
	recv_reply(gsv[0], &req, &gpf, 8); /* SET_PROTOCOL_FEATURES */

	/* GET_DISPLAY_INFO is QEMU's to answer in this mode. */
	struct virtio_gpu_ctrl_hdr gdi = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO };
	tap_is_uint(submit(&gdi, sizeof(gdi), NULL), 0, "qemu display: GET_DISPLAY_INFO waits for QEMU");
	tap_is_int(recv_reply(gsv[0], &req, NULL, 0), 0, "qemu display: request sent");
	tap_is_uint(req, VGB_VHOST_GPU_GET_DISPLAY_INFO, "it is GET_DISPLAY_INFO");
	struct virtio_gpu_resp_display_info di = { .hdr.type = VIRTIO_GPU_RESP_OK_DISPLAY_INFO };
	di.pmodes[0].r.width = 640;
	di.pmodes[0].r.height = 480;
	di.pmodes[0].enabled = 1;
	h = (struct vgb_vhost_user_header){ VGB_VHOST_GPU_GET_DISPLAY_INFO,
					    VGB_VHOST_GPU_FLAG_REPLY, sizeof(di) };
	if (send(gsv[0], &h, sizeof(h), 0) != sizeof(h) || send(gsv[0], &di, sizeof(di), 0) != sizeof(di))
		tap_bail("send");
	dispatch();
	struct virtio_gpu_resp_display_info *got = (void *)(mem + RESP_AT);
	tap_ok(got->hdr.type == VIRTIO_GPU_RESP_OK_DISPLAY_INFO && got->pmodes[0].r.width == 640,
	       "guest got QEMU's display info");

	struct virtio_gpu_resource_create_2d c2d = {
		.hdr.type = VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, .resource_id = 3,
		.format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, .width = 32, .height = 32,
	};
	submit(&c2d, sizeof(c2d), NULL);
	uint32_t *px = (uint32_t *)(mem + 0x40000);
	for (unsigned i = 0; i < 32 * 32; i++)
		px[i] = 0xff000000u | i;
	struct {
		struct virtio_gpu_resource_attach_backing ab;
		struct virtio_gpu_mem_entry e;
	} ab = {
		.ab = { .hdr.type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, .resource_id = 3,
			.nr_entries = 1 },
		.e = { .addr = 0x40000, .length = 32 * 32 * 4 },
	};
	submit(&ab, sizeof(ab), NULL);
	struct virtio_gpu_transfer_to_host_2d t2d = {
		.hdr.type = VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, .resource_id = 3, .r = { 0, 0, 32, 32 },
	};
	submit(&t2d, sizeof(t2d), NULL);
	struct virtio_gpu_set_scanout ss = {
		.hdr.type = VIRTIO_GPU_CMD_SET_SCANOUT, .resource_id = 3, .r = { 0, 0, 32, 32 },
	};
	tap_is_uint(submit(&ss, sizeof(ss), NULL), VIRTIO_GPU_RESP_OK_NODATA, "qemu display: SET_SCANOUT");
	struct virtio_gpu_resource_flush fl = {
		.hdr = { .type = VIRTIO_GPU_CMD_RESOURCE_FLUSH, .flags = VIRTIO_GPU_FLAG_FENCE,
			 .fence_id = 7 },
		.resource_id = 3, .r = { 2, 3, 4, 5 },
	};
	tap_is_uint(submit(&fl, sizeof(fl), NULL), VIRTIO_GPU_RESP_OK_NODATA,
		    "qemu display: fenced flush answered once the UPDATE is sent");

	struct vgb_vhost_gpu_scanout so = { 0 };
	tap_is_int(recv_reply(gsv[0], &req, &so, sizeof(so)), sizeof(so), "SCANOUT sent");
	tap_ok(req == VGB_VHOST_GPU_SCANOUT && so.width == 32 && so.height == 32, "SCANOUT 32x32");
	uint8_t buf[20 + 4 * 5 * 4];
	tap_is_int(recv_reply(gsv[0], &req, buf, sizeof(buf)), 20 + 4 * 5 * 4,
		   "UPDATE carries only the 4x5 damage");
	struct vgb_vhost_gpu_update u;
	memcpy(&u, buf, sizeof(u));
	tap_ok(req == VGB_VHOST_GPU_UPDATE && u.x == 2 && u.y == 3 && u.width == 4 && u.height == 5,
	       "UPDATE rectangle (2,3) 4x5");
	uint32_t first;
	memcpy(&first, buf + 20, 4);
	tap_is_uint(first, px[3 * 32 + 2], "UPDATE pixels are the guest's");

	vgb_vhost_dev_destroy(dev);
	close(gsv[0]);
	close(sv[0]);
	dev = saved;
	sock = saved_sock;
}

int main(void)
{
	alarm(60);
	signal(SIGPIPE, SIG_IGN);
	tap_plan_lazy();

	int fds0 = leak_count_fds(), maps0 = leak_count_file_maps();

	memfd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) < 0)
		tap_bail("memfd");
	mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (mem == MAP_FAILED)
		tap_bail("mmap");

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair");
	sock = sv[0];
	struct vgb_vhost_options opts = { .display = &sink.base, .max_pending = 1 };
	tap_is_int(vgb_vhost_dev_create(sv[1], &opts, &dev), 0, "create");

	test_negotiation();
	test_mem_table();
	setup_ring(0);
	setup_ring(1);
	test_commands();
	test_backpressure();
	test_gpu_socket();
	test_malformed();
	test_stop();
	test_framing_errors();
	test_qemu_display();

	vgb_vhost_dev_destroy(dev);
	close(sock);
	for (unsigned q = 0; q < 2; q++) {
		vgb_close(kick[q]);
		vgb_close(call[q]);
	}
	munmap(mem, MEM_SIZE);
	close(memfd);
	tap_ok(leak_count_fds() == fds0 && leak_count_file_maps() == maps0,
	       "no fd or file mapping left behind: fds %d -> %d, maps %d -> %d", fds0,
	       leak_count_fds(), maps0, leak_count_file_maps());
	return tap_done();
}
