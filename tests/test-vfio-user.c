/* SPDX-License-Identifier: MIT */
/*
 * vfio-user: our backend (vfio/ops-vfio-user.c) against our server (bridge/vfio-user-server)
 * over a socketpair, the server running its loop in a thread.
 *  - every message: VERSION, DEVICE_GET_INFO, GET_REGION_INFO (sparse cap re-query, fds),
 *    REGION_READ/WRITE (chunked), GET_IRQ_INFO, SET_IRQS (eventfds kept, loopback trigger,
 *    INTx automask), DMA_MAP/UNMAP (fds closed), DEVICE_RESET;
 *  - PCI config space: ids, BAR sizing, the capability list, memory decode gating BARs;
 *  - the CPU view of scattered BAR pages through the segment mapper, byte for byte;
 *  - malformed requests to the server (raw socket): short, oversized, wrong fd counts, bad
 *    region index, reads past a region, before VERSION, unknown commands, NO_REPLY; and the
 *    next client is served after one is dropped;
 *  - malformed replies to the backend (a scripted server): short, oversized, mismatched id,
 *    error replies, extra fds, wrong index, overlong reads, a server request in between, a
 *    server that dies mid-call, one that never answers.
 * Every part checks the process's fds and mappings before and after.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include "leak.h"
#include "private.h"
#include "tap.h"
#include "vgb/mem.h"
#include "vgb/util.h"
#include "vgb/vfio-user.h"
#include "vgb/vfio.h"
#include "vus.h"

#define PAGE 4096u
#define SPEC "default,bar4=64K:sparse=0+4K;16K+8K:type=0x80001af4/1,rom=64K"

/* ---- the server in a thread ---- */

struct srv {
	struct vgb_vus *vus;
	pthread_t thread;
	pthread_mutex_t lock;
	int stop;
};

static void *srv_main(void *data)
{
	struct srv *s = data;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vgb_vus_get_fd(s->vus), .events = POLLIN },
			{ .fd = s->stop, .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		pthread_mutex_lock(&s->lock);
		vgb_vus_dispatch(s->vus, 0);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Starts a server for @spec with one client attached; returns the client's end. */
static int srv_start(struct srv *s, const char *spec, const struct vgb_vus_options *opts)
{
	int sv[2], r;

	r = vgb_vus_create(spec, opts, &s->vus);
	if (r < 0)
		tap_bail("vgb_vus_create(%s): %s", spec, strerror(-r));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair: %s", strerror(errno));
	r = vgb_vus_attach(s->vus, sv[1]);
	if (r < 0)
		tap_bail("vgb_vus_attach: %s", strerror(-r));
	s->stop = eventfd(0, EFD_CLOEXEC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_create(&s->thread, NULL, srv_main, s);
	return sv[0];
}

/* Attaches another client to a running server; returns the client's end or -errno. */
static int srv_attach(struct srv *s)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		tap_bail("socketpair: %s", strerror(errno));
	pthread_mutex_lock(&s->lock);
	r = vgb_vus_attach(s->vus, sv[1]);
	pthread_mutex_unlock(&s->lock);
	if (r < 0) {
		close(sv[0]);
		return r;
	}
	return sv[0];
}

static void srv_stats(struct srv *s, struct vgb_vus_stats *st)
{
	pthread_mutex_lock(&s->lock);
	vgb_vus_get_stats(s->vus, st);
	pthread_mutex_unlock(&s->lock);
}

/* Waits (briefly) until the server has no client. */
static bool srv_wait_disconnect(struct srv *s)
{
	for (int i = 0; i < 200; i++) {
		struct vgb_vus_stats st;

		srv_stats(s, &st);
		if (!st.connected)
			return true;
		usleep(5000);
	}
	return false;
}

static void srv_stop(struct srv *s)
{
	uint64_t one = 1;

	if (write(s->stop, &one, sizeof(one)) != sizeof(one))
		tap_bail("eventfd write");
	pthread_join(s->thread, NULL);
	vgb_vus_destroy(s->vus);
	close(s->stop);
	pthread_mutex_destroy(&s->lock);
}

static int srv_memfd(struct srv *s, uint32_t region)
{
	return vgb_vfio_vdev_region_memfd(vgb_vus_device(s->vus), region);
}

/* ---- helpers ---- */

static uint32_t cfg_read32(struct vgb_vfio_device *dev, uint32_t off)
{
	uint8_t b[4] = { 0 };

	if (vgb_vfio_region_read(dev, VFIO_PCI_CONFIG_REGION_INDEX, off, b, 4) != 4)
		return 0xdeadbeef;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void cfg_write32(struct vgb_vfio_device *dev, uint32_t off, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	vgb_vfio_region_write(dev, VFIO_PCI_CONFIG_REGION_INDEX, off, b, 4);
}

static uint64_t eventfd_count(int fd)
{
	uint64_t v = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 1000) != 1 || read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static int set_irqs(struct vgb_vfio_device *dev, uint32_t flags, uint32_t index, uint32_t start,
		    uint32_t count, const int *fds, size_t n_fds)
{
	struct vgb_vfio_user_irq_set req = { sizeof(req), flags, index, start, count };

	return vgb_vfio_user_request(dev, VGB_VFIO_USER_DEVICE_SET_IRQS, &req, sizeof(req), fds,
				     n_fds, NULL, 0, NULL, NULL, 0, NULL);
}

static int dma_map(struct vgb_vfio_device *dev, uint64_t addr, uint64_t size, const int *fds,
		   size_t n_fds)
{
	struct vgb_vfio_user_dma_map req = { sizeof(req), VGB_VFIO_USER_DMA_READ_FLAG, 0, addr,
					     size };

	return vgb_vfio_user_request(dev, VGB_VFIO_USER_DMA_MAP, &req, sizeof(req), fds, n_fds,
				     NULL, 0, NULL, NULL, 0, NULL);
}

static int dma_unmap(struct vgb_vfio_device *dev, uint32_t flags, uint64_t addr, uint64_t size)
{
	struct vgb_vfio_user_dma_unmap req = { sizeof(req), flags, addr, size }, rep;
	size_t len = 0;
	int r = vgb_vfio_user_request(dev, VGB_VFIO_USER_DMA_UNMAP, &req, sizeof(req), NULL, 0,
				      &rep, sizeof(rep), &len, NULL, 0, NULL);

	if (r == 0 && (len != sizeof(rep) || memcmp(&rep, &req, sizeof(rep))))
		return -EBADMSG;
	return r;
}

/* ---- every message ---- */

static void test_messages(void)
{
	struct vgb_vus_options opts = { .max_data_xfer_size = 64 * 1024 };
	const struct vgb_vfio_region_info *info;
	struct vgb_vfio_device *dev = NULL;
	struct vgb_vus_stats st;
	struct srv s;
	uint8_t buf[256 * 1024], back[256 * 1024];
	int fd, r;

	fd = srv_start(&s, SPEC, &opts);
	r = vgb_vfio_user_adopt(fd, "test", &dev);
	if (!tap_is_int(r, 0, "adopt: VERSION and DEVICE_GET_INFO"))
		tap_bail("no device");
	tap_is_str(dev->ops->name, "vfio-user", "backend name");
	tap_is_uint(dev->num_regions, VFIO_PCI_NUM_REGIONS, "9 regions, as vfio-pci");
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_MMAP | VGB_VFIO_CAP_RESET) &&
		       !vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF),
	       "capabilities: mmap and reset, never DMA_BUF (caps %#x)", dev->caps);
	tap_ok(dev->pci && dev->path == VGB_VFIO_PATH_VFIO_USER, "a PCI device on the vfio-user path");

	/* Region info: BAR0 registers, BAR2 mmappable with an fd, BAR4 with a cap chain that
	 * needs a second, larger query; then served from the cache. */
	r = vgb_vfio_region_info(dev, 0, &info);
	tap_ok(r == 0 && info->size == 4096 && !(info->flags & VFIO_REGION_INFO_FLAG_MMAP),
	       "BAR0: 4 KiB, not mmappable");
	r = vgb_vfio_region_info(dev, 2, &info);
	tap_ok(r == 0 && info->size == (64u << 20) && (info->flags & VFIO_REGION_INFO_FLAG_MMAP) &&
		       dev->ops->region_mmap_fd(dev, 2) >= 0,
	       "BAR2: 64 MiB, mmappable, with the server's fd");
	uint64_t q0 = dev->region_info_queries;
	r = vgb_vfio_region_info(dev, 4, &info);
	tap_ok(r == 0 && info->has_sparse && info->n_sparse == 2 && info->sparse[1].offset == 16384 &&
		       info->sparse[1].size == 8192 && info->has_type && info->type == 0x80001af4,
	       "BAR4: sparse-mmap and type capabilities");
	tap_is_uint(dev->region_info_queries - q0, 2, "BAR4: the chain did not fit: queried twice");
	q0 = dev->region_info_queries;
	vgb_vfio_region_info(dev, 4, &info);
	tap_is_uint(dev->region_info_queries, q0, "a cached region is not asked again");
	r = vgb_vfio_region_info(dev, 7, &info);
	tap_ok(r == 0 && info->size == 256 && !(info->flags & VFIO_REGION_INFO_FLAG_MMAP),
	       "CONFIG: 256 bytes, served by messages");
	r = vgb_vfio_region_info(dev, 1, &info);
	tap_ok(r == 0 && info->size == 0 && info->flags == 0, "BAR1: absent");
	r = vgb_vfio_region_info(dev, 9, &info);
	tap_is_errno(r, -EINVAL, "region 9: -EINVAL without a message");

	/* REGION_WRITE / READ on BAR0, in chunks of the server's 64 KiB. */
	for (size_t i = 0; i < 4096; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	tap_is_int(vgb_vfio_region_write(dev, 0, 0, buf, 4096), 4096, "REGION_WRITE BAR0");
	memset(back, 0, 4096);
	pread(srv_memfd(&s, 0), back, 4096, 0);
	tap_is_mem(back, buf, 4096, "the write is in the server's memfd");
	memset(back, 0, 4096);
	tap_is_int(vgb_vfio_region_read(dev, 0, 0, back, 4096), 4096, "REGION_READ BAR0");
	tap_is_mem(back, buf, 4096, "and reads back");
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i ^ (i >> 9));
	pwrite(srv_memfd(&s, 2), buf, sizeof(buf), 1 << 20);
	memset(back, 0, sizeof(back));
	tap_is_int(vgb_vfio_region_read(dev, 2, 1 << 20, back, sizeof(back)), (int)sizeof(back),
		   "REGION_READ of 256 KiB: four 64 KiB messages");
	tap_is_mem(back, buf, sizeof(back), "byte for byte");
	tap_is_int(vgb_vfio_region_read(dev, 6, 0, back, 16), 16, "ROM reads");
	tap_is_errno(vgb_vfio_region_write(dev, 6, 0, back, 16), -EINVAL, "ROM is read-only");

	/* PCI config space. */
	uint32_t id = cfg_read32(dev, PCI_VENDOR_ID);
	tap_is_uint(id, 0x00051b36u, "vendor 1b36, device 0005");
	tap_is_uint(cfg_read32(dev, PCI_CLASS_REVISION) >> 8, 0x038000, "class 0x038000");
	tap_is_uint(cfg_read32(dev, PCI_CACHE_LINE_SIZE) >> 16 & 0x7f, PCI_HEADER_TYPE_NORMAL,
		    "header type 0");
	cfg_write32(dev, PCI_VENDOR_ID, 0x12345678);
	tap_is_uint(cfg_read32(dev, PCI_VENDOR_ID), 0x00051b36u, "ids are read-only");
	cfg_write32(dev, PCI_BASE_ADDRESS_0, 0xffffffff);
	tap_is_uint(cfg_read32(dev, PCI_BASE_ADDRESS_0), 0xfffff000u, "BAR0 sizing: 4 KiB");
	cfg_write32(dev, PCI_BASE_ADDRESS_2, 0xffffffff);
	tap_is_uint(cfg_read32(dev, PCI_BASE_ADDRESS_2), 0xfc000008u,
		    "BAR2 sizing: 64 MiB, prefetchable");
	cfg_write32(dev, PCI_BASE_ADDRESS_1, 0xffffffff);
	tap_is_uint(cfg_read32(dev, PCI_BASE_ADDRESS_1), 0, "BAR1 unimplemented: reads 0");
	cfg_write32(dev, PCI_ROM_ADDRESS, 0xffffffff);
	tap_is_uint(cfg_read32(dev, PCI_ROM_ADDRESS), 0xffff0001u, "ROM sizing: 64 KiB + enable");
	cfg_write32(dev, PCI_BASE_ADDRESS_2, 0xe0000000);
	tap_is_uint(cfg_read32(dev, PCI_BASE_ADDRESS_2), 0xe0000008u, "BAR2 takes an address");
	{
		uint8_t pos = (uint8_t)cfg_read32(dev, PCI_CAPABILITY_LIST), ids[4] = { 0 };
		unsigned n = 0;

		tap_ok(cfg_read32(dev, PCI_COMMAND) >> 16 & PCI_STATUS_CAP_LIST,
		       "status says there is a capability list");
		while (pos && n < 4) {
			uint32_t hdr = cfg_read32(dev, pos);

			ids[n++] = (uint8_t)hdr;
			pos = (uint8_t)(hdr >> 8);
		}
		tap_ok(n == 2 && ids[0] == PCI_CAP_ID_MSI && ids[1] == PCI_CAP_ID_VNDR,
		       "capability list: MSI, then vendor-specific, then the end (%u caps)", n);
	}

	/* Memory decode off: BAR access fails as vfio-pci's does, and no view is made. */
	{
		struct vgb_vfio_range rg = { 0, PAGE };
		struct vgb_segment seg;
		uint32_t cmd = cfg_read32(dev, PCI_COMMAND) & 0xffff;

		cfg_write32(dev, PCI_COMMAND, cmd & ~(uint32_t)PCI_COMMAND_MEMORY);
		tap_is_errno((int)vgb_vfio_region_read(dev, 0, 0, back, 4), -EIO,
			     "memory decode off: REGION_READ of BAR0 is -EIO");
		tap_is_errno((int)vgb_vfio_region_write(dev, 0, 0, back, 4), -EIO,
			     "memory decode off: REGION_WRITE of BAR0 is -EIO");
		tap_is_errno(vgb_vfio_segments(dev, 2, &rg, 1, &seg), -EIO,
			     "memory decode off: no segment of BAR2");
		tap_is_int((int)vgb_vfio_region_read(dev, 6, 0, back, 4), 4,
			   "memory decode off: the ROM still reads");
		cfg_write32(dev, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY);
		tap_is_int((int)vgb_vfio_region_read(dev, 0, 0, back, 4), 4, "decode on again: reads");
	}

	/* IRQs. */
	{
		struct vgb_vfio_user_irq_info req = { sizeof(req), 0, 0, 0 }, rep;
		int efd = eventfd(0, EFD_CLOEXEC), efd2 = eventfd(0, EFD_CLOEXEC);
		bool ok = true;
		size_t len;

		for (uint32_t i = 0; i < VFIO_PCI_NUM_IRQS; i++) {
			req.index = i;
			r = vgb_vfio_user_request(dev, VGB_VFIO_USER_DEVICE_GET_IRQ_INFO, &req,
						  sizeof(req), NULL, 0, &rep, sizeof(rep), &len, NULL,
						  0, NULL);
			ok &= r == 0 && rep.index == i &&
			      rep.count == (i == VFIO_PCI_INTX_IRQ_INDEX || i == VFIO_PCI_MSI_IRQ_INDEX);
		}
		tap_ok(ok, "GET_IRQ_INFO: INTx and MSI have one vector, the others none");
		req.index = VFIO_PCI_NUM_IRQS;
		r = vgb_vfio_user_request(dev, VGB_VFIO_USER_DEVICE_GET_IRQ_INFO, &req, sizeof(req),
					  NULL, 0, &rep, sizeof(rep), &len, NULL, 0, NULL);
		tap_is_errno(r, -EINVAL, "GET_IRQ_INFO index 5: -EINVAL");

		r = set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &efd, 1);
		tap_is_int(r, 0, "SET_IRQS: MSI trigger eventfd");
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &efd2, 1);
		tap_is_int(r, 0, "SET_IRQS: INTx trigger eventfd");
		srv_stats(&s, &st);
		tap_is_uint(st.irq_fds, 2, "the server keeps both eventfds");
		pthread_mutex_lock(&s.lock);
		r = vgb_vus_trigger_irq(s.vus, VFIO_PCI_MSI_IRQ_INDEX);
		pthread_mutex_unlock(&s.lock);
		tap_ok(r == 0 && eventfd_count(efd) == 1, "the device raises MSI through our eventfd");
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0);
		tap_ok(r == 0 && eventfd_count(efd) == 1, "SET_IRQS DATA_NONE TRIGGER: loopback");
		pthread_mutex_lock(&s.lock);
		int t1 = vgb_vus_trigger_irq(s.vus, VFIO_PCI_INTX_IRQ_INDEX);
		int t2 = vgb_vus_trigger_irq(s.vus, VFIO_PCI_INTX_IRQ_INDEX);
		pthread_mutex_unlock(&s.lock);
		tap_ok(t1 == 0 && t2 == -EAGAIN && eventfd_count(efd2) == 1,
		       "INTx masks itself after firing (%d, %d)", t1, t2);
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
			     VFIO_PCI_INTX_IRQ_INDEX, 0, 1, NULL, 0);
		pthread_mutex_lock(&s.lock);
		t1 = vgb_vus_trigger_irq(s.vus, VFIO_PCI_INTX_IRQ_INDEX);
		pthread_mutex_unlock(&s.lock);
		tap_ok(r == 0 && t1 == 0 && eventfd_count(efd2) == 1, "UNMASK: INTx fires again");
		{
			/* A client that fills its eventfd cannot block the server's loop. */
			int full = eventfd(0, EFD_CLOEXEC);
			uint64_t max = UINT64_MAX - 1;

			if (write(full, &max, sizeof(max)) != sizeof(max))
				tap_bail("eventfd fill");
			r = set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
				     VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &full, 1);
			pthread_mutex_lock(&s.lock);
			t1 = vgb_vus_trigger_irq(s.vus, VFIO_PCI_MSI_IRQ_INDEX);
			pthread_mutex_unlock(&s.lock);
			tap_ok(r == 0 && t1 == -EAGAIN,
			       "a full eventfd: the interrupt is dropped, the loop not blocked (%d)", t1);
			close(full);
			set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
				 VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &efd, 1);
		}
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_MSI_IRQ_INDEX, 0, 2, &efd, 1);
		tap_is_errno(r, -EINVAL, "SET_IRQS past MSI's one vector: -EINVAL");
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_DATA_BOOL |
				  VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_MSI_IRQ_INDEX, 0, 1, NULL, 0);
		tap_is_errno(r, -EINVAL, "SET_IRQS with two data types: -EINVAL");
		r = set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
			     VFIO_PCI_MSI_IRQ_INDEX, 0, 0, NULL, 0);
		int r2 = set_irqs(dev, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
				  VFIO_PCI_INTX_IRQ_INDEX, 0, 0, NULL, 0);
		srv_stats(&s, &st);
		tap_ok(r == 0 && r2 == 0 && st.irq_fds == 0, "count 0: disabled, eventfds closed");
		close(efd);
		close(efd2);
	}

	/* DMA. */
	{
		int mfd = memfd_create("dma", MFD_CLOEXEC), two[2];

		ftruncate(mfd, 1 << 20);
		two[0] = two[1] = mfd;
		tap_is_int(dma_map(dev, 0x100000, 1 << 20, &mfd, 1), 0, "DMA_MAP with an fd");
		tap_is_errno(dma_map(dev, 0x180000, 1 << 20, &mfd, 1), -EEXIST,
			     "DMA_MAP over a mapping: -EEXIST");
		tap_is_errno(dma_map(dev, 0x400000, PAGE, two, 2), -EINVAL,
			     "DMA_MAP with two fds: -EINVAL");
		tap_is_errno(dma_map(dev, 0x400001, PAGE, NULL, 0), -EINVAL,
			     "DMA_MAP unaligned: -EINVAL");
		tap_is_int(dma_map(dev, 0x800000, 4 * PAGE, NULL, 0), 0, "DMA_MAP without an fd");
		srv_stats(&s, &st);
		tap_ok(st.dma_maps == 2 && st.dma_fds == 1, "two mappings tracked, one fd kept");
		tap_is_int(dma_unmap(dev, 0, 0x100000, 1 << 20), 0, "DMA_UNMAP echoes the entry");
		tap_is_errno(dma_unmap(dev, 0, 0x100000, 1 << 20), -ENOENT, "unmapped twice: -ENOENT");
		srv_stats(&s, &st);
		tap_ok(st.dma_maps == 1 && st.dma_fds == 0, "the fd is closed at unmap");
		dma_map(dev, 0x100000, 1 << 20, &mfd, 1);
		tap_is_int(dma_unmap(dev, VGB_VFIO_USER_UNMAP_ALL, 0, 0), 0, "DMA_UNMAP all");
		srv_stats(&s, &st);
		tap_ok(st.dma_maps == 0 && st.dma_fds == 0, "nothing left mapped");
		dma_map(dev, 0x100000, 1 << 20, &mfd, 1); /* left for the disconnect to close */
		close(mfd);
	}

	/* Reset: the cache goes, the generation moves, the server counts it. */
	{
		uint32_t gen = dev->generation;

		q0 = dev->region_info_queries;
		tap_is_int(vgb_vfio_device_reset(dev), 0, "DEVICE_RESET");
		vgb_vfio_region_info(dev, 2, &info);
		srv_stats(&s, &st);
		tap_ok(dev->generation == gen + 1 && dev->region_info_queries == q0 + 1 &&
			       st.resets == 1,
		       "reset: generation bumped, region info asked again, server reset once");
	}

	vgb_vfio_device_destroy(dev);
	tap_ok(srv_wait_disconnect(&s), "the server sees the client go");
	srv_stats(&s, &st);
	tap_ok(st.dma_fds == 0 && st.irq_fds == 0 && st.dma_maps == 0,
	       "a client that goes frees its DMA fds and eventfds");
	/* The next client is served. */
	fd = srv_attach(&s);
	r = fd >= 0 ? vgb_vfio_user_adopt(fd, "second", &dev) : fd;
	tap_is_int(r, 0, "a second client is served");
	if (r == 0) {
		tap_is_uint(cfg_read32(dev, PCI_BASE_ADDRESS_2), 0x8, "and sees power-on config space");
		pread(srv_memfd(&s, 0), buf, 16, 0);
		vgb_vfio_region_read(dev, 0, 0, back, 16);
		tap_is_mem(back, buf, 16, "and the device memory the first one left");
		int extra = srv_attach(&s);
		tap_is_errno(extra, -EBUSY, "a third connection while one is served: refused");
		vgb_vfio_device_destroy(dev);
	} else if (fd >= 0) {
		close(fd);
	}
	srv_stop(&s);
}

/* ---- the CPU view of scattered BAR pages ---- */

static void test_cpu_view(void)
{
	static const uint32_t pages[] = { 7, 3, 100, 101, 102, 50, 4095, 0, 1, 2000 };
	struct vgb_vfio_range ranges[VGB_ARRAY_SIZE(pages)];
	struct vgb_segment segs[VGB_ARRAY_SIZE(pages)];
	struct vgb_vfio_device *dev = NULL;
	struct vgb_segmap *map = NULL;
	struct srv s;
	uint8_t *want = malloc(PAGE);
	bool same = true;
	int fd, r, memfd;

	fd = srv_start(&s, "bar2=16M", NULL);
	if (vgb_vfio_user_adopt(fd, "view", &dev) < 0)
		tap_bail("adopt");
	memfd = srv_memfd(&s, 2);
	for (uint32_t p = 0; p < 4096; p++) {
		for (uint32_t j = 0; j < PAGE; j++)
			want[j] = (uint8_t)(p * 31 + j * 7 + (j >> 8));
		pwrite(memfd, want, PAGE, (off_t)p * PAGE);
	}
	for (size_t i = 0; i < VGB_ARRAY_SIZE(pages); i++)
		ranges[i] = (struct vgb_vfio_range){ (uint64_t)pages[i] * PAGE, PAGE };
	r = vgb_vfio_segments(dev, 2, ranges, VGB_ARRAY_SIZE(pages), segs);
	tap_is_int(r, 0, "segments of 10 scattered BAR2 pages");
	if (r == 0)
		r = vgb_segmap_create(segs, VGB_ARRAY_SIZE(pages), -1, &map);
	tap_is_int(r, 0, "one view over the server's fd");
	for (size_t i = 0; r == 0 && i < VGB_ARRAY_SIZE(pages); i++) {
		for (uint32_t j = 0; j < PAGE; j++)
			want[j] = (uint8_t)(pages[i] * 31 + j * 7 + (j >> 8));
		same &= memcmp((uint8_t *)map->addr + i * PAGE, want, PAGE) == 0;
	}
	tap_ok(r == 0 && same, "the view equals the server's pages byte for byte");
	tap_ok(r == 0 && map->n_mmaps == 7, "touching pages share one mmap (%u for 7 runs)",
	       map ? map->n_mmaps : 0);
	/* A write by the device shows in the view: it is the same memory. */
	if (r == 0) {
		pwrite(memfd, "vgb!", 4, (off_t)pages[2] * PAGE);
		tap_ok(memcmp((uint8_t *)map->addr + 2 * PAGE, "vgb!", 4) == 0,
		       "the server's writes show in the view");
	}
	vgb_segmap_destroy(map);
	/* Sparse areas bound the view. */
	vgb_vfio_device_destroy(dev);
	srv_stop(&s);
	free(want);
}

/* ---- malformed requests to the server ---- */

struct raw_reply {
	struct vgb_vfio_user_hdr h;
	uint8_t data[8192];
	int fds[4];
	int n_fds;
};

static int raw_send(int sock, uint16_t cmd, uint16_t id, uint32_t flags, uint32_t size_override,
		    const void *p, size_t len, const int *fds, size_t n_fds)
{
	struct vgb_vfio_user_hdr h = { id, cmd, (uint32_t)(sizeof(h) + len), flags, 0 };
	uint8_t msg[8192];

	if (size_override)
		h.size = size_override;
	memcpy(msg, &h, sizeof(h));
	if (len)
		memcpy(msg + sizeof(h), p, len);
	struct iovec iov = { msg, sizeof(h) + len };
	union {
		struct cmsghdr a;
		char b[CMSG_SPACE(8 * sizeof(int))];
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (n_fds) {
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -errno;
}

/* Reads one reply: 0, -ECONNRESET on EOF, -ETIMEDOUT. */
static int raw_recv(int sock, struct raw_reply *rep)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	size_t got = 0, want = sizeof(rep->h);
	uint8_t *dst = (uint8_t *)&rep->h;

	rep->n_fds = 0;
	while (got < want) {
		union {
			struct cmsghdr a;
			char b[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct iovec iov = { dst + got, want - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				     .msg_controllen = sizeof(ctl.b) };
		ssize_t n;

		if (poll(&p, 1, 2000) != 1)
			return -ETIMEDOUT;
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return -ECONNRESET;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				if (rep->n_fds < 4)
					rep->fds[rep->n_fds++] = fd;
				else
					close(fd);
			}
		}
		got += (size_t)n;
		if (got == sizeof(rep->h) && want == sizeof(rep->h)) {
			if (rep->h.size < sizeof(rep->h) ||
			    rep->h.size - sizeof(rep->h) > sizeof(rep->data))
				return -EBADMSG;
			want = rep->h.size; /* the data follows the header in struct raw_reply */
		}
	}
	return 0;
}

static void raw_close_fds(struct raw_reply *rep)
{
	for (int i = 0; i < rep->n_fds; i++)
		close(rep->fds[i]);
	rep->n_fds = 0;
}

/* Sends a request and returns the reply's errno (0 for success, < 0 for transport trouble). */
static int raw_call(int sock, uint16_t cmd, const void *p, size_t len, const int *fds,
		    size_t n_fds, struct raw_reply *rep)
{
	static uint16_t id = 100;
	uint16_t my = id++;
	int r = raw_send(sock, cmd, my, 0, 0, p, len, fds, n_fds);

	if (r < 0)
		return r;
	r = raw_recv(sock, rep);
	if (r < 0)
		return r;
	raw_close_fds(rep); /* nothing here answers with fds we keep */
	if (rep->h.id != my || rep->h.cmd != cmd ||
	    (rep->h.flags & VGB_VFIO_USER_F_TYPE_MASK) != VGB_VFIO_USER_F_REPLY)
		return -EBADMSG;
	return rep->h.flags & VGB_VFIO_USER_F_ERROR ? (int)rep->h.error : 0;
}

static int raw_version(int sock)
{
	static const char json[] = "{\"capabilities\":{\"max_msg_fds\":4}}";
	uint8_t buf[64] = { 0 };
	struct raw_reply rep;

	memcpy(buf + 4, json, sizeof(json));
	return raw_call(sock, VGB_VFIO_USER_VERSION, buf, 4 + sizeof(json), NULL, 0, &rep);
}

static void test_bad_requests(void)
{
	struct vgb_vus_options opts = { .max_data_xfer_size = 4096, .max_msg_fds = 4 };
	struct vgb_vfio_user_region_rw rw;
	struct vgb_vfio_user_device_info di = { sizeof(di), 0, 0, 0 };
	struct raw_reply rep;
	struct vgb_vus_stats st;
	struct srv s;
	int sock, r, efd = eventfd(0, EFD_CLOEXEC);
	struct leak_snapshot before;

	sock = srv_start(&s, "default,rom=64K", &opts);
	tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &rep),
		   EPROTO, "before VERSION: EPROTO");
	{
		uint8_t v[4] = { 1, 0, 0, 0 };
		uint8_t badjson[12] = { 0, 0, 0, 0, '{', '"', 'x', '"', ':', 0 };

		tap_is_int(raw_call(sock, VGB_VFIO_USER_VERSION, badjson, sizeof(badjson), NULL, 0,
				    &rep), EINVAL, "VERSION with broken JSON: EINVAL");
		tap_is_int(raw_call(sock, VGB_VFIO_USER_VERSION, v, 2, NULL, 0, &rep), EINVAL,
			   "VERSION shorter than its struct: EINVAL");
	}
	tap_is_int(raw_version(sock), 0, "VERSION");
	tap_is_int(raw_version(sock), EINVAL, "a second VERSION: EINVAL");
	tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_GET_INFO, &di, 8, NULL, 0, &rep), EINVAL,
		   "DEVICE_GET_INFO shorter than its struct: EINVAL");
	tap_is_int(raw_call(sock, 99, NULL, 0, NULL, 0, &rep), EOPNOTSUPP,
		   "unknown command: EOPNOTSUPP");
	tap_is_int(raw_call(sock, VGB_VFIO_USER_DMA_READ, NULL, 0, NULL, 0, &rep), EOPNOTSUPP,
		   "a server-to-client command sent to the server: EOPNOTSUPP");

	rw = (struct vgb_vfio_user_region_rw){ 0, 9, 4 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "REGION_READ of region 9: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ 0, 8, 4 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "REGION_READ of the absent VGA region: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ 4092, 0, 8 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "REGION_READ past the end of BAR0: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ UINT64_MAX - 2, 2, 8 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "REGION_READ whose end overflows: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ 0, 7, 257 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "config read past 256 bytes: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ 0, 2, 8192 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep),
		   EINVAL, "REGION_READ over max_data_xfer_size: EINVAL");
	rw = (struct vgb_vfio_user_region_rw){ 0, 0, 8 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, 8, NULL, 0, &rep), EINVAL,
		   "REGION_READ shorter than its struct: EINVAL");
	{
		uint8_t w[sizeof(rw) + 4] = { 0 };

		rw = (struct vgb_vfio_user_region_rw){ 0, 0, 8 };
		memcpy(w, &rw, sizeof(rw));
		tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_WRITE, w, sizeof(w), NULL, 0, &rep),
			   EINVAL, "REGION_WRITE whose count is not its data: EINVAL");
		rw = (struct vgb_vfio_user_region_rw){ 0, 6, 4 };
		memcpy(w, &rw, sizeof(rw));
		tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_WRITE, w, sizeof(w), NULL, 0, &rep),
			   EINVAL, "REGION_WRITE to the read-only ROM: EINVAL");
	}

	/* Fds where none belong, and too many: refused, and closed by the server. */
	leak_snapshot(&before);
	rw = (struct vgb_vfio_user_region_rw){ 0, 0, 4 };
	tap_is_int(raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), &efd, 1, &rep),
		   EINVAL, "REGION_READ carrying an fd: EINVAL");
	{
		struct vgb_vfio_user_dma_map m = { sizeof(m), 1, 0, 0x10000, PAGE };
		int fds[2] = { efd, efd };

		tap_is_int(raw_call(sock, VGB_VFIO_USER_DMA_MAP, &m, sizeof(m), fds, 2, &rep), EINVAL,
			   "DMA_MAP with two fds: EINVAL");
	}
	{
		int fds[8] = { efd, efd, efd, efd, efd, efd, efd, efd };

		tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_RESET, NULL, 0, fds, 8, &rep), EINVAL,
			   "8 fds, over max_msg_fds: EINVAL");
	}
	{
		struct vgb_vfio_user_irq_set is = { sizeof(is),
			VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1 };
		int fds[2] = { efd, efd };

		tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), fds, 2,
				    &rep), EINVAL, "SET_IRQS with 2 fds for 1 vector: EINVAL");
	}
	{
		struct vgb_vfio_user_irq_set is = { sizeof(is),
			VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1 };
		int pfd[2];

		if (pipe2(pfd, O_CLOEXEC) < 0)
			tap_bail("pipe2");
		tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_SET_IRQS, &is, sizeof(is), &pfd[1], 1,
				    &rep), EINVAL, "SET_IRQS with a pipe instead of an eventfd: EINVAL");
		close(pfd[0]);
		close(pfd[1]);
	}
	srv_stats(&s, &st);
	tap_ok(st.irq_fds == 0 && st.dma_fds == 0, "the server kept none of them");
	leak_check(&before, "every fd of a refused message is closed");

	/* NO_REPLY: handled, not answered; the next reply is the next request's. */
	{
		uint8_t w[sizeof(rw) + 4] = { 0 };

		rw = (struct vgb_vfio_user_region_rw){ 0, 0, 4 };
		memcpy(w, &rw, sizeof(rw));
		memcpy(w + sizeof(rw), "abcd", 4);
		raw_send(sock, VGB_VFIO_USER_REGION_WRITE, 7, VGB_VFIO_USER_F_NO_REPLY, 0, w, sizeof(w),
			 NULL, 0);
		rw = (struct vgb_vfio_user_region_rw){ 0, 9, 4 };
		raw_send(sock, VGB_VFIO_USER_REGION_READ, 8, VGB_VFIO_USER_F_NO_REPLY, 0, &rw,
			 sizeof(rw), NULL, 0);
		rw = (struct vgb_vfio_user_region_rw){ 0, 0, 4 };
		r = raw_call(sock, VGB_VFIO_USER_REGION_READ, &rw, sizeof(rw), NULL, 0, &rep);
		tap_ok(r == 0 && memcmp(rep.data + sizeof(rw), "abcd", 4) == 0,
		       "NO_REPLY write done unanswered, NO_REPLY error unanswered too");
	}
	tap_is_int(raw_call(sock, VGB_VFIO_USER_DEVICE_GET_INFO, &di, sizeof(di), NULL, 0, &rep), 0,
		   "after all that, the same connection is served");

	/* Oversized: an error reply, then the connection is closed. */
	{
		struct vgb_vfio_user_hdr h = { 1, VGB_VFIO_USER_REGION_WRITE, 1u << 30, 0, 0 };

		send(sock, &h, sizeof(h), MSG_NOSIGNAL);
		r = raw_recv(sock, &rep);
		tap_ok(r == 0 && (rep.h.flags & VGB_VFIO_USER_F_ERROR) && rep.h.error == E2BIG,
		       "a 1 GiB message: E2BIG");
		tap_is_errno(raw_recv(sock, &rep), -ECONNRESET, "and the connection is closed");
		close(sock);
		tap_ok(srv_wait_disconnect(&s), "the server let it go");
	}

	/* Garbage that cannot be framed: dropped. Then the next client is served. */
	{
		struct vgb_vfio_user_hdr h = { 1, VGB_VFIO_USER_DEVICE_RESET, 8, 0, 0 };

		sock = srv_attach(&s);
		raw_version(sock);
		send(sock, &h, sizeof(h), MSG_NOSIGNAL);
		tap_is_errno(raw_recv(sock, &rep), -ECONNRESET, "a header whose size is 8: dropped");
		close(sock);
		srv_wait_disconnect(&s);
		sock = srv_attach(&s);
		raw_version(sock);
		h = (struct vgb_vfio_user_hdr){ 1, VGB_VFIO_USER_DEVICE_RESET, 16,
						 VGB_VFIO_USER_F_REPLY, 0 };
		send(sock, &h, sizeof(h), MSG_NOSIGNAL);
		tap_is_errno(raw_recv(sock, &rep), -ECONNRESET, "a reply sent to the server: dropped");
		close(sock);
		srv_wait_disconnect(&s);
		sock = srv_attach(&s);
		send(sock, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16,
		     MSG_NOSIGNAL);
		tap_is_errno(raw_recv(sock, &rep), -ECONNRESET, "16 bytes of 0xff: dropped");
		close(sock);
		srv_wait_disconnect(&s);
		/* Half a header, then the client goes. */
		sock = srv_attach(&s);
		send(sock, "\x01\x00\x04", 3, MSG_NOSIGNAL);
		close(sock);
		tap_ok(srv_wait_disconnect(&s), "half a header, then gone: freed");
		sock = srv_attach(&s);
		tap_is_int(raw_version(sock), 0, "the next client is served");
		srv_stats(&s, &st);
		tap_ok(st.dropped >= 4, "the server counted the dropped clients (%llu)",
		       (unsigned long long)st.dropped);
		close(sock);
	}
	srv_stop(&s);
	close(efd);
}

/* Random well-framed requests: every one is answered (or not, with NO_REPLY), the connection
 * stays, and the server still serves a proper client afterwards. */
static void test_fuzz(void)
{
	struct vgb_vus_stats st;
	struct raw_reply rep;
	struct srv s;
	uint64_t seed = 0x243f6a8885a308d3ull;
	unsigned answered = 0, bad = 0;
	int sock, fd;

	sock = srv_start(&s, SPEC, NULL);
	raw_version(sock);
	for (unsigned i = 0; i < 3000; i++) {
		uint8_t p[96];
		uint16_t cmd;
		uint32_t flags;
		size_t len;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		cmd = (uint16_t)((seed >> 33) % 20);
		flags = (seed >> 40) & 1 ? VGB_VFIO_USER_F_NO_REPLY : 0;
		len = (size_t)((seed >> 45) % sizeof(p));
		for (size_t j = 0; j < len; j++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			p[j] = (uint8_t)(seed >> 56);
		}
		/* Keep the region fields small now and then, to reach past the first checks. */
		if (len >= 16 && (cmd == VGB_VFIO_USER_REGION_READ || cmd == VGB_VFIO_USER_REGION_WRITE)
		    && (seed & 3)) {
			p[8] = p[8] % 9;
			memset(p + 9, 0, 3);
			memset(p + 1, 0, 7);
			p[12] = (uint8_t)(len - 16);
			memset(p + 13, 0, 3);
		}
		if (raw_send(sock, cmd, (uint16_t)i, flags, 0, p, len, NULL, 0) < 0) {
			bad++;
			break;
		}
		if (flags & VGB_VFIO_USER_F_NO_REPLY)
			continue;
		if (raw_recv(sock, &rep) < 0 || rep.h.id != (uint16_t)i || rep.h.cmd != cmd) {
			bad++;
			break;
		}
		raw_close_fds(&rep);
		answered++;
	}
	tap_ok(bad == 0, "3000 random requests: each answered in order (%u answered)", answered);
	srv_stats(&s, &st);
	tap_ok(st.connected && st.dropped == 0, "the fuzzing client was never dropped");
	close(sock);
	srv_wait_disconnect(&s);
	fd = srv_attach(&s);
	tap_is_int(raw_version(fd), 0, "a proper client is served after it");
	close(fd);
	srv_stop(&s);
}

/* ---- malformed replies to the backend ---- */

enum fault {
	F_NONE,
	F_SHORT,      /* reply header with size 8 */
	F_OVERSIZED,  /* REGION_READ reply longer than asked for */
	F_BAD_ID,     /* a reply with another id */
	F_ERROR,      /* an error reply (EIO) */
	F_TWO_FDS,    /* region info with two fds */
	F_BAD_INDEX,  /* region info for another index */
	F_LONG_READ,  /* REGION_READ count above the request's */
	F_MMAP_NO_FD, /* mmappable region without an fd */
	F_SERVER_REQ, /* a DMA_READ request before the reply */
	F_DIE,        /* the server process dies while the call waits */
	F_SILENT,     /* never answers */
	F_COUNT,
};

static const char *const fault_names[] = {
	"none", "short header", "oversized reply", "mismatched reply id", "error reply",
	"two fds", "wrong region index", "read count above the request", "mmap region without fd",
	"server request first", "server dies mid-call", "no answer",
};

static void fake_reply(int sock, const struct vgb_vfio_user_hdr *req, uint32_t flags,
		       uint32_t error, const void *p, size_t len, const int *fds, size_t n_fds)
{
	struct vgb_vfio_user_hdr h = { req->id, req->cmd, (uint32_t)(sizeof(h) + len),
				       VGB_VFIO_USER_F_REPLY | flags, error };
	struct iovec iov = { (void *)p, len };

	vgb_vfio_user_send(sock, &h, &iov, 1, fds, n_fds, 1000);
}

/* A scripted server, in a child process: right answers to the handshake, then @fault. */
static void fake_server(int sock, enum fault fault)
{
	for (;;) {
		struct vgb_vfio_user_hdr h;
		uint8_t p[4096];
		size_t len;

		if (recv(sock, &h, sizeof(h), MSG_WAITALL) != sizeof(h))
			_exit(0);
		len = h.size - sizeof(h);
		if (len > sizeof(p) || (len && recv(sock, p, len, MSG_WAITALL) != (ssize_t)len))
			_exit(1);
		if (h.flags & VGB_VFIO_USER_F_REPLY)
			continue; /* the client's answer to our request */
		switch (h.cmd) {
		case VGB_VFIO_USER_VERSION: {
			uint8_t v[4 + 64] = { 0 };
			const char json[] = "{\"capabilities\":{\"max_data_xfer_size\":65536}}";

			memcpy(v + 4, json, sizeof(json));
			fake_reply(sock, &h, 0, 0, v, 4 + sizeof(json), NULL, 0);
			continue;
		}
		case VGB_VFIO_USER_DEVICE_GET_INFO: {
			struct vgb_vfio_user_device_info di = { 16, VFIO_DEVICE_FLAGS_PCI |
				VFIO_DEVICE_FLAGS_RESET, 9, 5 };

			fake_reply(sock, &h, 0, 0, &di, sizeof(di), NULL, 0);
			continue;
		}
		}
		switch (fault) {
		case F_SHORT: {
			struct vgb_vfio_user_hdr bad = h;

			bad.size = 8;
			bad.flags = VGB_VFIO_USER_F_REPLY;
			send(sock, &bad, sizeof(bad), MSG_NOSIGNAL);
			continue;
		}
		case F_BAD_ID: {
			struct vgb_vfio_user_hdr bad = h;

			bad.id ^= 0x5555;
			fake_reply(sock, &bad, 0, 0, NULL, 0, NULL, 0);
			continue;
		}
		case F_ERROR:
			fake_reply(sock, &h, VGB_VFIO_USER_F_ERROR, EIO, NULL, 0, NULL, 0);
			continue;
		case F_DIE:
			kill(getpid(), SIGKILL);
			continue;
		case F_SILENT:
			continue;
		case F_SERVER_REQ: {
			struct vgb_vfio_user_hdr q = { 77, VGB_VFIO_USER_DMA_READ, 32, 0, 0 };
			uint8_t a[16] = { 0 };
			struct iovec iov = { a, sizeof(a) };

			vgb_vfio_user_send(sock, &q, &iov, 1, NULL, 0, 1000);
			break;
		}
		default:
			break;
		}
		if (h.cmd == VGB_VFIO_USER_DEVICE_GET_REGION_INFO) {
			struct vfio_region_info ri;
			int fds[2] = { sock, sock };

			memcpy(&ri, p, sizeof(ri));
			ri.argsz = sizeof(ri);
			ri.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
			ri.size = ri.index == 7 ? 256 : 4096;
			if (ri.index == 2)
				ri.flags |= VFIO_REGION_INFO_FLAG_MMAP;
			size_t n_fds = ri.index == 2 && fault != F_MMAP_NO_FD;

			if (ri.index == 2 && fault == F_TWO_FDS)
				n_fds = 2;
			if (ri.index == 2 && fault == F_BAD_INDEX)
				ri.index ^= 1;
			fake_reply(sock, &h, 0, 0, &ri, sizeof(ri), fds, n_fds);
		} else if (h.cmd == VGB_VFIO_USER_REGION_READ) {
			struct vgb_vfio_user_region_rw rw;
			uint8_t out[16 + 512] = { 0 };
			size_t n;

			memcpy(&rw, p, sizeof(rw));
			n = sizeof(rw) + rw.count + (fault == F_OVERSIZED ? 64 : 0);
			if (fault == F_LONG_READ)
				rw.count += 4; /* more than asked for, in a reply of the right size */
			if (n > sizeof(out))
				n = sizeof(out);
			if (rw.region == 7 && rw.offset == PCI_COMMAND)
				out[16] = PCI_COMMAND_MEMORY;
			memcpy(out, &rw, sizeof(rw));
			fake_reply(sock, &h, 0, 0, out, n, NULL, 0);
		} else {
			fake_reply(sock, &h, 0, 0, NULL, 0, NULL, 0);
		}
	}
}

static void test_bad_replies(void)
{
	for (int f = F_SHORT; f < F_COUNT; f++) {
		struct leak_snapshot before;
		struct vgb_vfio_device *dev = NULL;
		const struct vgb_vfio_region_info *info;
		uint8_t buf[8];
		int sv[2], r, status;
		pid_t pid;

		leak_snapshot(&before);
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		pid = fork();
		if (pid == 0) {
			close(sv[0]);
			fake_server(sv[1], (enum fault)f);
			_exit(0);
		}
		close(sv[1]);
		r = vgb_vfio_user_adopt(sv[0], "fake", &dev);
		if (r < 0) {
			tap_ok(false, "%s: adopt: %s", fault_names[f], strerror(-r));
			close(sv[0]);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			continue;
		}
		vgb_vfio_user_set_timeout(dev, 300);
		switch (f) {
		case F_SHORT:
		case F_BAD_ID:
		case F_DIE:
		case F_SILENT:
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_ok(r == -ENODEV && vgb_vfio_user_is_gone(dev) && dev->generation == 1,
			       "%s: -ENODEV, the device is gone, exports stale (%d)", fault_names[f],
			       r);
			tap_is_errno((int)vgb_vfio_region_read(dev, 7, 0, buf, 4), -ENODEV,
				     "%s: later calls: -ENODEV", fault_names[f]);
			tap_is_errno(vgb_vfio_device_reset(dev), -ENODEV, "%s: reset: -ENODEV",
				     fault_names[f]);
			break;
		case F_OVERSIZED:
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_ok(r == -ENODEV && vgb_vfio_user_is_gone(dev),
			       "%s: the stream is broken: gone (%d)", fault_names[f], r);
			break;
		case F_ERROR:
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_ok(r == -EIO && !vgb_vfio_user_is_gone(dev),
			       "%s: the server's errno, and the device stays (%d)", fault_names[f], r);
			break;
		case F_TWO_FDS:
		case F_BAD_INDEX:
		case F_MMAP_NO_FD:
			r = vgb_vfio_region_info(dev, 2, &info);
			tap_ok(r == -EPROTO && !vgb_vfio_user_is_gone(dev),
			       "%s: -EPROTO, the stream is fine (%d)", fault_names[f], r);
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_is_int(r, 4, "%s: the next call works", fault_names[f]);
			break;
		case F_LONG_READ:
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_ok(r == -EPROTO && !vgb_vfio_user_is_gone(dev), "%s: -EPROTO (%d)",
			       fault_names[f], r);
			break;
		case F_SERVER_REQ:
			r = (int)vgb_vfio_region_read(dev, 7, 0, buf, 4);
			tap_is_int(r, 4, "%s: refused with an error, our reply still arrives",
				   fault_names[f]);
			break;
		}
		vgb_vfio_device_destroy(dev);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		leak_check(&before, fault_names[f]);
	}
}

/* A server gone between calls, with a view mapped: the view stays, new ones are refused. */
static void test_server_gone(void)
{
	struct vgb_vfio_range rg = { 0, PAGE };
	struct vgb_vfio_device *dev = NULL;
	struct vgb_segmap *map = NULL;
	struct vgb_segment seg;
	struct srv s;
	int fd, r;

	fd = srv_start(&s, "bar2=1M", NULL);
	if (vgb_vfio_user_adopt(fd, "gone", &dev) < 0)
		tap_bail("adopt");
	pwrite(srv_memfd(&s, 2), "before", 6, 0);
	r = vgb_vfio_segments(dev, 2, &rg, 1, &seg);
	if (r == 0)
		r = vgb_segmap_create(&seg, 1, -1, &map);
	tap_is_int(r, 0, "a view of BAR2");
	srv_stop(&s); /* the server and its device go away */
	r = (int)vgb_vfio_region_read(dev, 0, 0, &seg, 4);
	tap_ok(r == -ENODEV && vgb_vfio_user_is_gone(dev), "the next call notices: -ENODEV");
	tap_is_errno(vgb_vfio_segments(dev, 2, &rg, 1, &seg), -ENODEV, "no new view");
	tap_ok(map && memcmp(map->addr, "before", 6) == 0, "the old view is still readable");
	vgb_segmap_destroy(map);
	vgb_vfio_device_destroy(dev);
}

static void test_caps_json(void)
{
	static const struct {
		const char *json;
		int want;
		uint64_t xfer;
	} cases[] = {
		{ "{}", 0, 1u << 20 },
		{ "{\"capabilities\":{\"max_data_xfer_size\":4096}}", 0, 4096 },
		{ " { \"capabilities\" : { \"migration\" : {\"pgsize\":4096}, \"twin_socket\":"
		  "{\"supported\":true}, \"max_data_xfer_size\" : 65536, \"x\": [1, \"a\\\"b\", null]"
		  " } } ", 0, 65536 },
		{ "{\"capabilities\":{\"max_data_xfer_size\":-1}}", -EINVAL, 0 },
		{ "{\"capabilities\":{\"max_data_xfer_size\":1.5}}", -EINVAL, 0 },
		{ "{\"capabilities\":{\"max_data_xfer_size\":99999999999999999999999}}", -EINVAL, 0 },
		{ "{\"capabilities\":", -EINVAL, 0 },
		{ "[1]", -EINVAL, 0 },
		{ "{} x", -EINVAL, 0 },
		{ "{\"a\":[[[[[[[[[[1]]]]]]]]]]}", -EINVAL, 0 },
		{ "{\"a\":\"\x01\"}", -EINVAL, 0 },
	};

	for (size_t i = 0; i < VGB_ARRAY_SIZE(cases); i++) {
		struct vgb_vfio_user_caps caps;
		int r = vgb_vfio_user_parse_caps(cases[i].json, strlen(cases[i].json) + 1, &caps);

		tap_ok(r == cases[i].want && (r < 0 || caps.max_data_xfer_size == cases[i].xfer),
		       "caps JSON %zu: %d", i, r);
	}
	tap_is_errno(vgb_vfio_user_parse_caps("{}", 2, &(struct vgb_vfio_user_caps){ 0 }), -EINVAL,
		     "caps JSON without a NUL: -EINVAL");
}

int main(void)
{
	int fds0, maps0;

	signal(SIGPIPE, SIG_IGN);
	tap_plan_lazy();
	fds0 = leak_count_fds();
	maps0 = leak_count_file_maps();
	test_caps_json();
	test_messages();
	test_cpu_view();
	test_bad_requests();
	test_fuzz();
	test_bad_replies();
	test_server_gone();
	/* File mappings only: glibc keeps the server threads' stacks cached. */
	tap_ok(leak_count_fds() == fds0 && leak_count_file_maps() == maps0,
	       "the whole run leaves no fd or file mapping behind (fds %d -> %d, maps %d -> %d)",
	       fds0, leak_count_fds(), maps0, leak_count_file_maps());
	return tap_done();
}
