/* SPDX-License-Identifier: MIT */
/*
 * vgbridged's event loop with I/O page-fault queues, against the fake kernel: a daemon device and
 * a client-added device opened by VFIO cdev with page faults, their groups answered from the
 * loop, counted in STATS, kept in the totals after the device goes, a wedged queue dropped from
 * the loop, and nothing left in the fake kernel after the server is destroyed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "client.h"
#include "fake-iommufd.h"
#include "kernel.h"
#include "leak.h"
#include "server-pump.h"
#include "server.h"
#include "tap.h"
#include "tmpdir.h"
#include "vgb/iommufd.h"
#include "vgb/log.h"
#include "vgb/vfio.h"

static char root[256], iommu_path[512], cdev7[512], cdev8[512], sock_path[600];
static struct vgb_server *srv;

/* Runs the loop until the fake has nothing queued for @fault_id (bounded). */
static void pump_faults(uint32_t fault_id)
{
	struct fake_fault_counts fc;

	for (int i = 0; i < 200; i++) {
		if (fake_iommufd_fault_get_counts(fault_id, &fc) < 0 || fc.queued == 0)
			break;
		vgb_server_dispatch(srv, 10);
	}
	vgb_server_dispatch(srv, 0);
}

static struct vgb_wire_stats_global stats(struct vgb_client *c)
{
	struct vgb_wire_stats_global g = { 0 };
	struct vgb_wire_stats_client *rows = NULL;

	if (vgb_client_stats(c, 0, &g, &rows) < 0)
		tap_diag("STATS failed");
	free(rows);
	return g;
}

static void emit(uint32_t fault_id, uint32_t dev_id, size_t groups, size_t records)
{
	struct iommu_hwpt_pgfault *recs = calloc(records, sizeof(*recs));

	if (!recs)
		tap_bail("calloc");
	for (size_t g = 0; g < groups; g++) {
		for (size_t i = 0; i < records; i++)
			recs[i] = (struct iommu_hwpt_pgfault){ .dev_id = dev_id, .addr = 4096 * i };
		fake_iommufd_fault_emit(fault_id, recs, records);
	}
	free(recs);
}

int main(void)
{
	struct vgb_server_options o;
	struct vgb_vfio_device *dev;
	struct vgb_client *c;
	struct vgb_msg_add_device_reply added;
	struct vgb_wire_stats_global g;
	struct fake_fault_counts fc;
	struct fake_iommufd_counts fk;
	struct leak_snapshot snap;
	struct timeval tv = { .tv_sec = 10 };

	tap_plan_lazy();
	vgb_log_set_level(VGB_LOG_ERROR);
	if (tmpdir_create(root, sizeof(root)) < 0 ||
	    tmpdir_mkdirs(root, "sys/bus/pci/devices/0000:00:03.0/vfio-dev/vfio7") < 0 ||
	    tmpdir_mkdirs(root, "sys/bus/pci/devices/0000:00:08.0/vfio-dev/vfio8") < 0 ||
	    tmpdir_touch(root, "dev/iommu", iommu_path, sizeof(iommu_path)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio7", cdev7, sizeof(cdev7)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio8", cdev8, sizeof(cdev8)) < 0)
		tap_bail("scratch tree");
	snprintf(sock_path, sizeof(sock_path), "%s/vgb.sock", root);
	vgb_vfio_kernel_set_root(root);
	fake_iommufd_install(iommu_path);
	fake_iommufd_add_cdev(cdev7, NULL);
	fake_iommufd_add_cdev(cdev8, NULL);
	fake_iommufd_cdev_set_iopf(cdev7, true);
	fake_iommufd_cdev_set_iopf(cdev8, true);
	leak_snapshot(&snap);

	vgb_server_options_init(&o);
	if (vgb_server_create(&o, &srv) < 0 || vgb_server_listen(srv, sock_path) < 0)
		tap_bail("server");
	tap_is_int(vgb_vfio_kernel_open("0000:00:03.0", 0, &dev), 0, "daemon device by cdev");
	struct vgb_iommufd_fault_queue *q = vgb_vfio_device_fault_queue(dev);
	tap_ok(q != NULL, "it has a fault queue");
	if (!q)
		tap_bail("no fault queue: nothing to test");
	uint32_t fid = vgb_iommufd_fault_queue_id(q);
	tap_is_int(vgb_server_add_device(srv, dev), 1, "added to the daemon");

	emit(fid, 1, 3, 2);
	pump_faults(fid);
	fake_iommufd_fault_get_counts(fid, &fc);
	tap_ok(fc.delivered == 3 && fc.responses_invalid == 3 && fc.outstanding == 0,
	       "the loop read 3 groups and answered each once, INVALID (%u/%u/%u)", fc.delivered,
	       fc.responses_invalid, fc.outstanding);

	if (vgb_client_connect(sock_path, &c) < 0)
		tap_bail("connect");
	setsockopt(vgb_client_get_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	vgb_client_set_wait_hook(c, server_pump, srv);
	if (vgb_client_hello(c, NULL) < 0)
		tap_bail("hello");
	g = stats(c);
	tap_is_uint(g.fault_queues, 1, "STATS: one fault queue read");
	tap_is_uint(g.fault_groups, 3, "STATS: 3 groups");
	tap_is_uint(g.fault_errors, 0, "STATS: no errors");

	/* A client adds a device by cdev path: its queue joins the loop too. */
	tap_is_int(vgb_client_add_device(c, VGB_DEVICE_CDEV, cdev8, -1, &added), 0,
		   "a client adds a cdev device");
	g = stats(c);
	tap_is_uint(g.fault_queues, 2, "STATS: two fault queues");
	uint32_t fid8 = 0;
	/* The fake gives ids in order: the newest fault object is the client device's. */
	for (uint32_t id = fid + 1; id < fid + 64 && !fid8; id++)
		if (fake_iommufd_fault_get_counts(id, &fc) == 0 && fc.fd_open)
			fid8 = id;
	tap_ok(fid8 != 0, "found the client device's fault object (%u)", fid8);
	emit(fid8, 2, 2, 1);
	pump_faults(fid8);
	g = stats(c);
	tap_is_uint(g.fault_groups, 5, "STATS: its groups are counted");

	/* Malformed input on the daemon device: counted as an error, the loop goes on. */
	struct iommu_hwpt_pgfault bad = { .flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE };
	fake_iommufd_fault_emit_raw(fid, &bad, sizeof(bad) - 1);
	pump_faults(fid);
	g = stats(c);
	tap_ok(g.fault_errors >= 1, "STATS: a short read is an error (%llu)",
	       (unsigned long long)g.fault_errors);

	/* The client device goes: its counts stay in the totals. */
	tap_is_int(vgb_client_remove_device(c, added.device_id), 0, "remove the client device");
	g = stats(c);
	tap_ok(g.fault_queues == 1 && g.fault_groups == 5,
	       "after removal: one queue, groups kept (%u, %llu)", g.fault_queues,
	       (unsigned long long)g.fault_groups);
	fake_iommufd_fault_get_counts(fid8, &fc);
	tap_ok(!fc.fd_open, "the removed device's fault fd is closed");

	/* A group larger than the reader's largest buffer: the queue leaves the loop. */
	emit(fid, 1, 1, VGB_IOMMUFD_FAULT_MAX_RECORDS + 1);
	for (int i = 0; i < 5; i++)
		vgb_server_dispatch(srv, 0);
	g = stats(c);
	tap_is_uint(g.fault_queues, 0, "a wedged queue is no longer polled");
	tap_ok(g.fault_errors >= 2, "and counted as an error (%llu)",
	       (unsigned long long)g.fault_errors);

	vgb_client_destroy(c);
	vgb_server_destroy(srv);
	fake_iommufd_get_counts(&fk);
	tap_ok(fk.live_objects == 0 && fk.bound_devices == 0,
	       "after the server: nothing left in the fake kernel (%u objects, %u bound)",
	       fk.live_objects, fk.bound_devices);
	fake_iommufd_fault_get_counts(fid, &fc);
	tap_is_uint(fc.auto_invalid, 1, "the wedged group was answered by the kernel on teardown");
	tap_is_uint(fk.strict_violations, 0, "every struct sent was byte-exact");
	fake_iommufd_remove();
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's own bookkeeping (stack depot, quarantine of the 2.6 MB read buffer) adds
	 * mappings outside its heap range that no purge gives back: here only fds are compared;
	 * the unsanitized run of this test compares the mappings too. */
	tap_is_int(leak_count_fds(), snap.n_fds, "server with fault queues: no fd left open");
#else
	leak_check(&snap, "server with fault queues");
#endif
	vgb_vfio_kernel_set_root(NULL);
	tmpdir_remove(root);
	return tap_done();
}
