/* SPDX-License-Identifier: MIT */
#ifndef VGB_BENCH_BENCH_H
#define VGB_BENCH_BENCH_H

/*
 * The bench harness. A bench times its fast path and a baseline in the same process,
 * interleaved repetition by repetition (so drift on a shared machine hits both alike), with
 * CLOCK_MONOTONIC only, and reports the median and p99 of each and their ratio.
 *
 * Results are rows of one table: printed as "# " lines (the binary's stdout is TAP) and, when
 * $VGB_BENCH_ROWS names a file, appended to it as tab-separated lines for scripts/bench.
 * Goals are reported as met / not met, never asserted: only self-checks of correctness are
 * TAP tests, so a broken fast path fails the bench and a slow one does not.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_stat {
	uint64_t median_ns;
	uint64_t p99_ns;  /* nearest rank; with fewer than 100 samples this is the maximum */
	uint64_t min_ns;
	size_t n;
};

/* One timed call. Returns 0 or -errno; an error stops the measurement. */
typedef int (*bench_fn)(void *data);

/*
 * Runs @a and @b alternately (@warmup untimed rounds, then @reps timed rounds, a then b in
 * even rounds and b then a in odd ones). Either may be NULL. Returns 0 or the first -errno.
 */
int bench_pair(bench_fn a, bench_fn b, void *data, unsigned warmup, unsigned reps,
	       struct bench_stat *ret_a, struct bench_stat *ret_b);

/* bench_pair() with @prep (may be NULL) run untimed before every timed call of @a or @b
 * (e.g. to evict the caches). */
int bench_pair_prep(bench_fn a, bench_fn b, bench_fn prep, void *data, unsigned warmup,
		    unsigned reps, struct bench_stat *ret_a, struct bench_stat *ret_b);

/* Median / p99 / min of @n samples (sorted in place). */
void bench_stat_compute(uint64_t *ns, size_t n, struct bench_stat *ret);

enum bench_goal {
	BENCH_GOAL_NONE = -1,
	BENCH_GOAL_NOT_MET = 0,
	BENCH_GOAL_MET = 1,
};

struct bench_row {
	const char *bench;   /* "cpu-view", "copy", ... */
	const char *name;    /* the case */
	char ours[64];       /* e.g. "215 us / 402 us" (median / p99) */
	char base[64];
	double ratio;        /* how many times better than the baseline; < 0: none */
	const char *goal;    /* "x >= 10", or NULL */
	enum bench_goal met;
	char notes[256];
};

/* Prints @row as a "# " line and appends it to $VGB_BENCH_ROWS. */
void bench_report(const struct bench_row *row);

/* "1.23 ms" etc. into @buf. Returns @buf. */
char *bench_fmt_ns(char *buf, size_t len, uint64_t ns);
/* "<median> / <p99>" of @s into @buf. */
char *bench_fmt_stat(char *buf, size_t len, const struct bench_stat *s);
/* "<rate> <unit>" (rate = @amount per second at @ns) with an SI prefix into @buf. */
char *bench_fmt_rate(char *buf, size_t len, double amount, uint64_t ns, const char *unit);

/* A ratio against a goal of at least @min: MET or NOT_MET. */
enum bench_goal bench_goal_at_least(double ratio, double min);

/* Lines of /proc/self/maps (VMAs; under ASan without its allocator's range), or -errno. */
int bench_count_vmas(void);
/*
 * Reports one TAP test: the process has @before VMAs again. Under ASan it is a skip: its
 * quarantine keeps freed large blocks mapped for a while, so the count says nothing there
 * (the per-view checks, with no allocation between them, still run).
 */
void bench_check_vmas(int before, const char *what);

/* Open fds of the process, or -errno. */
int bench_count_fds(void);

/* xorshift64* pseudo-random numbers with a fixed seed, so every run measures the same case. */
uint64_t bench_rand(uint64_t *state);
/* Fisher-Yates shuffle of @n uint32s. */
void bench_shuffle(uint32_t *v, size_t n, uint64_t *state);

/* Prints the machine (CPU model, kernel, date) as "# " lines. */
void bench_print_machine(void);

#endif
