/* SPDX-License-Identifier: MIT */
/*
 * Wire protocol: encoding, parsing, request validation (a table of malformed requests with
 * their expected -errno), and fd passing over a real socketpair: counts, MSG_CTRUNC, and that
 * every received fd is closed when a packet is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "leak.h"
#include "protocol.h"
#include "rawsock.h"
#include "tap.h"
#include "vgb/util.h"

static uint8_t buf[VGB_PROTO_MAX_MSG];
static uint8_t rx[VGB_PROTO_MAX_MSG];

static void test_encode_parse(void)
{
	struct vgb_msg_hello h = { .version = 1, .features = 0x5 };
	struct vgb_msg msg;
	ssize_t n;

	n = vgb_msg_encode(buf, sizeof(buf), VGB_MSG_HELLO, 0, 0x1122334455667788ull, &h,
			   sizeof(h), NULL, 0);
	tap_is_int(n, 32, "encode: header + 16-byte HELLO");
	/* The header is little-endian on the wire: check the bytes, not the struct. */
	static const uint8_t want[16] = { 1, 0, 0, 0, 16, 0, 0, 0,
					  0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 };
	tap_is_mem(buf, want, 16, "encode: header bytes (type, flags, length, id) LE");
	tap_is_int(vgb_msg_parse(buf, (size_t)n, &msg), 0, "parse a well-formed packet");
	tap_is_uint(msg.hdr.id, 0x1122334455667788ull, "parse: id");
	tap_is_uint(msg.hdr.length, 16, "parse: length");
	tap_ok(msg.payload == buf + 16, "parse: payload follows the header");

	tap_is_int(vgb_msg_parse(buf, 15, &msg), -EBADMSG, "parse: shorter than a header");
	tap_is_int(vgb_msg_parse(buf, (size_t)n - 1, &msg), -EBADMSG,
		   "parse: length says more than the packet has");
	tap_is_int(vgb_msg_parse(buf, (size_t)n + 1, &msg), -EBADMSG,
		   "parse: packet longer than the length says");
	tap_is_int(vgb_msg_parse(buf, VGB_PROTO_MAX_MSG + 1, &msg), -EMSGSIZE,
		   "parse: over VGB_PROTO_MAX_MSG");
	tap_is_int(vgb_msg_encode(buf, 20, VGB_MSG_HELLO, 0, 1, &h, sizeof(h), NULL, 0), -EMSGSIZE,
		   "encode: does not fit the buffer");
	tap_is_int(vgb_msg_encode(buf, sizeof(buf), VGB_MSG_HELLO, 0, 1, buf, VGB_PROTO_MAX_MSG,
				  NULL, 0),
		   -EMSGSIZE, "encode: over VGB_PROTO_MAX_MSG");
	tap_is_str(vgb_msg_type_name(VGB_MSG_EXPORT_BLOB), "EXPORT_BLOB", "type name");
	tap_is_str(vgb_msg_type_name(999), "unknown", "unknown type name");
}

/* A request for vgb_msg_check_request(): type, flags, payload bytes, fds received. */
struct check_case {
	const char *what;
	uint16_t type, flags;
	const void *payload;
	size_t len;
	unsigned n_fds;
	int want;
};

static void run_check(const struct check_case *c)
{
	struct vgb_msg msg = { 0 };

	msg.hdr.type = c->type;
	msg.hdr.flags = c->flags;
	msg.hdr.length = (uint32_t)c->len;
	msg.payload = c->payload;
	msg.n_fds = c->n_fds;
	tap_is_int(vgb_msg_check_request(&msg), c->want, "check: %s", c->what);
}

static void test_check_request(void)
{
	struct vgb_msg_hello hello = { .version = 1 }, hello_res = { .version = 1, .reserved = 1 };
	struct vgb_msg_add_ram ram = { .n_fds = 1, .gpa = 0, .size = 4096 };
	struct vgb_msg_add_ram ram_flags = ram, ram_nfd0 = ram, ram_nfd2 = ram;
	struct vgb_msg_map_window map = { .size = 4096, .device_id = 1 };
	struct vgb_msg_remove_window rw = { 0 };
	struct vgb_msg_remove_device rd = { .device_id = 1 }, rd_res = { .reserved = 7 };
	struct vgb_msg_export_blob ex = { .resource_id = 1 }, ex_flags = { .flags = 2 };
	struct vgb_msg_stats st = { 0 }, st_flags = { .flags = 0x80 };
	struct vgb_msg_query_device q = { 0 }, q_flags = { .flags = 4 };
	struct {
		struct vgb_msg_gpu_cmd h;
		uint8_t cmd[24];
	} gpu = { { 0 }, { 0 } }, gpu_q = { { .queue = 2 }, { 0 } }, gpu_res = { { .reserved = 1 },
									      { 0 } };
	struct {
		struct vgb_msg_add_device h;
		char path[8];
	} dev = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 7 }, "default" },
	  dev_fd = { { .n_fds = 1, .kind = VGB_DEVICE_FD, .path_len = 0 }, "" },
	  dev_nul = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 7 }, "def\0ult" },
	  dev_kind = { { .kind = 9, .path_len = 7 }, "default" },
	  dev_long = { { .kind = VGB_DEVICE_VIRTUAL, .path_len = 300 }, "default" },
	  dev_empty = { { .kind = VGB_DEVICE_BDF, .path_len = 0 }, "" },
	  dev_fdkind = { { .kind = VGB_DEVICE_VIRTUAL, .n_fds = 1, .path_len = 7 }, "default" };

	ram_flags.flags = 1;
	ram_nfd0.n_fds = 0;
	ram_nfd2.n_fds = 2;

	const struct check_case cases[] = {
		{ "HELLO ok", VGB_MSG_HELLO, 0, &hello, sizeof(hello), 0, 0 },
		{ "HELLO reserved set", VGB_MSG_HELLO, 0, &hello_res, sizeof(hello_res), 0, -EINVAL },
		{ "HELLO truncated", VGB_MSG_HELLO, 0, &hello, 8, 0, -EBADMSG },
		{ "HELLO trailing bytes", VGB_MSG_HELLO, 0, buf, 24, 0, -EBADMSG },
		{ "HELLO with an fd", VGB_MSG_HELLO, 0, &hello, sizeof(hello), 1, -EBADMSG },
		{ "request with the reply flag", VGB_MSG_HELLO, VGB_MSG_FLAG_REPLY, &hello,
		  sizeof(hello), 0, -EINVAL },
		{ "request with unknown flags", VGB_MSG_HELLO, 0x80, &hello, sizeof(hello), 0,
		  -EINVAL },
		{ "type 0", 0, 0, &hello, sizeof(hello), 0, -EOPNOTSUPP },
		{ "unknown type", 77, 0, &hello, sizeof(hello), 0, -EOPNOTSUPP },
		{ "type 0xffff", 0xffff, 0, NULL, 0, 0, -EOPNOTSUPP },
		{ "ADD_RAM ok", VGB_MSG_ADD_RAM, 0, &ram, sizeof(ram), 1, 0 },
		{ "ADD_RAM without its fd", VGB_MSG_ADD_RAM, 0, &ram, sizeof(ram), 0, -EBADMSG },
		{ "ADD_RAM with two fds", VGB_MSG_ADD_RAM, 0, &ram, sizeof(ram), 2, -EBADMSG },
		{ "ADD_RAM stating 0 fds", VGB_MSG_ADD_RAM, 0, &ram_nfd0, sizeof(ram), 0, -EBADMSG },
		{ "ADD_RAM stating 2 fds", VGB_MSG_ADD_RAM, 0, &ram_nfd2, sizeof(ram), 2, -EBADMSG },
		{ "ADD_RAM flags set", VGB_MSG_ADD_RAM, 0, &ram_flags, sizeof(ram), 1, -EINVAL },
		{ "ADD_RAM truncated", VGB_MSG_ADD_RAM, 0, &ram, 24, 1, -EBADMSG },
		{ "ADD_RAM empty", VGB_MSG_ADD_RAM, 0, NULL, 0, 1, -EBADMSG },
		{ "ADD_VFIO_DEVICE virtual ok", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev, 16 + 7, 0, 0 },
		{ "ADD_VFIO_DEVICE fd ok", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_fd, 16, 1, 0 },
		{ "ADD_VFIO_DEVICE fd kind without fd", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_fd, 16, 0,
		  -EBADMSG },
		{ "ADD_VFIO_DEVICE path kind stating an fd", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_fdkind,
		  16 + 7, 1, -EBADMSG },
		{ "ADD_VFIO_DEVICE path_len beyond payload", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev, 16 + 5,
		  0, -EBADMSG },
		{ "ADD_VFIO_DEVICE path_len short of payload", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev,
		  16 + 8, 0, -EBADMSG },
		{ "ADD_VFIO_DEVICE NUL in path", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_nul, 16 + 7, 0,
		  -EINVAL },
		{ "ADD_VFIO_DEVICE unknown kind", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_kind, 16 + 7, 0,
		  -EINVAL },
		{ "ADD_VFIO_DEVICE path too long", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_long, 16 + 7, 0,
		  -ENAMETOOLONG },
		{ "ADD_VFIO_DEVICE empty path", VGB_MSG_ADD_VFIO_DEVICE, 0, &dev_empty, 16, 0,
		  -EINVAL },
		{ "MAP_VFIO_WINDOW ok", VGB_MSG_MAP_VFIO_WINDOW, 0, &map, sizeof(map), 0, 0 },
		{ "MAP_VFIO_WINDOW truncated", VGB_MSG_MAP_VFIO_WINDOW, 0, &map, 31, 0, -EBADMSG },
		{ "MAP_VFIO_WINDOW with a stray fd", VGB_MSG_MAP_VFIO_WINDOW, 0, &map, sizeof(map), 1,
		  -EBADMSG },
		{ "REMOVE_WINDOW ok", VGB_MSG_REMOVE_WINDOW, 0, &rw, sizeof(rw), 0, 0 },
		{ "REMOVE_WINDOW truncated", VGB_MSG_REMOVE_WINDOW, 0, &rw, 4, 0, -EBADMSG },
		{ "REMOVE_DEVICE ok", VGB_MSG_REMOVE_DEVICE, 0, &rd, sizeof(rd), 0, 0 },
		{ "REMOVE_DEVICE reserved set", VGB_MSG_REMOVE_DEVICE, 0, &rd_res, sizeof(rd), 0,
		  -EINVAL },
		{ "VIRTIO_GPU_CMD ok", VGB_MSG_VIRTIO_GPU_CMD, 0, &gpu, sizeof(gpu), 0, 0 },
		{ "VIRTIO_GPU_CMD bad queue", VGB_MSG_VIRTIO_GPU_CMD, 0, &gpu_q, sizeof(gpu), 0,
		  -EINVAL },
		{ "VIRTIO_GPU_CMD reserved set", VGB_MSG_VIRTIO_GPU_CMD, 0, &gpu_res, sizeof(gpu), 0,
		  -EINVAL },
		{ "VIRTIO_GPU_CMD no prefix", VGB_MSG_VIRTIO_GPU_CMD, 0, &gpu, 4, 0, -EBADMSG },
		{ "EXPORT_BLOB ok", VGB_MSG_EXPORT_BLOB, 0, &ex, sizeof(ex), 0, 0 },
		{ "EXPORT_BLOB flags set", VGB_MSG_EXPORT_BLOB, 0, &ex_flags, sizeof(ex), 0, -EINVAL },
		{ "STATS ok", VGB_MSG_STATS, 0, &st, sizeof(st), 0, 0 },
		{ "STATS unknown flag", VGB_MSG_STATS, 0, &st_flags, sizeof(st), 0, -EINVAL },
		{ "QUERY_DEVICE ok", VGB_MSG_QUERY_DEVICE, 0, &q, sizeof(q), 0, 0 },
		{ "QUERY_DEVICE unknown flag", VGB_MSG_QUERY_DEVICE, 0, &q_flags, sizeof(q), 0,
		  -EINVAL },
	};
	memset(buf, 0, 64);
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++)
		run_check(&cases[i]);
}

static int make_memfd(void)
{
	int fd = memfd_create("t", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_socket(void)
{
	struct leak_snapshot before;
	int sv[2], fds[8];
	struct vgb_msg msg;
	struct vgb_msg_add_ram ram = { .n_fds = 1, .size = 4096 };
	ssize_t n;

	leak_snapshot(&before);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair: %s", strerror(errno));
	for (int i = 0; i < 8; i++)
		fds[i] = make_memfd();

	/* A packet with one fd: received CLOEXEC, counted, parsed. */
	tap_is_int(vgb_msg_send(sv[0], VGB_MSG_ADD_RAM, 0, 9, &ram, sizeof(ram), NULL, 0, fds, 1,
				0),
		   0, "send ADD_RAM with one fd");
	n = vgb_msg_recv(sv[1], rx, sizeof(rx), &msg);
	tap_is_int(n, 16 + 32, "recv: whole packet");
	tap_is_uint(msg.n_fds, 1, "recv: one fd");
	tap_ok(msg.n_fds == 1 && (fcntl(msg.fds[0], F_GETFD) & FD_CLOEXEC),
	       "recv: the fd is CLOEXEC");
	tap_is_int(vgb_msg_check_request(&msg), 0, "recv: the request checks out");
	vgb_msg_close_fds(&msg);

	/* More fds than VGB_PROTO_MAX_FDS: the kernel cuts them (MSG_CTRUNC); none may leak. */
	int before_fds = leak_count_fds();
	memcpy(buf, &(struct vgb_msg_header){ .type = VGB_MSG_ADD_RAM, .length = 32, .id = 4 }, 16);
	tap_is_int(rawsock_send(sv[0], buf, 16 + 32, fds, 8), 0, "send a packet with 8 fds");
	n = vgb_msg_recv(sv[1], rx, sizeof(rx), &msg);
	tap_is_int(n, -EBADMSG, "recv: MSG_CTRUNC is refused");
	tap_is_int(leak_count_fds(), before_fds, "recv: no received fd left open after CTRUNC");

	/* A packet whose length lies, with fds: refused, fds closed, the id still known. */
	struct vgb_msg_header lie = { .type = VGB_MSG_ADD_RAM, .length = 100, .id = 42 };
	memcpy(buf, &lie, sizeof(lie));
	tap_is_int(rawsock_send(sv[0], buf, 16 + 32, fds, 2), 0, "send a packet with a lying length");
	n = vgb_msg_recv(sv[1], rx, sizeof(rx), &msg);
	tap_is_int(n, -EBADMSG, "recv: lying length refused");
	tap_is_uint(msg.hdr.id, 42, "recv: the id is kept for the error reply");
	tap_is_int(leak_count_fds(), before_fds, "recv: fds of a refused packet are closed");

	/* A packet shorter than the header. */
	tap_is_int(rawsock_send(sv[0], buf, 7, fds, 1), 0, "send a 7-byte packet");
	n = vgb_msg_recv(sv[1], rx, sizeof(rx), &msg);
	tap_is_int(n, -EBADMSG, "recv: runt packet refused");
	tap_is_uint(msg.hdr.id, 0, "recv: runt packet has no id");
	tap_is_int(leak_count_fds(), before_fds, "recv: runt packet's fd closed");

	/* Larger than the receive buffer: MSG_TRUNC gives the real size. */
	lie = (struct vgb_msg_header){ .type = VGB_MSG_STATS, .length = 4000 - 16, .id = 5 };
	memcpy(buf, &lie, sizeof(lie));
	tap_is_int(rawsock_send(sv[0], buf, 4000, fds, 1), 0, "send a 4000-byte packet");
	n = vgb_msg_recv(sv[1], rx, 1024, &msg);
	tap_is_int(n, -EMSGSIZE, "recv: over the buffer is -EMSGSIZE");
	tap_is_uint(msg.hdr.id, 5, "recv: oversized packet keeps its id");
	tap_is_int(leak_count_fds(), before_fds, "recv: oversized packet's fd closed");

	/* Nothing to read, then the peer closes. */
	int fl = fcntl(sv[1], F_GETFL);
	fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
	tap_is_int(vgb_msg_recv(sv[1], rx, sizeof(rx), &msg), -EAGAIN, "recv: -EAGAIN when empty");
	close(sv[0]);
	tap_is_int(vgb_msg_recv(sv[1], rx, sizeof(rx), &msg), 0, "recv: 0 when the peer closed");
	close(sv[1]);
	for (int i = 0; i < 8; i++)
		close(fds[i]);
	tap_is_int(vgb_msg_send(-1, 1, 0, 1, NULL, 0, NULL, 0, fds, 5, 0), -EINVAL,
		   "send: more than VGB_PROTO_MAX_FDS refused");
	leak_check(&before, "socket tests");
}

int main(void)
{
	tap_plan_lazy();
	test_encode_parse();
	test_check_request();
	test_socket();
	return tap_done();
}
