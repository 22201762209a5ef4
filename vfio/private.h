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

#endif
