/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake-iommufd.h"
#include "uapi/linux/vfio-cdev.h"
#include "vgb/sys.h"

enum obj_type { OBJ_IOAS = 1, OBJ_HWPT, OBJ_FAULT, OBJ_DEVICE };

static const char *const type_names[] = {
	[OBJ_IOAS] = "ioas", [OBJ_HWPT] = "hwpt", [OBJ_FAULT] = "fault", [OBJ_DEVICE] = "dev",
};

struct mapping {
	uint64_t iova, length;
};

/* One queued delivery: a group (cookie assigned on read) or raw bytes. */
struct delivery {
	bool raw;
	bool forget;
	size_t n;   /* records, or bytes when raw */
	void *data; /* struct iommu_hwpt_pgfault[n] or bytes */
};

struct obj {
	uint32_t id;
	enum obj_type type;
	bool alive;
	int ctx_fd;
	unsigned users; /* as the kernel's obj->users: 1 for the table itself */
	/* IOAS */
	struct mapping *maps;
	size_t n_maps;
	uint64_t next_iova;
	/* HWPT */
	uint32_t ioas_id, fault_id;
	bool auto_made; /* made by an IOAS attach: destroyed on detach */
	/* FAULT */
	int kernel_fd;          /* our end of the socketpair */
	dev_t user_dev;
	ino_t user_ino;
	struct delivery *queue;
	size_t n_queue;
	uint32_t next_cookie;
	uint32_t *pending; /* cookies delivered and not answered */
	size_t n_pending;
	bool forget_next;
	struct fake_fault_counts counts;
	/* DEVICE */
	struct cdev *cdev;
};

struct cdev {
	char path[PATH_MAX];
	bool has_token;
	uint8_t token[16];
	bool iopf;
	bool bound;
	int ctx_fd;
	uint32_t dev_id;
	uint32_t attached_hwpt; /* 0: blocking DMA */
};

static struct {
	bool installed;
	struct vgb_sys saved;
	char iommu_path[PATH_MAX];
	struct obj *objs;
	size_t n_objs;
	uint32_t next_id;
	struct cdev *cdevs;
	size_t n_cdevs;
	struct fake_iommufd_counts counts;
	char log[8192];
} F;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	size_t len = strlen(F.log);
	va_list ap;

	if (len && len + 2 < sizeof(F.log)) {
		strcat(F.log, "; ");
		len += 2;
	}
	va_start(ap, fmt);
	vsnprintf(F.log + len, sizeof(F.log) - len, fmt, ap);
	va_end(ap);
}

const char *fake_iommufd_log(void)
{
	return F.log;
}

void fake_iommufd_log_clear(void)
{
	F.log[0] = 0;
}

static bool fd_path_is(int fd, const char *path)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, path) == 0;
}

/* Whether any fd of this process is open on @path (the kernel unbinds a cdev on last close). */
static bool path_is_open(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool open_ = false;

	if (!d)
		return true;
	while (!open_ && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != dirfd(d) && fd_path_is(fd, path))
			open_ = true;
	}
	closedir(d);
	return open_;
}

static struct obj *obj_get(int ctx_fd, uint32_t id, enum obj_type type)
{
	for (size_t i = 0; i < F.n_objs; i++) {
		struct obj *o = &F.objs[i];
		if (o->id == id && o->alive && o->ctx_fd == ctx_fd && (!type || o->type == type))
			return o;
	}
	return NULL;
}

static struct obj *obj_any(uint32_t id)
{
	for (size_t i = 0; i < F.n_objs; i++)
		if (F.objs[i].id == id)
			return &F.objs[i];
	return NULL;
}

/* Keeps the table bounded over long runs: dead objects are kept (for their counters) only while
 * they are among the most recent ids. */
static void purge_dead(void)
{
	size_t out = 0;

	for (size_t i = 0; i < F.n_objs; i++) {
		struct obj *o = &F.objs[i];
		if (o->alive || o->id + 256 > F.next_id)
			F.objs[out++] = *o;
	}
	F.n_objs = out;
}

static struct obj *obj_new(int ctx_fd, enum obj_type type)
{
	purge_dead();
	struct obj *objs = realloc(F.objs, (F.n_objs + 1) * sizeof(*objs));

	if (!objs)
		return NULL;
	F.objs = objs;
	struct obj *o = &F.objs[F.n_objs++];
	*o = (struct obj){
		.id = ++F.next_id,
		.type = type,
		.alive = true,
		.ctx_fd = ctx_fd,
		.users = 1,
		.kernel_fd = -1,
		.next_iova = 1ull << 32,
		.next_cookie = 1,
	};
	return o;
}

static void free_queue(struct obj *o)
{
	for (size_t i = 0; i < o->n_queue; i++)
		free(o->queue[i].data);
	free(o->queue);
	o->queue = NULL;
	o->n_queue = 0;
}

/* The object's destroy op; users already dropped to 0. */
static void obj_destroy(struct obj *o)
{
	o->alive = false;
	switch (o->type) {
	case OBJ_HWPT: {
		struct obj *ioas = obj_any(o->ioas_id), *fault = obj_any(o->fault_id);
		if (ioas)
			ioas->users--;
		if (o->fault_id && fault)
			fault->users--;
		break;
	}
	case OBJ_IOAS:
		free(o->maps);
		o->maps = NULL;
		break;
	case OBJ_FAULT:
		/* iommufd_fault_destroy(): queued and delivered groups are answered INVALID. */
		for (size_t i = 0; i < o->n_queue; i++)
			if (!o->queue[i].raw)
				o->counts.auto_invalid++;
		o->counts.auto_invalid += (unsigned)o->n_pending;
		o->counts.queued = 0;
		o->counts.outstanding = 0;
		free_queue(o);
		free(o->pending);
		o->pending = NULL;
		o->n_pending = 0;
		if (o->kernel_fd >= 0)
			close(o->kernel_fd);
		o->kernel_fd = -1;
		break;
	case OBJ_DEVICE:
		break;
	}
}

static void hwpt_put(uint32_t hwpt_id)
{
	struct obj *h = obj_any(hwpt_id);

	if (!h || !h->alive)
		return;
	h->users--;
	if (h->auto_made && h->users == 1) {
		/* iommufd_hw_pagetable_put(): an auto-made domain goes with its last device. */
		h->users = 0;
		obj_destroy(h);
		logf_("auto hwpt %u gone", h->id);
	}
}

/* Notices closed device fds (unbind) and closed fault fds (release), as the kernel would. */
static void reap(void)
{
	for (size_t i = 0; i < F.n_cdevs; i++) {
		struct cdev *c = &F.cdevs[i];
		if (!c->bound || path_is_open(c->path))
			continue;
		if (c->attached_hwpt)
			hwpt_put(c->attached_hwpt);
		c->attached_hwpt = 0;
		struct obj *d = obj_any(c->dev_id);
		if (d && d->alive)
			obj_destroy(d);
		c->bound = false;
		logf_("unbind dev %u", c->dev_id);
	}
	for (size_t i = 0; i < F.n_objs; i++) {
		struct obj *o = &F.objs[i];
		struct pollfd p = { .fd = o->kernel_fd, .events = POLLIN };
		if (!o->alive || o->type != OBJ_FAULT || !o->counts.fd_open)
			continue;
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
			o->counts.fd_open = false;
			o->users--;
			logf_("fault %u fd closed", o->id);
		}
	}
}

static struct obj *fault_by_fd(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	for (size_t i = 0; i < F.n_objs; i++) {
		struct obj *o = &F.objs[i];
		if (o->alive && o->type == OBJ_FAULT && o->counts.fd_open && o->user_ino == st.st_ino &&
		    o->user_dev == st.st_dev)
			return o;
	}
	return NULL;
}

static struct cdev *cdev_by_fd(int fd)
{
	for (size_t i = 0; i < F.n_cdevs; i++)
		if (fd_path_is(fd, F.cdevs[i].path))
			return &F.cdevs[i];
	return NULL;
}

/*
 * copy_struct_from_user(): @usize bytes from the caller into a @ksize kernel struct. Bytes past
 * @ksize must be zero (E2BIG); a shorter caller struct reads as zero-extended.
 */
static int copy_struct(void *dst, size_t ksize, const void *src, size_t usize)
{
	memset(dst, 0, ksize);
	if (usize > ksize) {
		for (size_t i = ksize; i < usize; i++)
			if (((const uint8_t *)src)[i])
				return -E2BIG;
		usize = ksize;
	}
	memcpy(dst, src, usize);
	return 0;
}

static void strict(bool ok, const char *what)
{
	if (!ok) {
		F.counts.strict_violations++;
		fprintf(stderr, "# fake-iommufd: strict: %s\n", what);
	}
}

/* ---- iommufd ioctls ---- */

static int do_destroy(int fd, struct iommu_destroy *cmd)
{
	struct obj *o = obj_get(fd, cmd->id, 0);

	if (!o || o->type == OBJ_DEVICE) {
		/* A device object is held by VFIO (EBUSY in the kernel); unknown ids: ENOENT. */
		int r = o ? -EBUSY : -ENOENT;
		logf_("destroy %u: %s", cmd->id, r == -EBUSY ? "EBUSY" : "ENOENT");
		return r;
	}
	if (o->users != 1) {
		logf_("destroy %s %u: EBUSY", type_names[o->type], o->id);
		return -EBUSY;
	}
	o->users = 0;
	obj_destroy(o);
	logf_("destroy %s %u", type_names[o->type], o->id);
	return 0;
}

static int do_ioas_alloc(int fd, struct iommu_ioas_alloc *cmd)
{
	strict(cmd->out_ioas_id == 0, "IOAS_ALLOC out_ioas_id not zero on input");
	if (cmd->flags)
		return -EOPNOTSUPP;
	struct obj *o = obj_new(fd, OBJ_IOAS);
	if (!o)
		return -ENOMEM;
	cmd->out_ioas_id = o->id;
	return 0;
}

static int do_ioas_map(int fd, struct iommu_ioas_map *cmd)
{
	const uint32_t known = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE |
			       IOMMU_IOAS_MAP_READABLE;

	if ((cmd->flags & ~known) || cmd->__reserved)
		return -EOPNOTSUPP;
	if (cmd->iova >= ULONG_MAX || cmd->length >= ULONG_MAX)
		return -EOVERFLOW;
	if (!(cmd->flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
		return -EINVAL;
	strict((cmd->flags & IOMMU_IOAS_MAP_FIXED_IOVA) || cmd->iova == 0,
	       "IOAS_MAP iova set without FIXED_IOVA");
	struct obj *o = obj_get(fd, cmd->ioas_id, OBJ_IOAS);
	if (!o)
		return -ENOENT;
	if (!cmd->length || cmd->length % 4096 || cmd->user_va % 4096)
		return -EINVAL;
	uint64_t iova = cmd->iova;
	if (cmd->flags & IOMMU_IOAS_MAP_FIXED_IOVA) {
		if (iova % 4096)
			return -EINVAL;
		for (size_t i = 0; i < o->n_maps; i++)
			if (iova < o->maps[i].iova + o->maps[i].length &&
			    o->maps[i].iova < iova + cmd->length)
				return -EEXIST;
	} else {
		iova = o->next_iova;
		o->next_iova += cmd->length;
	}
	struct mapping *maps = realloc(o->maps, (o->n_maps + 1) * sizeof(*maps));
	if (!maps)
		return -ENOMEM;
	o->maps = maps;
	o->maps[o->n_maps++] = (struct mapping){ iova, cmd->length };
	cmd->iova = iova;
	return 0;
}

static int do_ioas_unmap(int fd, struct iommu_ioas_unmap *cmd)
{
	struct obj *o = obj_get(fd, cmd->ioas_id, OBJ_IOAS);
	uint64_t unmapped = 0;
	bool all = cmd->iova == 0 && cmd->length == UINT64_MAX;

	if (!o)
		return -ENOENT;
	if (!all && (cmd->iova >= ULONG_MAX || cmd->length >= ULONG_MAX))
		return -EOVERFLOW;
	for (size_t i = 0; i < o->n_maps;) {
		struct mapping *m = &o->maps[i];
		bool inside = all || (m->iova >= cmd->iova &&
				      m->iova + m->length <= cmd->iova + cmd->length);
		bool overlaps = m->iova < cmd->iova + cmd->length &&
				cmd->iova < m->iova + m->length;
		if (!inside && overlaps)
			return -ENOENT; /* the kernel never splits a mapping */
		if (inside) {
			unmapped += m->length;
			*m = o->maps[--o->n_maps];
			continue;
		}
		i++;
	}
	if (!unmapped && !all)
		return -ENOENT;
	cmd->length = unmapped;
	return 0;
}

static int do_hwpt_alloc(int fd, struct iommu_hwpt_alloc *cmd)
{
	const uint32_t valid = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
			       IOMMU_HWPT_FAULT_ID_VALID;

	strict(cmd->out_hwpt_id == 0, "HWPT_ALLOC out_hwpt_id not zero on input");
	strict(cmd->__reserved2 == 0, "HWPT_ALLOC __reserved2 not zero");
	strict((cmd->flags & IOMMU_HWPT_FAULT_ID_VALID) || cmd->fault_id == 0,
	       "HWPT_ALLOC fault_id set without FAULT_ID_VALID");
	if (cmd->__reserved)
		return -EOPNOTSUPP;
	if ((cmd->data_type == IOMMU_HWPT_DATA_NONE && cmd->data_len) ||
	    (cmd->data_type != IOMMU_HWPT_DATA_NONE && !cmd->data_len))
		return -EINVAL;
	if (!obj_get(fd, cmd->dev_id, OBJ_DEVICE))
		return -ENOENT;
	struct obj *pt = obj_get(fd, cmd->pt_id, 0);
	if (!pt)
		return -EINVAL;
	if (pt->type == OBJ_HWPT)
		return -EOPNOTSUPP; /* no nesting on this IOMMU */
	if (pt->type != OBJ_IOAS)
		return -EINVAL;
	/* The fake IOMMU has no dirty tracking and no user data formats. */
	if ((cmd->flags & ~valid) || (cmd->flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) ||
	    cmd->data_type != IOMMU_HWPT_DATA_NONE)
		return -EOPNOTSUPP;
	struct obj *fault = NULL;
	if (cmd->flags & IOMMU_HWPT_FAULT_ID_VALID) {
		fault = obj_get(fd, cmd->fault_id, OBJ_FAULT);
		if (!fault)
			return -ENOENT;
	}
	struct obj *h = obj_new(fd, OBJ_HWPT);
	if (!h)
		return -ENOMEM;
	pt = obj_any(cmd->pt_id); /* obj_new may have moved the table */
	pt->users++;
	h->ioas_id = pt->id;
	if (fault) {
		fault = obj_any(cmd->fault_id);
		fault->users++;
		h->fault_id = fault->id;
	}
	cmd->out_hwpt_id = h->id;
	return 0;
}

static int do_fault_alloc(int fd, struct iommu_fault_alloc *cmd)
{
	int sv[2];

	strict(cmd->out_fault_id == 0 && cmd->out_fault_fd == 0,
	       "FAULT_QUEUE_ALLOC outputs not zero on input");
	if (cmd->flags)
		return -EOPNOTSUPP;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	struct obj *o = obj_new(fd, OBJ_FAULT);
	if (!o) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	struct stat st;
	fstat(sv[0], &st);
	o->user_dev = st.st_dev;
	o->user_ino = st.st_ino;
	o->kernel_fd = sv[1];
	o->users++; /* the fd holds the object */
	o->counts.fd_open = true;
	cmd->out_fault_id = o->id;
	cmd->out_fault_fd = (uint32_t)sv[0];
	return 0;
}

struct op {
	unsigned long request;
	size_t ksize, minsz;
	int (*fn)(int fd, void *cmd);
};

#define OP(req, type, last, f)                                                        \
	{ req, sizeof(struct type), offsetof(struct type, last) +                    \
					    sizeof(((struct type *)0)->last),         \
	  (int (*)(int, void *))(f) }

static const struct op iommufd_ops[] = {
	OP(IOMMU_DESTROY, iommu_destroy, id, do_destroy),
	OP(IOMMU_IOAS_ALLOC, iommu_ioas_alloc, out_ioas_id, do_ioas_alloc),
	OP(IOMMU_IOAS_MAP, iommu_ioas_map, iova, do_ioas_map),
	OP(IOMMU_IOAS_UNMAP, iommu_ioas_unmap, length, do_ioas_unmap),
	OP(IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, __reserved, do_hwpt_alloc),
	OP(IOMMU_FAULT_QUEUE_ALLOC, iommu_fault_alloc, out_fault_fd, do_fault_alloc),
};

/* iommufd_fops_ioctl(): size word, minimum, copy_struct_from_user, op, copy back. */
static int iommufd_ioctl(int fd, unsigned long request, void *arg)
{
	uint8_t kbuf[128];
	uint32_t usize;

	for (size_t i = 0; i < sizeof(iommufd_ops) / sizeof(iommufd_ops[0]); i++) {
		const struct op *op = &iommufd_ops[i];
		if (op->request != request)
			continue;
		memcpy(&usize, arg, sizeof(usize));
		if (usize < op->minsz)
			return -EINVAL;
		strict(usize == op->ksize, "size is not the struct size");
		int r = copy_struct(kbuf, op->ksize, arg, usize);
		if (r < 0)
			return r;
		r = op->fn(fd, kbuf);
		if (r == 0)
			memcpy(arg, kbuf, usize < op->ksize ? usize : op->ksize);
		return r;
	}
	return -ENOTTY;
}

/* ---- VFIO cdev ioctls ---- */

static int cdev_bind(struct cdev *c, struct vfio_device_bind_iommufd *arg)
{
	struct vfio_device_bind_iommufd bind;
	int r;

	if (arg->argsz < VGB_VFIO_BIND_IOMMUFD_MINSZ)
		return -EINVAL;
	strict(arg->argsz == sizeof(bind), "BIND argsz is not the struct size");
	r = copy_struct(&bind, sizeof(bind), arg, arg->argsz);
	if (r < 0)
		return r;
	strict(bind.out_devid == 0, "BIND out_devid not zero on input");
	strict((bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) || bind.token_uuid_ptr == 0,
	       "BIND token pointer without the flag");
	if (bind.iommufd < 0 || (bind.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN))
		return -EINVAL;
	if (c->bound)
		return -EINVAL;
	/* vfio_pci_core_match_token_uuid() */
	if (bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) {
		if (!c->has_token)
			return -EINVAL;
		if (memcmp((const void *)(uintptr_t)bind.token_uuid_ptr, c->token, 16) != 0)
			return -EACCES;
	} else if (c->has_token) {
		return -EACCES;
	}
	if (fcntl(bind.iommufd, F_GETFD) < 0)
		return -EBADF;
	if (!fd_path_is(bind.iommufd, F.iommu_path))
		return -EBADFD;
	struct obj *d = obj_new(bind.iommufd, OBJ_DEVICE);
	if (!d)
		return -ENOMEM;
	d->users = 2; /* held by VFIO until unbind */
	c->bound = true;
	c->ctx_fd = bind.iommufd;
	c->dev_id = d->id;
	c->attached_hwpt = 0;
	arg->out_devid = d->id;
	logf_("bind dev %u", d->id);
	return 0;
}

static int cdev_attach(struct cdev *c, struct vfio_device_attach_iommufd_pt *arg)
{
	if (arg->argsz < VGB_VFIO_ATTACH_IOMMUFD_PT_MINSZ)
		return -EINVAL;
	strict(arg->argsz == sizeof(*arg), "ATTACH argsz is not the struct size");
	if (arg->flags & ~VFIO_DEVICE_ATTACH_PASID)
		return -EINVAL;
	if (arg->flags & VFIO_DEVICE_ATTACH_PASID)
		return -EOPNOTSUPP;
	if (!c->bound)
		return -EINVAL; /* access not granted before BIND */
	struct obj *pt = obj_get(c->ctx_fd, arg->pt_id, 0);
	if (!pt || (pt->type != OBJ_IOAS && pt->type != OBJ_HWPT))
		return -ENOENT;
	uint32_t hwpt_id;
	if (pt->type == OBJ_IOAS) {
		struct obj *h = obj_new(c->ctx_fd, OBJ_HWPT);
		if (!h)
			return -ENOMEM;
		h->auto_made = true;
		h->ioas_id = arg->pt_id;
		obj_any(arg->pt_id)->users++;
		h->users++; /* the device */
		hwpt_id = h->id;
	} else {
		if (pt->fault_id && !c->iopf)
			return -ENODEV; /* enabling I/O page faults on the device fails */
		pt->users++;
		hwpt_id = pt->id;
	}
	if (c->attached_hwpt)
		hwpt_put(c->attached_hwpt); /* replacement */
	c->attached_hwpt = hwpt_id;
	arg->pt_id = hwpt_id;
	logf_("attach dev %u hwpt %u", c->dev_id, hwpt_id);
	return 0;
}

static int cdev_detach(struct cdev *c, struct vfio_device_detach_iommufd_pt *arg)
{
	if (arg->argsz < VGB_VFIO_DETACH_IOMMUFD_PT_MINSZ)
		return -EINVAL;
	strict(arg->argsz == sizeof(*arg), "DETACH argsz is not the struct size");
	if (arg->flags & ~VFIO_DEVICE_DETACH_PASID)
		return -EINVAL;
	if (arg->flags & VFIO_DEVICE_DETACH_PASID)
		return -EOPNOTSUPP;
	if (!c->bound)
		return -EINVAL;
	if (c->attached_hwpt) {
		logf_("detach dev %u hwpt %u", c->dev_id, c->attached_hwpt);
		hwpt_put(c->attached_hwpt);
	}
	c->attached_hwpt = 0;
	return 0;
}

/* A vfio-pci device: 9 regions, 5 irqs, resettable. */
static int cdev_get_info(struct vfio_device_info *info)
{
	if (info->argsz < offsetof(struct vfio_device_info, num_irqs) + sizeof(info->num_irqs))
		return -EINVAL;
	info->flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
	info->num_regions = VFIO_PCI_NUM_REGIONS;
	info->num_irqs = VFIO_PCI_NUM_IRQS;
	return 0;
}

/* BAR0: 16 KiB, read/write; every other region empty (as vfio-pci reports absent BARs). */
static int cdev_get_region_info(struct vfio_region_info *info)
{
	if (info->argsz < offsetof(struct vfio_region_info, offset) + sizeof(info->offset))
		return -EINVAL;
	if (info->index >= VFIO_PCI_NUM_REGIONS)
		return -EINVAL;
	info->cap_offset = 0;
	info->offset = (uint64_t)info->index << 40;
	info->flags = info->index == 0 ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
	info->size = info->index == 0 ? 16384 : 0;
	return 0;
}

static int fake_ioctl(int fd, unsigned long request, void *arg)
{
	struct cdev *c;
	int r;

	if (fd_path_is(fd, F.iommu_path)) {
		F.counts.ioctls++;
		reap();
		r = iommufd_ioctl(fd, request, arg);
	} else if ((c = cdev_by_fd(fd))) {
		F.counts.ioctls++;
		reap();
		if (request == VFIO_DEVICE_BIND_IOMMUFD)
			r = cdev_bind(c, arg);
		else if (request == VFIO_DEVICE_ATTACH_IOMMUFD_PT)
			r = cdev_attach(c, arg);
		else if (request == VFIO_DEVICE_DETACH_IOMMUFD_PT)
			r = cdev_detach(c, arg);
		else if (!c->bound)
			r = -EINVAL; /* no device access before BIND */
		else if (request == VFIO_DEVICE_GET_INFO)
			r = cdev_get_info(arg);
		else if (request == VFIO_DEVICE_GET_REGION_INFO)
			r = cdev_get_region_info(arg);
		else
			r = -ENOTTY; /* including VFIO_DEVICE_FEATURE: a kernel without DMA_BUF */
	} else {
		return F.saved.ioctl(fd, request, arg);
	}
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

/* ---- fault fds ---- */

static int pending_take(struct obj *o, uint32_t cookie)
{
	for (size_t i = 0; i < o->n_pending; i++) {
		if (o->pending[i] == cookie) {
			o->pending[i] = o->pending[--o->n_pending];
			return 0;
		}
	}
	return -EINVAL;
}

static void consume_readiness(int user_fd)
{
	char b;

	(void)recv(user_fd, &b, 1, MSG_DONTWAIT);
}

/* iommufd_fault_fops_read() */
static ssize_t fault_read(struct obj *o, int fd, void *buf, size_t count)
{
	const size_t rec = sizeof(struct iommu_hwpt_pgfault);
	size_t done = 0;

	if (count % rec)
		return -ESPIPE;
	while (o->n_queue) {
		struct delivery *d = &o->queue[0];
		bool raw = d->raw;
		if (raw) {
			/* A misbehaving kernel: whatever it has, alone in one read. */
			if (done)
				break;
			done = d->n < count ? d->n : count;
			memcpy(buf, d->data, done);
		} else {
			if (done >= count || d->n * rec > count - done)
				break;
			uint32_t cookie = o->next_cookie++;
			struct iommu_hwpt_pgfault *out = (void *)((char *)buf + done);
			memcpy(out, d->data, d->n * rec);
			for (size_t i = 0; i < d->n; i++)
				out[i].cookie = cookie;
			done += d->n * rec;
			o->counts.delivered++;
			if (!d->forget) {
				uint32_t *p = realloc(o->pending, (o->n_pending + 1) * sizeof(*p));
				if (!p)
					return done ? (ssize_t)done : -ENOMEM;
				o->pending = p;
				o->pending[o->n_pending++] = cookie;
			}
		}
		free(d->data);
		memmove(o->queue, o->queue + 1, (o->n_queue - 1) * sizeof(*o->queue));
		o->n_queue--;
		o->counts.queued--;
		consume_readiness(fd);
		if (raw)
			break;
	}
	o->counts.outstanding = (unsigned)o->n_pending;
	return (ssize_t)done;
}

/* iommufd_fault_fops_write() */
static ssize_t fault_write(struct obj *o, const void *buf, size_t count)
{
	const size_t size = sizeof(struct iommu_hwpt_page_response);
	size_t done = 0;
	int rc = 0;

	if (count % size)
		return -ESPIPE;
	while (count > done) {
		struct iommu_hwpt_page_response resp;
		memcpy(&resp, (const char *)buf + done, size);
		o->counts.last_cookie = resp.cookie;
		if (resp.code != IOMMUFD_PAGE_RESP_SUCCESS && resp.code != IOMMUFD_PAGE_RESP_INVALID) {
			rc = -EINVAL;
			o->counts.responses_einval++;
			break;
		}
		if (pending_take(o, resp.cookie) < 0) {
			rc = -EINVAL;
			o->counts.responses_einval++;
			break;
		}
		o->counts.responses_ok++;
		if (resp.code == IOMMUFD_PAGE_RESP_SUCCESS)
			o->counts.responses_success++;
		else
			o->counts.responses_invalid++;
		done += size;
	}
	o->counts.outstanding = (unsigned)o->n_pending;
	return done ? (ssize_t)done : rc;
}

static ssize_t fake_read(int fd, void *buf, size_t len)
{
	struct obj *o = fault_by_fd(fd);
	ssize_t r;

	if (!o)
		return F.saved.read(fd, buf, len);
	r = fault_read(o, fd, buf, len);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static ssize_t fake_write(int fd, const void *buf, size_t len)
{
	struct obj *o = fault_by_fd(fd);
	ssize_t r;

	if (!o)
		return F.saved.write(fd, buf, len);
	r = fault_write(o, buf, len);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

static struct obj *fault_obj(uint32_t fault_id)
{
	struct obj *o = obj_any(fault_id);

	return o && o->alive && o->type == OBJ_FAULT ? o : NULL;
}

static int queue_push(struct obj *o, struct delivery d)
{
	struct delivery *q = realloc(o->queue, (o->n_queue + 1) * sizeof(*q));
	char b = 1;

	if (!q)
		return -ENOMEM;
	o->queue = q;
	o->queue[o->n_queue++] = d;
	o->counts.queued++;
	/* One byte per delivery keeps the user end readable exactly while something is queued. */
	if (write(o->kernel_fd, &b, 1) != 1)
		return -errno;
	return 0;
}

int fake_iommufd_fault_emit(uint32_t fault_id, const struct iommu_hwpt_pgfault *recs, size_t n)
{
	struct obj *o = fault_obj(fault_id);
	struct iommu_hwpt_pgfault *copy;

	if (!o || !n)
		return -EINVAL;
	copy = calloc(n, sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, recs, n * sizeof(*copy));
	for (size_t i = 0; i < n; i++) {
		copy[i].flags &= ~(uint32_t)IOMMU_PGFAULT_FLAGS_LAST_PAGE;
		copy[i].__reserved = 0; /* initialised since 6.14 */
	}
	copy[n - 1].flags |= IOMMU_PGFAULT_FLAGS_LAST_PAGE;
	bool forget = o->forget_next;
	o->forget_next = false;
	return queue_push(o, (struct delivery){ .n = n, .data = copy, .forget = forget });
}

int fake_iommufd_fault_emit_raw(uint32_t fault_id, const void *bytes, size_t n)
{
	struct obj *o = fault_obj(fault_id);
	void *copy;

	if (!o || !n)
		return -EINVAL;
	copy = malloc(n);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, bytes, n);
	return queue_push(o, (struct delivery){ .raw = true, .n = n, .data = copy });
}

int fake_iommufd_fault_forget_next(uint32_t fault_id)
{
	struct obj *o = fault_obj(fault_id);

	if (!o)
		return -EINVAL;
	o->forget_next = true;
	return 0;
}

int fake_iommufd_fault_get_counts(uint32_t fault_id, struct fake_fault_counts *ret)
{
	struct obj *o = obj_any(fault_id);

	if (!o || o->type != OBJ_FAULT)
		return -ENOENT;
	if (o->alive)
		reap();
	*ret = o->counts;
	return 0;
}

/* ---- setup ---- */

void fake_iommufd_install(const char *iommu_path)
{
	char *real = realpath(iommu_path, NULL);

	memset(&F, 0, sizeof(F));
	snprintf(F.iommu_path, sizeof(F.iommu_path), "%s", real ? real : iommu_path);
	free(real);
	F.saved = vgb_sys;
	F.installed = true;
	vgb_sys.ioctl = fake_ioctl;
	vgb_sys.read = fake_read;
	vgb_sys.write = fake_write;
}

void fake_iommufd_remove(void)
{
	if (!F.installed)
		return;
	vgb_sys = F.saved;
	for (size_t i = 0; i < F.n_objs; i++) {
		struct obj *o = &F.objs[i];
		free_queue(o);
		free(o->pending);
		free(o->maps);
		if (o->kernel_fd >= 0)
			close(o->kernel_fd);
	}
	free(F.objs);
	free(F.cdevs);
	memset(&F, 0, sizeof(F));
}

int fake_iommufd_add_cdev(const char *cdev_path, const uint8_t *vf_token)
{
	struct cdev *c = realloc(F.cdevs, (F.n_cdevs + 1) * sizeof(*c));
	char *real = realpath(cdev_path, NULL);

	if (!c || !real) {
		free(real);
		if (c)
			F.cdevs = c;
		return c ? -ENOENT : -ENOMEM;
	}
	F.cdevs = c;
	c = &F.cdevs[F.n_cdevs++];
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s", real);
	free(real);
	if (vf_token) {
		c->has_token = true;
		memcpy(c->token, vf_token, 16);
	}
	return 0;
}

int fake_iommufd_cdev_set_iopf(const char *cdev_path, bool iopf)
{
	char *real = realpath(cdev_path, NULL);
	int r = -ENOENT;

	for (size_t i = 0; real && i < F.n_cdevs; i++) {
		if (strcmp(F.cdevs[i].path, real) == 0) {
			F.cdevs[i].iopf = iopf;
			r = 0;
		}
	}
	free(real);
	return r;
}

void fake_iommufd_get_counts(struct fake_iommufd_counts *ret)
{
	reap();
	F.counts.live_objects = 0;
	F.counts.bound_devices = 0;
	for (size_t i = 0; i < F.n_objs; i++)
		if (F.objs[i].alive)
			F.counts.live_objects++;
	for (size_t i = 0; i < F.n_cdevs; i++)
		if (F.cdevs[i].bound)
			F.counts.bound_devices++;
	*ret = F.counts;
}
