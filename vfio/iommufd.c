/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vgb/iommufd.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"

#define RECORD_SIZE sizeof(struct iommu_hwpt_pgfault)
#define RESPONSE_SIZE sizeof(struct iommu_hwpt_page_response)
/* Reads per dispatch call: enough to drain a burst, small enough to stay fair in a loop. */
#define MAX_READS_PER_DISPATCH 64
/* HWPTs one queue can serve (one per device in practice). */
#define MAX_HWPTS 64

int vgb_iommufd_open(const char *path, struct vgb_iommufd **ret)
{
	_cleanup_close_ int fd = -1;
	struct vgb_iommufd *ctx;

	if (!path)
		path = VGB_IOMMUFD_DEFAULT_PATH;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, -errno, "iommufd: open %s", path);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->fd = TAKE_FD(fd);
	*ret = ctx;
	return 0;
}

void vgb_iommufd_close(struct vgb_iommufd *ctx)
{
	if (!ctx)
		return;
	vgb_close(ctx->fd);
	free(ctx);
}

int vgb_iommufd_ioas_alloc(struct vgb_iommufd *ctx, uint32_t *ret_ioas_id)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	int r;

	r = vgb_ioctl(ctx->fd, IOMMU_IOAS_ALLOC, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: IOAS_ALLOC");
	*ret_ioas_id = cmd.out_ioas_id;
	return 0;
}

int vgb_iommufd_ioas_map(struct vgb_iommufd *ctx, uint32_t ioas_id, void *va, uint64_t length,
			 uint32_t flags, uint64_t *iova)
{
	const uint32_t known = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			       IOMMU_IOAS_MAP_WRITEABLE;
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = ioas_id,
		.user_va = (uintptr_t)va,
		.length = length,
		.iova = (flags & IOMMU_IOAS_MAP_FIXED_IOVA) ? *iova : 0,
	};
	int r;

	if (!length || (flags & ~known) ||
	    !(flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
		return -EINVAL;
	r = vgb_ioctl(ctx->fd, IOMMU_IOAS_MAP, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: IOAS_MAP ioas %u len %llu", ioas_id,
				     (unsigned long long)length);
	*iova = cmd.iova;
	return 0;
}

int vgb_iommufd_ioas_unmap(struct vgb_iommufd *ctx, uint32_t ioas_id, uint64_t iova,
			   uint64_t length, uint64_t *ret_unmapped)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = ioas_id,
		.iova = iova,
		.length = length,
	};
	int r;

	r = vgb_ioctl(ctx->fd, IOMMU_IOAS_UNMAP, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: IOAS_UNMAP ioas %u", ioas_id);
	if (ret_unmapped)
		*ret_unmapped = cmd.length;
	return 0;
}

int vgb_iommufd_hwpt_alloc(struct vgb_iommufd *ctx, uint32_t dev_id, uint32_t pt_id,
			   uint32_t flags, uint32_t fault_id, uint32_t *ret_hwpt_id)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dev_id = dev_id,
		.pt_id = pt_id,
		.data_type = IOMMU_HWPT_DATA_NONE,
	};
	int r;

	if (fault_id) {
		cmd.flags |= IOMMU_HWPT_FAULT_ID_VALID;
		cmd.fault_id = fault_id;
	}
	r = vgb_ioctl(ctx->fd, IOMMU_HWPT_ALLOC, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: HWPT_ALLOC dev %u pt %u fault %u",
				     dev_id, pt_id, fault_id);
	*ret_hwpt_id = cmd.out_hwpt_id;
	return 0;
}

int vgb_iommufd_destroy(struct vgb_iommufd *ctx, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };
	int r;

	r = vgb_ioctl(ctx->fd, IOMMU_DESTROY, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: DESTROY %u", id);
	return 0;
}

int vgb_iommufd_fault_alloc(struct vgb_iommufd *ctx, uint32_t *ret_fault_id, int *ret_fd)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd) };
	int r;

	r = vgb_ioctl(ctx->fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);
	if (r < 0)
		return vgb_log_errno(VGB_LOG_DEBUG, r, "iommufd: FAULT_QUEUE_ALLOC");
	if ((int)cmd.out_fault_fd < 0) {
		/* Cannot happen with a real kernel; do not leave the object behind. */
		vgb_iommufd_destroy(ctx, cmd.out_fault_id);
		return -EBADF;
	}
	*ret_fault_id = cmd.out_fault_id;
	*ret_fd = (int)cmd.out_fault_fd;
	return 0;
}

/* ---- fault queue ---- */

struct vgb_iommufd_fault_queue {
	struct vgb_iommufd *ctx;
	uint32_t fault_id;
	int fd;
	uint32_t hwpts[MAX_HWPTS];
	unsigned n_hwpts;
	struct vgb_iommufd_fault_policy policy;
	struct iommu_hwpt_pgfault *buf;
	uint32_t buf_records, max_records;
	struct vgb_iommufd_fault_stats stats;
	int answered; /* responses accepted during the current dispatch */
};

static uint32_t respond_invalid(void *data, const struct iommu_hwpt_pgfault *records, size_t n)
{
	return IOMMUFD_PAGE_RESP_INVALID;
}

static const struct vgb_iommufd_fault_policy default_policy = { .respond = respond_invalid };

static int grow_buffer(struct vgb_iommufd_fault_queue *q, uint32_t records)
{
	struct iommu_hwpt_pgfault *buf;
	size_t bytes;

	if (__builtin_mul_overflow((size_t)records, RECORD_SIZE, &bytes))
		return -EOVERFLOW;
	buf = realloc(q->buf, bytes);
	if (!buf)
		return -ENOMEM;
	q->buf = buf;
	q->buf_records = records;
	q->stats.buffer_records = records;
	return 0;
}

int vgb_iommufd_fault_queue_create(struct vgb_iommufd *ctx, uint32_t max_records,
				   struct vgb_iommufd_fault_queue **ret)
{
	struct vgb_iommufd_fault_queue *q;
	int r;

	if (!max_records)
		max_records = VGB_IOMMUFD_FAULT_MAX_RECORDS;
	if (max_records > VGB_IOMMUFD_FAULT_MAX_RECORDS)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->ctx = ctx;
	q->fd = -1;
	q->policy = default_policy;
	q->max_records = max_records;
	r = grow_buffer(q, VGB_MIN(VGB_IOMMUFD_FAULT_INITIAL_RECORDS, max_records));
	if (r < 0)
		goto err_free;
	r = vgb_iommufd_fault_alloc(ctx, &q->fault_id, &q->fd);
	if (r < 0)
		goto err_free;
	*ret = q;
	return 0;

err_free:
	free(q->buf);
	free(q);
	return r;
}

void vgb_iommufd_fault_queue_destroy(struct vgb_iommufd_fault_queue *q)
{
	if (!q)
		return;
	/* The kernel's reference order: each HWPT holds the fault object, and so does the open
	 * fault fd (IOMMU_DESTROY answers EBUSY while either is there). */
	for (unsigned i = q->n_hwpts; i-- > 0;)
		vgb_iommufd_destroy(q->ctx, q->hwpts[i]);
	q->fd = vgb_close(q->fd);
	if (q->fault_id)
		vgb_iommufd_destroy(q->ctx, q->fault_id);
	free(q->buf);
	free(q);
}

int vgb_iommufd_fault_queue_fd(const struct vgb_iommufd_fault_queue *q)
{
	return q->fd;
}

uint32_t vgb_iommufd_fault_queue_id(const struct vgb_iommufd_fault_queue *q)
{
	return q->fault_id;
}

int vgb_iommufd_fault_queue_hwpt_alloc(struct vgb_iommufd_fault_queue *q, uint32_t dev_id,
				       uint32_t pt_id, uint32_t *ret_hwpt_id)
{
	uint32_t id;
	int r;

	if (q->n_hwpts >= MAX_HWPTS)
		return -ENOSPC;
	r = vgb_iommufd_hwpt_alloc(q->ctx, dev_id, pt_id, 0, q->fault_id, &id);
	if (r < 0)
		return r;
	q->hwpts[q->n_hwpts++] = id;
	*ret_hwpt_id = id;
	return 0;
}

void vgb_iommufd_fault_queue_set_policy(struct vgb_iommufd_fault_queue *q,
					const struct vgb_iommufd_fault_policy *policy)
{
	q->policy = (policy && policy->respond) ? *policy : default_policy;
}

void vgb_iommufd_fault_queue_get_stats(const struct vgb_iommufd_fault_queue *q,
				       struct vgb_iommufd_fault_stats *ret)
{
	*ret = q->stats;
}

/* Keeps the first error: the caller reports that one. */
static void note_error(int *err, int r)
{
	if (r < 0 && *err == 0)
		*err = r;
}

static int respond(struct vgb_iommufd_fault_queue *q, uint32_t cookie, uint32_t code)
{
	struct iommu_hwpt_page_response resp = { .cookie = cookie, .code = code };
	ssize_t n;

	n = vgb_write(q->fd, &resp, sizeof(resp));
	if (n == (ssize_t)sizeof(resp)) {
		if (code == IOMMUFD_PAGE_RESP_SUCCESS)
			q->stats.answered_success++;
		else
			q->stats.answered_invalid++;
		q->answered++;
		return 0;
	}
	q->stats.response_errors++;
	if (n >= 0)
		n = -EIO;
	if (n == -EINVAL)
		q->stats.unknown_cookie++;
	return vgb_log_errno(VGB_LOG_DEBUG, (int)n, "iommufd: fault %u: response to cookie %u refused",
			     q->fault_id, cookie);
}

/* One group of @n records, the last one carrying LAST_PAGE. */
static int answer_group(struct vgb_iommufd_fault_queue *q, const struct iommu_hwpt_pgfault *recs,
			size_t n)
{
	uint32_t cookie = recs[n - 1].cookie;
	uint32_t code;
	bool consistent = true;
	int err = 0;

	q->stats.groups++;
	for (size_t i = 0; i + 1 < n; i++)
		if (recs[i].cookie != cookie)
			consistent = false;
	if (!consistent) {
		/* The uapi says to echo the cookie of the last record; do that, but do not let
		 * the policy act on records we cannot trust. */
		q->stats.malformed++;
		vgb_log(VGB_LOG_DEBUG, "iommufd: fault %u: group of %zu records with mixed cookies",
			q->fault_id, n);
		err = -EBADMSG;
		code = IOMMUFD_PAGE_RESP_INVALID;
	} else {
		code = q->policy.respond(q->policy.data, recs, n);
		if (code != IOMMUFD_PAGE_RESP_SUCCESS && code != IOMMUFD_PAGE_RESP_INVALID) {
			q->stats.bad_policy_codes++;
			code = IOMMUFD_PAGE_RESP_INVALID;
		}
	}
	note_error(&err, respond(q, cookie, code));
	return err;
}

static int process_records(struct vgb_iommufd_fault_queue *q, size_t n)
{
	const struct iommu_hwpt_pgfault *recs = q->buf;
	size_t start = 0;
	int err = 0;

	q->stats.records += n;
	for (size_t i = 0; i < n; i++) {
		if (!(recs[i].flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE))
			continue;
		note_error(&err, answer_group(q, recs + start, i + 1 - start));
		start = i + 1;
	}
	if (start < n) {
		/* The kernel only hands out whole groups, so a read cannot end mid-group. Answer
		 * the cookie we have so the device is not left waiting, and report it. */
		q->stats.groups++;
		q->stats.malformed++;
		vgb_log(VGB_LOG_DEBUG, "iommufd: fault %u: %zu trailing records without LAST_PAGE",
			q->fault_id, n - start);
		note_error(&err, -EBADMSG);
		note_error(&err, respond(q, recs[n - 1].cookie, IOMMUFD_PAGE_RESP_INVALID));
	}
	return err;
}

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int vgb_iommufd_fault_queue_dispatch(struct vgb_iommufd_fault_queue *q)
{
	int err = 0;

	q->answered = 0;
	for (int i = 0; i < MAX_READS_PER_DISPATCH; i++) {
		size_t len = (size_t)q->buf_records * RECORD_SIZE;
		ssize_t n = vgb_read(q->fd, q->buf, len);

		if (n == -EAGAIN)
			break; /* an O_NONBLOCK fd with nothing queued: the kernel's fd answers 0 */
		if (n < 0) {
			note_error(&err, vgb_log_errno(VGB_LOG_DEBUG, (int)n,
						       "iommufd: fault %u: read", q->fault_id));
			break;
		}
		if (n == 0) {
			/* Empty, or the first group does not fit (the kernel returns 0 then). */
			if (!fd_readable(q->fd))
				break;
			if (q->buf_records >= q->max_records) {
				q->stats.oversized++;
				note_error(&err, vgb_log_errno(VGB_LOG_DEBUG, -EMSGSIZE,
							       "iommufd: fault %u: group over %u records",
							       q->fault_id, q->max_records));
				break;
			}
			uint32_t grown = q->buf_records > q->max_records / 2 ? q->max_records
									      : q->buf_records * 2;
			int r = grow_buffer(q, grown);
			if (r < 0) {
				note_error(&err, r);
				break;
			}
			continue;
		}
		q->stats.reads++;
		if ((size_t)n % RECORD_SIZE) {
			q->stats.short_reads++;
			vgb_log(VGB_LOG_DEBUG, "iommufd: fault %u: read %zd bytes, not whole records",
				q->fault_id, n);
			/* Answer the whole records we did get, then stop: the stream is broken. */
			note_error(&err, -EIO);
			note_error(&err, process_records(q, (size_t)n / RECORD_SIZE));
			break;
		}
		note_error(&err, process_records(q, (size_t)n / RECORD_SIZE));
	}
	return err < 0 ? err : q->answered;
}
