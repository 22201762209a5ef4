/* SPDX-License-Identifier: MIT */
/*
 * ADD_VFIO_DEVICE of a vfio-user device, in-process: vgbridge's vfio-user server (a thread)
 * serves the virtual GPU, the daemon connects to it by socket path and by a connected fd. A
 * blob of scattered BAR2 pages is shown through the export planner's CPU view (the protocol
 * has no DMA_BUF), and the recording sink's frame equals the server's memfd pages byte for
 * byte. When the server goes away the blob's next flush fails (the client is told) and nothing
 * crashes; nothing is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client-gpu.h"
#include "client.h"
#include "guest.h"
#include "leak.h"
#include "record-sink.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"
#include "vus.h"

#define PG 4096u
#define BAR_GPA 0x100000000ull
#define W 64u
#define H 64u /* 64 x 64 x 4 = 4 pages */

struct srv {
	struct vgb_vus *vus;
	pthread_t thread;
	pthread_mutex_t lock;
	int stop;
};

static void *srv_main(void *data)
{
	struct srv *s = data;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vgb_vus_get_fd(s->vus), .events = POLLIN },
			{ .fd = s->stop, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		pthread_mutex_lock(&s->lock);
		vgb_vus_dispatch(s->vus, 0);
		pthread_mutex_unlock(&s->lock);
	}
}

static void srv_start(struct srv *s, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (vgb_vus_create("bar2=1M", NULL, &s->vus) < 0)
		tap_bail("vgb_vus_create");
	if (path) {
		snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 2) < 0)
			tap_bail("listen %s", path);
		if (vgb_vus_listen(s->vus, fd) < 0)
			tap_bail("vgb_vus_listen");
	}
	s->stop = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_create(&s->thread, NULL, srv_main, s);
}

static void srv_stop(struct srv *s)
{
	uint64_t one = 1;

	if (write(s->stop, &one, sizeof(one)) != sizeof(one))
		tap_bail("eventfd");
	pthread_join(s->thread, NULL);
	vgb_vus_destroy(s->vus);
	close(s->stop);
	pthread_mutex_destroy(&s->lock);
}

int main(void)
{
	static const uint32_t pages[] = { 40, 8, 9, 100 };
	char dir[] = "/tmp/vgb-test-svu-XXXXXX", path[64], vu_path[64];
	struct vgb_msg_add_device_reply dev;
	struct vgb_msg_export_blob_reply ex;
	struct vgb_server_options o;
	struct record_sink *sink;
	struct vgb_server *s;
	struct vgb_client *c;
	struct srv vu, vu2;
	uint8_t cmd[1024], *want;
	size_t n;
	int fd, efd = -1, r, fds0, maps0, memfd;

	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/s", dir);
	snprintf(vu_path, sizeof(vu_path), "%s/vu", dir);
	fds0 = leak_count_fds();
	maps0 = leak_count_file_maps();

	sink = record_sink_create();
	sink->auto_complete = true;
	vgb_server_options_init(&o);
	o.display = &sink->base;
	if (vgb_server_create(&o, &s) < 0 || vgb_server_listen(s, path) < 0)
		tap_bail("server");
	if (vgb_client_connect(path, &c) < 0)
		tap_bail("connect");
	vgb_client_set_wait_hook(c, server_pump, s);
	tap_is_int(vgb_client_hello(c, NULL), 0, "HELLO");

	r = vgb_client_add_device(c, VGB_DEVICE_VFIO_USER, vu_path, -1, &dev);
	tap_ok(r == -ENOENT || r == -ECONNREFUSED,
	       "ADD_VFIO_DEVICE of a vfio-user socket nobody serves: %s", strerror(-r));

	srv_start(&vu, vu_path);
	memfd = vgb_vfio_vdev_region_memfd(vgb_vus_device(vu.vus), 2);
	want = malloc(256 * PG);
	for (uint32_t i = 0; i < 256 * PG; i++)
		want[i] = (uint8_t)(i * 11 + (i >> 12));
	pwrite(memfd, want, 256 * PG, 0);

	r = vgb_client_add_device(c, VGB_DEVICE_VFIO_USER, vu_path, -1, &dev);
	tap_is_int(r, 0, "ADD_VFIO_DEVICE by vfio-user socket path");
	tap_ok(r == 0 && (dev.caps & VGB_VFIO_CAP_MMAP) && !(dev.caps & VGB_VFIO_CAP_DMA_BUF) &&
		       dev.num_regions == 9,
	       "mmap, no DMA_BUF, 9 regions (caps 0x%x)", dev.caps);
	tap_is_int(vgb_client_map_window(c, BAR_GPA, 1 << 20, dev.device_id, 2, 0), 0,
		   "MAP_VFIO_WINDOW on its BAR2");

	struct virtio_gpu_mem_entry e[4];
	for (unsigned i = 0; i < 4; i++)
		e[i] = (struct virtio_gpu_mem_entry){ .addr = BAR_GPA + pages[i] * PG, .length = PG };
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 5, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 4 * PG, e, 4);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "a blob of scattered BAR2 pages");
	n = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, 5, W, H,
				       VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, W * 4, 0, 0, 0, W, H);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "SET_SCANOUT_BLOB");
	n = vgb_guest_flush(cmd, sizeof(cmd), 5, 0, 0, W, H, 0);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "RESOURCE_FLUSH");
	{
		struct record_frame *f = sink->n_frames ? &sink->frames[sink->n_frames - 1] : NULL;
		bool same = f && f->had_cpu && !f->had_dmabuf && f->pixels;

		for (unsigned i = 0; same && i < 4; i++)
			same = memcmp(f->pixels + i * PG, want + pages[i] * PG, PG) == 0;
		tap_ok(same, "the display's frame is the server's scattered pages, byte for byte, "
			     "through a CPU view");
	}
	r = vgb_client_export_blob(c, 5, &ex, &efd);
	tap_is_errno(r, -EOPNOTSUPP, "EXPORT_BLOB: no dmabuf over vfio-user, only the CPU view");
	vgb_close(efd);
	{
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;

		r = vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows);
		tap_ok(r == 0 && rows[0].blobs_cpu == 1 && rows[0].blobs_vfio_dmabuf == 0 &&
			       rows[0].export_failures == 0,
		       "STATS: one CPU-view blob, no export failure");
		free(rows);
	}

	/* The server goes away: the device is gone, the blob's next use fails, no crash. */
	srv_stop(&vu);
	{
		unsigned frames = sink->n_frames;

		pwrite(memfd, "x", 1, 0); /* the memfd is gone with the server: this fails */
		n = vgb_guest_flush(cmd, sizeof(cmd), 5, 0, 0, W, H, 0);
		r = client_gpu(c, cmd, n);
		tap_ok(r >= VIRTIO_GPU_RESP_ERR_UNSPEC,
		       "server gone: flushing the blob answers a virtio-gpu error (%#x)", r);
		tap_is_uint(sink->n_frames, frames, "and nothing new reaches the display");
	}
	n = vgb_guest_unref(cmd, sizeof(cmd), 5);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "RESOURCE_UNREF of it");
	tap_is_int(vgb_client_remove_device(c, dev.device_id), 0, "REMOVE_DEVICE of the gone device");

	/* By a connected socket. */
	{
		int sv[2];

		srv_start(&vu2, NULL);
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		pthread_mutex_lock(&vu2.lock);
		vgb_vus_attach(vu2.vus, sv[1]);
		pthread_mutex_unlock(&vu2.lock);
		r = vgb_client_add_device(c, VGB_DEVICE_VFIO_USER_FD, "vmm-vu", sv[0], &dev);
		close(sv[0]); /* the daemon holds its own */
		tap_ok(r == 0 && !(dev.caps & VGB_VFIO_CAP_DMA_BUF),
		       "ADD_VFIO_DEVICE with a connected vfio-user socket (r=%d)", r);
		fd = memfd_create("not-a-socket", MFD_CLOEXEC);
		r = vgb_client_add_device(c, VGB_DEVICE_VFIO_USER_FD, "bad", fd, NULL);
		close(fd);
		tap_ok(r < 0, "a memfd as the socket: refused (%s)", strerror(-r));
		r = vgb_client_add_device(c, VGB_DEVICE_VFIO_USER_FD, "nofd", -1, NULL);
		tap_is_errno(r, -EBADMSG, "kind VFIO_USER_FD without an fd: -EBADMSG");
		r = vgb_client_add_device(c, 6, "x", -1, NULL);
		tap_is_errno(r, -EINVAL, "kind 6: -EINVAL");
	}

	vgb_client_destroy(c);
	for (int i = 0; i < 100 && vgb_server_client_count(s); i++)
		vgb_server_dispatch(s, 10);
	srv_stop(&vu2);
	vgb_server_destroy(s);
	record_sink_destroy(sink);
	free(want);
	unlink(path);
	unlink(vu_path);
	rmdir(dir);
	tap_ok(leak_count_fds() == fds0 && leak_count_file_maps() == maps0,
	       "no fd or file mapping left (fds %d -> %d, maps %d -> %d)", fds0, leak_count_fds(),
	       maps0, leak_count_file_maps());
	return tap_done();
}
