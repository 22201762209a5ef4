/* SPDX-License-Identifier: MIT */
/*
 * vgbridged's deferred replies, in-process, with a recording display sink whose frames complete
 * only when the test says so:
 *   - a fenced RESOURCE_FLUSH is answered when the display has taken the frame, and later
 *     requests' replies overtake it;
 *   - at the fence deadline when the display never completes it;
 *   - more fenced replies pending than --max-pending: the daemon stops reading that client
 *     (other clients are served) and resumes when fences complete; nothing is lost;
 *   - a client that sends without reading its replies: the daemon queues and pauses it, keeps
 *     serving others, and every reply arrives in order once it reads.
 * No timing assertions: deadlines are either far (10 s, never reached) or tiny and only waited
 * for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "guest.h"
#include "record-sink.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/log.h"
#include "vgb/util.h"

#define MiB (1ull << 20)

static char dir[] = "/tmp/vgb-test-fences-XXXXXX";

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* A few loop rounds that do not wait (what can happen now, happens). */
static void settle(struct vgb_server *s)
{
	for (int i = 0; i < 8; i++)
		vgb_server_dispatch(s, 0);
}

struct setup {
	struct vgb_server *s;
	struct record_sink *sink;
	struct vgb_client *c;
	int memfd;
	char path[96];
};

static void setup(struct setup *st, const char *name, uint32_t fence_timeout_ms,
		  uint32_t max_pending)
{
	struct vgb_server_options o;
	uint8_t cmd[512];
	size_t n, rlen;
	uint8_t resp[64];
	struct virtio_gpu_mem_entry e = { .addr = 0, .length = 64 * 64 * 4 };

	st->sink = record_sink_create();
	if (!st->sink)
		tap_bail("sink");
	vgb_server_options_init(&o);
	o.display = &st->sink->base;
	o.fence_timeout_ms = fence_timeout_ms;
	o.max_pending = max_pending;
	snprintf(st->path, sizeof(st->path), "%s/%s.sock", dir, name);
	if (vgb_server_create(&o, &st->s) < 0 || vgb_server_listen(st->s, st->path) < 0 ||
	    vgb_client_connect(st->path, &st->c) < 0)
		tap_bail("server %s", name);
	vgb_client_set_wait_hook(st->c, server_pump, st->s);
	st->memfd = memfd_create("ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (st->memfd < 0 || ftruncate(st->memfd, (off_t)MiB) < 0 ||
	    vgb_client_hello(st->c, NULL) < 0 || vgb_client_add_ram(st->c, st->memfd, 0, MiB, 0) < 0)
		tap_bail("setup %s", name);
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, e.length, &e, 1);
	if (vgb_client_gpu_cmd(st->c, 0, cmd, n, resp, sizeof(resp), &rlen) < 0 ||
	    vgb_guest_resp_type(resp, rlen) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("blob");
	n = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, 1, 64, 64,
				       VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 256, 0, 0, 0, 64, 64);
	if (vgb_client_gpu_cmd(st->c, 0, cmd, n, resp, sizeof(resp), &rlen) < 0 ||
	    vgb_guest_resp_type(resp, rlen) != VIRTIO_GPU_RESP_OK_NODATA)
		tap_bail("scanout");
}

static void teardown(struct setup *st)
{
	vgb_client_destroy(st->c);
	for (int i = 0; i < 100 && vgb_server_client_count(st->s); i++)
		vgb_server_dispatch(st->s, 10);
	vgb_server_destroy(st->s);
	record_sink_destroy(st->sink);
	close(st->memfd);
}

static int64_t send_flush(struct vgb_client *c, uint64_t fence)
{
	uint8_t cmd[128];
	struct vgb_msg_gpu_cmd h = { 0 };
	size_t n = vgb_guest_flush(cmd, sizeof(cmd), 1, 0, 0, 64, 64, fence);

	return vgb_client_send(c, VGB_MSG_VIRTIO_GPU_CMD, &h, sizeof(h), cmd, n, NULL, 0);
}

static int64_t send_stats(struct vgb_client *c)
{
	struct vgb_msg_stats m = { .flags = VGB_STATS_SELF_ONLY };

	return vgb_client_send(c, VGB_MSG_STATS, &m, sizeof(m), NULL, 0, NULL, 0);
}

/* The fence fields of a VIRTIO_GPU_CMD reply. */
static bool fenced_ok(const struct vgb_client_reply *rep, uint64_t fence)
{
	struct virtio_gpu_ctrl_hdr h;

	if (rep->result != 0 || rep->body_len < sizeof(h))
		return false;
	memcpy(&h, rep->body, sizeof(h));
	return h.type == VIRTIO_GPU_RESP_OK_NODATA && (h.flags & VIRTIO_GPU_FLAG_FENCE) &&
	       h.fence_id == fence;
}

static void test_fence_on_display(void)
{
	struct setup st;
	struct vgb_client_reply rep;
	int64_t f, s;

	setup(&st, "display", 10000, 256);
	f = send_flush(st.c, 41);
	s = send_stats(st.c);
	tap_ok(f > 0 && s > 0, "a fenced flush then STATS sent");
	tap_is_int(vgb_client_recv(st.c, &rep), 0, "a reply");
	tap_ok(rep.hdr.id == (uint64_t)s && rep.hdr.type == VGB_MSG_STATS,
	       "STATS is answered first: the fenced flush waits for its frame (id %llu)",
	       (unsigned long long)rep.hdr.id);
	vgb_client_reply_finish(&rep);
	settle(st.s);
	tap_ok(!readable(vgb_client_get_fd(st.c)),
	       "no reply to the flush while the display holds the frame");
	tap_is_uint(st.sink->n_frames, 1, "the display got the frame");
	record_sink_complete(st.sink, 0, 0);
	tap_is_int(vgb_client_recv(st.c, &rep), 0, "a reply after the display took the frame");
	tap_ok(rep.hdr.id == (uint64_t)f && fenced_ok(&rep, 41),
	       "it is the flush's: OK_NODATA with FLAG_FENCE and fence_id 41");
	vgb_client_reply_finish(&rep);

	/* A sink that takes frames inside present: the fenced flush is answered at once, and
	 * still counts in the fence statistics. */
	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows = NULL;
	st.sink->auto_complete = true;
	f = send_flush(st.c, 42);
	tap_is_int(vgb_client_recv(st.c, &rep), 0, "a reply");
	tap_ok(rep.hdr.id == (uint64_t)f && fenced_ok(&rep, 42),
	       "with a sink that completes in present, the fenced flush is answered at once");
	vgb_client_reply_finish(&rep);
	tap_ok(vgb_client_stats(st.c, VGB_STATS_SELF_ONLY, &g, &rows) == 0 && g.n_clients == 1 &&
		       rows[0].fences_replied == 2 && rows[0].fences_completed == 2 &&
		       rows[0].fence_latency_max_ns > 0 &&
		       rows[0].fence_latency_sum_ns >= rows[0].fence_latency_max_ns,
	       "STATS: 2 fenced replies counted (deferred and immediate), with their latency");
	free(rows);
	teardown(&st);
}

static void test_fence_deadline(void)
{
	struct setup st;
	struct vgb_client_reply rep;
	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows = NULL;
	int64_t f;

	setup(&st, "deadline", 1, 256);
	f = send_flush(st.c, 7);
	/* The display never completes it: only the deadline can. */
	tap_is_int(vgb_client_recv(st.c, &rep), 0, "a reply although the display kept the frame");
	tap_ok(rep.hdr.id == (uint64_t)f && fenced_ok(&rep, 7), "the flush completed at its deadline");
	vgb_client_reply_finish(&rep);
	tap_ok(vgb_client_stats(st.c, VGB_STATS_SELF_ONLY, &g, &rows) == 0 && g.n_clients == 1 &&
		       rows[0].fences_timed_out == 1 && rows[0].fences_pending == 0,
	       "STATS: one fence completed at the deadline, none pending");
	free(rows);
	teardown(&st);
}

static void test_max_pending(void)
{
	struct setup st;
	struct vgb_client *other;
	struct vgb_client_reply rep;
	int64_t ids[8];
	unsigned got = 0, fenced = 0;
	bool in_order = true;

	setup(&st, "pending", 10000, 4);
	for (unsigned i = 0; i < 6; i++)
		ids[i] = send_flush(st.c, 100 + i);
	ids[6] = send_stats(st.c);
	settle(st.s);
	tap_ok(!readable(vgb_client_get_fd(st.c)),
	       "6 fenced flushes and STATS with max-pending 4: nothing answered yet");

	/* Another client is served meanwhile. */
	if (vgb_client_connect(st.path, &other) < 0)
		tap_bail("connect");
	vgb_client_set_wait_hook(other, server_pump, st.s);
	tap_is_int(vgb_client_hello(other, NULL), 0, "another client is served meanwhile");
	vgb_client_destroy(other);

	/* Complete frames as they come until every reply is in. */
	for (int round = 0; round < 50 && got < 7; round++) {
		record_sink_complete_all(st.sink, 0);
		settle(st.s);
		while (got < 7 && readable(vgb_client_get_fd(st.c)) &&
		       vgb_client_recv(st.c, &rep) == 0) {
			if (rep.hdr.type == VGB_MSG_VIRTIO_GPU_CMD) {
				if (rep.hdr.id != (uint64_t)ids[fenced] ||
				    !fenced_ok(&rep, 100 + fenced))
					in_order = false;
				fenced++;
			}
			got++;
			vgb_client_reply_finish(&rep);
		}
	}
	tap_is_uint(got, 7, "every request was answered once fences completed");
	tap_ok(fenced == 6 && in_order, "the 6 fenced flushes completed in order (%u)", fenced);
	teardown(&st);
}

static void test_slow_reader(void)
{
	struct setup st;
	struct vgb_client *other;
	struct vgb_client_reply rep;
	unsigned sent = 0, got = 0;
	uint64_t first = 0;
	bool in_order = true;
	int fd;

	setup(&st, "slow", 10000, 256);
	fd = vgb_client_get_fd(st.c);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* Send until the socket is full, running the daemon in between: it queues the replies
	 * it cannot send and stops reading from this client. */
	for (unsigned i = 0; i < 100000; i++) {
		int64_t id = send_stats(st.c);
		if (id < 0)
			break;
		if (!first)
			first = (uint64_t)id;
		sent++;
		if (i % 64 == 0)
			settle(st.s);
	}
	settle(st.s);
	tap_ok(sent > 100, "%u requests sent without reading a reply, until the socket filled", sent);

	if (vgb_client_connect(st.path, &other) < 0)
		tap_bail("connect");
	vgb_client_set_wait_hook(other, server_pump, st.s);
	tap_is_int(vgb_client_hello(other, NULL), 0, "another client is served meanwhile");
	vgb_client_destroy(other);

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	while (got < sent && vgb_client_recv(st.c, &rep) == 0) {
		if (rep.hdr.id != first + got || rep.result != 0)
			in_order = false;
		got++;
		vgb_client_reply_finish(&rep);
	}
	tap_is_uint(got, sent, "once it reads, every reply arrives");
	tap_ok(in_order, "in order, all successful");
	teardown(&st);
}

int main(void)
{
	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	test_fence_on_display();
	test_fence_deadline();
	test_max_pending();
	test_slow_reader();
	rmdir(dir);
	return tap_done();
}
