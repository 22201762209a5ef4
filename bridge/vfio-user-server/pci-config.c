/* SPDX-License-Identifier: MIT */
/* The virtual GPU's PCI config space: one write mask per byte, BAR registers computed. */
#include <string.h>

#include <linux/pci_regs.h>

#include "pci-config.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool bar_ok(uint64_t size)
{
	return size && size <= (2ull << 30) && !(size & (size - 1));
}

/* The low bits a BAR register always reads back: 32-bit memory, prefetchable or not. */
static uint32_t bar_type(const struct vgb_pci_bar *b)
{
	return b->prefetch ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0;
}

void vgb_pci_config_init(struct vgb_pci_config *cfg, const struct vgb_pci_bar bars[7])
{
	uint8_t *c = cfg->bytes;

	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < 7; i++)
		if (bar_ok(bars[i].size))
			cfg->bars[i] = bars[i];

	put16(c + PCI_VENDOR_ID, VGB_VUS_VENDOR_ID);
	put16(c + PCI_DEVICE_ID, VGB_VUS_DEVICE_ID);
	put16(c + PCI_COMMAND, PCI_COMMAND_MEMORY);
	put16(c + PCI_STATUS, PCI_STATUS_CAP_LIST);
	c[PCI_REVISION_ID] = VGB_VUS_REVISION;
	c[PCI_CLASS_PROG] = (uint8_t)VGB_VUS_CLASS;
	put16(c + PCI_CLASS_DEVICE, (uint16_t)(VGB_VUS_CLASS >> 8));
	c[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	for (int i = 0; i < 6; i++)
		if (cfg->bars[i].size)
			put32(c + PCI_BASE_ADDRESS_0 + 4 * i, bar_type(&cfg->bars[i]));
	put16(c + PCI_SUBSYSTEM_VENDOR_ID, VGB_VUS_VENDOR_ID);
	put16(c + PCI_SUBSYSTEM_ID, 0x1100);
	c[PCI_CAPABILITY_LIST] = VGB_VUS_MSI_CAP;
	c[PCI_INTERRUPT_PIN] = 1; /* INTA */

	/* MSI: 64-bit addresses, one vector. */
	c[VGB_VUS_MSI_CAP + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSI;
	c[VGB_VUS_MSI_CAP + PCI_CAP_LIST_NEXT] = VGB_VUS_VENDOR_CAP;
	put16(c + VGB_VUS_MSI_CAP + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT);

	/* Vendor-specific: 8 bytes, "vgb" and a layout version, so a guest can find us. */
	c[VGB_VUS_VENDOR_CAP + PCI_CAP_LIST_ID] = PCI_CAP_ID_VNDR;
	c[VGB_VUS_VENDOR_CAP + PCI_CAP_LIST_NEXT] = 0;
	c[VGB_VUS_VENDOR_CAP + 2] = 8;
	memcpy(c + VGB_VUS_VENDOR_CAP + 3, "vgb", 3);
	c[VGB_VUS_VENDOR_CAP + 6] = 1;
}

/* The bits a write may change in byte @off (BARs are handled apart). */
static uint8_t wmask(uint32_t off)
{
	const uint32_t msi = VGB_VUS_MSI_CAP;

	switch (off) {
	case PCI_COMMAND:
		return PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
		       PCI_COMMAND_PARITY;
	case PCI_COMMAND + 1:
		return (PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE | PCI_COMMAND_FAST_BACK) >> 8;
	case PCI_CACHE_LINE_SIZE:
	case PCI_LATENCY_TIMER:
	case PCI_INTERRUPT_LINE:
		return 0xff;
	}
	if (off == msi + PCI_MSI_FLAGS)
		return PCI_MSI_FLAGS_ENABLE; /* one vector: the QSIZE field stays 0 */
	if (off >= msi + PCI_MSI_ADDRESS_LO && off < msi + PCI_MSI_ADDRESS_LO + 4)
		return off == msi + PCI_MSI_ADDRESS_LO ? 0xfc : 0xff; /* dword aligned */
	if (off >= msi + PCI_MSI_ADDRESS_HI && off < msi + PCI_MSI_DATA_64 + 2)
		return 0xff;
	return 0;
}

/* A BAR register: the guest's address bits above the size, the type bits below. */
static void write_bar(struct vgb_pci_config *cfg, int bar, uint32_t value)
{
	const struct vgb_pci_bar *b = &cfg->bars[bar];
	uint32_t reg = bar < 6 ? PCI_BASE_ADDRESS_0 + 4u * (uint32_t)bar : PCI_ROM_ADDRESS;
	uint32_t v;

	if (!b->size) {
		put32(cfg->bytes + reg, 0);
		return;
	}
	v = value & ~(uint32_t)(b->size - 1);
	if (bar < 6)
		v = (v & PCI_BASE_ADDRESS_MEM_MASK) | bar_type(b);
	else
		v = (v & PCI_ROM_ADDRESS_MASK) | (value & PCI_ROM_ADDRESS_ENABLE);
	put32(cfg->bytes + reg, v);
}

void vgb_pci_config_read(const struct vgb_pci_config *cfg, uint32_t off, void *buf, size_t len)
{
	memcpy(buf, cfg->bytes + off, len);
}

void vgb_pci_config_write(struct vgb_pci_config *cfg, uint32_t off, const void *buf, size_t len)
{
	const uint8_t *in = buf;

	for (size_t i = 0; i < len; i++) {
		uint32_t o = off + (uint32_t)i;
		int bar = -1;

		if (o >= PCI_BASE_ADDRESS_0 && o < PCI_BASE_ADDRESS_5 + 4)
			bar = (int)((o - PCI_BASE_ADDRESS_0) / 4);
		else if (o >= PCI_ROM_ADDRESS && o < PCI_ROM_ADDRESS + 4)
			bar = 6;
		if (bar >= 0) {
			/* Byte writes merge into the register, then the whole register is masked. */
			uint32_t reg = bar < 6 ? PCI_BASE_ADDRESS_0 + 4u * (uint32_t)bar
					       : PCI_ROM_ADDRESS;
			uint8_t tmp[4];

			memcpy(tmp, cfg->bytes + reg, 4);
			tmp[o - reg] = in[i];
			write_bar(cfg, bar, get32(tmp));
			continue;
		}
		uint8_t m = wmask(o);

		cfg->bytes[o] = (uint8_t)((cfg->bytes[o] & ~m) | (in[i] & m));
	}
}

bool vgb_pci_config_memory_enabled(const struct vgb_pci_config *cfg)
{
	return cfg->bytes[PCI_COMMAND] & PCI_COMMAND_MEMORY;
}
