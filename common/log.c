/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vgb/log.h"
#include "vgb/util.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static int current_level = -1;
static vgb_log_fn writer;
static void *writer_data;

int vgb_log_parse_level(const char *s)
{
	for (size_t i = 0; i < VGB_ARRAY_SIZE(level_names); i++)
		if (s && strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

enum vgb_log_level vgb_log_get_level(void)
{
	if (current_level < 0) {
		int l = vgb_log_parse_level(getenv("VGB_LOG"));
		current_level = l >= 0 ? l : VGB_LOG_INFO;
	}
	return (enum vgb_log_level)current_level;
}

void vgb_log_set_level(enum vgb_log_level level)
{
	current_level = level;
}

void vgb_log_set_writer(vgb_log_fn fn, void *data)
{
	writer = fn;
	writer_data = data;
}

static void vlog(enum vgb_log_level level, const char *file, int line, const char *suffix,
		 const char *fmt, va_list ap)
{
	char msg[1024];
	int n;

	if ((int)level > (int)vgb_log_get_level())
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n >= 0 && suffix && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, "%s", suffix);
	if (writer) {
		writer(level, file, line, msg, writer_data);
		return;
	}
	/* Source locations help whoever debugs, not the user reading an error: only at debug. */
	if (vgb_log_get_level() < VGB_LOG_DEBUG) {
		fprintf(stderr, "vgb %s: %s\n", level_names[level], msg);
		return;
	}
	const char *base = strrchr(file, '/');
	fprintf(stderr, "vgb %s %s:%d: %s\n", level_names[level], base ? base + 1 : file, line, msg);
}

void vgb_log_full(enum vgb_log_level level, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, file, line, NULL, fmt, ap);
	va_end(ap);
}

int vgb_log_errno_full(enum vgb_log_level level, int r, const char *file, int line,
		       const char *fmt, ...)
{
	char suffix[128];
	va_list ap;

	snprintf(suffix, sizeof(suffix), ": %s", strerror(r < 0 ? -r : r));
	va_start(ap, fmt);
	vlog(level, file, line, suffix, fmt, ap);
	va_end(ap);
	return r;
}

bool vgb_ratelimit_ok(struct vgb_ratelimit *rl)
{
	uint64_t now = vgb_now_ns();

	if (rl->begin_ns == 0 || now - rl->begin_ns > (uint64_t)rl->interval_ms * 1000000u) {
		if (rl->missed)
			vgb_log(VGB_LOG_WARN, "%u similar messages suppressed", rl->missed);
		rl->begin_ns = now;
		rl->printed = 0;
		rl->missed = 0;
	}
	if (rl->printed < rl->burst) {
		rl->printed++;
		return true;
	}
	rl->missed++;
	return false;
}
