/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_TAP_H
#define VGB_TESTS_TAP_H

/*
 * Minimal TAP 13 producer. Each test binary calls tap_plan(n) (or tap_plan_lazy() and
 * tap_done()), then reports with the checks below. Diagnostics go out as "# " lines.
 * tap_done() returns the exit status: 0 when every test passed, 1 otherwise.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void tap_plan(unsigned n);
void tap_plan_lazy(void);      /* print the plan at tap_done() */
/* Prints "1..0 # SKIP why" and exits 0. */
__attribute__((noreturn)) void tap_skip_all(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void tap_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tap_skip(const char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A check that is known to fail until @why is fixed: "not ok N - ... # TODO why". Meson counts
 * it as an expected failure, and as an unexpected pass (a failure) once it passes, so the TODO
 * must go when the code is fixed. Returns @cond. */
bool tap_todo(bool cond, const char *why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int tap_done(void);
unsigned tap_failures(void);

/* Checks that print both values on failure. Each returns whether it passed. */
bool tap_is_int_(long long got, long long want, const char *gs, const char *file, int line,
		 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
bool tap_is_uint_(unsigned long long got, unsigned long long want, const char *gs,
		  const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
bool tap_is_str_(const char *got, const char *want, const char *gs, const char *file, int line,
		 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
bool tap_is_mem_(const void *got, const void *want, size_t len, const char *gs,
		 const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

#define tap_is_int(got, want, ...) tap_is_int_((got), (want), #got, __FILE__, __LINE__, __VA_ARGS__)
#define tap_is_uint(got, want, ...) \
	tap_is_uint_((got), (want), #got, __FILE__, __LINE__, __VA_ARGS__)
#define tap_is_str(got, want, ...) tap_is_str_((got), (want), #got, __FILE__, __LINE__, __VA_ARGS__)
#define tap_is_mem(got, want, len, ...) \
	tap_is_mem_((got), (want), (len), #got, __FILE__, __LINE__, __VA_ARGS__)
/* For errno results: prints strerror names. */
#define tap_is_errno(got, want, ...) tap_is_int((got), (want), __VA_ARGS__)

#endif
