/* SPDX-License-Identifier: MIT */
/*
 * The capture sink: every frame becomes DIR/scanout<N>-<seq>.png and one line in DIR/frames.txt:
 *   <seq> scanout<N> <width>x<height> <fourcc> crc32=<8 hex digits> <png name>
 * The CRC32 (zlib's) covers the frame's pixel rows as the guest stored them (width * 4 bytes
 * per row, stride padding excluded), so it identifies content independently of PNG encoding.
 *
 * present() copies the rows (one guarded copy) and completes the frame at once; the CRC, the
 * PNG and the index line are made by one worker thread, so a 4K frame's encoding (hundreds of
 * milliseconds) never holds the caller's loop. The queue between them is bounded: at most
 * MAX_QUEUED frames and MAX_QUEUED_BYTES of copies (one frame always fits); past that the
 * oldest frame not yet started is dropped (stats.frames_dropped), as a display shows the latest.
 * Frames are written in the order they were presented; destroy() writes what is queued first.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <png.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "display-private.h"
#include "vgb/guard.h"
#include "vgb/log.h"
#include "vgb/util.h"

#define MAX_QUEUED 4
#define MAX_QUEUED_BYTES (256ull << 20)

/* A copied frame waiting for the worker. */
struct capture_job {
	struct capture_job *next;
	uint32_t scanout, width, height, fourcc;
	uint8_t *pixels; /* width * 4 bytes per row, owned */
	size_t bytes;
};

struct capture_sink {
	struct vgb_display base;
	char *dir;
	int dir_fd;
	FILE *index;   /* the worker's */
	uint64_t seq;  /* the worker's: frames written */

	pthread_t worker;
	bool have_worker;
	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t cond;
	struct capture_job *head, *tail;
	uint32_t queued;       /* jobs in the queue or being written */
	uint64_t queued_bytes;
	/* Buffers of written or dropped frames, kept for the next frames of that size: a fresh
	 * allocation of a 4K frame costs a page fault per page, more than the copy into it. */
	uint8_t *spare[MAX_QUEUED + 1];
	size_t spare_bytes;
	unsigned n_spare;
	bool stop;
	struct vgb_display_stats stats;
};

static struct capture_sink *capture_from(struct vgb_display *d)
{
	return vgb_container_of(d, struct capture_sink, base);
}

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

/* libpng reports errors by longjmp; this keeps every local that outlives it out of the frame. */
struct png_job {
	FILE *f;
	const struct capture_job *frame;
	const uint8_t *pixels;
	uint32_t stride;
	uint8_t *row;
};

static int write_png(struct png_job *job)
{
	const struct capture_job *frame = job->frame;
	bool alpha = vgb_format_has_alpha(frame->fourcc);
	uint32_t channels = alpha ? 4 : 3;
	png_structp png;
	png_infop info;

	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	if (!png)
		return -ENOMEM;
	info = png_create_info_struct(png);
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return -ENOMEM;
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		return -EIO;
	}
	png_init_io(png, job->f);
	png_set_IHDR(png, info, frame->width, frame->height, 8,
		     alpha ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_set_compression_level(png, 1);
	png_write_info(png, info);
	for (uint32_t y = 0; y < frame->height; y++) {
		const uint8_t *src = job->pixels + (size_t)y * job->stride;
		for (uint32_t x = 0; x < frame->width; x++) {
			uint32_t px;
			uint8_t rgba[4];
			memcpy(&px, src + (size_t)x * 4, 4);
			vgb_format_to_rgba(frame->fourcc, px, rgba);
			memcpy(job->row + (size_t)x * channels, rgba, channels);
		}
		png_write_row(png, job->row);
	}
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	return 0;
}

/* Writes the PNG under a temporary name and renames it into place. */
static int write_file(struct capture_sink *s, const struct capture_job *frame,
		      const uint8_t *pixels, uint32_t stride, const char *name)
{
	char tmp[80];
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	_cleanup_close_ int fd = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
					0644);
	_cleanup_free_ uint8_t *row = malloc((size_t)frame->width * 4);
	struct png_job job = { .frame = frame, .pixels = pixels, .stride = stride, .row = row };
	int r;

	if (fd < 0)
		return -errno;
	if (!row)
		return -ENOMEM;
	job.f = fdopen(fd, "wb");
	if (!job.f)
		return -errno;
	fd = -1; /* the FILE owns it now */
	r = write_png(&job);
	if (fclose(job.f) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && renameat(s->dir_fd, tmp, s->dir_fd, name) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(s->dir_fd, tmp, 0);
	return r;
}

/* The worker: CRC, PNG and index line of one frame. Returns 0 or -errno. */
static int write_frame(struct capture_sink *s, const struct capture_job *job)
{
	uint32_t stride = job->width * 4;
	char name[64];
	uLong crc;
	int r;

	crc = crc32(0L, Z_NULL, 0);
	for (uint32_t y = 0; y < job->height; y++)
		crc = crc32(crc, job->pixels + (size_t)y * stride, stride);

	snprintf(name, sizeof(name), "scanout%u-%06" PRIu64 ".png", job->scanout, s->seq);
	r = write_file(s, job, job->pixels, stride, name);
	if (r < 0)
		return r;
	char fcc[5] = { (char)job->fourcc, (char)(job->fourcc >> 8), (char)(job->fourcc >> 16),
			(char)(job->fourcc >> 24), 0 };
	fprintf(s->index, "%" PRIu64 " scanout%u %ux%u %s crc32=%08lx %s\n", s->seq, job->scanout,
		job->width, job->height, fcc, (unsigned long)crc, name);
	if (fflush(s->index) != 0)
		return -EIO;
	s->seq++;
	return 0;
}

static void job_free(struct capture_job *job)
{
	if (job) {
		free(job->pixels);
		free(job);
	}
}

/* Under the lock: keeps @job's buffer for reuse (a new size drops the old ones), frees @job. */
static void job_recycle(struct capture_sink *s, struct capture_job *job)
{
	if (job->pixels && job->bytes != s->spare_bytes) {
		while (s->n_spare)
			free(s->spare[--s->n_spare]);
		s->spare_bytes = job->bytes;
	}
	if (job->pixels && s->n_spare < VGB_ARRAY_SIZE(s->spare))
		s->spare[s->n_spare++] = TAKE_PTR(job->pixels);
	job_free(job);
}

static void *worker_main(void *data)
{
	struct capture_sink *s = data;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct capture_job *job = s->head;
		int r;

		if (!job) {
			if (s->stop)
				break; /* what was queued is written first */
			pthread_cond_wait(&s->cond, &s->lock);
			continue;
		}
		s->head = job->next;
		if (!s->head)
			s->tail = NULL;
		pthread_mutex_unlock(&s->lock);

		r = write_frame(s, job);
		if (r < 0)
			vgb_log_errno(VGB_LOG_DEBUG, r, "capture: frame %" PRIu64, s->seq);

		pthread_mutex_lock(&s->lock);
		if (r == 0)
			s->stats.frames_presented++;
		else
			s->stats.frames_lost++;
		s->queued--;
		s->queued_bytes -= job->bytes;
		job_recycle(s, job);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Queues @job for the worker, dropping the oldest unstarted frames past the bounds. */
static void enqueue(struct capture_sink *s, struct capture_job *job)
{
	pthread_mutex_lock(&s->lock);
	while (s->head && (s->queued >= MAX_QUEUED ||
			   s->queued_bytes + job->bytes > MAX_QUEUED_BYTES)) {
		struct capture_job *old = s->head;
		s->head = old->next;
		if (!s->head)
			s->tail = NULL;
		s->queued--;
		s->queued_bytes -= old->bytes;
		s->stats.frames_dropped++;
		job_recycle(s, old);
	}
	if (s->tail)
		s->tail->next = job;
	else
		s->head = job;
	s->tail = job;
	s->queued++;
	s->queued_bytes += job->bytes;
	s->stats.last_path = VGB_PATH_CAPTURE;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static int capture_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	struct capture_sink *s = capture_from(d);
	const uint8_t *pixels;
	uint32_t stride;
	void *map = MAP_FAILED;
	struct capture_job *job = NULL;
	size_t map_len = 0;
	int r;

	r = vgb_frame_check(frame);
	if (r < 0)
		return r;
	if (frame->cpu) {
		pixels = frame->cpu->data;
		stride = frame->cpu->stride;
	} else {
		/* A dmabuf only: map it (VFIO dmabufs refuse mmap: then there is nothing to read). */
		const struct vgb_dmabuf *b = frame->dmabuf;
		uint64_t end;
		if (b->n_planes != 1 || b->stride[0] < (uint64_t)frame->width * 4 ||
		    __builtin_mul_overflow((uint64_t)b->stride[0], frame->height, &end) ||
		    __builtin_add_overflow(end, (uint64_t)b->offset[0], &end) || end > SIZE_MAX)
			return -EINVAL;
		map_len = (size_t)end;
		map = mmap(NULL, map_len, PROT_READ, MAP_SHARED, b->fd[0], 0);
		if (map == MAP_FAILED)
			return -EOPNOTSUPP;
		pixels = (const uint8_t *)map + b->offset[0];
		stride = b->stride[0];
	}

	/*
	 * One guarded copy of the rows, here: the guest's memory is borrowed only until the frame
	 * completes, and the view may be a BAR the guest stops decoding, or a mapping revoked
	 * under us; a fault there must fail this frame, not kill us.
	 */
	job = calloc(1, sizeof(*job));
	if (!job) {
		r = -ENOMEM;
		goto out;
	}
	job->scanout = frame->scanout;
	job->width = frame->width;
	job->height = frame->height;
	job->fourcc = frame->fourcc;
	job->bytes = (size_t)frame->width * 4 * frame->height;
	pthread_mutex_lock(&s->lock);
	if (s->n_spare && s->spare_bytes == job->bytes) {
		s->n_spare--;
		job->pixels = TAKE_PTR(s->spare[s->n_spare]);
	}
	pthread_mutex_unlock(&s->lock);
	if (!job->pixels)
		job->pixels = malloc(job->bytes);
	if (!job->pixels) {
		r = -ENOMEM;
		goto out;
	}
	r = vgb_guarded_copy_2d(job->pixels, (size_t)frame->width * 4, pixels, stride,
				(size_t)frame->width * 4, frame->height);
out:
	if (map != MAP_FAILED)
		munmap(map, map_len);
	if (r < 0) {
		job_free(job);
		vgb_log_errno(VGB_LOG_DEBUG, r, "capture: frame not taken");
		return r;
	}
	enqueue(s, job);
	vgb_frame_complete(frame, 0);
	return 0;
}

static void capture_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct capture_sink *s = capture_from(d);

	pthread_mutex_lock(&s->lock);
	*ret = s->stats;
	ret->frames_pending = s->queued;
	pthread_mutex_unlock(&s->lock);
}

static void capture_destroy(struct vgb_display *d)
{
	struct capture_sink *s = capture_from(d);

	if (s->have_worker) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->worker, NULL);
	}
	while (s->head) {
		struct capture_job *job = s->head;
		s->head = job->next;
		job_free(job);
	}
	while (s->n_spare)
		free(s->spare[--s->n_spare]);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	if (s->index)
		fclose(s->index);
	vgb_close(s->dir_fd);
	free(s->dir);
	free(s);
}

static const struct vgb_display_ops capture_ops = {
	.name = "capture",
	.present = capture_present,
	.get_stats = capture_get_stats,
	.destroy = capture_destroy,
};

int vgb_display_create_capture(const char *dir, struct vgb_display **ret)
{
	struct capture_sink *s;
	_cleanup_close_ int dir_fd = -1;
	_cleanup_close_ int index_fd = -1;
	_cleanup_(fclosep) FILE *index = NULL;
	int r;

	if (!dir || !*dir)
		return -EINVAL;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	index_fd = openat(dir_fd, "frames.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (index_fd < 0)
		return -errno;
	index = fdopen(index_fd, "w");
	if (!index)
		return -errno;
	index_fd = -1;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->dir = strdup(dir);
	if (!s->dir) {
		free(s);
		return -ENOMEM;
	}
	s->base.ops = &capture_ops;
	s->dir_fd = TAKE_FD(dir_fd);
	s->index = TAKE_PTR(index);
	s->stats.connected = true;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	/*
	 * The worker takes no asynchronous signal: the daemons read theirs from a signalfd, which
	 * works only while every thread blocks them.
	 */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&s->worker, NULL, worker_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		capture_destroy(&s->base);
		return r;
	}
	s->have_worker = true;
	*ret = &s->base;
	return 0;
}
