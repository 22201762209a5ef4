/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_GPU_FIXTURE_H
#define VGB_TESTS_GPU_FIXTURE_H

/*
 * What the gpu processor tests share: a guest (RAM [0, 16M) and an optional virtual BAR
 * window [32M, 36M)), a gpu over it with fence completions recorded, builders for the
 * commands, a guest pixel pattern, and gf_run(), which runs one group of cases in a forked
 * child so that nothing (fds, counters, fakes) leaks from one group into the next.
 */

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_gpu.h>

#include "gpu.h"
#include "memmap.h"
#include "record-sink.h"
#include "vgb/vfio.h"

#define MiB (1ull << 20)
#define PG 4096u

struct guest {
	struct vgb_memmap *map;
	struct vgb_vfio_device *dev;
	uint8_t *ram; /* our own view of guest RAM, to write "guest" pixels */
	uint32_t ram_id, bar_id;
};

/* @vdev_spec: a virtual device for the BAR window, or NULL for RAM only. */
void guest_init(struct guest *g, const char *vdev_spec);
void guest_finish(struct guest *g);

/* ---- fence completions ---- */

struct done_rec {
	uint64_t cookie;
	struct virtio_gpu_ctrl_hdr hdr;
	size_t len;
};
extern struct done_rec dones[64];
extern unsigned n_dones;

void on_fence(void *data, uint64_t cookie, const void *resp, size_t len);

/* A gpu over @g's map showing on @d (may be NULL); @tweak (may be NULL) edits the config. */
struct vgb_gpu *make_gpu(struct guest *g, struct vgb_display *d,
			 void (*tweak)(struct vgb_gpu_config *));

/* A make_gpu() tweak: two scanouts. */
void two_scanouts(struct vgb_gpu_config *cfg);

/* ---- command builders ---- */

static inline struct virtio_gpu_ctrl_hdr H(uint32_t type)
{
	return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type) };
}

static inline struct virtio_gpu_ctrl_hdr HF(uint32_t type, uint64_t fence)
{
	return (struct virtio_gpu_ctrl_hdr){ .type = htole32(type),
					     .flags = htole32(VIRTIO_GPU_FLAG_FENCE),
					     .fence_id = htole64(fence) };
}

static inline struct virtio_gpu_rect R(uint32_t x, uint32_t y, uint32_t w, uint32_t h)
{
	return (struct virtio_gpu_rect){ htole32(x), htole32(y), htole32(w), htole32(h) };
}

/* The last response gf_send() got. Large enough for any response. */
struct last_resp {
	int rc;
	uint32_t type;
	size_t len;
	uint8_t buf[8192];
};
extern struct last_resp last;
extern uint64_t next_cookie;

/* Sends @len bytes; returns the response type (0 when deferred, -errno on a call error). */
long gf_send(struct vgb_gpu *gpu, const void *cmd, size_t len);
#define SEND(gpu, ...) gf_send((gpu), &(__VA_ARGS__), sizeof(__VA_ARGS__))

long create_2d(struct vgb_gpu *gpu, uint32_t id, uint32_t fmt, uint32_t w, uint32_t h);

/* Command structs followed by up to 64 entries. */
struct attach_msg {
	struct virtio_gpu_resource_attach_backing attach;
	struct virtio_gpu_mem_entry e[64];
};
struct blob_msg {
	struct virtio_gpu_resource_create_blob blob;
	struct virtio_gpu_mem_entry e[64];
};

long attach(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr, const uint32_t *len,
	    uint32_t n);
long create_blob(struct vgb_gpu *gpu, uint32_t id, const uint64_t *addr, const uint32_t *len,
		 uint32_t n);

static inline struct virtio_gpu_set_scanout_blob scanout_blob(uint32_t s, uint32_t id,
							      uint32_t fmt, uint32_t w,
							      uint32_t h, uint32_t stride,
							      uint32_t offset)
{
	return (struct virtio_gpu_set_scanout_blob){
		.hdr = H(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB), .r = R(0, 0, w, h),
		.scanout_id = htole32(s), .resource_id = htole32(id), .width = htole32(w),
		.height = htole32(h), .format = htole32(fmt), .strides = { htole32(stride) },
		.offsets = { htole32(offset) },
	};
}

static inline struct virtio_gpu_resource_flush flush_cmd(uint32_t id, uint32_t w, uint32_t h,
							 uint64_t fence)
{
	return (struct virtio_gpu_resource_flush){
		.hdr = fence ? HF(VIRTIO_GPU_CMD_RESOURCE_FLUSH, fence)
			     : H(VIRTIO_GPU_CMD_RESOURCE_FLUSH),
		.r = R(0, 0, w, h), .resource_id = htole32(id),
	};
}

/* ---- the guest's pixels ---- */

/* Pixel value of the guest pattern at (x, y) of frame @n. */
static inline uint32_t px(uint32_t x, uint32_t y, uint32_t n)
{
	return (x * 0x01010101u) ^ (y << 8) ^ (n * 0x00330000u) ^ 0xff000000u;
}

/* Writes a w x h frame @n, rows @stride apart, into blob pages @addr (each PG long). */
void draw(struct guest *g, const uint64_t *addr, uint32_t n_pages, uint32_t w, uint32_t h,
	  uint32_t stride, uint32_t n);
bool frame_is(const struct record_frame *f, uint32_t w, uint32_t h, uint32_t n);

/* A Linux 6.1 dumb framebuffer: 64x64 XRGB in 4 scattered pages. */
extern const uint64_t fb_pages[4];
extern const uint32_t fb_lens[4];

/* Creates blob @id over fb_pages, transfers it (a no-op) and shows it on scanout 0. */
void setup_blob_scanout(struct guest *g, struct vgb_gpu *gpu, uint32_t id);

/*
 * Runs @fn in a forked child and reports its checks as this process's own (renumbered), so
 * a group cannot leak state into the next. A child that crashes or bails is one failure.
 */
void gf_run(const char *name, void (*fn)(void));

#endif
