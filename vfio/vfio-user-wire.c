/* SPDX-License-Identifier: MIT */
/* vfio-user framing shared by the client backend and the server: send, VERSION JSON. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "vgb/util.h"
#include "vgb/vfio-user.h"

#define JSON_MAX_DEPTH 8
#define SEND_MAX_FDS 16u

void vgb_vfio_user_caps_default(struct vgb_vfio_user_caps *caps)
{
	*caps = (struct vgb_vfio_user_caps){
		.max_msg_fds = VGB_VFIO_USER_DEFAULT_MAX_FDS,
		.max_data_xfer_size = VGB_VFIO_USER_DEFAULT_MAX_XFER,
		.max_dma_maps = VGB_VFIO_USER_DEFAULT_MAX_DMA_MAPS,
		.pgsizes = VGB_VFIO_USER_DEFAULT_PGSIZES,
	};
}

const char *vgb_vfio_user_cmd_name(uint16_t cmd)
{
	static const char *const names[] = {
		[VGB_VFIO_USER_VERSION] = "VERSION",
		[VGB_VFIO_USER_DMA_MAP] = "DMA_MAP",
		[VGB_VFIO_USER_DMA_UNMAP] = "DMA_UNMAP",
		[VGB_VFIO_USER_DEVICE_GET_INFO] = "DEVICE_GET_INFO",
		[VGB_VFIO_USER_DEVICE_GET_REGION_INFO] = "DEVICE_GET_REGION_INFO",
		[VGB_VFIO_USER_DEVICE_GET_REGION_IO_FDS] = "DEVICE_GET_REGION_IO_FDS",
		[VGB_VFIO_USER_DEVICE_GET_IRQ_INFO] = "DEVICE_GET_IRQ_INFO",
		[VGB_VFIO_USER_DEVICE_SET_IRQS] = "DEVICE_SET_IRQS",
		[VGB_VFIO_USER_REGION_READ] = "REGION_READ",
		[VGB_VFIO_USER_REGION_WRITE] = "REGION_WRITE",
		[VGB_VFIO_USER_DMA_READ] = "DMA_READ",
		[VGB_VFIO_USER_DMA_WRITE] = "DMA_WRITE",
		[VGB_VFIO_USER_DEVICE_RESET] = "DEVICE_RESET",
		[VGB_VFIO_USER_REGION_WRITE_MULTI] = "REGION_WRITE_MULTI",
		[VGB_VFIO_USER_DEVICE_FEATURE] = "DEVICE_FEATURE",
	};

	return cmd < VGB_ARRAY_SIZE(names) && names[cmd] ? names[cmd] : "?";
}

/* ---- a small JSON reader: enough to walk any object and pick the capability numbers ---- */

struct json {
	const char *p, *end;
	struct vgb_vfio_user_caps caps;
};

static void skip_ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

/* A string; its raw (unescaped) text is copied into @key when it fits, for key matching. */
static int json_string(struct json *j, char *key, size_t key_size)
{
	size_t n = 0;

	if (j->p >= j->end || *j->p != '"')
		return -EINVAL;
	j->p++;
	while (j->p < j->end && *j->p != '"') {
		char c = *j->p++;

		if ((unsigned char)c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			if (j->p >= j->end)
				return -EINVAL;
			j->p++; /* \uXXXX's digits are plain characters for our purpose */
			c = '?';
		}
		if (key && n + 1 < key_size)
			key[n++] = c;
	}
	if (j->p >= j->end)
		return -EINVAL;
	j->p++;
	if (key)
		key[n] = '\0';
	return 0;
}

/* A number; *ret gets it when it is a non-negative integer below 2^63, else -ERANGE. */
static int json_number(struct json *j, uint64_t *ret)
{
	const char *start = j->p;
	bool integer = true, neg = false;
	uint64_t v = 0;

	if (j->p < j->end && *j->p == '-') {
		neg = true;
		j->p++;
	}
	if (j->p >= j->end || *j->p < '0' || *j->p > '9')
		return -EINVAL;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		if (v > (INT64_MAX - 9) / 10)
			integer = false;
		else
			v = v * 10 + (uint64_t)(*j->p - '0');
		j->p++;
	}
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) {
		integer = false;
		j->p++;
		while (j->p < j->end && strchr("0123456789+-eE", *j->p) && *j->p)
			j->p++;
	}
	if (j->p == start)
		return -EINVAL;
	*ret = v;
	return integer && !neg ? 0 : -ERANGE;
}

static int json_value(struct json *j, int depth, int where);

/* where: 0 top level, 1 inside the top object, 2 inside "capabilities". */
static int json_object(struct json *j, int depth, int where)
{
	if (depth > JSON_MAX_DEPTH)
		return -EINVAL;
	j->p++; /* '{' */
	skip_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		char key[32];
		int r, child = -1;

		skip_ws(j);
		r = json_string(j, key, sizeof(key));
		if (r < 0)
			return r;
		skip_ws(j);
		if (j->p >= j->end || *j->p != ':')
			return -EINVAL;
		j->p++;
		skip_ws(j);
		if (where == 1 && strcmp(key, "capabilities") == 0) {
			child = 2;
		} else if (where == 2) {
			uint64_t *num = NULL;

			if (strcmp(key, "max_msg_fds") == 0)
				num = &j->caps.max_msg_fds;
			else if (strcmp(key, "max_data_xfer_size") == 0)
				num = &j->caps.max_data_xfer_size;
			else if (strcmp(key, "max_dma_maps") == 0)
				num = &j->caps.max_dma_maps;
			else if (strcmp(key, "pgsizes") == 0)
				num = &j->caps.pgsizes;
			else if (strcmp(key, "migration") == 0)
				j->caps.migration = true;
			if (num) {
				r = json_number(j, num);
				if (r < 0)
					return -EINVAL;
				goto next;
			}
		}
		r = json_value(j, depth + 1, child);
		if (r < 0)
			return r;
next:
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			return 0;
		}
		return -EINVAL;
	}
}

static int json_value(struct json *j, int depth, int where)
{
	uint64_t ignored;
	int r;

	if (depth > JSON_MAX_DEPTH || j->p >= j->end)
		return -EINVAL;
	switch (*j->p) {
	case '{':
		return json_object(j, depth, where);
	case '[':
		j->p++;
		skip_ws(j);
		if (j->p < j->end && *j->p == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			skip_ws(j);
			r = json_value(j, depth + 1, -1);
			if (r < 0)
				return r;
			skip_ws(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->end && *j->p == ']') {
				j->p++;
				return 0;
			}
			return -EINVAL;
		}
	case '"':
		return json_string(j, NULL, 0);
	case 't':
	case 'f':
	case 'n': {
		static const char *const words[] = { "true", "false", "null" };

		for (size_t i = 0; i < VGB_ARRAY_SIZE(words); i++) {
			size_t n = strlen(words[i]);

			if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
				j->p += n;
				return 0;
			}
		}
		return -EINVAL;
	}
	default:
		r = json_number(j, &ignored);
		return r == -ERANGE ? 0 : r;
	}
}

int vgb_vfio_user_parse_caps(const char *json, size_t len, struct vgb_vfio_user_caps *caps)
{
	const char *nul = json ? memchr(json, '\0', len) : NULL;
	struct json j;
	int r;

	if (!nul || !caps)
		return -EINVAL;
	j.p = json;
	j.end = nul;
	vgb_vfio_user_caps_default(&j.caps);
	skip_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return -EINVAL;
	r = json_object(&j, 1, 1);
	if (r < 0)
		return r;
	skip_ws(&j);
	if (j.p != j.end)
		return -EINVAL;
	*caps = j.caps;
	return 0;
}

/* ---- sending ---- */

static int wait_for(int sock, short events, int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = events };
	int r;

	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	return 0;
}

int vgb_vfio_user_send(int sock, const struct vgb_vfio_user_hdr *hdr, const struct iovec *iov,
		       int n_iov, const int *fds, size_t n_fds, int timeout_ms)
{
	struct iovec vec[1 + 8];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(SEND_MAX_FDS * sizeof(int))];
	} ctl;
	size_t total = sizeof(*hdr);
	struct msghdr mh = { .msg_iov = vec };
	bool first = true;
	int n = 0;

	if (!hdr || n_iov < 0 || n_iov > 8 || n_fds > SEND_MAX_FDS || (n_fds && !fds))
		return -EINVAL;
	vec[n++] = (struct iovec){ (void *)hdr, sizeof(*hdr) };
	for (int i = 0; i < n_iov; i++) {
		if (!iov[i].iov_len)
			continue;
		vec[n++] = iov[i];
		total += iov[i].iov_len;
	}
	if (total != hdr->size)
		return -EINVAL;
	mh.msg_iovlen = (size_t)n;

	while (mh.msg_iovlen) {
		ssize_t sent;

		if (first && n_fds) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
			memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
		} else {
			mh.msg_control = NULL;
			mh.msg_controllen = 0;
		}
		sent = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			r = wait_for(sock, POLLOUT, timeout_ms);
			if (r < 0)
				return r;
			continue;
		}
		first = false;
		/* Advance past what went out; the fds went with the first byte. */
		while (mh.msg_iovlen && (size_t)sent >= mh.msg_iov->iov_len) {
			sent -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen && sent) {
			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + sent;
			mh.msg_iov->iov_len -= (size_t)sent;
		}
	}
	return 0;
}
