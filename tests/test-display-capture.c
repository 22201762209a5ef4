/* SPDX-License-Identifier: MIT */
/*
 * The capture sink writes PNGs that decode to the frame and a CRC line per frame, on a worker
 * thread: frames complete once copied, and present() answers while the encoder is stuck. The
 * null sink completes at once. Both refuse malformed frames without completing them.
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <png.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "leak.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"

#define W 37
#define H 21

static unsigned done_calls;
static int done_status;

static void on_done(void *data, int status)
{
	done_calls++;
	done_status = status;
}

/* Decodes @path to RGBA8; returns 0 and the pixels (W*H*4), or -1. */
static int read_png(const char *path, uint8_t *rgba, uint32_t *ret_w, uint32_t *ret_h)
{
	png_image img;
	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&img, path))
		return -1;
	img.format = PNG_FORMAT_RGBA;
	*ret_w = img.width;
	*ret_h = img.height;
	if (img.width != W || img.height != H) {
		png_image_free(&img);
		return -1;
	}
	if (!png_image_finish_read(&img, NULL, rgba, 0, NULL))
		return -1;
	return 0;
}

static void check_frame(const char *dir, uint32_t fourcc, unsigned seq, uint32_t stride,
			const uint8_t *pixels, FILE *index)
{
	char path[256], line[256], want_line[256];
	uint8_t got[W * H * 4], want[W * H * 4];
	uint32_t w = 0, h = 0;
	uLong crc = crc32(0L, Z_NULL, 0);
	char fcc[5] = { (char)fourcc, (char)(fourcc >> 8), (char)(fourcc >> 16),
			(char)(fourcc >> 24), 0 };

	for (uint32_t y = 0; y < H; y++) {
		crc = crc32(crc, pixels + (size_t)y * stride, W * 4);
		for (uint32_t x = 0; x < W; x++) {
			uint32_t px;
			memcpy(&px, pixels + (size_t)y * stride + x * 4, 4);
			vgb_format_to_rgba(fourcc, px, want + (y * W + x) * 4);
		}
	}
	snprintf(path, sizeof(path), "%s/scanout1-%06u.png", dir, seq);
	tap_is_int(read_png(path, got, &w, &h), 0, "frame %u: %s decodes (%ux%u)", seq, fcc, w, h);
	tap_is_mem(got, want, sizeof(got), "frame %u: PNG pixels equal the frame", seq);
	snprintf(want_line, sizeof(want_line), "%u scanout1 %ux%u %s crc32=%08lx scanout1-%06u.png\n",
		 seq, W, H, fcc, (unsigned long)crc, seq);
	if (!fgets(line, sizeof(line), index))
		line[0] = '\0';
	tap_is_str(line, want_line, "frame %u: frames.txt line", seq);
}

/* Waits (10 s at most) until the sink's worker has written @n frames in all. */
static bool wait_written(struct vgb_display *d, uint64_t n)
{
	struct vgb_display_stats st;

	for (int i = 0; i < 10000; i++) {
		vgb_display_get_stats(d, &st);
		if (st.frames_presented + st.frames_lost >= n && st.frames_pending == 0)
			return st.frames_presented >= n;
		usleep(1000);
	}
	return false;
}

static unsigned count_lines(const char *path)
{
	FILE *f = fopen(path, "re");
	unsigned n = 0;
	int c;

	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

/* Opens the gate (a FIFO the encoder writes its first PNG into) once told, or after 5 s, and
 * reads it empty. */
struct gate {
	char path[256];
	atomic_bool open;
};

static void *gate_main(void *data)
{
	struct gate *g = data;
	char buf[65536];
	int fd;

	for (int i = 0; i < 5000 && !atomic_load(&g->open); i++)
		usleep(1000);
	fd = open(g->path, O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	if (fd >= 0)
		close(fd);
	return NULL;
}

int main(void)
{
	int fds_before, maps_before;
	char dir[] = "/tmp/vgb-capture-XXXXXX";
	struct vgb_display *d;
	struct vgb_display_stats st;
	static uint8_t pixels[H * (W * 4 + 12)];
	const uint32_t stride = W * 4 + 12;
	static const uint32_t fourccs[] = { DRM_FORMAT_XRGB8888, DRM_FORMAT_ABGR8888,
					    DRM_FORMAT_BGRA8888 };
	int r;

	tap_plan_lazy();
	tap_ok(mkdtemp(dir) != NULL, "temporary directory");
	/*
	 * Warm-up: one frame through libpng and zlib first, so the allocator's own arenas (many
	 * more of them under ASan) exist before the snapshot and only our leaks show.
	 */
	if (vgb_display_create_capture(dir, &d) == 0) {
		struct vgb_cpu_view v = { .data = pixels, .stride = stride, .memfd = -1 };
		struct vgb_frame f = { .scanout = 1, .width = W, .height = H,
				       .fourcc = DRM_FORMAT_XRGB8888, .cpu = &v };
		vgb_display_present(d, &f);
		vgb_display_destroy(d);
	}
	fds_before = leak_count_fds();
	maps_before = leak_count_file_maps();

	r = vgb_display_create_capture(dir, &d);
	tap_is_int(r, 0, "create the capture sink");
	for (unsigned i = 0; i < VGB_ARRAY_SIZE(fourccs); i++) {
		struct vgb_cpu_view v = { .data = pixels, .stride = stride, .memfd = -1 };
		struct vgb_frame f = { .scanout = 1, .width = W, .height = H, .fourcc = fourccs[i],
				       .cpu = &v, .done = on_done };
		for (size_t j = 0; j < sizeof(pixels); j++)
			pixels[j] = (uint8_t)(j * 7 + i * 13 + (j >> 8));
		done_calls = 0;
		r = vgb_display_present(d, &f);
		tap_ok(r == 0 && done_calls == 1 && done_status == 0,
		       "frame %u taken and completed once with 0", i);
		tap_ok(wait_written(d, i + 1), "frame %u written", i);
		{
			char path[256];
			FILE *index;
			snprintf(path, sizeof(path), "%s/frames.txt", dir);
			index = fopen(path, "re");
			for (unsigned k = 0; index && k < i; k++) {
				char skip[256];
				if (!fgets(skip, sizeof(skip), index))
					break;
			}
			if (index) {
				check_frame(dir, fourccs[i], i, stride, pixels, index);
				fclose(index);
			}
		}
	}
	/* A dmabuf-only frame: the sink maps it (a memfd stands in for a mappable dmabuf). */
	{
		int fd = memfd_create("fake-dmabuf", MFD_CLOEXEC);
		const uint32_t off = 4096;
		struct vgb_dmabuf b;
		vgb_dmabuf_init(&b);
		b.width = W;
		b.height = H;
		b.fourcc = DRM_FORMAT_XRGB8888;
		b.n_planes = 1;
		b.fd[0] = fd;
		b.offset[0] = off;
		b.stride[0] = stride;
		for (size_t j = 0; j < sizeof(pixels); j++)
			pixels[j] = (uint8_t)(j * 3 + 1);
		tap_ok(fd >= 0 && pwrite(fd, pixels, sizeof(pixels), off) == (ssize_t)sizeof(pixels),
		       "dmabuf stand-in written");
		struct vgb_frame f = { .scanout = 1, .width = W, .height = H,
				       .fourcc = DRM_FORMAT_XRGB8888, .dmabuf = &b,
				       .done = on_done };
		done_calls = 0;
		r = vgb_display_present(d, &f);
		tap_ok(r == 0 && done_calls == 1 && wait_written(d, 4), "dmabuf-only frame written");
		char path[256];
		snprintf(path, sizeof(path), "%s/frames.txt", dir);
		FILE *index = fopen(path, "re");
		for (unsigned k = 0; index && k < 3; k++) {
			char skip[256];
			if (!fgets(skip, sizeof(skip), index))
				break;
		}
		if (index) {
			check_frame(dir, DRM_FORMAT_XRGB8888, 3, stride, pixels, index);
			fclose(index);
		}
		int pipefd[2];
		tap_ok(pipe2(pipefd, O_CLOEXEC) == 0, "a pipe");
		b.fd[0] = pipefd[0];
		tap_is_int(vgb_display_present(d, &f), -EOPNOTSUPP, "an unmappable dmabuf is refused");
		close(pipefd[0]);
		close(pipefd[1]);
		close(fd);
	}
	vgb_display_get_stats(d, &st);
	tap_is_uint(st.frames_presented, 4, "stats count 4 frames");
	tap_is_str(vgb_present_path_name(st.last_path), "capture", "path is capture");
	{
		struct vgb_cpu_view v = { .data = pixels, .stride = W * 4 - 1, .memfd = -1 };
		struct vgb_frame f = { .scanout = 1, .width = W, .height = H,
				       .fourcc = DRM_FORMAT_XRGB8888, .cpu = &v, .done = on_done };
		done_calls = 0;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "short stride refused");
		f.fourcc = DRM_FORMAT_NV12;
		v.stride = stride;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "unknown format refused");
		f.fourcc = DRM_FORMAT_XRGB8888;
		f.width = 0;
		tap_is_int(vgb_display_present(d, &f), -EINVAL, "empty frame refused");
		tap_is_uint(done_calls, 0, "refused frames are not completed");
	}
	/*
	 * A CPU view whose memory goes away under it (a memfd cut to one page under a mapping of
	 * the whole frame; a BAR whose decode the guest turns off does the same): the read
	 * faults with SIGBUS, and the sink must fail the frame with -EIO and live on.
	 */
	{
		const uint32_t page_stride = 4096; /* row 1 onwards lies on the cut pages */
		size_t len = (size_t)page_stride * H;
		int fd = memfd_create("vanishing-view", MFD_CLOEXEC);
		void *map = MAP_FAILED;

		if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
			map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (map != MAP_FAILED && H > 1 && ftruncate(fd, 4096) == 0) {
			struct vgb_cpu_view v = { .data = map, .stride = page_stride, .memfd = -1 };
			struct vgb_frame f = { .scanout = 1, .width = W, .height = H,
					       .fourcc = DRM_FORMAT_XRGB8888, .cpu = &v,
					       .done = on_done };
			struct vgb_dmabuf b;

			done_calls = 0;
			tap_is_int(vgb_display_present(d, &f), -EIO,
				   "a CPU view that faults: -EIO, not SIGBUS");
			vgb_dmabuf_init(&b);
			b.width = W;
			b.height = H;
			b.fourcc = DRM_FORMAT_XRGB8888;
			b.n_planes = 1;
			b.fd[0] = fd;
			b.stride[0] = page_stride;
			f.cpu = NULL;
			f.dmabuf = &b;
			tap_is_int(vgb_display_present(d, &f), -EIO,
				   "a mapped dmabuf that faults: -EIO");
			tap_is_uint(done_calls, 0, "failed frames are not completed");
			f.cpu = &(struct vgb_cpu_view){ .data = pixels, .stride = stride, .memfd = -1 };
			f.dmabuf = NULL;
			tap_ok(vgb_display_present(d, &f) == 0 && done_calls == 1 &&
				       wait_written(d, 5),
			       "the next good frame is written");
			vgb_display_get_stats(d, &st);
			tap_is_uint(st.frames_presented, 5, "only good frames counted");
		} else {
			tap_ok(false, "a memfd cut under its mapping");
		}
		if (map != MAP_FAILED)
			munmap(map, len);
		if (fd >= 0)
			close(fd);
	}
	vgb_display_destroy(d);
	tap_is_int(vgb_display_create_capture("/proc/nonexistent/x", &d) < 0, 1,
		   "an impossible directory fails");

	/*
	 * Encoding runs off the caller's loop. The first PNG's temporary file is a FIFO nobody
	 * reads yet, so the encoder blocks in it: present() and get_stats() must still answer,
	 * and answer before that frame's line is in frames.txt (the order of events, no clock).
	 * Encoding on the caller's thread would block present() until the gate opens (5 s), with
	 * the line written by then.
	 */
	{
		char sub[200], index_path[256];
		struct gate g = { .open = false };
		pthread_t gate_thread;
		struct vgb_cpu_view v = { .data = pixels, .stride = stride, .memfd = -1 };
		struct vgb_frame f = { .scanout = 0, .width = W, .height = H,
				       .fourcc = DRM_FORMAT_XRGB8888, .cpu = &v, .done = on_done };
		unsigned lines_at_answer;

		snprintf(sub, sizeof(sub), "%s/gate", dir);
		snprintf(index_path, sizeof(index_path), "%s/frames.txt", sub);
		snprintf(g.path, sizeof(g.path), "%s/.scanout0-000000.png.tmp", sub);
		r = vgb_display_create_capture(sub, &d);
		tap_ok(r == 0 && mkfifo(g.path, 0600) == 0, "a capture sink whose first PNG is a FIFO");
		pthread_create(&gate_thread, NULL, gate_main, &g);
		done_calls = 0;
		r = vgb_display_present(d, &f);
		int r2 = vgb_display_present(d, &f);
		vgb_display_get_stats(d, &st);
		lines_at_answer = count_lines(index_path);
		tap_ok(r == 0 && r2 == 0 && done_calls == 2,
		       "two frames taken and completed while the encoder is stuck");
		tap_is_uint(lines_at_answer, 0,
			    "both answered before the first frame's line was written");
		tap_ok(st.frames_presented == 0 && st.frames_pending == 2,
		       "stats answer meanwhile: %llu written, %u queued",
		       (unsigned long long)st.frames_presented, st.frames_pending);
		atomic_store(&g.open, true);
		pthread_join(gate_thread, NULL);
		tap_ok(wait_written(d, 2), "the gate opens: both frames written");
		tap_is_uint(count_lines(index_path), 2, "two lines in frames.txt");
		vgb_display_destroy(d);
	}

	/* null sink */
	r = vgb_display_create_null(&d);
	tap_is_int(r, 0, "create the null sink");
	{
		struct vgb_cpu_view v = { .data = pixels, .stride = stride, .memfd = -1 };
		struct vgb_frame f = { .scanout = 0, .width = W, .height = H,
				       .fourcc = DRM_FORMAT_XRGB8888, .cpu = &v, .done = on_done };
		done_calls = 0;
		tap_ok(vgb_display_present(d, &f) == 0 && done_calls == 1 && done_status == 0,
		       "null sink completes at once");
		tap_is_int(vgb_display_get_fd(d), -1, "null sink has no fd");
		tap_is_int(vgb_display_next_timeout_ms(d), -1, "null sink has no timeout");
	}
	vgb_display_destroy(d);

	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		tap_is_int(system(cmd), 0, "clean up");
	}
	tap_is_int(leak_count_fds(), fds_before, "no fd left");
	tap_is_int(leak_count_file_maps(), maps_before, "no file mapping left");
	return tap_done();
}
