/* SPDX-License-Identifier: MIT */
/* Guest memory: the front end's SET_MEM_TABLE regions, mapped once and mirrored in the memmap. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/virtio_config.h>
#include <linux/virtio_gpu.h>
#include <linux/virtio_ring.h>

#include "vgb/display-qemu.h"
#include "vgb/log.h"
#include "vgb/util.h"

#include "vhost-user-private.h"

void vgb_vhost_regions_unmap(struct vgb_vhost_dev *dev, struct region *regions, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (regions[i].window_id && dev->map)
			vgb_memmap_remove(dev->map, regions[i].window_id);
		if (regions[i].map)
			munmap(regions[i].map, regions[i].map_len);
		regions[i] = (struct region){ 0 };
	}
}

int vgb_vhost_handle_set_mem_table(struct vgb_vhost_dev *dev, const struct msg *m)
{
	struct vgb_vhost_user_memory mem = { 0 };
	struct region fresh[VGB_VHOST_USER_MAX_REGIONS] = { 0 };
	int r;

	if (m->size < 8)
		return -EINVAL;
	memcpy(&mem, m->payload, VGB_MIN((size_t)m->size, sizeof(mem)));
	if (mem.nregions > VGB_VHOST_USER_MAX_REGIONS ||
	    m->size != 8 + mem.nregions * sizeof(struct vgb_vhost_user_region) ||
	    m->rx->n_fds != mem.nregions || m->rx->too_many_fds)
		return -EINVAL;

	unsigned n = mem.nregions;
	for (unsigned i = 0; i < n; i++) {
		const struct vgb_vhost_user_region *g = &mem.regions[i];
		uint64_t end, fend;
		struct stat st;
		int fd = m->rx->fds[i];

		if (g->memory_size == 0 || g->memory_size > SIZE_MAX / 2 ||
		    __builtin_add_overflow(g->guest_phys_addr, g->memory_size, &end) ||
		    __builtin_add_overflow(g->userspace_addr, g->memory_size, &end) ||
		    __builtin_add_overflow(g->mmap_offset, g->memory_size, &fend)) {
			r = -EINVAL;
			goto err;
		}
		/* Mapping past the file's end would SIGBUS us on first touch. */
		if (fstat(fd, &st) < 0) {
			r = -errno;
			goto err;
		}
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < fend) {
			r = -EINVAL;
			goto err;
		}
		for (unsigned j = 0; j < i; j++) {
			const struct region *o = &fresh[j];
			if (g->guest_phys_addr < o->gpa + o->size && o->gpa < end) {
				r = -EINVAL;
				goto err;
			}
		}
		uint64_t delta = g->mmap_offset % VGB_PAGE_SIZE;
		size_t len = (size_t)(g->memory_size + delta);
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			       (off_t)(g->mmap_offset - delta));
		if (p == MAP_FAILED) {
			r = -errno;
			goto err;
		}
		fresh[i] = (struct region){
			.gpa = g->guest_phys_addr, .size = g->memory_size,
			.qva = g->userspace_addr, .mmap_offset = g->mmap_offset,
			.map = p, .map_len = len, .host = (uint8_t *)p + delta,
		};
	}

	/*
	 * Commands still waiting point into the old mappings: answer them now (a fence a little
	 * early is harmless; a write into an unmapped ring is not). Then the old table goes: windows
	 * may be re-added at the same addresses.
	 */
	vgb_vhost_answer_all_pending(dev);
	vgb_vhost_regions_unmap(dev, dev->regions, dev->n_regions);
	dev->n_regions = 0;
	for (unsigned i = 0; i < n; i++) {
		int dupfd = fcntl(m->rx->fds[i], F_DUPFD_CLOEXEC, 3);
		if (dupfd < 0) {
			r = -errno;
			goto err_installed;
		}
		r = vgb_memmap_add_ram(dev->map, fresh[i].gpa, fresh[i].size, dupfd,
				       fresh[i].mmap_offset, &fresh[i].window_id);
		if (r < 0) {
			close(dupfd);
			vgb_log_errno(VGB_LOG_WARN, r,
				      "vhost-user: guest RAM 0x%" PRIx64 "+0x%" PRIx64
				      " not usable for resources",
				      fresh[i].gpa, fresh[i].size);
			goto err_installed;
		}
	}
	memcpy(dev->regions, fresh, sizeof(fresh));
	dev->n_regions = n;
	for (unsigned i = 0; i < n; i++)
		vgb_log(VGB_LOG_DEBUG,
			"vhost-user: guest RAM 0x%" PRIx64 "+0x%" PRIx64 " at fd offset 0x%" PRIx64,
			fresh[i].gpa, fresh[i].size, fresh[i].mmap_offset);
	dev->stats.regions = n;

	/* Rings that run keep running on the new mappings (or stop when they moved away). */
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++) {
		struct vhost_vring *vr = &dev->vrings[i];
		if (!vr->started)
			continue;
		uint16_t last = vr->vq.last_avail_idx;
		struct vgb_vq_stats st = vr->vq.stats;
		vr->base = last;
		if (vgb_vhost_vring_setup(dev, i) < 0)
			vr->started = false;
		vr->vq.stats = st;
	}
	return 0;

err_installed:
	vgb_vhost_regions_unmap(dev, fresh, n);
	for (unsigned i = 0; i < VGB_VHOST_QUEUES; i++)
		if (dev->vrings[i].started)
			vgb_vhost_vring_stop(dev, i);
	dev->stats.regions = 0;
	return r;
err:
	vgb_vhost_regions_unmap(dev, fresh, n);
	return r;
}
