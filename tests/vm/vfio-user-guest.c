/* SPDX-License-Identifier: MIT */
/*
 * In the guest of vm-vfio-user (tests/vm/vfio-user-vm): finds vgbridge-vfio-user-server's PCI
 * device through sysfs and reports what a driver would see, one "@@VGB-VU <event> ..." line each:
 *   found BDF VENDOR DEVICE CLASS     the ids from sysfs
 *   bars S0 S1 S2 S3 S4 S5 ROM        BAR sizes from sysfs `resource`
 *   read OK|BAD OFFSET                BAR2 through a resource2 mmap equals the host's pattern
 *   wrote                             BAR2 (mmap) and BAR0 (trapped registers) written
 *   decode OFF-WORD ON-WORD           BAR2's word 0 read with memory decode off, then on again
 *   busy                              (mode kill) reading BAR2 in a loop until QEMU is killed
 *   exit 0
 * Usage: vfio-user-guest full|kill
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BAR2_SIZE (16u << 20)
#define WRITE_OFF (1u << 20)
#define WRITE_LEN (64u << 10)
#define DECODE_OFF (2u << 20)

/* Must match tests/vm/vfio-user-vm. */
static uint8_t host_pattern(uint32_t i)
{
	return (uint8_t)((i * 7u) ^ (i >> 12) ^ 0x5a);
}

static uint8_t guest_pattern(uint32_t i)
{
	return (uint8_t)(i * 13u + 5u);
}

static char dev_dir[300];

static unsigned long read_hex(const char *name)
{
	char path[400], buf[64] = { 0 };
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dev_dir, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return strtoul(buf, NULL, 16);
}

static bool find_device(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;

	if (!d)
		return false;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(dev_dir, sizeof(dev_dir), "/sys/bus/pci/devices/%s", e->d_name);
		if (read_hex("vendor") == 0x1b36 && read_hex("device") == 0x0005) {
			printf("@@VGB-VU found %s 0x%04lx 0x%04lx 0x%06lx\n", e->d_name,
			       read_hex("vendor"), read_hex("device"), read_hex("class"));
			closedir(d);
			return true;
		}
	}
	closedir(d);
	return false;
}

static void print_bars(void)
{
	char path[400];
	unsigned long long start, end, flags, size[7] = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/resource", dev_dir);
	f = fopen(path, "r");
	for (int i = 0; f && i < 7; i++) {
		if (fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3)
			break;
		size[i] = end > start ? end - start + 1 : 0;
	}
	if (f)
		fclose(f);
	printf("@@VGB-VU bars %llu %llu %llu %llu %llu %llu %llu\n", size[0], size[1], size[2],
	       size[3], size[4], size[5], size[6]);
}

static volatile uint8_t *map_bar(int bar, size_t len)
{
	char path[400];
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/resource%d", dev_dir, bar);
	fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0)
		return NULL;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

static int set_memory_decode(bool on)
{
	char path[400];
	uint8_t cmd[2];
	int fd;

	snprintf(path, sizeof(path), "%s/config", dev_dir);
	fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, cmd, 2, 4) != 2)
		return -1;
	cmd[0] = on ? (uint8_t)(cmd[0] | 0x2) : (uint8_t)(cmd[0] & ~0x2);
	if (pwrite(fd, cmd, 2, 4) != 2)
		return -1;
	close(fd);
	return 0;
}

static uint32_t word(volatile uint8_t *p)
{
	return *(volatile uint32_t *)p;
}

int main(int argc, char **argv)
{
	bool kill_mode = argc > 1 && strcmp(argv[1], "kill") == 0;
	volatile uint8_t *bar2, *bar0;
	uint32_t bad = UINT32_MAX;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!find_device()) {
		printf("@@VGB-VU error no 1b36:0005 device\n");
		return 1;
	}
	print_bars();
	bar2 = map_bar(2, BAR2_SIZE);
	bar0 = map_bar(0, 4096);
	if (!bar2 || !bar0) {
		printf("@@VGB-VU error cannot mmap resource2/resource0\n");
		return 1;
	}
	for (uint32_t i = 0; i < BAR2_SIZE; i++) {
		if (bar2[i] != host_pattern(i)) {
			bad = i;
			break;
		}
	}
	if (bad == UINT32_MAX)
		printf("@@VGB-VU read OK\n");
	else
		printf("@@VGB-VU read BAD %u 0x%02x\n", bad, bar2[bad]);

	if (kill_mode) {
		printf("@@VGB-VU busy\n");
		for (uint32_t sum = 0;;)
			for (uint32_t i = 0; i < BAR2_SIZE; i += 4096)
				sum += bar2[i];
	}

	for (uint32_t i = 0; i < WRITE_LEN; i++)
		bar2[WRITE_OFF + i] = guest_pattern(i);
	for (uint32_t i = 0; i < 16; i += 4)
		*(volatile uint32_t *)(bar0 + i) = 0x56474200u + i; /* "\0BGV" + i */
	printf("@@VGB-VU wrote\n");

	/* Memory decode off: the BAR is not there; writes must not reach the device. */
	if (set_memory_decode(false) < 0) {
		printf("@@VGB-VU error cannot write the command register\n");
		return 1;
	}
	uint32_t off_word = word(bar2);
	*(volatile uint32_t *)(bar2 + DECODE_OFF) = 0xdeadbeef;
	*(volatile uint32_t *)(bar0 + 0x100) = 0xdeadbeef;
	set_memory_decode(true);
	uint32_t on_word = word(bar2);
	printf("@@VGB-VU decode 0x%08x 0x%08x\n", off_word, on_word);
	printf("@@VGB-VU exit 0\n");
	return 0;
}
