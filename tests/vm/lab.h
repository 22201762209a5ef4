/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_VM_LAB_H
#define VGB_TESTS_VM_LAB_H

/*
 * What scripts/vm-lab tells an in-guest test program, and the host's pattern.
 *
 * The lab exports VGB_IVSHMEM_N and, per device i, VGB_IVSHMEMi_BDF (e.g. "0000:00:10.0"),
 * VGB_IVSHMEMi_SIZE (the BAR2 size qemu was given, bytes) and VGB_IVSHMEMi_SEED. Before boot the
 * host fills each device's memory with the pattern below; a program that writes BAR2 announces
 * the range with vm_lab_declare_write() so the host's check after the run expects it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_LAB_MAX_DEVICES 4

struct vm_lab_device {
	char bdf[32];
	uint64_t size;
	uint32_t seed;
};

/* Reads the lab's environment. Returns the number of devices, or -EINVAL when it is absent or
 * malformed (not run by the lab). */
int vm_lab_devices(struct vm_lab_device *ret, int max);

/* The little-endian u32 at byte offset @off (a multiple of 4) of the pattern of @seed. */
static inline uint32_t vm_lab_word(uint32_t seed, uint64_t off)
{
	return (uint32_t)(off / 4) ^ seed;
}

/* Fills @len bytes (multiple of 4) as the pattern has them at @off. */
void vm_lab_fill(void *buf, uint64_t off, size_t len, uint32_t seed);
/* A sealable memfd of @size bytes filled with vm_lab_fill(@seed), as guest RAM. Bails out on
 * failure. */
int vm_lab_make_ram(const char *name, uint64_t size, uint32_t seed);

/* Returns the offset (relative to @buf) of the first byte that differs from the pattern at
 * @off, or -1 when all @len bytes match. */
long long vm_lab_mismatch(const void *buf, uint64_t off, size_t len, uint32_t seed);

/* Prints "@@VGB-WROTE <dev> <off> <len> <seed>" for the host's check. */
void vm_lab_declare_write(int dev, uint64_t off, uint64_t len, uint32_t seed);

/* Reads a small sysfs/proc file into @buf (NUL-terminated, trailing newline removed).
 * Returns its length or -errno. */
int vm_lab_read_file(const char *path, char *buf, size_t size);

/* The basename of the symlink @path points to (e.g. the driver of a PCI device), or -errno. */
int vm_lab_link_name(const char *path, char *buf, size_t size);

/* The pattern's check over a whole view: Returns true when @len bytes at @p equal the
 * pattern of @seed at region offset @off; prints the first difference as a TAP diagnostic. */
bool vm_lab_pattern_ok(const void *p, uint64_t off, size_t len, uint32_t seed);

/* Reads or writes PCI_COMMAND through the config region of a kernel-backend device. */
struct vgb_vfio_device;
int vm_lab_get_command(struct vgb_vfio_device *dev, uint16_t *ret);
int vm_lab_set_memory_decode(struct vgb_vfio_device *dev, bool on);

#endif
