/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_LOGCAP_H
#define VGB_TESTS_LOGCAP_H

/*
 * Captures what vgb_log would print (vgb_log_set_writer), at every level, so a test can check
 * that a path logged nothing above debug ("not supported" is never a warning).
 */

#include "vgb/log.h"

/* Starts capturing at level debug; forgets earlier messages. */
void logcap_start(void);
/* Restores stderr and the previous level. */
void logcap_stop(void);
/* Messages captured at @level or more severe (lower value) since logcap_start(). */
unsigned logcap_count_at_or_above(enum vgb_log_level level);
/* All messages captured since logcap_start(). */
unsigned logcap_count(void);
/* The last message above debug, or "" (for diagnostics). */
const char *logcap_last_loud(void);

#endif
