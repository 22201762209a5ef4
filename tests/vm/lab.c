/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "lab.h"
#include "tap.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

/* Reads $VGB_IVSHMEM<i><suffix> (or $VGB_IVSHMEM_N for @i < 0) as a number. */
static int env_u64(int i, const char *suffix, uint64_t *ret)
{
	char name[64], *end;
	const char *v;
	unsigned long long x;

	if (i < 0)
		snprintf(name, sizeof(name), "VGB_IVSHMEM_N");
	else
		snprintf(name, sizeof(name), "VGB_IVSHMEM%d_%s", i, suffix);
	v = getenv(name);
	if (!v || !*v)
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || *end)
		return -EINVAL;
	*ret = x;
	return 0;
}

int vm_lab_devices(struct vm_lab_device *ret, int max)
{
	uint64_t n, size, seed;

	if (env_u64(-1, NULL, &n) < 0 || n > (uint64_t)max)
		return -EINVAL;
	for (int i = 0; i < (int)n; i++) {
		char name[64];
		const char *bdf;

		snprintf(name, sizeof(name), "VGB_IVSHMEM%d_BDF", i);
		bdf = getenv(name);
		if (!bdf || strlen(bdf) >= sizeof(ret[i].bdf) ||
		    env_u64(i, "SIZE", &size) < 0 ||
		    env_u64(i, "SEED", &seed) < 0 || seed > UINT32_MAX)
			return -EINVAL;
		snprintf(ret[i].bdf, sizeof(ret[i].bdf), "%s", bdf);
		ret[i].size = size;
		ret[i].seed = (uint32_t)seed;
	}
	return (int)n;
}

/* TCG runs every guest instruction through a translator: whole words, not bytes. */
void vm_lab_fill(void *buf, uint64_t off, size_t len, uint32_t seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i + 4 <= len; i += 4) {
		uint32_t w = htole32(vm_lab_word(seed, off + i));

		memcpy(p + i, &w, 4);
	}
}

long long vm_lab_mismatch(const void *buf, uint64_t off, size_t len, uint32_t seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i + 4 <= len; i += 4) {
		uint32_t w = htole32(vm_lab_word(seed, off + i)), got;

		memcpy(&got, p + i, 4);
		if (got != w) {
			for (size_t b = 0; b < 4; b++)
				if (p[i + b] != ((const unsigned char *)&w)[b])
					return (long long)(i + b);
		}
	}
	return -1;
}

void vm_lab_declare_write(int dev, uint64_t off, uint64_t len, uint32_t seed)
{
	printf("@@VGB-WROTE %d %#" PRIx64 " %#" PRIx64 " %#" PRIx32 "\n", dev, off, len, seed);
	fflush(stdout);
}

int vm_lab_read_file(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	if (size == 0)
		return -EINVAL;
	n = read(fd, buf, size - 1);
	if (n < 0)
		return -errno;
	while (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	return (int)n;
}

int vm_lab_link_name(const char *path, char *buf, size_t size)
{
	char target[4096];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	const char *base;

	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= size)
		return -ENAMETOOLONG;
	snprintf(buf, size, "%s", base);
	return 0;
}

bool vm_lab_pattern_ok(const void *p, uint64_t off, size_t len, uint32_t seed)
{
	long long bad = vm_lab_mismatch(p, off, len, seed);

	if (bad >= 0)
		tap_diag("pattern (seed %#x) differs at byte %#llx of %#zx (region offset %#llx)",
			 seed, bad, len, (unsigned long long)(off + (uint64_t)bad));
	return bad < 0;
}

int vm_lab_get_command(struct vgb_vfio_device *dev, uint16_t *ret)
{
	unsigned char b[2];
	ssize_t n = vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, b, 2);

	if (n < 0)
		return (int)n;
	if (n != 2)
		return -EIO;
	*ret = (uint16_t)(b[0] | b[1] << 8);
	return 0;
}

int vm_lab_set_memory_decode(struct vgb_vfio_device *dev, bool on)
{
	uint16_t cmd = 0; /* -O2 cannot see that vm_lab_get_command() sets it on success */
	unsigned char b[2];
	ssize_t n;
	int r = vm_lab_get_command(dev, &cmd);

	if (r < 0)
		return r;
	cmd = on ? (uint16_t)(cmd | PCI_COMMAND_MEMORY) : (uint16_t)(cmd & ~PCI_COMMAND_MEMORY);
	b[0] = (unsigned char)cmd;
	b[1] = (unsigned char)(cmd >> 8);
	n = vgb_vfio_region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, b, 2);
	if (n < 0)
		return (int)n;
	return n == 2 ? 0 : -EIO;
}

int vm_lab_make_ram(const char *name, uint64_t size, uint32_t seed)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		tap_bail("memfd: %s", strerror(errno));
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		tap_bail("mmap: %s", strerror(errno));
	vm_lab_fill(p, 0, (size_t)size, seed);
	munmap(p, (size_t)size);
	return fd;
}
