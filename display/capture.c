/* SPDX-License-Identifier: MIT */
/*
 * The capture sink: every frame becomes DIR/scanout<N>-<seq>.png and one line in DIR/frames.txt:
 *   <seq> scanout<N> <width>x<height> <fourcc> crc32=<8 hex digits> <png name>
 * The CRC32 (zlib's) covers the frame's pixel rows as the guest stored them (width * 4 bytes
 * per row, stride padding excluded), so it identifies content independently of PNG encoding.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <png.h>
#include <setjmp.h>
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

struct capture_sink {
	struct vgb_display base;
	char *dir;
	int dir_fd;
	FILE *index;
	uint64_t seq;
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
	const struct vgb_frame *frame;
	const uint8_t *pixels;
	uint32_t stride;
	uint8_t *row;
};

static int write_png(struct png_job *job)
{
	const struct vgb_frame *frame = job->frame;
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
static int write_file(struct capture_sink *s, const struct vgb_frame *frame, const uint8_t *pixels,
		      uint32_t stride, const char *name)
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

static int capture_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	struct capture_sink *s = capture_from(d);
	const uint8_t *pixels;
	uint32_t stride;
	void *map = MAP_FAILED;
	uint8_t *copy = NULL;
	size_t map_len = 0;
	char name[64];
	uLong crc;
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
	 * One guarded copy of the rows first: the view may be a BAR the guest stops decoding, or
	 * a mapping revoked under us, and a fault there must fail this frame, not kill us.
	 */
	copy = malloc((size_t)frame->width * 4 * frame->height);
	if (!copy) {
		r = -ENOMEM;
		goto out;
	}
	r = vgb_guarded_copy_2d(copy, (size_t)frame->width * 4, pixels, stride,
				(size_t)frame->width * 4, frame->height);
	if (r < 0)
		goto out;
	pixels = copy;
	stride = frame->width * 4;

	crc = crc32(0L, Z_NULL, 0);
	for (uint32_t y = 0; y < frame->height; y++)
		crc = crc32(crc, pixels + (size_t)y * stride, frame->width * 4);

	snprintf(name, sizeof(name), "scanout%u-%06" PRIu64 ".png", frame->scanout, s->seq);
	r = write_file(s, frame, pixels, stride, name);
	if (r < 0)
		goto out;
	char fcc[5] = { (char)frame->fourcc, (char)(frame->fourcc >> 8),
			(char)(frame->fourcc >> 16), (char)(frame->fourcc >> 24), 0 };
	fprintf(s->index, "%" PRIu64 " scanout%u %ux%u %s crc32=%08lx %s\n", s->seq, frame->scanout,
		frame->width, frame->height, fcc, (unsigned long)crc, name);
	if (fflush(s->index) != 0) {
		r = -EIO;
		goto out;
	}
	s->seq++;
	s->stats.frames_presented++;
	s->stats.last_path = VGB_PATH_CAPTURE;
	r = 0;
out:
	free(copy);
	if (map != MAP_FAILED)
		munmap(map, map_len);
	if (r == 0)
		vgb_frame_complete(frame, 0);
	else
		vgb_log_errno(VGB_LOG_DEBUG, r, "capture: frame %" PRIu64, s->seq);
	return r;
}

static void capture_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	*ret = capture_from(d)->stats;
}

static void capture_destroy(struct vgb_display *d)
{
	struct capture_sink *s = capture_from(d);

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
	*ret = &s->base;
	return 0;
}
