/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_EDID_H
#define VGB_BRIDGE_EDID_H

/*
 * An EDID 1.4 base block (VESA E-EDID, 128 bytes, no extensions) for a virtual monitor:
 * digital input, sRGB, one detailed timing descriptor (the preferred, native mode) at
 * @width x @height near 60 Hz with reduced blanking, and a monitor name descriptor.
 */

#include <stdint.h>

#define VGB_EDID_BLOCK_SIZE 128u
/* The largest active size a detailed timing descriptor holds (12-bit fields). */
#define VGB_EDID_MAX_ACTIVE 4095u

/*
 * Fills @ret with the block. @name (at most 13 characters are kept) names the monitor;
 * @serial goes into the serial number field (one per scanout tells monitors apart).
 * Returns 0, or -ERANGE when @width or @height is 0 or above VGB_EDID_MAX_ACTIVE.
 */
int vgb_edid_build(uint32_t width, uint32_t height, const char *name, uint32_t serial,
		   uint8_t ret[VGB_EDID_BLOCK_SIZE]);

#endif
