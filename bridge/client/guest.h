/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_GUEST_H
#define VGB_BRIDGE_GUEST_H

/*
 * Builders of virtio-gpu command bytes as a guest driver lays them out (linux/virtio_gpu.h),
 * for the clients that play a guest: vgbctl scenario and replay, and the tests. Each writes
 * the command into @buf (@cap bytes) and returns its length, or 0 when it does not fit.
 * A @fence_id of 0 means unfenced; otherwise VIRTIO_GPU_FLAG_FENCE is set.
 */

#include <stddef.h>
#include <stdint.h>

#include <linux/virtio_gpu.h>

size_t vgb_guest_get_display_info(void *buf, size_t cap);
size_t vgb_guest_create_2d(void *buf, size_t cap, uint32_t res, uint32_t format, uint32_t w,
			   uint32_t h);
size_t vgb_guest_create_blob(void *buf, size_t cap, uint32_t res, uint32_t blob_mem,
			     uint32_t blob_flags, uint64_t size,
			     const struct virtio_gpu_mem_entry *entries, uint32_t n);
size_t vgb_guest_attach_backing(void *buf, size_t cap, uint32_t res,
				const struct virtio_gpu_mem_entry *entries, uint32_t n);
size_t vgb_guest_detach_backing(void *buf, size_t cap, uint32_t res);
size_t vgb_guest_unref(void *buf, size_t cap, uint32_t res);
size_t vgb_guest_transfer_2d(void *buf, size_t cap, uint32_t res, uint32_t x, uint32_t y,
			     uint32_t w, uint32_t h, uint64_t offset, uint64_t fence_id);
size_t vgb_guest_set_scanout(void *buf, size_t cap, uint32_t scanout, uint32_t res, uint32_t x,
			     uint32_t y, uint32_t w, uint32_t h);
size_t vgb_guest_set_scanout_blob(void *buf, size_t cap, uint32_t scanout, uint32_t res,
				  uint32_t width, uint32_t height, uint32_t format,
				  uint32_t stride, uint32_t offset, uint32_t x, uint32_t y,
				  uint32_t w, uint32_t h);
size_t vgb_guest_flush(void *buf, size_t cap, uint32_t res, uint32_t x, uint32_t y, uint32_t w,
		       uint32_t h, uint64_t fence_id);
size_t vgb_guest_move_cursor(void *buf, size_t cap, uint32_t scanout, uint32_t x, uint32_t y);

/* The response type of @resp (@len bytes), or 0 when it is shorter than a header. */
uint32_t vgb_guest_resp_type(const void *resp, size_t len);
/* "OK_NODATA", "ERR_INVALID_RESOURCE_ID", ... or "?" */
const char *vgb_guest_resp_name(uint32_t type);
/* "RESOURCE_FLUSH", ... or NULL; and the reverse (-EINVAL when unknown). */
const char *vgb_guest_cmd_name(uint32_t type);
int vgb_guest_cmd_parse(const char *name);

#endif
