/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "logcap.h"

static unsigned counts[VGB_LOG_DEBUG + 1];
static char last_loud[512];
static enum vgb_log_level saved_level;

static void capture(enum vgb_log_level level, const char *file, int line, const char *msg,
		    void *data)
{
	(void)data;
	if ((unsigned)level <= VGB_LOG_DEBUG)
		counts[level]++;
	if (level < VGB_LOG_DEBUG)
		snprintf(last_loud, sizeof(last_loud), "%s:%d: %s", file, line, msg);
}

void logcap_start(void)
{
	for (unsigned i = 0; i <= VGB_LOG_DEBUG; i++)
		counts[i] = 0;
	last_loud[0] = '\0';
	saved_level = vgb_log_get_level();
	vgb_log_set_level(VGB_LOG_DEBUG);
	vgb_log_set_writer(capture, NULL);
}

void logcap_stop(void)
{
	vgb_log_set_writer(NULL, NULL);
	vgb_log_set_level(saved_level);
}

unsigned logcap_count_at_or_above(enum vgb_log_level level)
{
	unsigned n = 0;

	for (unsigned i = 0; i <= (unsigned)level && i <= VGB_LOG_DEBUG; i++)
		n += counts[i];
	return n;
}

unsigned logcap_count(void)
{
	return logcap_count_at_or_above(VGB_LOG_DEBUG);
}

const char *logcap_last_loud(void)
{
	return last_loud;
}
