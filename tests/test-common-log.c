/* SPDX-License-Identifier: MIT */
/* Logging: level filter, errno suffix, writer capture, rate limiting. */
#include <errno.h>
#include <string.h>

#include "tap.h"
#include "vgb/log.h"

static char last[1024];
static int calls;
static enum vgb_log_level last_level;

static void capture(enum vgb_log_level level, const char *file, int line, const char *msg,
		    void *data)
{
	(void)file;
	(void)line;
	(void)data;
	calls++;
	last_level = level;
	snprintf(last, sizeof(last), "%s", msg);
}

int main(void)
{
	tap_plan(8);
	vgb_log_set_writer(capture, NULL);

	vgb_log_set_level(VGB_LOG_INFO);
	vgb_log(VGB_LOG_DEBUG, "hidden %d", 1);
	tap_is_int(calls, 0, "debug is filtered at level info");
	vgb_log(VGB_LOG_WARN, "shown %d", 2);
	tap_is_str(last, "shown 2", "warn passes at level info");

	int r = vgb_log_errno(VGB_LOG_ERROR, -ENOENT, "open %s", "x");
	tap_is_int(r, -ENOENT, "log_errno returns its errno");
	tap_is_str(last, "open x: No such file or directory", "log_errno appends strerror");

	tap_is_int(vgb_log_parse_level("debug"), VGB_LOG_DEBUG, "parse debug");
	tap_is_int(vgb_log_parse_level("loud"), -EINVAL, "parse rejects unknown levels");

	calls = 0;
	for (int i = 0; i < 100; i++)
		vgb_log_ratelimited(VGB_LOG_WARN, "guest did %d", i);
	tap_is_int(calls, 10, "rate limit lets 10 of 100 through");
	tap_ok(last_level == VGB_LOG_WARN, "rate-limited messages keep their level");

	vgb_log_set_writer(NULL, NULL);
	return tap_done();
}
