/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_EXPORT_H
#define VGB_BRIDGE_EXPORT_H

/*
 * The export planner: turns a translated blob (bridge/blob.h) into
 *   1. one VFIO multi-range dmabuf, when every segment lies in one region of one device that
 *      has VGB_VFIO_CAP_DMA_BUF;
 *   2. one udmabuf, when every segment is a udmabuf-capable memfd range and the limits allow;
 *   3. nothing but the CPU view.
 * "Not possible for this memory" (a capability, a limit, unaligned segments, EINVAL/EBADFD
 * from udmabuf) falls to the next strategy quietly; anything else is logged once per blob.
 *
 * The CPU view exists on demand for every blob: a mapping of whole pages (the segment mapper,
 * with the pointer offset into the first page) when the segment edges allow it, otherwise a
 * copy kept in an anonymous host buffer and refreshed on demand.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vgb_export_strategy {
	VGB_EXPORT_NONE = 0,    /* not planned yet, or dropped (reset, window removed) */
	VGB_EXPORT_VFIO_DMABUF, /* VFIO_DEVICE_FEATURE_DMA_BUF over one region */
	VGB_EXPORT_UDMABUF,     /* UDMABUF_CREATE_LIST over memfd ranges */
	VGB_EXPORT_CPU_VIEW,    /* no dmabuf: only the CPU view */
	VGB_EXPORT_COUNT,
};

/* "none", "vfio-dmabuf", "udmabuf", "cpu-view". */
const char *vgb_export_strategy_name(enum vgb_export_strategy s);

#endif
