/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_USER_H
#define VGB_VFIO_USER_H

/*
 * The vfio-user wire format, written from QEMU's docs/interop/vfio-user.rst (protocol 0.0):
 * what the client backend (vfio/ops-vfio-user.c) and the server
 * (bridge/vfio-user-server/) share. Every message is a 16-byte header and a payload, in host
 * byte order, over an AF_UNIX stream socket; fds travel as SCM_RIGHTS with the message's first
 * byte. Payloads that are VFIO ioctl structs (region info, its capability chain) use
 * <linux/vfio.h> directly.
 *
 * Helpers here (vfio/vfio-user-wire.c) return >= 0 or -errno, like everything in vfio/.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VGB_VFIO_USER_MAJOR 0
#define VGB_VFIO_USER_MINOR 0

enum vgb_vfio_user_cmd {
	VGB_VFIO_USER_VERSION = 1,
	VGB_VFIO_USER_DMA_MAP = 2,
	VGB_VFIO_USER_DMA_UNMAP = 3,
	VGB_VFIO_USER_DEVICE_GET_INFO = 4,
	VGB_VFIO_USER_DEVICE_GET_REGION_INFO = 5,
	VGB_VFIO_USER_DEVICE_GET_REGION_IO_FDS = 6,
	VGB_VFIO_USER_DEVICE_GET_IRQ_INFO = 7,
	VGB_VFIO_USER_DEVICE_SET_IRQS = 8,
	VGB_VFIO_USER_REGION_READ = 9,
	VGB_VFIO_USER_REGION_WRITE = 10,
	VGB_VFIO_USER_DMA_READ = 11,
	VGB_VFIO_USER_DMA_WRITE = 12,
	VGB_VFIO_USER_DEVICE_RESET = 13,
	VGB_VFIO_USER_REGION_WRITE_MULTI = 15,
	VGB_VFIO_USER_DEVICE_FEATURE = 16,
};

/* Header flags: bits 0-3 the type, then NO_REPLY and ERROR. */
#define VGB_VFIO_USER_F_TYPE_MASK 0xfu
#define VGB_VFIO_USER_F_REQUEST 0x0u
#define VGB_VFIO_USER_F_REPLY 0x1u
#define VGB_VFIO_USER_F_NO_REPLY 0x10u
#define VGB_VFIO_USER_F_ERROR 0x20u

struct vgb_vfio_user_hdr {
	uint16_t id;    /* chosen by the sender, echoed in the reply */
	uint16_t cmd;   /* enum vgb_vfio_user_cmd, also in the reply */
	uint32_t size;  /* the whole message, header included */
	uint32_t flags; /* VGB_VFIO_USER_F_* */
	uint32_t error; /* errno of an ERROR reply (may be 0); reserved in requests */
};
_Static_assert(sizeof(struct vgb_vfio_user_hdr) == 16, "vfio-user header");
_Static_assert(offsetof(struct vgb_vfio_user_hdr, size) == 4, "hdr.size");
_Static_assert(offsetof(struct vgb_vfio_user_hdr, error) == 12, "hdr.error");

/* VERSION request and reply: then an optional NUL-terminated JSON object. */
struct vgb_vfio_user_version {
	uint16_t major;
	uint16_t minor;
};
_Static_assert(sizeof(struct vgb_vfio_user_version) == 4, "version");

/* DMA_MAP: no reply payload. */
struct vgb_vfio_user_dma_map {
	uint32_t argsz;   /* 32 */
	uint32_t flags;   /* VGB_VFIO_USER_DMA_READ_FLAG | _WRITE_FLAG */
	uint64_t offset;  /* in the attached fd; 0 when none is attached */
	uint64_t addr;    /* DMA address */
	uint64_t size;
};
_Static_assert(sizeof(struct vgb_vfio_user_dma_map) == 32, "dma_map");
_Static_assert(offsetof(struct vgb_vfio_user_dma_map, addr) == 16, "dma_map.addr");
#define VGB_VFIO_USER_DMA_READ_FLAG 0x1u
#define VGB_VFIO_USER_DMA_WRITE_FLAG 0x2u

/* DMA_UNMAP: the reply echoes the request's 24 bytes. */
struct vgb_vfio_user_dma_unmap {
	uint32_t argsz;
	uint32_t flags;   /* 0, or VGB_VFIO_USER_UNMAP_ALL with addr and size 0 */
	uint64_t addr;
	uint64_t size;
};
_Static_assert(sizeof(struct vgb_vfio_user_dma_unmap) == 24, "dma_unmap");
#define VGB_VFIO_USER_UNMAP_DIRTY 0x1u /* VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: refused */
#define VGB_VFIO_USER_UNMAP_ALL 0x2u   /* VFIO_DMA_UNMAP_FLAG_ALL */

/* DEVICE_GET_INFO request and reply (struct vfio_device_info without its cap chain). */
struct vgb_vfio_user_device_info {
	uint32_t argsz;
	uint32_t flags;       /* VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI */
	uint32_t num_regions;
	uint32_t num_irqs;
};
_Static_assert(sizeof(struct vgb_vfio_user_device_info) == 16, "device_info");

/* DEVICE_GET_REGION_INFO: request and reply are struct vfio_region_info (32 bytes), the
 * reply followed by its capability chain and, for an mmappable region, one fd. */
#define VGB_VFIO_USER_REGION_INFO_SIZE 32u

/* DEVICE_GET_IRQ_INFO request and reply (struct vfio_irq_info). */
struct vgb_vfio_user_irq_info {
	uint32_t argsz;
	uint32_t flags; /* VFIO_IRQ_INFO_* */
	uint32_t index;
	uint32_t count;
};
_Static_assert(sizeof(struct vgb_vfio_user_irq_info) == 16, "irq_info");

/* DEVICE_SET_IRQS (struct vfio_irq_set): DATA_BOOL carries count bytes after it; DATA_EVENTFD
 * carries count fds (or none, to de-assign). No reply payload. */
struct vgb_vfio_user_irq_set {
	uint32_t argsz;
	uint32_t flags; /* one VFIO_IRQ_SET_DATA_* and one VFIO_IRQ_SET_ACTION_* */
	uint32_t index;
	uint32_t start;
	uint32_t count;
};
_Static_assert(sizeof(struct vgb_vfio_user_irq_set) == 20, "irq_set");

/* REGION_READ / REGION_WRITE request and reply: then count bytes of data (read reply, write
 * request). */
struct vgb_vfio_user_region_rw {
	uint64_t offset;
	uint32_t region;
	uint32_t count;
};
_Static_assert(sizeof(struct vgb_vfio_user_region_rw) == 16, "region_rw");

/* The capabilities of the VERSION JSON, with the spec's defaults. */
#define VGB_VFIO_USER_DEFAULT_MAX_FDS 1u
#define VGB_VFIO_USER_DEFAULT_MAX_XFER (1u << 20)
#define VGB_VFIO_USER_DEFAULT_MAX_DMA_MAPS 65535u
#define VGB_VFIO_USER_DEFAULT_PGSIZES 4096u
/* The longest VERSION JSON either side accepts (QEMU's is about 250 bytes). */
#define VGB_VFIO_USER_MAX_JSON 4096u

struct vgb_vfio_user_caps {
	uint64_t max_msg_fds;
	uint64_t max_data_xfer_size;
	uint64_t max_dma_maps;
	uint64_t pgsizes;
	bool migration; /* a "migration" object was present */
};

/* Fills @caps with the spec's defaults (a peer that names no capability). */
void vgb_vfio_user_caps_default(struct vgb_vfio_user_caps *caps);

/*
 * Parses a VERSION message's JSON (@len bytes, which must hold a NUL; bytes after it are
 * ignored) into @caps, over the defaults: {"capabilities": {"max_msg_fds": N,
 * "max_data_xfer_size": N, "max_dma_maps": N, "pgsizes": N, "migration": {...}, ...}}.
 * Unknown keys are skipped at any depth. Returns 0, or -EINVAL for text that is not one JSON
 * object, nests deeper than 8, has a number that is not a non-negative integer below 2^63
 * where a capability number is expected, or has no NUL. @caps is written only on success.
 */
int vgb_vfio_user_parse_caps(const char *json, size_t len, struct vgb_vfio_user_caps *caps);

/*
 * Sends one message: @hdr (its size must equal 16 + the payload bytes), @n_iov payload
 * pieces and @n_fds fds (borrowed) with its first byte. @timeout_ms bounds the wait for
 * socket space (-1 waits forever, 0 never waits). Returns 0, -ETIMEDOUT, -EPIPE / -ECONNRESET
 * when the peer is gone, -EINVAL for a size mismatch or more than 16 fds, or another -errno.
 * On -ETIMEDOUT part of the message may have been sent: the stream is then unusable.
 */
struct iovec;
int vgb_vfio_user_send(int sock, const struct vgb_vfio_user_hdr *hdr, const struct iovec *iov,
		       int n_iov, const int *fds, size_t n_fds, int timeout_ms);

/* "VERSION", "DMA_MAP", ... or "?" for an unknown command: for logs and tests. */
const char *vgb_vfio_user_cmd_name(uint16_t cmd);

#endif
