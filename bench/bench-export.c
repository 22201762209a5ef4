/* SPDX-License-Identifier: MIT */
/*
 * Bench 3: export planning. From a RESOURCE_CREATE_BLOB's entries (1920x1080 XRGB8888: 2025
 * page entries forming 64 shuffled runs) to the blob being ready: translation over the memory
 * map (bridge/core/blob.c) and the export planner (bridge/core/export.c), then its teardown. Counted:
 * ioctls, and ranges per ioctl before and after merging.
 *
 * VFIO: the kernel backend over the fake VFIO kernel (tests/lib/fake-vfio.c), which answers
 * VFIO_DEVICE_FEATURE_DMA_BUF with the real driver's checks and records its calls. Baseline:
 * the reference implementation's strategy: per entry, a memory-map lookup and a region-info
 * ioctl, then one DMA_BUF ioctl carrying one range per entry (unmerged).
 *
 * udmabuf: needs /dev/udmabuf, which this host's kernel lacks; then the fake udmabuf
 * (same checks as drivers/dma-buf/udmabuf.c, including list_limit) counts the ioctl and its
 * items, and the baseline's one-item-per-entry list is shown to be refused by list_limit.
 *
 * Self-checks: the dmabuf's bytes equal the blob (the fake's dmabuf is a memfd copy of the
 * ranges), ours makes exactly one export ioctl with 64 ranges, the baseline one with 2025, and
 * nothing leaks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/udmabuf.h>
#include <linux/vfio.h>
#include <linux/virtio_gpu.h>

#include "bench.h"
#include "blob.h"
#include "export.h"
#include "fake-vfio.h"
#include "gpu.h"
#include "guest.h"
#include "memmap.h"
#include "private.h"
#include "scatter.h"
#include "tap.h"
#include "tmpdir.h"
#include "uapi/linux/vfio-dmabuf.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

#define REGION VFIO_PCI_BAR2_REGION_INDEX
#define GPA (4ull << 30)
#define W 1920u
#define H 1080u
#define SIZE ((uint64_t)W * H * 4)

static int (*next_ioctl)(int, unsigned long, void *);
static unsigned n_ioctl;

static int count_ioctl(int fd, unsigned long request, void *arg)
{
	n_ioctl++;
	return next_ioctl(fd, request, arg);
}

struct ctx {
	struct vgb_memmap *map;
	struct virtio_gpu_mem_entry *entries;
	uint32_t n;
	int device_fd;                   /* the baseline's */
	struct vgb_vfio_range *ranges;   /* the baseline's, n of them */
	/* the last build, for the checks */
	struct vgb_blob_layout *layout;
	struct vgb_export *export;
	int base_fd;
	enum vgb_export_strategy want;
	/* the command processor's path */
	struct vgb_gpu *gpu;
	uint8_t *create_cmd, unref_cmd[64];
	size_t create_len, unref_len;
};

/* RESOURCE_CREATE_BLOB through the virtio-gpu processor (it translates and plans at once),
 * then RESOURCE_UNREF. */
static int gpu_cmd(struct vgb_gpu *gpu, const void *cmd, size_t len)
{
	uint8_t resp[VGB_GPU_MAX_RESP];
	size_t rlen = 0;
	int r = vgb_gpu_process(gpu, cmd, len, resp, sizeof(resp), &rlen, 0);

	if (r != 0)
		return r < 0 ? r : -EPROTO;
	return vgb_guest_resp_type(resp, rlen) == VIRTIO_GPU_RESP_OK_NODATA ? 0 : -EPROTO;
}

static int ours_gpu(void *data)
{
	struct ctx *c = data;
	int r = gpu_cmd(c->gpu, c->create_cmd, c->create_len);

	if (r < 0)
		return r;
	return gpu_cmd(c->gpu, c->unref_cmd, c->unref_len);
}

static int ours_build(struct ctx *c)
{
	int r = vgb_blob_translate(c->map, c->entries, c->n, SIZE, VGB_BLOB_DEFAULT_MAX_ENTRIES,
				   VGB_BLOB_DEFAULT_MAX_BYTES, &c->layout);

	if (r < 0)
		return r;
	r = vgb_export_plan(c->layout, &c->export, NULL);
	if (r < 0) {
		free(c->layout);
		c->layout = NULL;
	}
	return r;
}

static void ours_teardown(struct ctx *c)
{
	vgb_export_unref(c->export);
	free(c->layout);
	c->export = NULL;
	c->layout = NULL;
}

static int ours(void *data)
{
	struct ctx *c = data;
	int r = ours_build(c);

	if (r < 0)
		return r;
	r = c->export->strategy == c->want ? 0 : -EIO;
	ours_teardown(c);
	return r;
}

static int base_build(struct ctx *c)
{
	size_t len = sizeof(struct vfio_device_feature) + sizeof(struct vfio_device_feature_dma_buf) +
		     (size_t)c->n * sizeof(struct vfio_region_dma_range);
	_cleanup_free_ uint8_t *buf = calloc(1, len);
	struct vfio_device_feature *feat = (struct vfio_device_feature *)(void *)buf;
	struct vfio_device_feature_dma_buf *req;
	int r;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->n; i++) {
		uint64_t gpa = le64toh(c->entries[i].addr);
		const struct vgb_memmap_window *w = vgb_memmap_lookup(c->map, gpa);
		struct {
			struct vfio_region_info info;
			uint8_t caps[512];
		} q = { .info = { .argsz = sizeof(q), .index = REGION } };

		if (!w || w->kind != VGB_MEMMAP_VFIO)
			return -EFAULT;
		r = vgb_ioctl(c->device_fd, VFIO_DEVICE_GET_REGION_INFO, &q.info);
		if (r < 0)
			return r;
		if (gpa - w->gpa + le32toh(c->entries[i].length) > q.info.size)
			return -EINVAL;
		c->ranges[i] = (struct vgb_vfio_range){ w->vfio.region_offset + (gpa - w->gpa),
							le32toh(c->entries[i].length) };
	}
	feat->argsz = (uint32_t)len;
	feat->flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req = (struct vfio_device_feature_dma_buf *)(void *)feat->data;
	req->region_index = REGION;
	req->open_flags = O_RDWR | O_CLOEXEC;
	req->nr_ranges = c->n;
	for (uint32_t i = 0; i < c->n; i++)
		req->dma_ranges[i] = (struct vfio_region_dma_range){ c->ranges[i].offset,
								     c->ranges[i].length };
	r = vgb_ioctl(c->device_fd, VFIO_DEVICE_FEATURE, feat);
	if (r < 0)
		return r;
	c->base_fd = r;
	return 0;
}

static int base(void *data)
{
	struct ctx *c = data;
	int r = base_build(c);

	if (r < 0)
		return r;
	c->base_fd = vgb_close(c->base_fd);
	return 0;
}

/* The dmabuf (a memfd copy in the fake) holds the blob's bytes in order. */
static bool dmabuf_equals(int fd, const uint8_t *want)
{
	void *p = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	bool eq;

	if (p == MAP_FAILED)
		return false;
	eq = memcmp(p, want, SIZE) == 0;
	munmap(p, SIZE);
	return eq;
}

static uint32_t last_get_ranges(const struct fake_vfio *f)
{
	const struct vfio_device_feature *feat = (const void *)f->last_get;
	const struct vfio_device_feature_dma_buf *req = (const void *)feat->data;

	return f->last_get_len >= sizeof(*feat) + sizeof(*req) ? req->nr_ranges : 0;
}

static void make_entries(struct ctx *c, const struct scatter *s, uint64_t gpa)
{
	c->n = s->n_pages;
	c->entries = calloc(c->n, sizeof(*c->entries));
	c->ranges = calloc(c->n, sizeof(*c->ranges));
	if (!c->entries || !c->ranges)
		tap_bail("oom");
	for (uint32_t i = 0; i < c->n; i++)
		c->entries[i] = (struct virtio_gpu_mem_entry){ .addr = htole64(gpa + s->page_off[i]),
							      .length = htole32(VGB_PAGE_SIZE) };
}

static void bench_vfio(void)
{
	struct fake_vfio *f = fake_vfio_create();
	struct vgb_vfio_device *dev;
	struct scatter s;
	struct ctx c = { .base_fd = -1, .want = VGB_EXPORT_VFIO_DMABUF };
	struct bench_stat so = { 0 }, sb = { 0 };
	struct bench_row row = { .bench = "export", .met = BENCH_GOAL_NONE };
	unsigned io_ours, io_base, io_first, gets;
	uint32_t rng_ours, rng_base;
	bool ok = true;
	int r;

	if (!f)
		tap_bail("fake vfio");
	f->regions[REGION].size = 1u << FAKE_VFIO_REGION_SHIFT;
	if ((r = fake_vfio_layout(f)) < 0)
		tap_bail("fake layout: %s", strerror(-r));
	fake_vfio_install(f);
	r = vgb_vfio_kernel_adopt(fake_vfio_dup_device(f), "fake", &dev);
	if (r < 0)
		tap_bail("adopt: %s", strerror(-r));
	tap_ok(vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_DMA_BUF), "vfio: the fake offers DMA_BUF");
	c.device_fd = fake_vfio_dup_device(f);
	if ((r = scatter_init(&s, (uint32_t)(SIZE / VGB_PAGE_SIZE), 64, 1u << FAKE_VFIO_REGION_SHIFT,
			      0xb10b)) < 0 ||
	    (r = scatter_fill(&s, f->device_fd, fake_vfio_region_offset(REGION))) < 0)
		tap_bail("scatter: %s", strerror(-r));
	if ((r = vgb_memmap_create(&c.map)) < 0 ||
	    (r = vgb_memmap_add_vfio(c.map, GPA, 1u << FAKE_VFIO_REGION_SHIFT, dev, REGION, 0,
				     NULL)) < 0)
		tap_bail("memmap: %s", strerror(-r));
	make_entries(&c, &s, GPA);

	next_ioctl = vgb_sys.ioctl;
	vgb_sys.ioctl = count_ioctl;

	/* Checked runs, with the fake's dmabuf a memfd copy of the ranges. The first export
	 * after setup also makes a region-info query: count the steady state after it. */
	f->dmabuf_mmappable = true;
	n_ioctl = 0;
	r = ours(&c);
	io_first = n_ioctl;
	if (!tap_is_int(r, 0, "vfio: a first export"))
		ok = false;
	n_ioctl = 0;
	gets = f->calls.get;
	r = ours_build(&c);
	io_ours = n_ioctl;
	rng_ours = last_get_ranges(f);
	if (tap_is_int(r, 0, "vfio: ours translates and plans")) {
		ok &= tap_is_uint(c.layout->n_segs, 64, "vfio: translation merges 2025 entries into 64 segments");
		ok &= tap_is_int(c.export->strategy, VGB_EXPORT_VFIO_DMABUF, "vfio: the planner picks the VFIO dmabuf");
		ok &= tap_ok(c.export->dmabuf_fd >= 0 && dmabuf_equals(c.export->dmabuf_fd, s.expected),
			     "vfio: ours' dmabuf holds the blob's bytes");
		ours_teardown(&c);
	} else {
		ok = false;
	}
	ok &= tap_is_uint(f->calls.get - gets, 1, "vfio: ours makes one DMA_BUF ioctl");
	ok &= tap_is_uint(rng_ours, 64, "vfio: with 64 ranges");
	n_ioctl = 0;
	gets = f->calls.get;
	r = base_build(&c);
	io_base = n_ioctl;
	rng_base = last_get_ranges(f);
	if (tap_is_int(r, 0, "vfio: baseline exports")) {
		ok &= tap_ok(dmabuf_equals(c.base_fd, s.expected), "vfio: baseline's dmabuf holds the blob's bytes");
		c.base_fd = vgb_close(c.base_fd);
	} else {
		ok = false;
	}
	ok &= tap_is_uint(f->calls.get - gets, 1, "vfio: baseline makes one DMA_BUF ioctl");
	ok &= tap_is_uint(rng_base, s.n_pages, "vfio: with one range per entry");

	/* The same through the command processor: RESOURCE_CREATE_BLOB answers OK_NODATA once the
	 * blob is translated and planned, and the VMM can take its dmabuf. */
	{
		struct vgb_gpu_config cfg = { 0 };
		struct vgb_dmabuf dmabuf;
		enum vgb_export_strategy strategy = VGB_EXPORT_NONE;

		vgb_gpu_limits_init(&cfg.limits);
		if ((r = vgb_gpu_create(c.map, &cfg, &c.gpu)) < 0)
			tap_bail("gpu: %s", strerror(-r));
		c.create_cmd = malloc(64 << 10);
		if (!c.create_cmd)
			tap_bail("oom");
		c.create_len = vgb_guest_create_blob(c.create_cmd, 64 << 10, 1,
						     VIRTIO_GPU_BLOB_MEM_GUEST,
						     VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE, SIZE, c.entries,
						     c.n);
		c.unref_len = vgb_guest_unref(c.unref_cmd, sizeof(c.unref_cmd), 1);
		n_ioctl = 0;
		gets = f->calls.get;
		r = gpu_cmd(c.gpu, c.create_cmd, c.create_len);
		ok &= tap_is_int(r, 0, "vfio: RESOURCE_CREATE_BLOB answers OK_NODATA");
		ok &= tap_is_uint(f->calls.get - gets, 1, "vfio: ... after one DMA_BUF ioctl");
		r = vgb_gpu_export_blob(c.gpu, 1, &dmabuf, &strategy);
		ok &= tap_is_int(r, 0, "vfio: the blob's dmabuf is ready for the VMM");
		ok &= tap_is_int(strategy, VGB_EXPORT_VFIO_DMABUF, "vfio: as a VFIO dmabuf");
		if (r == 0) {
			ok &= tap_ok(dmabuf_equals(dmabuf.fd[0], s.expected),
				     "vfio: holding the blob's bytes");
			vgb_dmabuf_finish(&dmabuf);
		}
		ok &= tap_is_int(gpu_cmd(c.gpu, c.unref_cmd, c.unref_len), 0,
				 "vfio: RESOURCE_UNREF answers OK_NODATA");
	}

	/* Timed runs: the fake hands out an eventfd, so its copy of the bytes is not timed. */
	f->dmabuf_mmappable = false;
	r = ok ? bench_pair(ours, base, &c, 3, 101, &so, &sb) : -EIO;
	tap_is_int(r, 0, "vfio: timed runs");
	if (so.n) {
		row.name = "VFIO dmabuf, 1920x1080, 64 runs";
		bench_fmt_stat(row.ours, sizeof(row.ours), &so);
		bench_fmt_stat(row.base, sizeof(row.base), &sb);
		row.ratio = (double)sb.median_ns / (double)so.median_ns;
		snprintf(row.notes, sizeof(row.notes),
			 "translate+plan+teardown, fake VFIO kernel, n=%zu; ioctls %u vs %u (the first "
			 "export after setup: %u); ranges per DMA_BUF ioctl %u vs %u (entries %u)",
			 so.n, io_ours, io_base, io_first, rng_ours, rng_base, s.n_pages);
		bench_report(&row);
	}
	if (r == 0) {
		struct bench_stat sg, sb2;

		r = bench_pair(ours_gpu, base, &c, 3, 101, &sg, &sb2);
		if (tap_is_int(r, 0, "vfio: timed runs through the command processor")) {
			row.name = "RESOURCE_CREATE_BLOB -> ready (VFIO dmabuf)";
			bench_fmt_stat(row.ours, sizeof(row.ours), &sg);
			bench_fmt_stat(row.base, sizeof(row.base), &sb2);
			row.ratio = (double)sb2.median_ns / (double)sg.median_ns;
			snprintf(row.notes, sizeof(row.notes),
				 "vgb_gpu_process(CREATE_BLOB) + (UNREF), 2025 entries, 64 runs, fake "
				 "VFIO kernel, n=%zu; same baseline", sg.n);
			bench_report(&row);
		}
	}
	vgb_gpu_destroy(c.gpu);
	free(c.create_cmd);
	vgb_sys.ioctl = next_ioctl;
	close(c.device_fd);
	vgb_memmap_destroy(c.map);
	vgb_vfio_device_destroy(dev);
	fake_vfio_remove();
	fake_vfio_destroy(f);
	free(c.entries);
	free(c.ranges);
	scatter_finish(&s);
}

/*
 * udmabuf over a RAM window, through @dev_path (the kernel's, or the fake's tree when @f,
 * whose records then give the counts).
 */
static void bench_udmabuf(const char *label, struct fake_vfio *f, const char *dev_path)
{
	struct scatter s;
	struct ctx c = { .base_fd = -1, .want = VGB_EXPORT_UDMABUF };
	struct bench_stat so;
	struct bench_row row = { .bench = "export", .met = BENCH_GOAL_NONE };
	unsigned io_ours = 0, calls = f ? f->calls.udmabuf : 0;
	struct udmabuf_create_list *list;
	int memfd, r, udev;
	bool ok = true;

	memfd = memfd_create("bench-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, 32 << 20) < 0)
		tap_bail("memfd: %m");
	if ((r = scatter_init(&s, (uint32_t)(SIZE / VGB_PAGE_SIZE), 64, 32 << 20, 0x0dab)) < 0 ||
	    (r = scatter_fill(&s, memfd, 0)) < 0)
		tap_bail("scatter: %s", strerror(-r));
	if ((r = vgb_memmap_create(&c.map)) < 0 ||
	    (r = vgb_memmap_add_ram(c.map, GPA, 32 << 20, memfd, 0, NULL)) < 0)
		tap_bail("memmap: %s", strerror(-r));
	make_entries(&c, &s, GPA);

	next_ioctl = vgb_sys.ioctl;
	vgb_sys.ioctl = count_ioctl;
	n_ioctl = 0;
	r = ours_build(&c);
	io_ours = n_ioctl;
	if (tap_is_int(r, 0, "%s: ours translates and plans", label)) {
		ok &= tap_is_int(c.export->strategy, VGB_EXPORT_UDMABUF, "%s: the planner picks udmabuf", label);
		ok &= tap_ok(c.export->dmabuf_fd >= 0 && dmabuf_equals(c.export->dmabuf_fd, s.expected),
			     "%s: the udmabuf holds the blob's bytes", label);
		ours_teardown(&c);
	} else {
		ok = false;
	}
	ok &= tap_is_uint(io_ours, 1, "%s: ours makes one ioctl", label);
	if (f) {
		ok &= tap_is_uint(f->calls.udmabuf - calls, 1, "%s: one UDMABUF_CREATE_LIST", label);
		ok &= tap_is_uint(f->last_udmabuf_count, 64, "%s: with 64 items", label);
	}

	/* The baseline's list: one item per entry. */
	list = calloc(1, sizeof(*list) + (size_t)c.n * sizeof(list->list[0]));
	if (!list)
		tap_bail("oom");
	list->flags = UDMABUF_FLAGS_CLOEXEC;
	list->count = c.n;
	for (uint32_t i = 0; i < c.n; i++)
		list->list[i] = (struct udmabuf_create_item){ (uint32_t)memfd, 0, s.page_off[i],
							       VGB_PAGE_SIZE };
	udev = open(dev_path, O_RDWR | O_CLOEXEC);
	r = udev < 0 ? -errno : vgb_ioctl(udev, UDMABUF_CREATE_LIST, list);
	/* The kernel's default list_limit is 1024: the unmerged list cannot be exported at all. */
	ok &= tap_is_int(r, -EINVAL, "%s: the baseline's list of %u items is refused (list_limit)",
			 label, c.n);
	vgb_close(r);
	vgb_close(udev);
	free(list);

	r = ok ? bench_pair(ours, NULL, &c, 2, 21, &so, NULL) : -EIO;
	(void)r;
	vgb_sys.ioctl = next_ioctl;
	if (ok) {
		row.name = label;
		bench_fmt_stat(row.ours, sizeof(row.ours), &so);
		snprintf(row.base, sizeof(row.base), "refused");
		row.ratio = -1;
		snprintf(row.notes, sizeof(row.notes),
			 "ioctls %u; items per ioctl 64 vs %u: one item per entry exceeds udmabuf's "
			 "list_limit (1024)%s", io_ours, c.n,
			 f ? "; the fake copies the bytes, so its time is not the kernel's" : "");
		bench_report(&row);
	}
	vgb_memmap_destroy(c.map);
	free(c.entries);
	free(c.ranges);
	scatter_finish(&s);
}

int main(void)
{
	int before_fds = bench_count_fds(), before_vmas = bench_count_vmas(), r;
	char root[256], dev_path[300], params[300];
	struct fake_vfio *f;

	tap_plan_lazy();
	bench_print_machine();
	bench_vfio();

	if (vgb_udmabuf_is_available()) {
		bench_udmabuf("udmabuf (kernel), 1920x1080, 64 runs", NULL, "/dev/udmabuf");
	} else {
		struct bench_row row = { .bench = "export", .name = "udmabuf (kernel)",
					 .ratio = -1, .met = BENCH_GOAL_NONE };

		tap_skip("no /dev/udmabuf on this kernel", "udmabuf (kernel)");
		snprintf(row.ours, sizeof(row.ours), "n/a");
		snprintf(row.base, sizeof(row.base), "n/a");
		snprintf(row.notes, sizeof(row.notes), "no /dev/udmabuf on this kernel");
		bench_report(&row);
	}

	/* The fake udmabuf, for the counts. */
	f = fake_vfio_create();
	if (!f || (r = tmpdir_create(root, sizeof(root))) < 0 || (r = fake_vfio_make_tree(f, root)) < 0)
		tap_bail("fake udmabuf tree");
	fake_vfio_install(f);
	snprintf(dev_path, sizeof(dev_path), "%s/dev/udmabuf", root);
	snprintf(params, sizeof(params), "%s/sys/module/udmabuf/parameters", root);
	vgb_udmabuf_set_paths(dev_path, params);
	bench_udmabuf("udmabuf (fake), 1920x1080, 64 runs", f, dev_path);
	vgb_udmabuf_set_paths(NULL, NULL);
	fake_vfio_remove();
	fake_vfio_destroy(f);
	tmpdir_remove(root);

	bench_check_vmas(before_vmas, "no mapping left behind");
	tap_is_int(bench_count_fds(), before_fds, "no fd left behind");
	return tap_done();
}
