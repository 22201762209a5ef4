/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_USER_SERVER_PCI_CONFIG_H
#define VGB_VFIO_USER_SERVER_PCI_CONFIG_H

/*
 * The type 0 PCI config space the vfio-user server shows for the virtual GPU (region 7), with
 * the rules a guest kernel relies on: read-only ids, class and header type; BARs that answer a
 * sizing write of all ones with their size mask; a command register whose memory-decode bit
 * gates the BARs; a capability list (MSI, then a vendor-specific capability). Layout and ids
 * are in docs/vfio-user.md.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VGB_PCI_CONFIG_SIZE 256u
/* Test ids (docs/vfio-user.md): Red Hat's QEMU vendor id and the id of QEMU's PCI test
 * device, which no Linux driver binds; class 0x0380 (display controller, other). */
#define VGB_VUS_VENDOR_ID 0x1b36
#define VGB_VUS_DEVICE_ID 0x0005
#define VGB_VUS_CLASS 0x038000
#define VGB_VUS_REVISION 0x01
#define VGB_VUS_MSI_CAP 0x40
#define VGB_VUS_VENDOR_CAP 0x58

struct vgb_pci_bar {
	uint64_t size;      /* 0: no such BAR (PCI reads it back as an unimplemented BAR) */
	bool prefetch;
	bool rom;
};

struct vgb_pci_config {
	uint8_t bytes[VGB_PCI_CONFIG_SIZE];
	struct vgb_pci_bar bars[7]; /* BAR0-5, ROM */
};

/* Power-on state for BARs of @bars (BAR0-5 sizes must be powers of two up to 2 GiB, the ROM's
 * too; a BAR that is not is left unimplemented). Memory decode starts on, as vfio-pci's
 * enabled device has it. */
void vgb_pci_config_init(struct vgb_pci_config *cfg, const struct vgb_pci_bar bars[7]);

/* Config reads and writes of any size and alignment inside the 256 bytes (the caller checks
 * the bounds). Writes go through each register's write mask; RW1C and read-only bits keep. */
void vgb_pci_config_read(const struct vgb_pci_config *cfg, uint32_t off, void *buf, size_t len);
void vgb_pci_config_write(struct vgb_pci_config *cfg, uint32_t off, const void *buf, size_t len);

/* Whether BARs answer: PCI_COMMAND_MEMORY is set. */
bool vgb_pci_config_memory_enabled(const struct vgb_pci_config *cfg);

#endif
