/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_PRIVATE_H
#define VGB_VFIO_PRIVATE_H

/* Private to vfio/ (and its unit tests): helpers shared between the backends. */

#include <stddef.h>
#include <stdint.h>

#include "vgb/vfio.h"

/* The largest region-info buffer (struct + capability chain) we accept from a backend. */
#define VGB_VFIO_REGION_INFO_MAX 65536u
/* The most sparse mmap areas we keep for one region. */
#define VGB_VFIO_MAX_SPARSE 1024u

/*
 * Parses a struct vfio_region_info of @len valid bytes (its capability chain included) into
 * @ret. The sparse areas are copied into a new array stored in *ret_sparse (NULL when there
 * are none), which the caller frees; ret->sparse points to it.
 * Returns 0, -EPROTO for a malformed chain (offsets outside the buffer, loops, counts that do
 * not fit) or -ENOMEM. Nothing is written on failure.
 */
int vgb_vfio_parse_region_info(const void *buf, size_t len, struct vgb_vfio_region_info *ret,
			       struct vgb_vfio_sparse_area **ret_sparse);

/* The region's name for vfio-pci's fixed indexes ("BAR2", "CONFIG"), or NULL. */
const char *vgb_vfio_region_name(uint32_t index);

/*
 * Runs the DMA_BUF probe (VFIO_DEVICE_FEATURE with PROBE|GET|11) through dev->ops and records
 * the answer: 0 sets VGB_VFIO_CAP_DMA_BUF, anything else clears it. ENOTTY and EOPNOTSUPP are
 * the documented "absent" answers and are not errors; they are logged at debug only.
 */
void vgb_vfio_probe_dmabuf(struct vgb_vfio_device *dev);

/*
 * vfio-user: one raw request on a vfio-user device, for tests and tools that speak messages the
 * io-ops do not (IRQs, DMA). Sends @cmd with @req_len bytes of @req and @n_fds fds (borrowed),
 * then waits for the reply: up to @reply_max payload bytes into @reply (*ret_len gets the
 * length) and up to @max_fds fds into @ret_fds (*ret_n_fds; owned by the caller). Returns 0,
 * the server's error reply as -errno, -EPROTO for a malformed reply (the device is then gone
 * when the stream cannot be trusted), or -ENODEV once the device is gone.
 */
int vgb_vfio_user_request(struct vgb_vfio_device *dev, uint16_t cmd, const void *req,
			  size_t req_len, const int *fds, size_t n_fds, void *reply,
			  size_t reply_max, size_t *ret_len, int *ret_fds, size_t max_fds,
			  size_t *ret_n_fds);
/* The per-call timeout of a vfio-user device in milliseconds (default 5000), for tests. */
void vgb_vfio_user_set_timeout(struct vgb_vfio_device *dev, int timeout_ms);

#endif
