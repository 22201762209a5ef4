/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

static unsigned planned, current, failed;
static bool lazy;

void tap_plan(unsigned n)
{
	planned = n;
	printf("TAP version 13\n1..%u\n", n);
	fflush(stdout);
}

void tap_plan_lazy(void)
{
	lazy = true;
	printf("TAP version 13\n");
	fflush(stdout);
}

void tap_skip_all(const char *fmt, ...)
{
	va_list ap;

	printf("1..0 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(0);
}

void tap_bail(const char *fmt, ...)
{
	va_list ap;

	printf("Bail out! ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

static bool vreport(bool cond, const char *directive, const char *fmt, va_list ap)
{
	current++;
	if (!cond)
		failed++;
	printf("%s %u - ", cond ? "ok" : "not ok", current);
	vprintf(fmt, ap);
	if (directive)
		printf(" # %s", directive);
	printf("\n");
	fflush(stdout);
	return cond;
}

bool tap_ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(cond, NULL, fmt, ap);
	va_end(ap);
	return cond;
}

void tap_skip(const char *why, const char *fmt, ...)
{
	char directive[256];
	va_list ap;

	snprintf(directive, sizeof(directive), "SKIP %s", why);
	va_start(ap, fmt);
	vreport(true, directive, fmt, ap);
	va_end(ap);
}

bool tap_todo(bool cond, const char *why, const char *fmt, ...)
{
	char directive[256];
	va_list ap;

	snprintf(directive, sizeof(directive), "TODO %s", why);
	va_start(ap, fmt);
	current++;
	/* Not counted in `failed`: the failure is expected. A pass is reported as one, and meson
	 * turns it into an unexpected pass. */
	printf("%s %u - ", cond ? "ok" : "not ok", current);
	vprintf(fmt, ap);
	printf(" # %s\n", directive);
	fflush(stdout);
	va_end(ap);
	return cond;
}

void tap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

unsigned tap_failures(void)
{
	return failed;
}

int tap_done(void)
{
	if (lazy)
		printf("1..%u\n", current);
	else if (current != planned) {
		printf("# planned %u tests but ran %u\n", planned, current);
		failed++;
	}
	fflush(stdout);
	return failed ? 1 : 0;
}

#define REPORT(cond, ...)                          \
	({                                         \
		va_list ap_;                       \
		va_start(ap_, fmt);                \
		bool r_ = vreport(cond, NULL, fmt, ap_); \
		va_end(ap_);                       \
		if (!r_)                           \
			__VA_ARGS__;               \
		r_;                                \
	})

bool tap_is_int_(long long got, long long want, const char *gs, const char *file, int line,
		 const char *fmt, ...)
{
	return REPORT(got == want,
		      tap_diag("%s:%d: %s = %lld (%s), want %lld (%s)", file, line, gs, got,
			       got < 0 && got > -4096 ? strerror((int)-got) : "-", want,
			       want < 0 && want > -4096 ? strerror((int)-want) : "-"));
}

bool tap_is_uint_(unsigned long long got, unsigned long long want, const char *gs,
		  const char *file, int line, const char *fmt, ...)
{
	return REPORT(got == want, tap_diag("%s:%d: %s = %llu (0x%llx), want %llu (0x%llx)", file,
					    line, gs, got, got, want, want));
}

bool tap_is_str_(const char *got, const char *want, const char *gs, const char *file, int line,
		 const char *fmt, ...)
{
	bool eq = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);

	return REPORT(eq, tap_diag("%s:%d: %s = \"%s\", want \"%s\"", file, line, gs,
				   got ? got : "(null)", want ? want : "(null)"));
}

bool tap_is_mem_(const void *got, const void *want, size_t len, const char *gs, const char *file,
		 int line, const char *fmt, ...)
{
	size_t first = len;

	for (size_t i = 0; i < len; i++)
		if (((const unsigned char *)got)[i] != ((const unsigned char *)want)[i]) {
			first = i;
			break;
		}
	return REPORT(first == len,
		      tap_diag("%s:%d: %s differs at byte %zu of %zu: 0x%02x, want 0x%02x", file,
			       line, gs, first, len, ((const unsigned char *)got)[first],
			       ((const unsigned char *)want)[first]));
}
