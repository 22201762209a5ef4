/* SPDX-License-Identifier: MIT */
/* vgbctl replay FILE: plays a scripted guest (docs/replay.md) against a running vgbridged. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ctl-bridge.h"
#include "guest.h"
#include "vgb/util.h"

#define MAX_LINES 100000
#define MAX_TOKENS 32
#define MAX_NAMED 32
#define MAX_DEPTH 8
#define MAX_ENTRIES 65536

/* A memory the script can write into: a memfd it made, or a region fd it asked for. */
struct named {
	char name[32];
	int fd;
	uint8_t *map;
	uint64_t size;
};

struct replay {
	struct vgb_client *c;
	char **lines;
	unsigned n_lines;
	struct named named[MAX_NAMED];
	unsigned n_named;
	uint64_t next_fence;
	uint64_t iteration; /* of the innermost repeat, for the "frame" pattern */
	unsigned requests, failures;
	bool verbose;
	uint8_t *cmd; /* command buffer */
	size_t cmd_cap;
	struct virtio_gpu_mem_entry *ents;
};

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{ "EPERM", EPERM }, { "ENOENT", ENOENT }, { "EBADF", EBADF }, { "ENOMEM", ENOMEM },
	{ "EACCES", EACCES }, { "EBUSY", EBUSY }, { "EEXIST", EEXIST }, { "ENODEV", ENODEV },
	{ "EINVAL", EINVAL }, { "ENOSPC", ENOSPC }, { "E2BIG", E2BIG },
	{ "ENAMETOOLONG", ENAMETOOLONG }, { "EPROTO", EPROTO }, { "EBADMSG", EBADMSG },
	{ "EOVERFLOW", EOVERFLOW }, { "EMSGSIZE", EMSGSIZE }, { "EOPNOTSUPP", EOPNOTSUPP },
	{ "EALREADY", EALREADY }, { "ESTALE", ESTALE }, { "EPROTONOSUPPORT", EPROTONOSUPPORT },
	{ "ENOTTY", ENOTTY }, { "EIO", EIO }, { "ECONNRESET", ECONNRESET },
};

static const char *errno_name(int r)
{
	if (r == 0)
		return "0";
	for (size_t i = 0; i < VGB_ARRAY_SIZE(errnos); i++)
		if (errnos[i].err == -r)
			return errnos[i].name;
	return strerror(-r);
}

/* Parses "0", "OK", "EINVAL", "-EINVAL", "-22" into 0 or -errno. */
static int parse_result(const char *s, int *ret)
{
	char *end;
	long v;

	if (strcmp(s, "0") == 0 || strcasecmp(s, "OK") == 0) {
		*ret = 0;
		return 0;
	}
	if (*s == '-' && s[1] == 'E')
		s++;
	for (size_t i = 0; i < VGB_ARRAY_SIZE(errnos); i++)
		if (strcasecmp(s, errnos[i].name) == 0) {
			*ret = -errnos[i].err;
			return 0;
		}
	v = strtol(s, &end, 0);
	if (*end || v > 0 || v < -4095)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* Numbers: decimal or 0x hex, with an optional K, M or G (binary) suffix. */
static int parse_num(const char *s, uint64_t *ret)
{
	return vgb_parse_u64(s, UINT64_MAX, ret);
}

static int parse_u32(const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_num(s, &v) < 0 || v > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

static const struct {
	const char *name;
	uint32_t value;
} formats[] = {
	{ "B8G8R8A8", VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM },
	{ "B8G8R8X8", VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM },
	{ "A8R8G8B8", VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM },
	{ "X8R8G8B8", VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM },
	{ "R8G8B8A8", VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM },
	{ "X8B8G8R8", VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM },
	{ "A8B8G8R8", VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM },
	{ "R8G8B8X8", VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM },
};

static int parse_format(const char *s, uint32_t *ret)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(formats); i++) {
		size_t n = strlen(formats[i].name);
		/* "B8G8R8X8" or "B8G8R8X8_UNORM" */
		if (strncasecmp(s, formats[i].name, n) == 0 &&
		    (s[n] == 0 || strcasecmp(s + n, "_UNORM") == 0)) {
			*ret = formats[i].value;
			return 0;
		}
	}
	return parse_u32(s, ret);
}

/* key=value arguments of a gpu line. */
struct kv {
	const char *key[MAX_TOKENS];
	const char *val[MAX_TOKENS];
	bool used[MAX_TOKENS];
	unsigned n;
};

static const char *kv_get(struct kv *kv, const char *key)
{
	for (unsigned i = 0; i < kv->n; i++)
		if (strcmp(kv->key[i], key) == 0) {
			kv->used[i] = true;
			return kv->val[i];
		}
	return NULL;
}

static int kv_u32(struct kv *kv, const char *key, uint32_t def, uint32_t *ret)
{
	const char *v = kv_get(kv, key);

	if (!v) {
		*ret = def;
		return 0;
	}
	return parse_u32(v, ret);
}

static int kv_u64(struct kv *kv, const char *key, uint64_t def, uint64_t *ret)
{
	const char *v = kv_get(kv, key);

	if (!v) {
		*ret = def;
		return 0;
	}
	return parse_num(v, ret);
}

/* "x,y,w,h" */
static int kv_rect(struct kv *kv, const char *key, uint32_t r[4])
{
	const char *v = kv_get(kv, key);
	char tmp[128], *save = NULL, *tok;
	unsigned i = 0;

	memset(r, 0, 4 * sizeof(*r));
	if (!v)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s", v);
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (i == 4 || parse_u32(tok, &r[i]) < 0)
			return -EINVAL;
		i++;
	}
	return i == 4 ? 0 : -EINVAL;
}

/* "GPA+LEN,GPA+LEN,..." */
static int kv_entries(struct replay *rp, struct kv *kv, uint32_t *ret_n)
{
	const char *v = kv_get(kv, "entries");
	char *tmp, *save = NULL, *tok;
	uint32_t n = 0;
	int r = 0;

	*ret_n = 0;
	if (!v || !*v)
		return 0;
	tmp = strdup(v);
	if (!tmp)
		return -ENOMEM;
	for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *plus = strchr(tok, '+');
		uint64_t a, l;

		if (!plus || n == MAX_ENTRIES) {
			r = -EINVAL;
			break;
		}
		*plus = 0;
		if (parse_num(tok, &a) < 0 || parse_num(plus + 1, &l) < 0 || l > UINT32_MAX) {
			r = -EINVAL;
			break;
		}
		rp->ents[n].addr = a;
		rp->ents[n].length = (uint32_t)l;
		rp->ents[n].padding = 0;
		n++;
	}
	free(tmp);
	*ret_n = n;
	return r;
}

static int kv_fence(struct replay *rp, struct kv *kv, uint64_t *ret)
{
	const char *v = kv_get(kv, "fence");

	*ret = 0;
	if (!v)
		return 0;
	if (strcmp(v, "auto") == 0) {
		*ret = ++rp->next_fence;
		return 0;
	}
	if (parse_num(v, ret) < 0)
		return -EINVAL;
	if (*ret > rp->next_fence)
		rp->next_fence = *ret;
	return 0;
}

static struct named *find_named(struct replay *rp, const char *name)
{
	for (unsigned i = 0; i < rp->n_named; i++)
		if (strcmp(rp->named[i].name, name) == 0)
			return &rp->named[i];
	return NULL;
}

static int add_named(struct replay *rp, const char *name, int fd, uint64_t size)
{
	struct named *nm;
	void *map;

	if (find_named(rp, name) || rp->n_named == MAX_NAMED || strlen(name) >= sizeof(nm->name))
		return -EEXIST;
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -errno;
	nm = &rp->named[rp->n_named++];
	snprintf(nm->name, sizeof(nm->name), "%s", name);
	nm->fd = fd;
	nm->map = map;
	nm->size = size;
	return 0;
}

static void fill(struct named *nm, uint64_t off, uint64_t len, const char *pattern,
		 uint64_t iteration, uint8_t byte)
{
	uint8_t *p = nm->map + off;

	if (strcmp(pattern, "zero") == 0 || strncmp(pattern, "byte=", 5) == 0) {
		memset(p, byte, len);
		return;
	}
	/* gradient / frame: 32-bit pixels, frame shifts with the repeat iteration */
	uint64_t shift = strcmp(pattern, "frame") == 0 ? iteration * 4 : 0;
	for (uint64_t i = 0; i + 4 <= len; i += 4) {
		uint32_t px = 0xff000000u | (uint32_t)(((i / 4) + shift) & 0xffffff);
		memcpy(p + i, &px, 4);
	}
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Builds the command of a gpu line. Returns its length, or -EINVAL (with @why). */
static ssize_t build_gpu(struct replay *rp, uint32_t type, struct kv *kv, const char **why)
{
	uint32_t res, scanout, rect[4], n_ents, u[8];
	uint64_t fence, size, off;
	size_t n = 0;

	*why = "bad value";
	if (kv_u32(kv, "res", 0, &res) < 0 || kv_u32(kv, "scanout", 0, &scanout) < 0 ||
	    kv_rect(kv, "rect", rect) < 0 || kv_fence(rp, kv, &fence) < 0 ||
	    kv_entries(rp, kv, &n_ents) < 0)
		return -EINVAL;

	switch (type) {
	case VIRTIO_GPU_CMD_GET_DISPLAY_INFO:
		n = vgb_guest_get_display_info(rp->cmd, rp->cmd_cap);
		break;
	case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D:
		if (kv_get(kv, "format") && parse_format(kv_get(kv, "format"), &u[0]) < 0)
			return -EINVAL;
		if (!kv_get(kv, "format"))
			u[0] = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
		if (kv_u32(kv, "width", 0, &u[1]) < 0 || kv_u32(kv, "height", 0, &u[2]) < 0)
			return -EINVAL;
		n = vgb_guest_create_2d(rp->cmd, rp->cmd_cap, res, u[0], u[1], u[2]);
		break;
	case VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB: {
		const char *mem = kv_get(kv, "mem"), *flags = kv_get(kv, "flags");
		uint32_t m = VIRTIO_GPU_BLOB_MEM_GUEST, f = 0;

		if (mem && strcmp(mem, "guest") != 0 && parse_u32(mem, &m) < 0)
			return -EINVAL;
		if (flags) {
			char tmp[128], *save = NULL, *tok;
			snprintf(tmp, sizeof(tmp), "%s", flags);
			for (tok = strtok_r(tmp, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
				uint32_t x;
				if (strcmp(tok, "mappable") == 0)
					f |= VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE;
				else if (strcmp(tok, "shareable") == 0)
					f |= VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE;
				else if (strcmp(tok, "cross-device") == 0)
					f |= VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE;
				else if (parse_u32(tok, &x) == 0)
					f |= x;
				else
					return -EINVAL;
			}
		}
		if (kv_u64(kv, "size", 0, &size) < 0)
			return -EINVAL;
		if (!kv_get(kv, "size"))
			for (uint32_t i = 0; i < n_ents; i++)
				size += rp->ents[i].length;
		n = vgb_guest_create_blob(rp->cmd, rp->cmd_cap, res, m, f, size, rp->ents, n_ents);
		/* nr_entries may lie, to play a buggy or hostile guest */
		if (n && kv_get(kv, "nr_entries")) {
			struct virtio_gpu_resource_create_blob *cb = (void *)rp->cmd;
			if (kv_u32(kv, "nr_entries", 0, &u[0]) < 0)
				return -EINVAL;
			cb->nr_entries = u[0];
		}
		break;
	}
	case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING:
		n = vgb_guest_attach_backing(rp->cmd, rp->cmd_cap, res, rp->ents, n_ents);
		break;
	case VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING:
		n = vgb_guest_detach_backing(rp->cmd, rp->cmd_cap, res);
		break;
	case VIRTIO_GPU_CMD_RESOURCE_UNREF:
		n = vgb_guest_unref(rp->cmd, rp->cmd_cap, res);
		break;
	case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D:
		if (kv_u64(kv, "offset", 0, &off) < 0)
			return -EINVAL;
		n = vgb_guest_transfer_2d(rp->cmd, rp->cmd_cap, res, rect[0], rect[1], rect[2],
					  rect[3], off, fence);
		break;
	case VIRTIO_GPU_CMD_SET_SCANOUT:
		n = vgb_guest_set_scanout(rp->cmd, rp->cmd_cap, scanout, res, rect[0], rect[1],
					  rect[2], rect[3]);
		break;
	case VIRTIO_GPU_CMD_SET_SCANOUT_BLOB:
		u[0] = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM;
		if (kv_get(kv, "format") && parse_format(kv_get(kv, "format"), &u[0]) < 0)
			return -EINVAL;
		if (kv_u32(kv, "width", rect[2], &u[1]) < 0 ||
		    kv_u32(kv, "height", rect[3], &u[2]) < 0 ||
		    kv_u32(kv, "stride", u[1] * 4, &u[3]) < 0 || kv_u32(kv, "offset", 0, &u[4]) < 0)
			return -EINVAL;
		n = vgb_guest_set_scanout_blob(rp->cmd, rp->cmd_cap, scanout, res, u[1], u[2], u[0],
					       u[3], u[4], rect[0], rect[1], rect[2], rect[3]);
		break;
	case VIRTIO_GPU_CMD_RESOURCE_FLUSH:
		n = vgb_guest_flush(rp->cmd, rp->cmd_cap, res, rect[0], rect[1], rect[2], rect[3],
				    fence);
		break;
	case VIRTIO_GPU_CMD_MOVE_CURSOR:
	case VIRTIO_GPU_CMD_UPDATE_CURSOR: {
		struct virtio_gpu_update_cursor *cu = (void *)rp->cmd;
		if (kv_u32(kv, "x", 0, &u[0]) < 0 || kv_u32(kv, "y", 0, &u[1]) < 0 ||
		    kv_u32(kv, "hot_x", 0, &u[2]) < 0 || kv_u32(kv, "hot_y", 0, &u[3]) < 0)
			return -EINVAL;
		n = vgb_guest_move_cursor(rp->cmd, rp->cmd_cap, scanout, u[0], u[1]);
		if (n) {
			cu->hdr.type = type;
			cu->resource_id = res;
			cu->hot_x = u[2];
			cu->hot_y = u[3];
		}
		break;
	}
	default: {
		/* Anything else: just the header (answered ERR_UNSPEC by the daemon). */
		struct virtio_gpu_ctrl_hdr hd = { .type = type };
		if (rp->cmd_cap < sizeof(hd))
			return -EINVAL;
		memcpy(rp->cmd, &hd, sizeof(hd));
		n = sizeof(hd);
		break;
	}
	}
	if (n == 0) {
		*why = "command too large";
		return -EINVAL;
	}
	/* Fence and context on any command. */
	if (fence || kv_get(kv, "ctx")) {
		struct virtio_gpu_ctrl_hdr *hd = (void *)rp->cmd;
		uint32_t ctx = 0;
		if (kv_u32(kv, "ctx", 0, &ctx) < 0)
			return -EINVAL;
		if (fence) {
			hd->flags |= VIRTIO_GPU_FLAG_FENCE;
			hd->fence_id = fence;
		}
		hd->ctx_id = ctx;
	}
	for (unsigned i = 0; i < kv->n; i++)
		if (!kv->used[i]) {
			*why = kv->key[i];
			return -ENOENT;
		}
	return (ssize_t)n;
}

/* Splits @line in place into tokens; "=> X" goes to *@ret_expect. */
static unsigned tokenize(char *line, char **tok, char **ret_expect)
{
	char *hash = strchr(line, '#'), *arrow, *save = NULL, *t;
	unsigned n = 0;

	if (hash)
		*hash = 0;
	*ret_expect = NULL;
	arrow = strstr(line, "=>");
	if (arrow) {
		*arrow = 0;
		*ret_expect = strtok_r(arrow + 2, " \t\r\n", &save);
		save = NULL;
	}
	for (t = strtok_r(line, " \t\r\n", &save); t && n < MAX_TOKENS;
	     t = strtok_r(NULL, " \t\r\n", &save))
		tok[n++] = t;
	return n;
}

static void report(struct replay *rp, unsigned lineno, const char *what, const char *got,
		   const char *expect, bool ok, double ms)
{
	rp->requests++;
	if (!ok)
		rp->failures++;
	if (rp->verbose || !ok)
		printf("%5u %-40s -> %-24s %8.3f ms%s%s\n", lineno, what, got, ms,
		       ok ? "" : "   FAIL, expected ", ok ? "" : expect);
}

/* A protocol result against an expectation (none: anything but a transport error passes). */
static void check_result(struct replay *rp, unsigned lineno, const char *what, int r,
			 const char *expect, double t0)
{
	int want = 0;
	bool ok;

	if (expect && parse_result(expect, &want) < 0) {
		fprintf(stderr, "replay: line %u: bad expectation '%s'\n", lineno, expect);
		rp->failures++;
		return;
	}
	ok = expect ? r == want : (r == 0 || r > -4096);
	report(rp, lineno, what, errno_name(r), expect ? expect : "", ok, now_ms() - t0);
}

static int run_lines(struct replay *rp, unsigned from, unsigned to, unsigned depth);

/* Executes line @i. Returns the next line to run, or -1 on a script error. */
static int run_line(struct replay *rp, unsigned i, unsigned to, unsigned depth)
{
	char copy[4096], *tok[MAX_TOKENS], *expect;
	unsigned lineno = i + 1, n;
	double t0 = now_ms();
	uint64_t a, b, c4;
	uint32_t d, e;
	int r;

	snprintf(copy, sizeof(copy), "%s", rp->lines[i]);
	n = tokenize(copy, tok, &expect);
	if (n == 0)
		return (int)i + 1;

#define BAD(...) do { fprintf(stderr, "replay: line %u: ", lineno); \
		      fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); return -1; } while (0)

	if (strcmp(tok[0], "repeat") == 0) {
		unsigned end = i + 1, nest = 0;
		if (n != 2 || parse_num(tok[1], &a) < 0)
			BAD("usage: repeat N");
		for (; end < to; end++) {
			char tmp[64];
			snprintf(tmp, sizeof(tmp), "%s", rp->lines[end]);
			char *w = strtok(tmp, " \t\r\n#");
			if (!w)
				continue;
			if (strcmp(w, "repeat") == 0)
				nest++;
			else if (strcmp(w, "end") == 0 && nest-- == 0)
				break;
		}
		if (end >= to)
			BAD("repeat without end");
		if (depth >= MAX_DEPTH)
			BAD("repeats nested too deep");
		uint64_t saved = rp->iteration;
		for (uint64_t k = 0; k < a; k++) {
			rp->iteration = k;
			if (run_lines(rp, i + 1, end, depth + 1) < 0)
				return -1;
		}
		rp->iteration = saved;
		return (int)end + 1;
	}
	if (strcmp(tok[0], "end") == 0)
		BAD("end without repeat");

	if (strcmp(tok[0], "memfd") == 0) {
		int fd;
		if (n != 3 || parse_num(tok[2], &a) < 0 || a == 0)
			BAD("usage: memfd NAME SIZE");
		fd = memfd_create(tok[1], MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0 || ftruncate(fd, (off_t)a) < 0)
			BAD("memfd: %s", strerror(errno));
		r = add_named(rp, tok[1], fd, a);
		if (r < 0) {
			close(fd);
			BAD("memfd %s: %s", tok[1], strerror(-r));
		}
	} else if (strcmp(tok[0], "fill") == 0) {
		struct named *nm;
		uint8_t byte = 0;
		if (n != 5 || !(nm = find_named(rp, tok[1])) || parse_num(tok[2], &a) < 0 ||
		    parse_num(tok[3], &b) < 0)
			BAD("usage: fill NAME OFFSET LENGTH zero|byte=N|gradient|frame");
		if (a > nm->size || b > nm->size - a)
			BAD("fill past the end of %s", nm->name);
		if (strncmp(tok[4], "byte=", 5) == 0) {
			if (parse_num(tok[4] + 5, &c4) < 0 || c4 > 255)
				BAD("bad byte");
			byte = (uint8_t)c4;
		} else if (strcmp(tok[4], "zero") && strcmp(tok[4], "gradient") &&
			   strcmp(tok[4], "frame")) {
			BAD("unknown pattern '%s'", tok[4]);
		}
		fill(nm, a, b, tok[4], rp->iteration, byte);
	} else if (strcmp(tok[0], "sleep") == 0) {
		if (n != 2 || parse_num(tok[1], &a) < 0 || a > 60000)
			BAD("usage: sleep MS");
		struct timespec ts = { (time_t)(a / 1000), (long)(a % 1000) * 1000000 };
		nanosleep(&ts, NULL);
	} else if (strcmp(tok[0], "ram") == 0) {
		struct named *nm;
		c4 = 0;
		if ((n != 4 && n != 5) || parse_num(tok[1], &a) < 0 || parse_num(tok[2], &b) < 0 ||
		    !(nm = find_named(rp, tok[3])) || (n == 5 && parse_num(tok[4], &c4) < 0))
			BAD("usage: ram GPA SIZE MEMFD [OFFSET]");
		r = vgb_client_add_ram(rp->c, nm->fd, a, b, c4);
		check_result(rp, lineno, "ADD_RAM", r, expect, t0);
	} else if (strcmp(tok[0], "device") == 0) {
		struct vgb_msg_add_device_reply rep;
		uint32_t kind;
		if (n != 3)
			BAD("usage: device virtual|bdf|cdev SPEC-OR-PATH");
		if (strcmp(tok[1], "virtual") == 0)
			kind = VGB_DEVICE_VIRTUAL;
		else if (strcmp(tok[1], "bdf") == 0)
			kind = VGB_DEVICE_BDF;
		else if (strcmp(tok[1], "cdev") == 0)
			kind = VGB_DEVICE_CDEV;
		else
			BAD("unknown device kind '%s'", tok[1]);
		r = vgb_client_add_device(rp->c, kind, tok[2], -1, &rep);
		check_result(rp, lineno, "ADD_VFIO_DEVICE", r, expect, t0);
		if (r == 0 && rp->verbose)
			printf("      device id %u, caps 0x%x, %u regions\n", rep.device_id, rep.caps,
			       rep.num_regions);
	} else if (strcmp(tok[0], "regionfd") == 0) {
		struct vgb_msg_query_device_reply q;
		int fd = -1;
		if (n != 4 || parse_u32(tok[2], &d) < 0 || parse_u32(tok[3], &e) < 0)
			BAD("usage: regionfd NAME DEVICE REGION");
		r = vgb_client_query_device(rp->c, d, e, VGB_QUERY_REGION_FD, &q, &fd);
		check_result(rp, lineno, "QUERY_DEVICE", r, expect, t0);
		if (r == 0 && fd >= 0) {
			r = add_named(rp, tok[1], fd, q.region_size);
			if (r < 0) {
				close(fd);
				BAD("regionfd %s: %s", tok[1], strerror(-r));
			}
		} else {
			vgb_close(fd);
		}
	} else if (strcmp(tok[0], "map") == 0) {
		c4 = 0;
		if ((n != 5 && n != 6) || parse_num(tok[1], &a) < 0 || parse_num(tok[2], &b) < 0 ||
		    parse_u32(tok[3], &d) < 0 || parse_u32(tok[4], &e) < 0 ||
		    (n == 6 && parse_num(tok[5], &c4) < 0))
			BAD("usage: map GPA SIZE DEVICE REGION [OFFSET]");
		r = vgb_client_map_window(rp->c, a, b, d, e, c4);
		check_result(rp, lineno, "MAP_VFIO_WINDOW", r, expect, t0);
	} else if (strcmp(tok[0], "unmap") == 0) {
		if (n != 2 || parse_num(tok[1], &a) < 0)
			BAD("usage: unmap GPA");
		r = vgb_client_remove_window(rp->c, a);
		check_result(rp, lineno, "REMOVE_WINDOW", r, expect, t0);
	} else if (strcmp(tok[0], "remove-device") == 0) {
		if (n != 2 || parse_u32(tok[1], &d) < 0)
			BAD("usage: remove-device ID");
		r = vgb_client_remove_device(rp->c, d);
		check_result(rp, lineno, "REMOVE_DEVICE", r, expect, t0);
	} else if (strcmp(tok[0], "export") == 0) {
		struct vgb_msg_export_blob_reply ex;
		int fd = -1;
		const char *got;
		if (n != 2 || parse_u32(tok[1], &d) < 0)
			BAD("usage: export RESOURCE");
		r = vgb_client_export_blob(rp->c, d, &ex, &fd);
		vgb_close(fd);
		got = r < 0 ? errno_name(r) :
		      ex.strategy == VGB_WIRE_STRATEGY_VFIO_DMABUF ? "vfio-dmabuf" : "udmabuf";
		if (expect && (strcmp(expect, "vfio-dmabuf") == 0 || strcmp(expect, "udmabuf") == 0))
			report(rp, lineno, "EXPORT_BLOB", got, expect, strcmp(got, expect) == 0,
			       now_ms() - t0);
		else
			check_result(rp, lineno, "EXPORT_BLOB", r, expect, t0);
	} else if (strcmp(tok[0], "stats") == 0) {
		struct vgb_wire_stats_global g;
		struct vgb_wire_stats_client *rows = NULL;
		r = vgb_client_stats(rp->c, VGB_STATS_SELF_ONLY, &g, &rows);
		check_result(rp, lineno, "STATS", r, expect, t0);
		if (r == 0 && g.n_clients == 1)
			printf("      stats: %u windows, %u resources, blobs vfio-dmabuf %u udmabuf %u "
			       "cpu-view %u, %llu gpu commands (%llu errors), %llu fences\n",
			       rows[0].windows, rows[0].resources, rows[0].blobs_vfio_dmabuf,
			       rows[0].blobs_udmabuf, rows[0].blobs_cpu,
			       (unsigned long long)rows[0].gpu_commands,
			       (unsigned long long)rows[0].gpu_errors,
			       (unsigned long long)rows[0].fences_completed);
		free(rows);
	} else if (strcmp(tok[0], "gpu") == 0 || strcmp(tok[0], "cursor") == 0) {
		struct kv kv = { .n = 0 };
		uint8_t resp[512];
		size_t rlen = 0;
		const char *why;
		ssize_t len;
		int type;
		char what[64];

		if (n < 2)
			BAD("usage: gpu COMMAND [key=value ...]");
		type = vgb_guest_cmd_parse(tok[1]);
		if (type < 0 && parse_u32(tok[1], (uint32_t *)&type) < 0)
			BAD("unknown command '%s'", tok[1]);
		for (unsigned k = 2; k < n; k++) {
			char *eq = strchr(tok[k], '=');
			if (!eq)
				BAD("'%s' is not key=value", tok[k]);
			*eq = 0;
			kv.key[kv.n] = tok[k];
			kv.val[kv.n] = eq + 1;
			kv.used[kv.n++] = false;
		}
		len = build_gpu(rp, (uint32_t)type, &kv, &why);
		if (len == -ENOENT)
			BAD("%s: unknown key '%s'", tok[1], why);
		if (len < 0)
			BAD("%s: %s", tok[1], why);
		r = vgb_client_gpu_cmd(rp->c,
				       tok[0][0] == 'c' ? VGB_GPU_QUEUE_CURSOR : VGB_GPU_QUEUE_CONTROL,
				       rp->cmd, (size_t)len, resp, sizeof(resp), &rlen);
		snprintf(what, sizeof(what), "%s", vgb_guest_cmd_name((uint32_t)type) ?
			 vgb_guest_cmd_name((uint32_t)type) : tok[1]);
		if (r < 0) {
			check_result(rp, lineno, what, r, expect, t0);
		} else {
			const char *got = vgb_guest_resp_name(vgb_guest_resp_type(resp, rlen));
			bool ok = expect ? strcasecmp(got, expect) == 0 : true;
			report(rp, lineno, what, got, expect ? expect : "", ok, now_ms() - t0);
		}
	} else {
		BAD("unknown request '%s'", tok[0]);
	}
#undef BAD
	return (int)i + 1;
}

static int run_lines(struct replay *rp, unsigned from, unsigned to, unsigned depth)
{
	unsigned i = from;

	while (i < to) {
		int next = run_line(rp, i, to, depth);
		if (next < 0)
			return -1;
		i = (unsigned)next;
	}
	return 0;
}

static int load(struct replay *rp, const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (!f)
		return -errno;
	rp->lines = calloc(MAX_LINES, sizeof(*rp->lines));
	if (!rp->lines) {
		if (f != stdin)
			fclose(f);
		return -ENOMEM;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		if (rp->n_lines == MAX_LINES || len >= 4096) {
			free(line);
			if (f != stdin)
				fclose(f);
			return -E2BIG;
		}
		rp->lines[rp->n_lines] = strdup(line);
		if (!rp->lines[rp->n_lines++])
			break;
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return 0;
}

int vgb_ctl_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct replay rp = { .verbose = true };
	char path[108];
	double t0;
	int o, r, status = 1;

	vgb_ctl_default_socket(path, sizeof(path));
	optind = 1;
	while ((o = getopt_long(argc, argv, "s:qh", longopts, NULL)) != -1) {
		switch (o) {
		case 's':
			snprintf(path, sizeof(path), "%s", optarg);
			break;
		case 'q':
			rp.verbose = false;
			break;
		case 'h':
			printf("Usage: vgbctl replay [--socket PATH] [--quiet] FILE\n"
			       "Plays a scripted guest (docs/replay.md); FILE '-' reads stdin.\n"
			       "Exits 1 when an expectation ('=> ...') fails.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "Usage: vgbctl replay [--socket PATH] [--quiet] FILE\n");
		return 2;
	}
	r = load(&rp, argv[optind]);
	if (r < 0) {
		fprintf(stderr, "replay: %s: %s\n", argv[optind], strerror(-r));
		goto out;
	}
	rp.cmd_cap = sizeof(struct virtio_gpu_resource_create_blob) +
		     MAX_ENTRIES * sizeof(struct virtio_gpu_mem_entry);
	rp.cmd = malloc(rp.cmd_cap);
	rp.ents = calloc(MAX_ENTRIES, sizeof(*rp.ents));
	if (!rp.cmd || !rp.ents)
		goto out;
	r = vgb_client_connect(path, &rp.c);
	if (r < 0) {
		fprintf(stderr, "replay: cannot connect to %s: %s\n", path, strerror(-r));
		goto out;
	}
	r = vgb_client_hello(rp.c, NULL);
	if (r < 0) {
		fprintf(stderr, "replay: HELLO: %s\n", strerror(-r));
		goto out;
	}
	t0 = now_ms();
	if (run_lines(&rp, 0, rp.n_lines, 0) < 0)
		goto out;
	printf("replay: %u requests in %.1f ms, %u failed\n", rp.requests, now_ms() - t0,
	       rp.failures);
	status = rp.failures ? 1 : 0;
out:
	for (unsigned i = 0; i < rp.n_named; i++) {
		munmap(rp.named[i].map, rp.named[i].size);
		close(rp.named[i].fd);
	}
	for (unsigned i = 0; i < rp.n_lines; i++)
		free(rp.lines[i]);
	free(rp.lines);
	free(rp.cmd);
	free(rp.ents);
	vgb_client_destroy(rp.c);
	return status;
}
