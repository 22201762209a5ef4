/* SPDX-License-Identifier: MIT */
/*
 * iommufd helpers against the fake kernel: what each helper sends (byte-exact: the fake's strict
 * checks), what it returns for the kernel's documented errnos, and the errnos themselves for
 * hand-made argument structs (flags, reserved fields, unknown ids, trailing bytes, sizes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cdev.h"
#include "fake-iommufd.h"
#include "leak.h"
#include "tap.h"
#include "tmpdir.h"
#include "uapi/linux/vfio-cdev.h"
#include "vgb/iommufd.h"
#include "vgb/sys.h"

static char root[256], iommu_path[512], cdev_path[512];

/* A buffer big enough for any of the structs plus trailing bytes. */
struct raw {
	uint8_t b[96];
};

static void put32(struct raw *r, size_t off, uint32_t v)
{
	memcpy(r->b + off, &v, sizeof(v));
}

static void put64(struct raw *r, size_t off, uint64_t v)
{
	memcpy(r->b + off, &v, sizeof(v));
}

struct ids {
	int ctx_fd;
	uint32_t ioas, dev, fault, hwpt;
};

enum field { F_END = 0, F32, F64 };
struct put {
	enum field kind;
	size_t off;
	uint64_t val; /* values >= 0xffff0000 name an id: see resolve() */
};
#define ID_IOAS 0xffff0001u
#define ID_DEV 0xffff0002u
#define ID_FAULT 0xffff0003u
#define ID_HWPT 0xffff0004u

static uint64_t resolve(const struct ids *ids, uint64_t v)
{
	switch (v) {
	case ID_IOAS: return ids->ioas;
	case ID_DEV: return ids->dev;
	case ID_FAULT: return ids->fault;
	case ID_HWPT: return ids->hwpt;
	}
	return v;
}

struct ioctl_case {
	const char *what;
	unsigned long request;
	uint32_t size; /* the size word */
	struct put puts[6];
	int want; /* 0 or -errno */
};

/* iommufd errnos from drivers/iommu/iommufd/{main,ioas,hw_pagetable,eventq}.c */
static const struct ioctl_case cases[] = {
	{ "IOAS_ALLOC ok", IOMMU_IOAS_ALLOC, 12, { { 0 } }, 0 },
	{ "IOAS_ALLOC flags", IOMMU_IOAS_ALLOC, 12, { { F32, 4, 1 } }, -EOPNOTSUPP },
	{ "IOAS_ALLOC size below minimum", IOMMU_IOAS_ALLOC, 8, { { 0 } }, -EINVAL },
	{ "IOAS_ALLOC larger struct, zero tail", IOMMU_IOAS_ALLOC, 24, { { 0 } }, 0 },
	{ "IOAS_ALLOC larger struct, non-zero tail", IOMMU_IOAS_ALLOC, 24, { { F32, 16, 7 } },
	  -E2BIG },
	{ "DESTROY unknown id", IOMMU_DESTROY, 8, { { F32, 4, 4242 } }, -ENOENT },
	{ "DESTROY the IOAS an HWPT holds", IOMMU_DESTROY, 8, { { F32, 4, ID_IOAS } }, -EBUSY },
	{ "DESTROY a fault object whose fd is open", IOMMU_DESTROY, 8, { { F32, 4, ID_FAULT } },
	  -EBUSY },
	{ "IOAS_MAP unknown ioas", IOMMU_IOAS_MAP, 40,
	  { { F32, 4, IOMMU_IOAS_MAP_READABLE }, { F32, 8, 4242 }, { F64, 24, 4096 } }, -ENOENT },
	{ "IOAS_MAP unknown flag", IOMMU_IOAS_MAP, 40,
	  { { F32, 4, 1u << 7 }, { F32, 8, ID_IOAS }, { F64, 24, 4096 } }, -EOPNOTSUPP },
	{ "IOAS_MAP __reserved", IOMMU_IOAS_MAP, 40,
	  { { F32, 4, IOMMU_IOAS_MAP_READABLE }, { F32, 8, ID_IOAS }, { F32, 12, 1 },
	    { F64, 24, 4096 } }, -EOPNOTSUPP },
	{ "IOAS_MAP no access flag", IOMMU_IOAS_MAP, 40,
	  { { F32, 8, ID_IOAS }, { F64, 24, 4096 } }, -EINVAL },
	{ "IOAS_MAP non-zero tail", IOMMU_IOAS_MAP, 48,
	  { { F32, 4, IOMMU_IOAS_MAP_READABLE }, { F32, 8, ID_IOAS }, { F64, 24, 4096 },
	    { F32, 44, 1 } }, -E2BIG },
	{ "IOAS_UNMAP unknown ioas", IOMMU_IOAS_UNMAP, 24, { { F32, 4, 4242 } }, -ENOENT },
	{ "IOAS_UNMAP nothing mapped there", IOMMU_IOAS_UNMAP, 24,
	  { { F32, 4, ID_IOAS }, { F64, 8, 1ull << 40 }, { F64, 16, 4096 } }, -ENOENT },
	{ "HWPT_ALLOC unknown flag", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 4, 1u << 9 }, { F32, 8, ID_DEV }, { F32, 12, ID_IOAS } }, -EOPNOTSUPP },
	{ "HWPT_ALLOC __reserved", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 8, ID_DEV }, { F32, 12, ID_IOAS }, { F32, 20, 1 } }, -EOPNOTSUPP },
	{ "HWPT_ALLOC unknown dev", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 8, 4242 }, { F32, 12, ID_IOAS } }, -ENOENT },
	{ "HWPT_ALLOC unknown pt (EINVAL, as the kernel)", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 8, ID_DEV }, { F32, 12, 4242 } }, -EINVAL },
	{ "HWPT_ALLOC unknown fault id", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 4, IOMMU_HWPT_FAULT_ID_VALID }, { F32, 8, ID_DEV }, { F32, 12, ID_IOAS },
	    { F32, 40, 4242 } }, -ENOENT },
	{ "HWPT_ALLOC data_len without a type", IOMMU_HWPT_ALLOC, 48,
	  { { F32, 8, ID_DEV }, { F32, 12, ID_IOAS }, { F32, 28, 8 } }, -EINVAL },
	{ "HWPT_ALLOC non-zero tail", IOMMU_HWPT_ALLOC, 56,
	  { { F32, 8, ID_DEV }, { F32, 12, ID_IOAS }, { F32, 52, 1 } }, -E2BIG },
	{ "HWPT_ALLOC size below minimum", IOMMU_HWPT_ALLOC, 20,
	  { { F32, 8, ID_DEV }, { F32, 12, ID_IOAS } }, -EINVAL },
	{ "FAULT_QUEUE_ALLOC flags", IOMMU_FAULT_QUEUE_ALLOC, 16, { { F32, 4, 1 } }, -EOPNOTSUPP },
	{ "FAULT_QUEUE_ALLOC non-zero tail", IOMMU_FAULT_QUEUE_ALLOC, 24, { { F32, 20, 1 } },
	  -E2BIG },
	{ "unknown iommufd ioctl", _IO(IOMMUFD_TYPE, 0xfe), 8, { { 0 } }, -ENOTTY },
};

static void setup_world(void)
{
	if (tmpdir_create(root, sizeof(root)) < 0 ||
	    tmpdir_touch(root, "dev/iommu", iommu_path, sizeof(iommu_path)) < 0 ||
	    tmpdir_touch(root, "dev/vfio/devices/vfio3", cdev_path, sizeof(cdev_path)) < 0)
		tap_bail("cannot make the scratch tree");
	fake_iommufd_install(iommu_path);
	if (fake_iommufd_add_cdev(cdev_path, NULL) < 0)
		tap_bail("fake cdev");
}

static void test_errno_table(void)
{
	struct vgb_iommufd *ctx;
	struct vgb_iommufd_fault_queue *q;
	struct ids ids = { 0 };
	uint32_t hwpt;
	int dev_fd;

	if (vgb_iommufd_open(iommu_path, &ctx) < 0)
		tap_bail("open fake iommufd");
	dev_fd = open(cdev_path, O_RDWR | O_CLOEXEC);
	if (dev_fd < 0 || vgb_vfio_cdev_bind(dev_fd, ctx->fd, NULL, &ids.dev) < 0 ||
	    vgb_iommufd_ioas_alloc(ctx, &ids.ioas) < 0 ||
	    vgb_iommufd_fault_queue_create(ctx, 0, &q) < 0 ||
	    vgb_iommufd_fault_queue_hwpt_alloc(q, ids.dev, ids.ioas, &hwpt) < 0)
		tap_bail("set up ids");
	ids.ctx_fd = ctx->fd;
	ids.fault = vgb_iommufd_fault_queue_id(q);
	ids.hwpt = hwpt;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ioctl_case *c = &cases[i];
		struct raw arg = { { 0 } };

		put32(&arg, 0, c->size);
		for (const struct put *p = c->puts; p->kind != F_END; p++) {
			if (p->kind == F32)
				put32(&arg, p->off, (uint32_t)resolve(&ids, p->val));
			else
				put64(&arg, p->off, resolve(&ids, p->val));
		}
		int r = vgb_ioctl(ctx->fd, c->request, &arg);
		tap_is_errno(r < 0 ? r : 0, c->want, "%s", c->what);
	}

	/* The VFIO side answers EINVAL (not EOPNOTSUPP) for flags, as drivers/vfio does. */
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .flags = 2,
						    .pt_id = ids.ioas };
	tap_is_errno(vgb_ioctl(dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -EINVAL,
		     "ATTACH unknown flag: EINVAL");
	at.flags = 0;
	at.argsz = 8;
	tap_is_errno(vgb_ioctl(dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -EINVAL,
		     "ATTACH argsz below 12: EINVAL");
	at.argsz = sizeof(at);
	at.pt_id = 4242;
	tap_is_errno(vgb_ioctl(dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), -ENOENT,
		     "ATTACH unknown pt: ENOENT");
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = ctx->fd };
	tap_is_errno(vgb_ioctl(dev_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind), -EINVAL,
		     "BIND twice: EINVAL");

	close(dev_fd);
	vgb_iommufd_fault_queue_destroy(q);
	vgb_iommufd_destroy(ctx, ids.ioas);
	vgb_iommufd_close(ctx);
}

static void test_helpers(void)
{
	struct vgb_iommufd *ctx;
	struct fake_iommufd_counts before, after;
	uint32_t ioas, dev, hwpt;
	uint64_t iova, unmapped = 0;
	void *mem;
	int dev_fd;

	fake_iommufd_get_counts(&before);
	tap_is_errno(vgb_iommufd_open("/nonexistent/iommu", &ctx), -ENOENT,
		     "open: no iommufd is -ENOENT");
	if (vgb_iommufd_open(iommu_path, &ctx) < 0)
		tap_bail("open fake iommufd");
	tap_is_int(vgb_iommufd_ioas_alloc(ctx, &ioas), 0, "ioas alloc");

	mem = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	iova = 0;
	tap_is_int(vgb_iommufd_ioas_map(ctx, ioas, mem, 2 * 4096, IOMMU_IOAS_MAP_READABLE, &iova), 0,
		   "map, kernel picks the IOVA");
	tap_ok(iova != 0, "an IOVA came back (%#llx)", (unsigned long long)iova);
	uint64_t fixed = 1ull << 20;
	tap_is_int(vgb_iommufd_ioas_map(ctx, ioas, (char *)mem + 2 * 4096, 2 * 4096,
					IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
						IOMMU_IOAS_MAP_FIXED_IOVA,
					&fixed),
		   0, "map at a fixed IOVA");
	tap_is_uint(fixed, 1ull << 20, "fixed IOVA kept");
	uint64_t clash = 1ull << 20;
	tap_is_errno(vgb_iommufd_ioas_map(ctx, ioas, mem, 4096,
					  IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
					  &clash),
		     -EEXIST, "map over a used IOVA: the kernel's EEXIST");
	tap_is_errno(vgb_iommufd_ioas_map(ctx, ioas, mem, 4096, 0, &clash), -EINVAL,
		     "map without access flags refused before the ioctl");
	tap_is_errno(vgb_iommufd_ioas_map(ctx, ioas, mem, 0, IOMMU_IOAS_MAP_READABLE, &clash),
		     -EINVAL, "zero-length map refused before the ioctl");
	tap_is_errno(vgb_iommufd_ioas_map(ctx, 4242, mem, 4096, IOMMU_IOAS_MAP_READABLE, &clash),
		     -ENOENT, "map into an unknown IOAS: ENOENT");
	tap_is_int(vgb_iommufd_ioas_unmap(ctx, ioas, iova, 2 * 4096, &unmapped), 0, "unmap");
	tap_is_uint(unmapped, 2 * 4096, "unmap reports the bytes");
	tap_is_errno(vgb_iommufd_ioas_unmap(ctx, ioas, iova, 2 * 4096, NULL), -ENOENT,
		     "unmap twice: ENOENT");
	tap_is_int(vgb_iommufd_ioas_unmap(ctx, ioas, 0, UINT64_MAX, &unmapped), 0, "unmap all");
	tap_is_uint(unmapped, 2 * 4096, "unmap all reports the rest");
	munmap(mem, 4 * 4096);

	dev_fd = open(cdev_path, O_RDWR | O_CLOEXEC);
	tap_is_int(vgb_vfio_cdev_bind(dev_fd, ctx->fd, NULL, &dev), 0, "bind");
	tap_is_errno(vgb_iommufd_hwpt_alloc(ctx, dev, ioas, 0, 4242, &hwpt), -ENOENT,
		     "hwpt alloc with an unknown fault id: ENOENT");
	tap_is_errno(vgb_iommufd_hwpt_alloc(ctx, dev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 0,
					    &hwpt),
		     -EOPNOTSUPP, "hwpt alloc with a flag the IOMMU lacks: EOPNOTSUPP");
	tap_is_int(vgb_iommufd_hwpt_alloc(ctx, dev, ioas, 0, 0, &hwpt), 0, "hwpt alloc");
	tap_is_errno(vgb_iommufd_destroy(ctx, ioas), -EBUSY, "the HWPT holds the IOAS: EBUSY");
	tap_is_int(vgb_iommufd_destroy(ctx, hwpt), 0, "destroy the HWPT");
	tap_is_int(vgb_iommufd_destroy(ctx, ioas), 0, "then the IOAS");
	tap_is_errno(vgb_iommufd_destroy(ctx, ioas), -ENOENT, "destroy twice: ENOENT");
	close(dev_fd);
	vgb_iommufd_close(ctx);

	fake_iommufd_get_counts(&after);
	tap_is_uint(after.strict_violations, before.strict_violations,
		    "every struct the helpers sent was byte-exact");
	tap_is_uint(after.live_objects, before.live_objects, "no object left behind");
}

int main(void)
{
	struct leak_snapshot snap;

	tap_plan_lazy();
	setup_world();
	leak_snapshot(&snap);
	test_errno_table();
	test_helpers();
	fake_iommufd_remove();
	leak_check(&snap, "ioctl tests");
	tmpdir_remove(root);
	return tap_done();
}
