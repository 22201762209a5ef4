/* SPDX-License-Identifier: MIT */
/*
 * The fault queue reader against the fake kernel's fault fd: whole groups, every group answered
 * exactly once with its cookie, the pluggable policy, groups larger than the buffer, malformed
 * input, refused responses (logged once), teardown order and fd leaks over 1000 cycles.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "cdev.h"
#include "kernel.h"
#include "fake-iommufd.h"
#include "leak.h"
#include "tap.h"
#include "tmpdir.h"
#include "vgb/iommufd.h"
#include "vgb/log.h"

static char root[256], iommu_path[512], cdev_path[512];
static struct vgb_iommufd *ctx;

static unsigned refused_logs, all_logs;

static void capture(enum vgb_log_level level, const char *file, int line, const char *msg,
		    void *data)
{
	(void)level;
	(void)file;
	(void)line;
	(void)data;
	all_logs++;
	if (strstr(msg, "refused"))
		refused_logs++;
}

static void group(struct iommu_hwpt_pgfault *recs, size_t n, uint32_t dev, uint64_t addr)
{
	for (size_t i = 0; i < n; i++)
		recs[i] = (struct iommu_hwpt_pgfault){
			.dev_id = dev,
			.grpid = 7,
			.perm = IOMMU_PGFAULT_PERM_READ,
			.addr = addr + i * 4096,
		};
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static struct vgb_iommufd_fault_queue *new_queue(uint32_t max_records)
{
	struct vgb_iommufd_fault_queue *q;

	if (vgb_iommufd_fault_queue_create(ctx, max_records, &q) < 0)
		tap_bail("fault queue create");
	return q;
}

static void test_groups_answered_once(void)
{
	struct vgb_iommufd_fault_queue *q = new_queue(0);
	uint32_t id = vgb_iommufd_fault_queue_id(q);
	struct iommu_hwpt_pgfault recs[3];
	struct vgb_iommufd_fault_stats st;
	struct fake_fault_counts fc;

	tap_ok(!readable(vgb_iommufd_fault_queue_fd(q)), "new fault fd is not readable");
	for (int g = 0; g < 5; g++) {
		group(recs, 3, 1, 0x100000u * (unsigned)g);
		fake_iommufd_fault_emit(id, recs, 3);
	}
	tap_ok(readable(vgb_iommufd_fault_queue_fd(q)), "fault fd polls readable with groups queued");
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 5, "dispatch answers 5 groups");
	tap_ok(!readable(vgb_iommufd_fault_queue_fd(q)), "drained");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.delivered, 5, "kernel delivered 5 groups");
	tap_is_uint(fc.responses_ok, 5, "kernel accepted 5 responses");
	tap_is_uint(fc.outstanding, 0, "no group left unanswered");
	tap_is_uint(fc.responses_einval, 0, "no group answered twice");
	tap_is_uint(fc.responses_invalid, 5, "default policy answers INVALID");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.groups, 5, "stats: 5 groups");
	tap_is_uint(st.records, 15, "stats: 15 records");
	tap_is_uint(st.answered_invalid, 5, "stats: 5 answered INVALID");
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 0, "dispatch on an empty queue: 0");
	vgb_iommufd_fault_queue_destroy(q);
}

struct policy_seen {
	unsigned calls;
	size_t last_n;
	uint32_t last_dev;
	bool last_flag_ok;
};

static uint32_t accept_even(void *data, const struct iommu_hwpt_pgfault *recs, size_t n)
{
	struct policy_seen *s = data;

	s->calls++;
	s->last_n = n;
	s->last_dev = recs[0].dev_id;
	s->last_flag_ok = (recs[n - 1].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) != 0;
	return (recs[0].addr / 0x100000u) % 2 ? IOMMUFD_PAGE_RESP_INVALID : IOMMUFD_PAGE_RESP_SUCCESS;
}

static uint32_t bogus(void *data, const struct iommu_hwpt_pgfault *recs, size_t n)
{
	return 77;
}

static void test_policy(void)
{
	struct vgb_iommufd_fault_queue *q = new_queue(0);
	uint32_t id = vgb_iommufd_fault_queue_id(q);
	struct policy_seen seen = { 0 };
	struct vgb_iommufd_fault_policy pol = { .respond = accept_even, .data = &seen };
	struct iommu_hwpt_pgfault recs[2];
	struct vgb_iommufd_fault_stats st;
	struct fake_fault_counts fc;

	vgb_iommufd_fault_queue_set_policy(q, &pol);
	for (int g = 0; g < 4; g++) {
		group(recs, 2, 9, 0x100000u * (unsigned)g);
		fake_iommufd_fault_emit(id, recs, 2);
	}
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 4, "policy: 4 groups answered");
	tap_is_uint(seen.calls, 4, "policy called once per group");
	tap_is_uint(seen.last_n, 2, "policy sees the whole group");
	tap_ok(seen.last_dev == 9 && seen.last_flag_ok, "policy sees the records as read");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.responses_success, 2, "2 answered SUCCESS");
	tap_is_uint(fc.responses_invalid, 2, "2 answered INVALID");

	struct vgb_iommufd_fault_policy bad = { .respond = bogus };
	vgb_iommufd_fault_queue_set_policy(q, &bad);
	group(recs, 1, 9, 0);
	fake_iommufd_fault_emit(id, recs, 1);
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 1, "a bogus policy code is still answered");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.bad_policy_codes, 1, "... counted");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.responses_einval, 0, "... and sent as INVALID, which the kernel takes");
	vgb_iommufd_fault_queue_set_policy(q, NULL);
	vgb_iommufd_fault_queue_destroy(q);
}

static void test_big_groups(void)
{
	struct vgb_iommufd_fault_queue *q = new_queue(256);
	uint32_t id = vgb_iommufd_fault_queue_id(q);
	static struct iommu_hwpt_pgfault recs[300];
	struct vgb_iommufd_fault_stats st;
	struct fake_fault_counts fc;

	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.buffer_records, VGB_IOMMUFD_FAULT_INITIAL_RECORDS, "buffer starts small");
	group(recs, 100, 1, 0);
	fake_iommufd_fault_emit(id, recs, 100);
	group(recs, 3, 1, 0);
	fake_iommufd_fault_emit(id, recs, 3);
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 2,
		   "a 100-record group (buffer 64) is read after growing, then the next");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.buffer_records, 128, "buffer grew to fit the group");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_ok(fc.responses_ok == 2 && fc.outstanding == 0, "both answered once");

	/* 256 records max: a 300-record group can never be read. */
	group(recs, 300, 1, 0);
	fake_iommufd_fault_emit(id, recs, 300);
	tap_is_errno(vgb_iommufd_fault_queue_dispatch(q), -EMSGSIZE,
		     "a group over the maximum buffer: EMSGSIZE, no crash");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.oversized, 1, "counted as oversized");
	tap_is_uint(st.buffer_records, 256, "buffer stopped at the maximum");
	vgb_iommufd_fault_queue_destroy(q);
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.auto_invalid, 1, "the kernel answers the stuck group when the queue goes");
}

static void test_refused_response(void)
{
	struct vgb_iommufd_fault_queue *q = new_queue(0);
	uint32_t id = vgb_iommufd_fault_queue_id(q);
	struct iommu_hwpt_pgfault recs[2];
	struct vgb_iommufd_fault_stats st;
	struct fake_fault_counts fc;

	group(recs, 2, 1, 0);
	fake_iommufd_fault_emit(id, recs, 2);
	fake_iommufd_fault_forget_next(id);
	fake_iommufd_fault_emit(id, recs, 2);
	fake_iommufd_fault_emit(id, recs, 2);

	vgb_log_set_level(VGB_LOG_DEBUG);
	vgb_log_set_writer(capture, NULL);
	refused_logs = 0;
	int r = vgb_iommufd_fault_queue_dispatch(q);
	vgb_log_set_writer(NULL, NULL);
	vgb_log_set_level(VGB_LOG_INFO);

	tap_is_errno(r, -EINVAL, "a refused response is reported as the kernel's EINVAL");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.responses_einval, 1, "the fake refused exactly one response");
	tap_is_uint(fc.responses_ok, 2, "the groups around it were answered");
	tap_is_uint(refused_logs, 1, "the refusal is logged once");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_ok(st.unknown_cookie == 1 && st.response_errors == 1 && st.groups == 3,
	       "stats: 3 groups, 1 refused (unknown cookie)");
	vgb_iommufd_fault_queue_destroy(q);
}

static void test_malformed(void)
{
	struct vgb_iommufd_fault_queue *q = new_queue(0);
	uint32_t id = vgb_iommufd_fault_queue_id(q);
	struct iommu_hwpt_pgfault recs[3];
	struct vgb_iommufd_fault_stats st;
	struct fake_fault_counts fc;
	char bytes[sizeof(recs)];

	/* A read that is not whole records. */
	group(recs, 1, 1, 0);
	recs[0].flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
	memcpy(bytes, recs, sizeof(recs[0]));
	fake_iommufd_fault_emit_raw(id, bytes, sizeof(recs[0]) + 7);
	tap_is_errno(vgb_iommufd_fault_queue_dispatch(q), -EIO, "short read: EIO");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.short_reads, 1, "counted as a short read");
	tap_is_uint(st.groups, 1, "the whole record in it still counts as a group");

	/* Records that stop mid-group. */
	group(recs, 2, 1, 0);
	memcpy(bytes, recs, 2 * sizeof(recs[0]));
	fake_iommufd_fault_emit_raw(id, bytes, 2 * sizeof(recs[0]));
	tap_is_errno(vgb_iommufd_fault_queue_dispatch(q), -EBADMSG, "tail without LAST_PAGE: EBADMSG");
	/* A group whose records disagree on the cookie. */
	group(recs, 3, 1, 0);
	recs[0].cookie = 5;
	recs[1].cookie = 6;
	recs[2].cookie = 6;
	recs[2].flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
	memcpy(bytes, recs, sizeof(recs));
	fake_iommufd_fault_emit_raw(id, bytes, sizeof(recs));
	tap_is_errno(vgb_iommufd_fault_queue_dispatch(q), -EBADMSG, "mixed cookies: EBADMSG");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.last_cookie, 6, "answered with the last record's cookie, as the uapi says");
	vgb_iommufd_fault_queue_get_stats(q, &st);
	tap_is_uint(st.malformed, 2, "both counted as malformed");

	/* Good groups still flow afterwards. */
	group(recs, 2, 1, 0);
	fake_iommufd_fault_emit(id, recs, 2);
	tap_is_int(vgb_iommufd_fault_queue_dispatch(q), 1, "a good group after bad input");
	fake_iommufd_fault_get_counts(id, &fc);
	tap_is_uint(fc.outstanding, 0, "nothing the kernel delivered is left unanswered");
	vgb_iommufd_fault_queue_destroy(q);
}

static void test_teardown_order(void)
{
	struct vgb_vfio_cdev *c;
	struct vgb_iommufd_fault_queue *q;
	uint32_t hwpt, attached;
	struct fake_fault_counts fc;
	char want[256];

	if (vgb_vfio_cdev_open(cdev_path, NULL, &c) < 0)
		tap_bail("cdev open");
	fake_iommufd_cdev_set_iopf(cdev_path, true);
	if (vgb_iommufd_fault_queue_create(c->iommufd, 0, &q) < 0)
		tap_bail("queue");
	uint32_t fid = vgb_iommufd_fault_queue_id(q);
	tap_is_int(vgb_iommufd_fault_queue_hwpt_alloc(q, c->dev_id, c->ioas_id, &hwpt), 0,
		   "fault-capable HWPT");
	tap_is_int(vgb_vfio_cdev_attach(c->device_fd, hwpt, &attached), 0, "device attached to it");
	tap_is_uint(attached, hwpt, "attached the HWPT itself");
	tap_is_errno(vgb_iommufd_destroy(c->iommufd, fid), -EBUSY,
		     "the fault object cannot go first (HWPT and fd hold it)");
	struct iommu_hwpt_pgfault recs[1];
	group(recs, 1, c->dev_id, 0);
	fake_iommufd_fault_emit(fid, recs, 1);
	fake_iommufd_fault_emit(fid, recs, 1);

	tap_is_int(vgb_vfio_cdev_detach(c->device_fd), 0, "detach the device");
	fake_iommufd_log_clear();
	vgb_iommufd_fault_queue_destroy(q);
	/* reap runs on the next ioctl; counts trigger it */
	fake_iommufd_fault_get_counts(fid, &fc);
	snprintf(want, sizeof(want), "destroy hwpt %u; fault %u fd closed; destroy fault %u", hwpt,
		 fid, fid);
	tap_is_str(fake_iommufd_log(), want, "teardown: HWPT, then the fault fd, then the object");
	tap_ok(!fc.fd_open, "fault fd closed");
	tap_is_uint(fc.auto_invalid, 2, "unread groups answered INVALID by the kernel on destroy");
	vgb_vfio_cdev_close(c);
}

static void test_no_leak(void)
{
	struct leak_snapshot snap;
	struct fake_iommufd_counts fk;
	bool ok = true;

	leak_snapshot(&snap);
	for (int i = 0; i < 1000 && ok; i++) {
		struct vgb_iommufd *c;
		struct vgb_iommufd_fault_queue *q;
		uint32_t ioas;
		struct iommu_hwpt_pgfault recs[2];

		if (vgb_iommufd_open(iommu_path, &c) < 0 || vgb_iommufd_ioas_alloc(c, &ioas) < 0 ||
		    vgb_iommufd_fault_queue_create(c, 0, &q) < 0) {
			ok = false;
			break;
		}
		group(recs, 2, 1, 0);
		fake_iommufd_fault_emit(vgb_iommufd_fault_queue_id(q), recs, 2);
		if (i % 2 == 0 && vgb_iommufd_fault_queue_dispatch(q) != 1)
			ok = false;
		vgb_iommufd_fault_queue_destroy(q);
		if (vgb_iommufd_destroy(c, ioas) < 0)
			ok = false;
		vgb_iommufd_close(c);
	}
	tap_ok(ok, "1000 alloc/dispatch/free cycles");
	leak_check(&snap, "1000 fault queue cycles");
	fake_iommufd_get_counts(&fk);
	tap_is_uint(fk.live_objects, 0, "no iommufd object left in the fake kernel");
	tap_is_uint(fk.strict_violations, 0, "every struct sent was byte-exact");
}

int main(void)
{
	struct leak_snapshot snap;

	tap_plan_lazy();
	if (tmpdir_create(root, sizeof(root)) < 0 ||
	    tmpdir_touch(root, "dev/iommu", iommu_path, sizeof(iommu_path)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio0", cdev_path, sizeof(cdev_path)) < 0)
		tap_bail("scratch tree");
	vgb_vfio_kernel_set_root(root);
	fake_iommufd_install(iommu_path);
	fake_iommufd_add_cdev(cdev_path, NULL);
	leak_snapshot(&snap);
	if (vgb_iommufd_open(iommu_path, &ctx) < 0)
		tap_bail("open fake iommufd");

	test_groups_answered_once();
	test_policy();
	test_big_groups();
	test_refused_response();
	test_malformed();
	vgb_iommufd_close(ctx);
	test_teardown_order();
	test_no_leak();

	fake_iommufd_remove();
	leak_check(&snap, "whole test");
	vgb_vfio_kernel_set_root(NULL);
	tmpdir_remove(root);
	return tap_done();
}
