/* SPDX-License-Identifier: MIT */
#ifndef VGB_LOG_H
#define VGB_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum vgb_log_level {
	VGB_LOG_ERROR = 0,
	VGB_LOG_WARN,
	VGB_LOG_INFO,
	VGB_LOG_DEBUG,
};

/* Messages above @level are dropped. Default: VGB_LOG_INFO, or $VGB_LOG (error|warn|info|debug). */
void vgb_log_set_level(enum vgb_log_level level);
enum vgb_log_level vgb_log_get_level(void);
/* Parses "error", "warn", "info", "debug". Returns the level or -EINVAL. */
int vgb_log_parse_level(const char *s);

/*
 * Replaces the writer (default: stderr). Tests use it to capture what would be logged; the
 * callback sees every message that passes the level filter, already formatted, without a newline.
 * @fn NULL restores stderr.
 */
typedef void (*vgb_log_fn)(enum vgb_log_level level, const char *file, int line, const char *msg,
			   void *data);
void vgb_log_set_writer(vgb_log_fn fn, void *data);

void vgb_log_full(enum vgb_log_level level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Appends ": strerror(-r)". @r is a negative errno. Returns @r. */
int vgb_log_errno_full(enum vgb_log_level level, int r, const char *file, int line,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define vgb_log(level, ...) vgb_log_full(level, __FILE__, __LINE__, __VA_ARGS__)
#define vgb_log_errno(level, r, ...) vgb_log_errno_full(level, r, __FILE__, __LINE__, __VA_ARGS__)

/*
 * Rate limiting for guest-triggered messages: at most @burst messages per @interval_ms per
 * static site. Suppressed counts are reported with the next message that passes.
 */
struct vgb_ratelimit {
	unsigned interval_ms, burst;
	unsigned long long begin_ns;
	unsigned printed, missed;
};
#define VGB_RATELIMIT_INIT(ms, b) { .interval_ms = (ms), .burst = (b) }
/* Returns true when the caller may log now. */
bool vgb_ratelimit_ok(struct vgb_ratelimit *rl);

#define vgb_log_ratelimited(level, ...)                                              \
	do {                                                                        \
		static struct vgb_ratelimit _rl_ = VGB_RATELIMIT_INIT(5000, 10);     \
		if (vgb_ratelimit_ok(&_rl_))                                        \
			vgb_log(level, __VA_ARGS__);                                \
	} while (0)

#endif
