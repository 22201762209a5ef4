/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "guest.h"
#include "vgb/util.h"

static void hdr(struct virtio_gpu_ctrl_hdr *h, uint32_t type, uint64_t fence_id)
{
	memset(h, 0, sizeof(*h));
	h->type = type;
	if (fence_id) {
		h->flags = VIRTIO_GPU_FLAG_FENCE;
		h->fence_id = fence_id;
	}
}

#define BUILD(type_, var)                           \
	type_ var;                                  \
	if (cap < sizeof(var))                      \
		return 0;                           \
	memset(&var, 0, sizeof(var))

#define DONE(var)                                   \
	memcpy(buf, &var, sizeof(var));             \
	return sizeof(var)

size_t vgb_guest_get_display_info(void *buf, size_t cap)
{
	BUILD(struct virtio_gpu_ctrl_hdr, c);
	hdr(&c, VIRTIO_GPU_CMD_GET_DISPLAY_INFO, 0);
	DONE(c);
}

size_t vgb_guest_create_2d(void *buf, size_t cap, uint32_t res, uint32_t format, uint32_t w,
			   uint32_t h)
{
	BUILD(struct virtio_gpu_resource_create_2d, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, 0);
	c.resource_id = res;
	c.format = format;
	c.width = w;
	c.height = h;
	DONE(c);
}

static size_t with_entries(void *buf, size_t cap, const void *head, size_t head_len,
			   const struct virtio_gpu_mem_entry *entries, uint32_t n)
{
	size_t len;

	if (__builtin_mul_overflow((size_t)n, sizeof(*entries), &len) ||
	    __builtin_add_overflow(len, head_len, &len) || len > cap)
		return 0;
	memcpy(buf, head, head_len);
	if (n)
		memcpy((uint8_t *)buf + head_len, entries, n * sizeof(*entries));
	return len;
}

size_t vgb_guest_create_blob(void *buf, size_t cap, uint32_t res, uint32_t blob_mem,
			     uint32_t blob_flags, uint64_t size,
			     const struct virtio_gpu_mem_entry *entries, uint32_t n)
{
	struct virtio_gpu_resource_create_blob c;

	memset(&c, 0, sizeof(c));
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, 0);
	c.resource_id = res;
	c.blob_mem = blob_mem;
	c.blob_flags = blob_flags;
	c.nr_entries = n;
	c.size = size;
	return with_entries(buf, cap, &c, sizeof(c), entries, n);
}

size_t vgb_guest_attach_backing(void *buf, size_t cap, uint32_t res,
				const struct virtio_gpu_mem_entry *entries, uint32_t n)
{
	struct virtio_gpu_resource_attach_backing c;

	memset(&c, 0, sizeof(c));
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, 0);
	c.resource_id = res;
	c.nr_entries = n;
	return with_entries(buf, cap, &c, sizeof(c), entries, n);
}

size_t vgb_guest_detach_backing(void *buf, size_t cap, uint32_t res)
{
	BUILD(struct virtio_gpu_resource_detach_backing, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, 0);
	c.resource_id = res;
	DONE(c);
}

size_t vgb_guest_unref(void *buf, size_t cap, uint32_t res)
{
	BUILD(struct virtio_gpu_resource_unref, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_UNREF, 0);
	c.resource_id = res;
	DONE(c);
}

size_t vgb_guest_transfer_2d(void *buf, size_t cap, uint32_t res, uint32_t x, uint32_t y,
			     uint32_t w, uint32_t h, uint64_t offset, uint64_t fence_id)
{
	BUILD(struct virtio_gpu_transfer_to_host_2d, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, fence_id);
	c.resource_id = res;
	c.r = (struct virtio_gpu_rect){ x, y, w, h };
	c.offset = offset;
	DONE(c);
}

size_t vgb_guest_set_scanout(void *buf, size_t cap, uint32_t scanout, uint32_t res, uint32_t x,
			     uint32_t y, uint32_t w, uint32_t h)
{
	BUILD(struct virtio_gpu_set_scanout, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_SET_SCANOUT, 0);
	c.scanout_id = scanout;
	c.resource_id = res;
	c.r = (struct virtio_gpu_rect){ x, y, w, h };
	DONE(c);
}

size_t vgb_guest_set_scanout_blob(void *buf, size_t cap, uint32_t scanout, uint32_t res,
				  uint32_t width, uint32_t height, uint32_t format,
				  uint32_t stride, uint32_t offset, uint32_t x, uint32_t y,
				  uint32_t w, uint32_t h)
{
	BUILD(struct virtio_gpu_set_scanout_blob, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, 0);
	c.r = (struct virtio_gpu_rect){ x, y, w, h };
	c.scanout_id = scanout;
	c.resource_id = res;
	c.width = width;
	c.height = height;
	c.format = format;
	c.strides[0] = stride;
	c.offsets[0] = offset;
	DONE(c);
}

size_t vgb_guest_flush(void *buf, size_t cap, uint32_t res, uint32_t x, uint32_t y, uint32_t w,
		       uint32_t h, uint64_t fence_id)
{
	BUILD(struct virtio_gpu_resource_flush, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_RESOURCE_FLUSH, fence_id);
	c.resource_id = res;
	c.r = (struct virtio_gpu_rect){ x, y, w, h };
	DONE(c);
}

size_t vgb_guest_move_cursor(void *buf, size_t cap, uint32_t scanout, uint32_t x, uint32_t y)
{
	BUILD(struct virtio_gpu_update_cursor, c);
	hdr(&c.hdr, VIRTIO_GPU_CMD_MOVE_CURSOR, 0);
	c.pos.scanout_id = scanout;
	c.pos.x = x;
	c.pos.y = y;
	DONE(c);
}

uint32_t vgb_guest_resp_type(const void *resp, size_t len)
{
	struct virtio_gpu_ctrl_hdr h;

	if (len < sizeof(h))
		return 0;
	memcpy(&h, resp, sizeof(h));
	return h.type;
}

static const struct {
	uint32_t type;
	const char *name;
} resp_names[] = {
	{ VIRTIO_GPU_RESP_OK_NODATA, "OK_NODATA" },
	{ VIRTIO_GPU_RESP_OK_DISPLAY_INFO, "OK_DISPLAY_INFO" },
	{ VIRTIO_GPU_RESP_OK_CAPSET_INFO, "OK_CAPSET_INFO" },
	{ VIRTIO_GPU_RESP_OK_CAPSET, "OK_CAPSET" },
	{ VIRTIO_GPU_RESP_OK_EDID, "OK_EDID" },
	{ VIRTIO_GPU_RESP_ERR_UNSPEC, "ERR_UNSPEC" },
	{ VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, "ERR_OUT_OF_MEMORY" },
	{ VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, "ERR_INVALID_SCANOUT_ID" },
	{ VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, "ERR_INVALID_RESOURCE_ID" },
	{ VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID, "ERR_INVALID_CONTEXT_ID" },
	{ VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, "ERR_INVALID_PARAMETER" },
};

const char *vgb_guest_resp_name(uint32_t type)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(resp_names); i++)
		if (resp_names[i].type == type)
			return resp_names[i].name;
	return "?";
}

static const struct {
	uint32_t type;
	const char *name;
} cmd_names[] = {
	{ VIRTIO_GPU_CMD_GET_DISPLAY_INFO, "GET_DISPLAY_INFO" },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, "RESOURCE_CREATE_2D" },
	{ VIRTIO_GPU_CMD_RESOURCE_UNREF, "RESOURCE_UNREF" },
	{ VIRTIO_GPU_CMD_SET_SCANOUT, "SET_SCANOUT" },
	{ VIRTIO_GPU_CMD_RESOURCE_FLUSH, "RESOURCE_FLUSH" },
	{ VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, "TRANSFER_TO_HOST_2D" },
	{ VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, "RESOURCE_ATTACH_BACKING" },
	{ VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, "RESOURCE_DETACH_BACKING" },
	{ VIRTIO_GPU_CMD_GET_CAPSET_INFO, "GET_CAPSET_INFO" },
	{ VIRTIO_GPU_CMD_GET_CAPSET, "GET_CAPSET" },
	{ VIRTIO_GPU_CMD_GET_EDID, "GET_EDID" },
	{ VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID, "RESOURCE_ASSIGN_UUID" },
	{ VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, "RESOURCE_CREATE_BLOB" },
	{ VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, "SET_SCANOUT_BLOB" },
	{ VIRTIO_GPU_CMD_UPDATE_CURSOR, "UPDATE_CURSOR" },
	{ VIRTIO_GPU_CMD_MOVE_CURSOR, "MOVE_CURSOR" },
};

const char *vgb_guest_cmd_name(uint32_t type)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cmd_names); i++)
		if (cmd_names[i].type == type)
			return cmd_names[i].name;
	return NULL;
}

int vgb_guest_cmd_parse(const char *name)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(cmd_names); i++)
		if (strcasecmp(cmd_names[i].name, name) == 0)
			return (int)cmd_names[i].type;
	return -EINVAL;
}
