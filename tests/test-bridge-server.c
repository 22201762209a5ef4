/* SPDX-License-Identifier: MIT */
/*
 * vgbridged's loop, in-process: HELLO/ADD_RAM/REMOVE, a table of malformed messages each with
 * its expected -errno (and the client keeps its windows and resources after every one, and no
 * fd it sent stays open in the daemon), isolation between two clients, disconnect cleanup over
 * 1000 connect/disconnect cycles (fd and mapping counts), and SIGTERM shutdown (forked child).
 *
 * The daemon runs in this thread: the client library's wait hook pumps the server loop until
 * the client's socket is readable.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* From sanitizer/allocator_interface.h (not packaged with Debian's gcc). */
void __sanitizer_purge_allocator(void);
#endif

#include "client.h"
#include "guest.h"
#include "leak.h"
#include "protocol.h"
#include "rawsock.h"
#include "client-gpu.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)
#define SMALL_MAX_MSG (64u << 10)

static struct vgb_server *srv;
static char dir[] = "/tmp/vgb-test-server-XXXXXX";
static char sock_path[128];

static void pump_until_clients(unsigned n)
{
	for (int i = 0; i < 400 && vgb_server_client_count(srv) != n; i++)
		vgb_server_dispatch(srv, 25);
}

static struct vgb_client *client_new(bool hello)
{
	struct vgb_client *c;
	struct timeval tv = { .tv_sec = 10 };
	int r;

	r = vgb_client_connect(sock_path, &c);
	if (r < 0)
		tap_bail("connect %s: %s", sock_path, strerror(-r));
	/* A reply that never comes fails the test instead of hanging it. */
	setsockopt(vgb_client_get_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	vgb_client_set_wait_hook(c, server_pump, srv);
	if (hello) {
		r = vgb_client_hello(c, NULL);
		if (r < 0)
			tap_bail("HELLO: %s", strerror(-r));
	}
	return c;
}

static int memfd_new(uint64_t size)
{
	int fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		tap_bail("memfd: %s", strerror(errno));
	return fd;
}

/* Sends a raw packet (whatever it says) with @n fds. */
static void send_raw(struct vgb_client *c, const void *data, size_t len, const int *fds,
		     unsigned n)
{
	int r = rawsock_send(vgb_client_get_fd(c), data, len, fds, n);

	if (r < 0)
		tap_bail("sendmsg: %s", strerror(-r));
}

static struct vgb_wire_stats_client self_stats(struct vgb_client *c)
{
	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows = NULL, row = { 0 };

	if (vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows) == 0 && g.n_clients == 1)
		row = rows[0];
	free(rows);
	return row;
}

/* ---- basics ---- */

static void test_basics(void)
{
	struct vgb_client *c = client_new(false);
	struct vgb_msg_hello_reply h;
	int fd = memfd_new(4 * MiB);

	tap_is_int(vgb_client_add_ram(c, fd, 0, MiB, 0), -EPROTO, "ADD_RAM before HELLO: -EPROTO");
	tap_is_int(vgb_client_hello(c, &h), 0, "HELLO");
	tap_is_uint(h.version, 1, "HELLO: version 1");
	tap_is_uint(h.n_devices, 1, "HELLO: one daemon device");
	tap_is_uint(h.max_entries, 16384, "HELLO: max_entries");
	tap_ok(h.client_id > 0, "HELLO: client id %u", h.client_id);
	tap_is_int(vgb_client_hello(c, NULL), -EALREADY, "second HELLO: -EALREADY");

	tap_is_int(vgb_client_add_ram(c, fd, 0, MiB, 0), 0, "ADD_RAM [0, 1M)");
	tap_is_int(vgb_client_add_ram(c, fd, 2 * MiB, MiB, MiB), 0, "ADD_RAM [2M, 3M) offset 1M");
	tap_is_int(vgb_client_add_ram(c, fd, MiB / 2, MiB, 0), -EEXIST, "overlapping ADD_RAM");
	tap_is_int(vgb_client_add_ram(c, fd, 8 * MiB, 0, 0), -EINVAL, "ADD_RAM of size 0");
	tap_is_int(vgb_client_add_ram(c, fd, UINT64_MAX - 4095, 8192, 0), -EOVERFLOW,
		   "ADD_RAM that wraps");
	tap_is_int(vgb_client_add_ram(c, fd, 16 * MiB, 8 * MiB, 0), -EINVAL,
		   "ADD_RAM past the memfd's end");
	tap_is_uint(self_stats(c).windows, 2, "STATS: two windows");
	tap_is_int(vgb_client_remove_window(c, MiB / 2), -ENOENT,
		   "REMOVE_WINDOW of an address that starts no window");
	tap_is_int(vgb_client_remove_window(c, 2 * MiB), 0, "REMOVE_WINDOW [2M, 3M)");
	tap_is_int(vgb_client_remove_window(c, 2 * MiB), -ENOENT, "REMOVE_WINDOW twice");
	tap_is_uint(self_stats(c).windows, 1, "STATS: one window left");

	struct vgb_msg_query_device_reply q;
	int rfd = -1;
	tap_is_int(vgb_client_query_device(c, 1, 2, VGB_QUERY_REGION_FD, &q, &rfd), 0,
		   "QUERY_DEVICE 1 region 2 with its fd");
	tap_is_uint(q.region_size, 4 * MiB, "QUERY_DEVICE: BAR2 size");
	tap_ok(rfd >= 0, "QUERY_DEVICE: region memfd attached");
	tap_is_int(vgb_client_map_window(c, 64 * MiB, 2 * MiB, 1, 2, MiB), 0,
		   "MAP_VFIO_WINDOW on the daemon device's BAR2");
	tap_is_uint(self_stats(c).windows, 2, "STATS: RAM + BAR windows");
	vgb_close(rfd);
	close(fd);
	vgb_client_destroy(c);
	pump_until_clients(0);
}

/* ---- malformed messages ---- */

struct bad_case {
	const char *what;
	uint16_t type, flags;
	const void *payload;
	size_t len;         /* payload bytes */
	int header_delta;   /* added to the header's length field (a lie) */
	size_t raw_len;     /* when non-zero: send only this many bytes of the packet */
	unsigned n_fds;     /* memfds attached */
	bool pipe_fd;       /* attach a pipe instead of a memfd */
	int want;
};

static uint8_t pkt[128 << 10];
static uint8_t zeros[100 << 10];

static void run_bad(struct vgb_client *c, const struct bad_case *bc, int memfd, int pipefd)
{
	struct vgb_msg_header h = { .type = bc->type, .flags = bc->flags, .id = 0xabc0 };
	struct vgb_client_reply rep;
	int fds[8];
	int before;
	size_t len;

	for (unsigned i = 0; i < 8; i++)
		fds[i] = bc->pipe_fd ? pipefd : memfd;
	h.length = (uint32_t)((int)bc->len + bc->header_delta);
	memcpy(pkt, &h, sizeof(h));
	if (bc->len)
		memcpy(pkt + sizeof(h), bc->payload, bc->len);
	len = bc->raw_len ? bc->raw_len : sizeof(h) + bc->len;

	before = leak_count_fds();
	send_raw(c, pkt, len, fds, bc->n_fds);
	if (vgb_client_recv(c, &rep) < 0) {
		tap_ok(false, "%s: no reply", bc->what);
		return;
	}
	tap_is_int(rep.result, bc->want, "%s: %s", bc->what, strerror(-bc->want));
	vgb_client_reply_finish(&rep);
	tap_is_int(leak_count_fds(), before, "%s: the daemon closed every fd it got", bc->what);
}

static void test_malformed(void)
{
	struct vgb_client *c = client_new(true);
	int memfd = memfd_new(4 * MiB), small = memfd_new(4096), pipefd[2];
	uint8_t cmd[4096];
	size_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		tap_bail("pipe");
	/* What the client holds throughout: two windows and a blob over both. */
	tap_is_int(vgb_client_add_ram(c, memfd, 0, 2 * MiB, 0), 0, "setup: RAM window");
	tap_is_int(vgb_client_map_window(c, 16 * MiB, MiB, 1, 2, 0), 0, "setup: BAR window");
	struct virtio_gpu_mem_entry ents[2] = { { .addr = 0, .length = 64 << 10 },
						{ .addr = 16 * MiB, .length = 64 << 10 } };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 128 << 10, ents, 2);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "setup: blob over both windows");

	struct vgb_msg_hello hello = { .version = 1 };
	struct vgb_msg_add_ram ram = { .n_fds = 1, .gpa = 8 * MiB, .size = MiB };
	struct vgb_msg_add_ram ram2 = ram, ramf = ram, ram0 = ram, ramwrap = ram, ramover = ram,
			       ramsmall = ram;
	ram2.n_fds = 2;
	ramf.flags = 1;
	ram0.size = 0;
	ramwrap.gpa = UINT64_MAX - 4095;
	ramwrap.size = 8192;
	ramover.gpa = MiB;
	ramsmall.size = 8192;
	struct vgb_msg_map_window mw_nodev = { .gpa = 32 * MiB, .size = MiB, .device_id = 9 };
	struct vgb_msg_map_window mw_region = { .gpa = 32 * MiB, .size = MiB, .device_id = 1,
						.region_index = 99 };
	struct vgb_msg_map_window mw_past = { .gpa = 32 * MiB, .size = 2 * MiB, .device_id = 1,
					      .region_index = 2, .region_offset = 3 * MiB };
	struct vgb_msg_map_window mw_overlap = { .gpa = 0, .size = MiB, .device_id = 1,
						 .region_index = 2 };
	struct vgb_msg_remove_window rw_mid = { .gpa = 4096 };
	struct vgb_msg_remove_device rd_daemon = { .device_id = 1 }, rd_none = { .device_id = 7 },
				     rd_res = { .device_id = 7, .reserved = 1 };
	struct {
		struct vgb_msg_add_device h;
		char p[300];
	} dev_bad = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 9 }, "bar2=zzzz" },
	  dev_long = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 256 }, "" },
	  dev_nul = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 7 }, "def\0ult" },
	  dev_kind = { { .kind = 6, .path_len = 7 }, "default" },
	  dev_nofd = { { .kind = VGB_DEVICE_FD, .path_len = 0 }, "" };
	struct {
		struct vgb_msg_gpu_cmd h;
		uint8_t c[64];
	} g_short = { { 0 }, { 0 } }, g_queue = { { .queue = 3 }, { 0 } },
	  g_res = { { .reserved = 1 }, { 0 } };
	struct vgb_msg_export_blob ex_none = { .resource_id = 77 }, ex_flags = { .resource_id = 1,
										 .flags = 1 };
	struct vgb_msg_stats st_flags = { .flags = 2 }, st_res = { .reserved = 1 };
	struct vgb_msg_query_device q_nodev = { .device_id = 5 },
				    q_region = { .device_id = 1, .region_index = 77 },
				    q_res = { .device_id = 1, .reserved = 3 },
				    q_flags = { .device_id = 1, .flags = 8 };

	const struct bad_case cases[] = {
		{ "runt packet (7 bytes)", 0, 0, NULL, 0, 0, 7, 0, false, -EBADMSG },
		{ "runt packet with an fd", 0, 0, NULL, 0, 0, 3, 1, false, -EBADMSG },
		{ "length larger than the packet", VGB_MSG_HELLO, 0, &hello, 16, 8, 0, 0, false,
		  -EBADMSG },
		{ "length smaller than the packet", VGB_MSG_HELLO, 0, &hello, 16, -4, 0, 0, false,
		  -EBADMSG },
		{ "length lie with an fd", VGB_MSG_ADD_RAM, 0, &ram, 32, 100, 0, 1, false, -EBADMSG },
		{ "unknown type 99", 99, 0, &hello, 16, 0, 0, 0, false, -EOPNOTSUPP },
		{ "type 0", 0, 0, &hello, 16, 0, 0, 0, false, -EOPNOTSUPP },
		{ "unknown type with an fd", 1234, 0, NULL, 0, 0, 0, 1, false, -EOPNOTSUPP },
		{ "request with the REPLY flag", VGB_MSG_STATS, VGB_MSG_FLAG_REPLY, &st_flags, 8, 0, 0,
		  0, false, -EINVAL },
		{ "request with flag 0x8000", VGB_MSG_HELLO, 0x8000, &hello, 16, 0, 0, 0, false,
		  -EINVAL },
		{ "HELLO again", VGB_MSG_HELLO, 0, &hello, 16, 0, 0, 0, false, -EALREADY },
		{ "HELLO with trailing bytes", VGB_MSG_HELLO, 0, zeros, 20, 0, 0, 0, false, -EBADMSG },
		{ "ADD_RAM without its fd", VGB_MSG_ADD_RAM, 0, &ram, 32, 0, 0, 0, false, -EBADMSG },
		{ "ADD_RAM with 2 fds, stating 1", VGB_MSG_ADD_RAM, 0, &ram, 32, 0, 0, 2, false,
		  -EBADMSG },
		{ "ADD_RAM stating 2 fds", VGB_MSG_ADD_RAM, 0, &ram2, 32, 0, 0, 2, false, -EBADMSG },
		{ "ADD_RAM with 8 fds (MSG_CTRUNC)", VGB_MSG_ADD_RAM, 0, &ram, 32, 0, 0, 8, false,
		  -EBADMSG },
		{ "ADD_RAM flags set", VGB_MSG_ADD_RAM, 0, &ramf, 32, 0, 0, 1, false, -EINVAL },
		{ "ADD_RAM truncated", VGB_MSG_ADD_RAM, 0, &ram, 20, 0, 0, 1, false, -EBADMSG },
		{ "ADD_RAM empty payload", VGB_MSG_ADD_RAM, 0, NULL, 0, 0, 0, 1, false, -EBADMSG },
		{ "ADD_RAM size 0", VGB_MSG_ADD_RAM, 0, &ram0, 32, 0, 0, 1, false, -EINVAL },
		{ "ADD_RAM wrapping", VGB_MSG_ADD_RAM, 0, &ramwrap, 32, 0, 0, 1, false, -EOVERFLOW },
		{ "ADD_RAM overlapping", VGB_MSG_ADD_RAM, 0, &ramover, 32, 0, 0, 1, false, -EEXIST },
		{ "ADD_RAM of a pipe", VGB_MSG_ADD_RAM, 0, &ram, 32, 0, 0, 1, true, -EINVAL },
		{ "MAP_VFIO_WINDOW unknown device", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_nodev, 32, 0, 0, 0,
		  false, -ENODEV },
		{ "MAP_VFIO_WINDOW bad region", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_region, 32, 0, 0, 0,
		  false, -EINVAL },
		{ "MAP_VFIO_WINDOW past the region", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_past, 32, 0, 0, 0,
		  false, -EINVAL },
		{ "MAP_VFIO_WINDOW overlapping", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_overlap, 32, 0, 0, 0,
		  false, -EEXIST },
		{ "MAP_VFIO_WINDOW with a stray fd", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_nodev, 32, 0, 0, 1,
		  false, -EBADMSG },
		{ "MAP_VFIO_WINDOW truncated", VGB_MSG_MAP_VFIO_WINDOW, 0, &mw_nodev, 31, 0, 0, 0,
		  false, -EBADMSG },
		{ "REMOVE_WINDOW inside a window", VGB_MSG_REMOVE_WINDOW, 0, &rw_mid, 8, 0, 0, 0, false,
		  -ENOENT },
		{ "REMOVE_WINDOW truncated", VGB_MSG_REMOVE_WINDOW, 0, &rw_mid, 4, 0, 0, 0, false,
		  -EBADMSG },
		{ "REMOVE_DEVICE of a daemon device", VGB_MSG_REMOVE_DEVICE, 0, &rd_daemon, 8, 0, 0, 0,
		  false, -EPERM },
		{ "REMOVE_DEVICE unknown", VGB_MSG_REMOVE_DEVICE, 0, &rd_none, 8, 0, 0, 0, false,
		  -ENODEV },
		{ "REMOVE_DEVICE reserved set", VGB_MSG_REMOVE_DEVICE, 0, &rd_res, 8, 0, 0, 0, false,
		  -EINVAL },
		{ "ADD_VFIO_DEVICE bad spec", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_bad, 16 + 9, 0, 0, 0,
		  false, -EINVAL },
		{ "ADD_VFIO_DEVICE path too long", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_long, 16 + 256, 0,
		  0, 0, false, -ENAMETOOLONG },
		{ "ADD_VFIO_DEVICE NUL in path", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_nul, 16 + 7, 0, 0, 0,
		  false, -EINVAL },
		{ "ADD_VFIO_DEVICE unknown kind", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_kind, 16 + 7, 0, 0,
		  0, false, -EINVAL },
		{ "ADD_VFIO_DEVICE kind FD without an fd", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_nofd, 16, 0,
		  0, 0, false, -EBADMSG },
		{ "ADD_VFIO_DEVICE path_len beyond the payload", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_bad,
		  16 + 4, 0, 0, 0, false, -EBADMSG },
		{ "VIRTIO_GPU_CMD shorter than a ctrl_hdr", VGB_MSG_VIRTIO_GPU_CMD, 0, &g_short,
		  8 + 20, 0, 0, 0, false, -EINVAL },
		{ "VIRTIO_GPU_CMD without a command", VGB_MSG_VIRTIO_GPU_CMD, 0, &g_short, 8, 0, 0, 0,
		  false, -EINVAL },
		{ "VIRTIO_GPU_CMD bad queue", VGB_MSG_VIRTIO_GPU_CMD, 0, &g_queue, 8 + 24, 0, 0, 0,
		  false, -EINVAL },
		{ "VIRTIO_GPU_CMD reserved set", VGB_MSG_VIRTIO_GPU_CMD, 0, &g_res, 8 + 24, 0, 0, 0,
		  false, -EINVAL },
		{ "VIRTIO_GPU_CMD with an fd", VGB_MSG_VIRTIO_GPU_CMD, 0, &g_short, 8 + 24, 0, 0, 1,
		  false, -EBADMSG },
		{ "EXPORT_BLOB unknown resource", VGB_MSG_EXPORT_BLOB, 0, &ex_none, 8, 0, 0, 0, false,
		  -ENOENT },
		{ "EXPORT_BLOB flags set", VGB_MSG_EXPORT_BLOB, 0, &ex_flags, 8, 0, 0, 0, false,
		  -EINVAL },
		{ "STATS unknown flag", VGB_MSG_STATS, 0, &st_flags, 8, 0, 0, 0, false, -EINVAL },
		{ "STATS reserved set", VGB_MSG_STATS, 0, &st_res, 8, 0, 0, 0, false, -EINVAL },
		{ "STATS truncated", VGB_MSG_STATS, 0, &st_res, 4, 0, 0, 0, false, -EBADMSG },
		{ "QUERY_DEVICE unknown device", VGB_MSG_QUERY_DEVICE, 0, &q_nodev, 16, 0, 0, 0, false,
		  -ENODEV },
		{ "QUERY_DEVICE bad region", VGB_MSG_QUERY_DEVICE, 0, &q_region, 16, 0, 0, 0, false,
		  -EINVAL },
		{ "QUERY_DEVICE reserved set", VGB_MSG_QUERY_DEVICE, 0, &q_res, 16, 0, 0, 0, false,
		  -EINVAL },
		{ "QUERY_DEVICE unknown flag", VGB_MSG_QUERY_DEVICE, 0, &q_flags, 16, 0, 0, 0, false,
		  -EINVAL },
		{ "oversized packet (100 KiB)", VGB_MSG_VIRTIO_GPU_CMD, 0, zeros, 100 << 10, 0, 0,
		  1, false, -EMSGSIZE },
	};
	(void)small;
	(void)ramsmall;

	memset(pkt, 0, sizeof(pkt));
	memset(dev_long.p, 'a', sizeof(dev_long.p));
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		struct vgb_wire_stats_client st;

		run_bad(c, &cases[i], memfd, pipefd[0]);
		st = self_stats(c);
		if (st.windows != 2 || st.resources != 1)
			tap_ok(false, "%s: the client lost its windows (%u) or resources (%u)",
			       cases[i].what, st.windows, st.resources);
	}
	tap_ok(true, "after %zu malformed messages the client still has its 2 windows and blob",
	       VGB_ARRAY_SIZE(cases));

	/* ADD_RAM of a memfd smaller than offset + size. */
	tap_is_int(vgb_client_add_ram(c, small, 8 * MiB, 8192, 0), -EINVAL,
		   "ADD_RAM beyond a 4 KiB memfd: -EINVAL");

	/* Guest mistakes are virtio-gpu errors, not protocol errors. */
	n = vgb_guest_flush(cmd, sizeof(cmd), 99, 0, 0, 64, 64, 0);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
		   "RESOURCE_FLUSH of an unknown resource: ERR_INVALID_RESOURCE_ID");
	struct virtio_gpu_ctrl_hdr unk = { .type = VIRTIO_GPU_CMD_SUBMIT_3D };
	tap_is_int(client_gpu(c, &unk, sizeof(unk)), VIRTIO_GPU_RESP_ERR_UNSPEC,
		   "SUBMIT_3D: ERR_UNSPEC");
	struct virtio_gpu_mem_entry outside = { .addr = 4 * MiB, .length = 4096 };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 2, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 4096, &outside, 1);
	tap_ok(client_gpu(c, cmd, n) >= VIRTIO_GPU_RESP_ERR_UNSPEC,
	       "blob over an address no window covers: an ERR_* response");
	/* The blob still answers. */
	n = vgb_guest_transfer_2d(cmd, sizeof(cmd), 1, 0, 0, 64, 64, 0, 0);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA,
		   "TRANSFER_TO_HOST_2D on the blob: OK");
	tap_is_uint(self_stats(c).windows, 2, "still two windows");

	close(pipefd[0]);
	close(pipefd[1]);
	close(memfd);
	close(small);
	vgb_client_destroy(c);
	pump_until_clients(0);
}

/* ---- isolation ---- */

static void test_isolation(void)
{
	struct vgb_client *a = client_new(true), *b = client_new(true);
	struct vgb_msg_add_device_reply dev_b;
	struct vgb_msg_export_blob_reply ex;
	int fd_a = memfd_new(2 * MiB), fd_b = memfd_new(2 * MiB), efd = -1;
	uint8_t cmd[512];
	size_t n;

	tap_is_int(vgb_client_add_ram(a, fd_a, 0, 2 * MiB, 0), 0, "A: RAM window at 0");
	struct virtio_gpu_mem_entry e = { .addr = 0, .length = 256 << 10 };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 256 << 10, &e, 1);
	tap_is_int(client_gpu(a, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "A: blob 1");

	tap_is_int(vgb_client_remove_window(b, 0), -ENOENT, "B cannot remove A's window");
	tap_is_int(vgb_client_export_blob(b, 1, &ex, &efd), -ENOENT, "B cannot export A's blob");
	n = vgb_guest_flush(cmd, sizeof(cmd), 1, 0, 0, 64, 64, 0);
	tap_is_int(client_gpu(b, cmd, n), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
		   "B cannot flush A's resource");
	n = vgb_guest_unref(cmd, sizeof(cmd), 1);
	tap_is_int(client_gpu(b, cmd, n), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
		   "B cannot unref A's resource");
	tap_is_int(vgb_client_add_ram(b, fd_b, 0, 2 * MiB, 0), 0,
		   "B has its own map: the same gpa does not overlap A's");
	tap_is_int(vgb_client_add_device(b, VGB_DEVICE_VIRTUAL, "bar2=1M,name=b", -1, &dev_b), 0,
		   "B adds a virtual device");
	tap_is_uint(dev_b.device_id, 2, "B's device is id 2 (after the daemon's)");
	tap_is_int(vgb_client_map_window(a, 32 * MiB, MiB, dev_b.device_id, 2, 0), -ENODEV,
		   "A cannot map a window on B's device");
	tap_is_int(vgb_client_remove_device(a, dev_b.device_id), -ENODEV,
		   "A cannot remove B's device");
	struct vgb_msg_query_device_reply q;
	tap_is_int(vgb_client_query_device(a, dev_b.device_id, 2, 0, &q, NULL), -ENODEV,
		   "A cannot query B's device");
	tap_is_uint(self_stats(a).resources, 1, "A still has its blob");
	tap_is_uint(self_stats(b).resources, 0, "B has no resources");
	tap_is_int(vgb_client_map_window(b, 32 * MiB, MiB, dev_b.device_id, 2, 0), 0,
		   "B maps a window on its device");
	tap_is_int(vgb_client_remove_device(b, dev_b.device_id), 0,
		   "B removes its device (and its window)");
	tap_is_uint(self_stats(b).windows, 1, "B's device window went with it");

	/* A's disconnect does not touch B. */
	vgb_client_destroy(a);
	pump_until_clients(1);
	tap_is_uint(self_stats(b).windows, 1, "B keeps its window after A left");
	vgb_close(efd);
	close(fd_a);
	close(fd_b);
	vgb_client_destroy(b);
	pump_until_clients(0);
}

/* ---- disconnect cleanup ---- */

/*
 * One client session that holds a bit of everything, then leaves at step i % 6. With @check,
 * every step's answer is checked (the warm-up run), so the cycles are known to do real work.
 */
static void session(unsigned i, bool check)
{
	struct vgb_client *c = client_new(true);
	struct vgb_msg_add_device_reply dev = { 0 };
	int fd = memfd_new(MiB), efd = -1;
	struct vgb_msg_export_blob_reply ex;
	uint8_t cmd[512];
	size_t n;
	unsigned leave_at = i % 6;
	int r;

#define STEP(expr, want, what)                                           \
	do {                                                             \
		long long got_ = (expr);                                 \
		if (check)                                               \
			tap_is_int(got_, (want), "session: %s", what);   \
	} while (0)

	if (leave_at == 0)
		goto out;
	STEP(vgb_client_add_ram(c, fd, 0, MiB, 0), 0, "ADD_RAM");
	if (leave_at == 1)
		goto out;
	STEP(vgb_client_add_device(c, VGB_DEVICE_VIRTUAL, "bar2=1M", -1, &dev), 0,
	     "ADD_VFIO_DEVICE virtual");
	STEP(vgb_client_map_window(c, 4 * MiB, MiB, dev.device_id, 2, 0), 0,
	     "MAP_VFIO_WINDOW on its own device");
	STEP(vgb_client_map_window(c, 8 * MiB, MiB, 1, 2, 0), 0,
	     "MAP_VFIO_WINDOW on the daemon device");
	if (leave_at == 2)
		goto out;
	struct virtio_gpu_mem_entry e[3] = { { .addr = 0, .length = 64 << 10 },
					     { .addr = 4 * MiB, .length = 64 << 10 },
					     { .addr = 8 * MiB, .length = 128 << 10 } };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 1, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 256 << 10, e, 3);
	STEP(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "blob over three windows");
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 2, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 64 << 10, e, 1);
	STEP(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "blob in RAM");
	n = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, 1, 128, 128,
				       VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 512, 0, 0, 0, 128, 128);
	STEP(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "SET_SCANOUT_BLOB");
	if (leave_at == 3)
		goto out;
	r = vgb_client_export_blob(c, 2, &ex, &efd);
	STEP(r == 0 || r == -EOPNOTSUPP, 1, "EXPORT_BLOB answers a dmabuf or -EOPNOTSUPP");
	vgb_close(efd);
	n = vgb_guest_flush(cmd, sizeof(cmd), 1, 0, 0, 128, 128, i + 1);
	STEP(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "fenced RESOURCE_FLUSH");
	if (leave_at == 4)
		goto out;
	/* Leave with a request in flight whose reply nobody reads. */
	n = vgb_guest_flush(cmd, sizeof(cmd), 1, 0, 0, 128, 128, i + 2);
	struct vgb_msg_gpu_cmd gh = { 0 };
	STEP(vgb_client_send(c, VGB_MSG_VIRTIO_GPU_CMD, &gh, sizeof(gh), cmd, n, NULL, 0) > 0, 1,
	     "a request left in flight");
#undef STEP
out:
	close(fd);
	vgb_client_destroy(c);
	pump_until_clients(0);
}

/*
 * Under AddressSanitizer, freed blocks sit in a quarantine and large ones keep their mappings
 * until it drains: drain it so that the maps count only shows what the code under test holds.
 */
static void purge(void)
{
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_purge_allocator();
#endif
}

static uint64_t accepted(void)
{
	struct vgb_client *c = client_new(true);
	struct vgb_wire_stats_global g = { 0 };
	struct vgb_wire_stats_client *rows = NULL;

	vgb_client_stats(c, 0, &g, &rows);
	free(rows);
	vgb_client_destroy(c);
	pump_until_clients(0);
	return g.clients_accepted;
}

static void test_cleanup(void)
{
	struct leak_snapshot before;
	unsigned bad = 0;
	uint64_t acc0;

	session(5, true); /* warm-up, checked: first-use caches (udmabuf probe, ...) */
	acc0 = accepted();
	purge();
	leak_snapshot(&before);
	for (unsigned i = 0; i < 1000; i++) {
		session(i, false);
		if (vgb_server_client_count(srv) != 0)
			bad++;
	}
	tap_is_uint(bad, 0, "1000 cycles: every client was freed at disconnect");

	purge();
	leak_check(&before, "1000 connect/use/disconnect cycles");
	tap_is_uint(accepted() - acc0, 1001, "the daemon served all 1000 sessions");
}

/* ---- random packets ---- */

static uint64_t fuzz_state = 0x243f6a8885a308d3ull;

static uint32_t fuzz_rand(void)
{
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 7;
	fuzz_state ^= fuzz_state << 17;
	return (uint32_t)(fuzz_state >> 16);
}

/*
 * 4000 packets of random shape (seeded, so a failure reproduces): a type among the known ones
 * and a few unknown, flags mostly 0, a length that is right, short or long, payload bytes
 * random or zero, 0..6 fds, and virtio-gpu commands with a real command type and random body.
 * Every packet must get exactly one reply, the daemon must keep serving, the client must keep
 * the windows and blob it set up (at addresses and ids random bytes will not hit), and nothing
 * the packets carried may stay open once the client is gone.
 */
static void test_fuzz(void)
{
	static uint8_t payload[4096];
	struct leak_snapshot before;
	struct vgb_client *c;
	int memfd, fds[8];
	unsigned replies = 0, sent = 0, errors = 0, gpu_cmds = 0;
	uint8_t cmd[512];
	size_t n;

	leak_snapshot(&before);
	memfd = memfd_new(MiB);
	c = client_new(true);
	tap_is_int(vgb_client_add_ram(c, memfd, 0x7654300000000ull, MiB, 0), 0, "fuzz: setup RAM");
	tap_is_int(vgb_client_map_window(c, 0x7654400000000ull, MiB, 1, 2, 0), 0, "fuzz: setup BAR");
	struct virtio_gpu_mem_entry e = { .addr = 0x7654300000000ull, .length = 65536 };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 0x5eed1234, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 65536, &e, 1);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "fuzz: setup blob");
	for (int i = 0; i < 8; i++)
		fds[i] = memfd;

	for (unsigned i = 0; i < 4000; i++) {
		struct vgb_msg_header h = { .id = i + 1 };
		struct vgb_client_reply rep;
		uint32_t len = fuzz_rand() % 200, pick = fuzz_rand() % 16;
		unsigned nfd = fuzz_rand() % 8 < 6 ? 0 : 1 + fuzz_rand() % 6;

		bool well_formed_gpu = pick < 5; /* a third: a command that reaches the gpu */

		h.type = (uint16_t)(pick < 12 ? 1 + pick % VGB_MSG_TYPE_MAX_ : fuzz_rand());
		h.flags = fuzz_rand() % 8 ? 0 : (uint16_t)fuzz_rand();
		if (well_formed_gpu) {
			h.type = VGB_MSG_VIRTIO_GPU_CMD;
			h.flags = 0;
			len = 32 + fuzz_rand() % 168;
			nfd = 0;
		}
		for (uint32_t k = 0; k < len; k++)
			payload[k] = fuzz_rand() % 3 ? 0 : (uint8_t)fuzz_rand();
		if (h.type == VGB_MSG_VIRTIO_GPU_CMD && len >= 8 + 24) {
			struct virtio_gpu_ctrl_hdr ch = { 0 };
			memset(payload, 0, 8);
			memcpy(&ch, payload + 8, sizeof(ch));
			ch.type = fuzz_rand() % 4 ? 0x100 + fuzz_rand() % 16 : 0x200 + fuzz_rand() % 4;
			ch.flags &= 3;
			memcpy(payload + 8, &ch, sizeof(ch));
		}
		if (h.type == VGB_MSG_HELLO || h.type == VGB_MSG_REMOVE_DEVICE)
			h.type = VGB_MSG_STATS; /* keep the session and the daemon device as they are */
		h.length = len;
		if (!well_formed_gpu && fuzz_rand() % 8 == 0)
			h.length = len + (fuzz_rand() % 16) - 8; /* a lie */
		memcpy(pkt, &h, sizeof(h));
		memcpy(pkt + sizeof(h), payload, len);
		send_raw(c, pkt, sizeof(h) + len, fds, nfd);
		sent++;
		if (vgb_client_recv(c, &rep) < 0)
			break;
		replies++;
		if (rep.result < 0)
			errors++;
		else if (h.type == VGB_MSG_VIRTIO_GPU_CMD)
			gpu_cmds++;
		vgb_client_reply_finish(&rep);
	}
	tap_is_uint(replies, sent, "fuzz: %u packets, one reply each (%u errors, %u virtio-gpu "
		    "responses)", sent, errors, gpu_cmds);
	tap_is_int(vgb_client_hello(c, NULL), -EALREADY, "fuzz: the session is still served");
	struct vgb_wire_stats_client st = self_stats(c);
	tap_ok(st.windows >= 2 && st.resources >= 1,
	       "fuzz: the client still has its windows (%u) and blob (%u resources)", st.windows,
	       st.resources);
	n = vgb_guest_transfer_2d(cmd, sizeof(cmd), 0x5eed1234, 0, 0, 16, 16, 0, 0);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "fuzz: the blob still answers");
	vgb_client_destroy(c);
	pump_until_clients(0);
	close(memfd);
	purge();
	leak_check(&before, "fuzz: nothing left open after the client left");
}

/* ---- SIGTERM ---- */

static void test_sigterm(void)
{
	char path[160];
	int ready[2];
	pid_t pid;
	char b;
	int r;

	snprintf(path, sizeof(path), "%s/term.sock", dir);
	if (pipe2(ready, O_CLOEXEC) < 0)
		tap_bail("pipe");
	pid = fork();
	if (pid < 0)
		tap_bail("fork");
	if (pid == 0) {
		struct vgb_server *s;

		close(ready[0]);
		/* The parent's server stays untouched (destroying it would unlink its socket). */
		if (vgb_server_create(NULL, &s) < 0 || vgb_server_listen(s, path) < 0 ||
		    vgb_server_watch_signals(s) < 0)
			_exit(10);
		if (write(ready[1], "r", 1) != 1)
			_exit(11);
		r = vgb_server_run(s);
		vgb_server_destroy(s);
		_exit(r == 0 ? 0 : 12);
	}
	close(ready[1]);
	tap_ok(read(ready[0], &b, 1) == 1, "child daemon is listening");
	close(ready[0]);

	struct stat st = { 0 };
	r = stat(path, &st);
	tap_ok(r == 0 && (st.st_mode & 0777) == 0600, "socket mode is 0600 (%o)",
	       (unsigned)(st.st_mode & 0777));

	struct vgb_client *c;
	tap_is_int(vgb_client_connect(path, &c), 0, "connect to the child");
	tap_is_int(vgb_client_hello(c, NULL), 0, "HELLO to the child");
	int fd = memfd_new(MiB);
	tap_is_int(vgb_client_add_ram(c, fd, 0, MiB, 0), 0, "the client holds a window");
	close(fd);

	kill(pid, SIGTERM);
	int status = 0;
	waitpid(pid, &status, 0);
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "SIGTERM: the daemon exits 0 (status 0x%x)", status);
	tap_ok(access(path, F_OK) < 0 && errno == ENOENT, "SIGTERM: the socket file is removed");
	r = vgb_client_hello(c, NULL);
	tap_ok(r == -ECONNRESET || r == -EPIPE, "SIGTERM: the client sees the connection closed (%s)",
	       strerror(-r));
	vgb_client_destroy(c);
}

/* ---- listening socket ---- */

static void test_listen(void)
{
	struct vgb_server *s2;
	char path[160];

	tap_is_int(vgb_server_create(NULL, &s2), 0, "a second server");
	tap_is_int(vgb_server_listen(s2, sock_path), -EADDRINUSE,
		   "listening on a live socket: -EADDRINUSE");
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		tap_bail("path too long");
	memcpy(sa.sun_path, path, strlen(path) + 1);
	bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd); /* a socket file nobody listens on */
	tap_is_int(vgb_server_listen(s2, path), 0, "a stale socket file is replaced");
	vgb_server_destroy(s2);
	tap_ok(access(path, F_OK) < 0, "destroy unlinks its socket");

	struct vgb_server_options o;
	vgb_server_options_init(&o);
	o.max_entries = 0;
	tap_is_int(vgb_server_create(&o, &s2), -EINVAL, "a zero limit is refused");
}

/*
 * A client with the wrong uid is refused and told why (EACCES); the socket belongs to the allowed
 * uid, so that it can connect at all; the (max_clients + 1)th client hears EUSERS.
 */
static void test_peercred(void)
{
	struct vgb_server_options o;
	struct vgb_server *s2;
	struct vgb_client *c, *c2;
	struct stat st;
	char path[160];

	vgb_server_options_init(&o);
	o.allowed_uid = getuid() + 1;
	snprintf(path, sizeof(path), "%s/cred.sock", dir);
	if (vgb_server_create(&o, &s2) < 0 || vgb_server_listen(s2, path) < 0)
		tap_bail("server for the uid test");
	if (stat(path, &st) < 0)
		tap_bail("stat %s", path);
	if (geteuid() == 0)
		tap_ok(st.st_uid == o.allowed_uid &&
			       (st.st_mode & 0777) == 0600,
		       "the socket is handed to the allowed uid (owner %u, mode %o)",
		       (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
	else
		tap_ok((st.st_mode & 0777) == 0666,
		       "not root: the socket is opened to all, SO_PEERCRED decides");
	tap_is_int(vgb_client_connect(path, &c), 0, "connect with the wrong uid");
	vgb_client_set_wait_hook(c, server_pump, s2);
	tap_is_int(vgb_client_hello(c, NULL), -EACCES,
		   "SO_PEERCRED: a foreign uid is refused and told why (EACCES)");
	tap_is_uint(vgb_server_client_count(s2), 0, "no client was created for it");
	vgb_client_destroy(c);
	vgb_server_destroy(s2);

	vgb_server_options_init(&o);
	o.max_clients = 1;
	if (vgb_server_create(&o, &s2) < 0 || vgb_server_listen(s2, path) < 0)
		tap_bail("server for the max-clients test");
	tap_is_int(vgb_client_connect(path, &c), 0, "first client");
	vgb_client_set_wait_hook(c, server_pump, s2);
	tap_is_int(vgb_client_hello(c, NULL), 0, "served");
	tap_is_int(vgb_client_connect(path, &c2), 0, "second client over --max-clients 1");
	vgb_client_set_wait_hook(c2, server_pump, s2);
	tap_is_int(vgb_client_hello(c2, NULL), -EUSERS, "refused and told why (EUSERS)");
	vgb_client_destroy(c2);
	vgb_client_destroy(c);
	vgb_server_destroy(s2);
}

int main(void)
{
	struct vgb_server_options o;
	struct vgb_vfio_device *dev;
	int r;

	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	snprintf(sock_path, sizeof(sock_path), "%s/vgb.sock", dir);

	vgb_server_options_init(&o);
	o.max_msg = SMALL_MAX_MSG; /* so that an oversized packet can be sent without privileges */
	r = vgb_server_create(&o, &srv);
	if (r < 0)
		tap_bail("server: %s", strerror(-r));
	r = vgb_server_listen(srv, sock_path);
	if (r < 0)
		tap_bail("listen: %s", strerror(-r));
	r = vgb_vfio_vdev_create("bar0=4K,bar2=4M,dmabuf=off,name=daemon", &dev);
	if (r < 0)
		tap_bail("virtual device: %s", strerror(-r));
	tap_is_int(vgb_server_add_device(srv, dev), 1, "daemon device has id 1");

	test_basics();
	test_malformed();
	test_isolation();
	test_cleanup();
	test_fuzz();
	test_listen();
	test_peercred();
	test_sigterm();

	vgb_server_destroy(srv);
	tap_ok(access(sock_path, F_OK) < 0, "the socket is gone after destroy");
	rmdir(dir);
	return tap_done();
}
