/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_FAKE_VFIO_H
#define VGB_TESTS_FAKE_VFIO_H

/*
 * A fake VFIO kernel at the ioctl boundary (vgb_sys.ioctl), for the kernel backend on machines
 * without VFIO hardware or a DMA_BUF-capable kernel.
 *
 * The "device fd" is a memfd: its bytes are the regions at their offsets, so pread/pwrite and
 * mmap through the device fd work on real memory. ioctls on any fd referring to that memfd
 * (same inode) are answered here with vfio-pci's semantics: GET_INFO, GET_REGION_INFO (real
 * capability chain, argsz too small -> argsz grown and cap_offset 0), VFIO_DEVICE_FEATURE
 * (unknown feature ENOTTY; DMA_BUF checked in the order of drivers/vfio/pci/vfio_pci_dmabuf.c),
 * RESET. A fake legacy tree (sysfs iommu_group link, /dev/vfio container and group files) and a
 * fake /dev/udmabuf are recognised by inode too. Every other fd goes to the previous hook.
 *
 * Install order with tests/lib/fault.h: fake_vfio_install() first, then fault_install(), so
 * injected failures sit in front of the fake like they would in front of the kernel.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FAKE_VFIO_MAX_REGIONS 12
#define FAKE_VFIO_MAX_SPARSE 8
/* Region i lives at (i + 1) << FAKE_VFIO_REGION_SHIFT in the device memfd. */
#define FAKE_VFIO_REGION_SHIFT 24

struct fake_vfio_region {
	uint32_t flags;     /* VFIO_REGION_INFO_FLAG_* (CAPS is added when caps exist) */
	uint64_t size;      /* at most 1 << FAKE_VFIO_REGION_SHIFT */
	uint32_t n_sparse;  /* with has_sparse */
	bool has_sparse;
	struct { uint64_t offset, size; } sparse[FAKE_VFIO_MAX_SPARSE];
	bool has_type;
	uint32_t type, subtype;
};

struct fake_vfio_calls {
	unsigned get_device_info, get_region_info, feature, probe, get, reset;
	unsigned api_version, check_extension, set_iommu, group_status, set_container,
		get_device_fd;
	unsigned udmabuf;
};

struct fake_vfio {
	int device_fd;                  /* the memfd; owned by the fake */
	uint32_t device_flags;          /* VFIO_DEVICE_FLAGS_*; default PCI | RESET */
	uint32_t num_regions;           /* default 9 */
	struct fake_vfio_region regions[FAKE_VFIO_MAX_REGIONS];

	/* VFIO_DEVICE_FEATURE behaviour */
	bool no_feature_ioctl;          /* a kernel without DMA_BUF: every feature ENOTTY */
	bool driver_lacks_dmabuf;       /* DMA_BUF answers EOPNOTSUPP (no get_dmabuf_phys) */
	int get_errno;                  /* after validation, GET fails with this (0: succeeds) */
	bool dmabuf_mmappable;          /* GET returns a memfd copy (true) or an eventfd */
	uint64_t dmabuf_short_bytes;    /* a broken driver: the memfd copy is this much short */
	int reset_errno;

	/* legacy path */
	bool group_not_viable;
	char bdf[16];                   /* the device's address in the fake tree */
	unsigned group;                 /* its IOMMU group number */

	/* udmabuf */
	int udmabuf_errno;              /* injected after the kernel's checks */
	uint64_t udmabuf_short_bytes;   /* a broken kernel: the udmabuf is this much short */

	/* recorded */
	struct fake_vfio_calls calls;
	uint32_t last_probe_argsz, last_probe_flags; /* header of the last PROBE */
	uint8_t last_get[4096];         /* bytes of the last DMA_BUF GET, argsz of them */
	size_t last_get_len;
	bool get_overread;              /* nr_ranges claimed more than argsz held */
	uint32_t last_udmabuf_flags, last_udmabuf_count;
	struct { int memfd; uint64_t offset, size; } last_udmabuf_items[64];
};

/*
 * A fake device with vfio-pci's 9 regions: BAR0 16 KiB (read/write), BAR2 1 MiB
 * (read/write/mmap), BAR4 64 KiB with sparse areas 0+16K and 32K+32K and a type cap 1/2,
 * config 256 bytes; the others absent. DMA_BUF is supported and the dmabuf is mmappable.
 * Tests may change every field, then call fake_vfio_layout().
 */
struct fake_vfio *fake_vfio_create(void);
/*
 * Sets or clears PCI_COMMAND_MEMORY in the config region, as a guest writing its command
 * register would (fake_vfio_create() turns it on, as vfio-pci's open does). Like every region
 * byte it is also reachable through pwrite on the device fd. Returns 0 or -EIO.
 */
int fake_vfio_set_memory_decode(struct fake_vfio *f, bool on);
/* Sizes the memfd for the regions as they are now. Returns 0 or -errno. */
int fake_vfio_layout(struct fake_vfio *f);
void fake_vfio_destroy(struct fake_vfio *f);
/* The region's offset in the device fd. */
uint64_t fake_vfio_region_offset(uint32_t index);
/* A new fd (O_CLOEXEC) for the device, as a VMM would pass one. */
int fake_vfio_dup_device(struct fake_vfio *f);

/*
 * Builds a legacy tree under @root: @root/sys/bus/pci/devices/<bdf>/iommu_group ->
 * (and .../<bdf>/vfio-dev/vfio3, as vfio-pci makes for its cdev)
 * @root/sys/kernel/iommu_groups/<group>, @root/dev/vfio/vfio and @root/dev/vfio/<group>
 * (regular files the fake recognises), and @root/dev/udmabuf plus
 * @root/sys/module/udmabuf/parameters/{list_limit,size_limit_mb}.
 * Returns 0 or -errno.
 */
int fake_vfio_make_tree(struct fake_vfio *f, const char *root);
/* Writes a udmabuf module parameter under @root. */
int fake_vfio_set_udmabuf_param(const char *root, const char *name, unsigned long value);

/* The kernel forgets a container when its group fd closes; the fake cannot see closes, so a
 * test calls this after each legacy open it tore down (or that failed). */
void fake_vfio_legacy_reset(void);

/* Puts @f in front of vgb_sys.ioctl; fake_vfio_remove() restores the previous hook. */
void fake_vfio_install(struct fake_vfio *f);
void fake_vfio_remove(void);

#endif
