/* SPDX-License-Identifier: MIT */
/*
 * ADD_VFIO_DEVICE with a device fd (what a VMM passes) against the fake VFIO kernel at the
 * ioctl seam (tests/lib/fake-vfio.h), in-process: the daemon adopts the fd, a window on its
 * BAR2 carries a blob that the planner exports as a VFIO dmabuf, EXPORT_BLOB hands it back,
 * REMOVE_DEVICE takes the window (the blob goes stale, nothing is freed under the display),
 * and the daemon leaves no fd behind, also when the fd is not a VFIO device at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"
#include "fake-vfio.h"
#include "guest.h"
#include "leak.h"
#include "client-gpu.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "vgb/log.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define PG 4096u
#define BAR_GPA 0x100000000ull

int main(void)
{
	char dir[] = "/tmp/vgb-test-svfio-XXXXXX", path[64];
	struct leak_snapshot before;
	struct vgb_msg_add_device_reply dev;
	struct vgb_msg_export_blob_reply ex;
	struct vgb_server *s;
	struct vgb_client *c;
	struct fake_vfio *f;
	uint8_t cmd[1024];
	size_t n;
	int fd, efd = -1, r;

	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	if (!mkdtemp(dir))
		tap_bail("mkdtemp");
	snprintf(path, sizeof(path), "%s/s", dir);
	f = fake_vfio_create();
	if (!f)
		tap_bail("fake vfio");
	fake_vfio_install(f);
	if (vgb_server_create(NULL, &s) < 0 || vgb_server_listen(s, path) < 0)
		tap_bail("server");

	leak_snapshot(&before);
	if (vgb_client_connect(path, &c) < 0)
		tap_bail("connect");
	vgb_client_set_wait_hook(c, server_pump, s);
	tap_is_int(vgb_client_hello(c, NULL), 0, "HELLO");

	/* Not a VFIO device: refused, and the daemon keeps no copy of it. */
	fd = memfd_create("not-vfio", MFD_CLOEXEC);
	r = vgb_client_add_device(c, VGB_DEVICE_FD, "not-vfio", fd, &dev);
	tap_ok(r < 0, "ADD_VFIO_DEVICE of a memfd that is no VFIO device: %s", strerror(-r));
	close(fd);

	fd = fake_vfio_dup_device(f);
	tap_is_int(vgb_client_add_device(c, VGB_DEVICE_FD, "vmm-gpu", fd, &dev), 0,
		   "ADD_VFIO_DEVICE with the VMM's device fd");
	close(fd); /* the daemon holds its own */
	tap_is_uint(dev.device_id, 1, "the device is id 1 (no daemon devices here)");
	tap_ok(dev.caps & VGB_VFIO_CAP_DMA_BUF, "it has the DMA_BUF capability (caps 0x%x)",
	       dev.caps);
	tap_is_int(vgb_client_map_window(c, BAR_GPA, 1 << 20, dev.device_id, 2, 0), 0,
		   "MAP_VFIO_WINDOW on its BAR2");

	struct virtio_gpu_mem_entry e[3] = {
		{ .addr = BAR_GPA + 40 * PG, .length = 4 * PG },
		{ .addr = BAR_GPA + 8 * PG, .length = 8 * PG },
		{ .addr = BAR_GPA + 100 * PG, .length = 4 * PG },
	};
	n = vgb_guest_create_blob(cmd, sizeof(cmd), 5, VIRTIO_GPU_BLOB_MEM_GUEST,
				  VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, 16 * PG, e, 3);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "a blob of scattered BAR2 pages");
	n = vgb_guest_set_scanout_blob(cmd, sizeof(cmd), 0, 5, 64, 64,
				       VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 256, 0, 0, 0, 64, 64);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "SET_SCANOUT_BLOB");
	r = vgb_client_export_blob(c, 5, &ex, &efd);
	tap_ok(r == 0 && ex.strategy == VGB_WIRE_STRATEGY_VFIO_DMABUF && efd >= 0 &&
		       ex.size == 16 * PG && ex.width == 64 && ex.stride == 256,
	       "EXPORT_BLOB: a VFIO dmabuf of %llu bytes, 64 wide, stride %u (r=%d)",
	       (unsigned long long)ex.size, ex.stride, r);
	tap_ok(efd >= 0 && (fcntl(efd, F_GETFD) & FD_CLOEXEC), "the received dmabuf is CLOEXEC");
	vgb_close(efd);

	struct vgb_wire_stats_global g;
	struct vgb_wire_stats_client *rows = NULL;
	r = vgb_client_stats(c, VGB_STATS_SELF_ONLY, &g, &rows);
	tap_ok(r == 0 && rows[0].blobs_vfio_dmabuf == 1 && rows[0].devices == 1,
	       "STATS: one VFIO-dmabuf blob, one device");
	free(rows);

	tap_is_int(vgb_client_remove_device(c, dev.device_id), 0, "REMOVE_DEVICE");
	r = vgb_client_export_blob(c, 5, &ex, &efd);
	tap_is_int(r, -ESTALE, "its blob went stale with the window");
	n = vgb_guest_flush(cmd, sizeof(cmd), 5, 0, 0, 64, 64, 0);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
		    "flushing it answers ERR_INVALID_PARAMETER");
	n = vgb_guest_unref(cmd, sizeof(cmd), 5);
	tap_is_int(client_gpu(c, cmd, n), VIRTIO_GPU_RESP_OK_NODATA, "RESOURCE_UNREF of it");

	vgb_client_destroy(c);
	for (int i = 0; i < 100 && vgb_server_client_count(s); i++)
		vgb_server_dispatch(s, 10);
	leak_check(&before, "client and device gone: no fd, no mapping left");

	vgb_server_destroy(s);
	fake_vfio_remove();
	fake_vfio_destroy(f);
	rmdir(dir);
	return tap_done();
}
