/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench.h"
#include "leak.h"
#include "tap.h"
#include "vgb/util.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void bench_stat_compute(uint64_t *ns, size_t n, struct bench_stat *ret)
{
	size_t rank;

	*ret = (struct bench_stat){ .n = n };
	if (!n)
		return;
	qsort(ns, n, sizeof(*ns), cmp_u64);
	ret->min_ns = ns[0];
	ret->median_ns = n % 2 ? ns[n / 2] : (ns[n / 2 - 1] + ns[n / 2]) / 2;
	/* nearest rank: the smallest sample with at least 99% of the samples at or below it */
	rank = (n * 99 + 99) / 100;
	ret->p99_ns = ns[rank - 1];
}

static bench_fn cur_prep;

static int run_pairs(bench_fn a, bench_fn b, void *data, unsigned warmup, unsigned reps,
		     uint64_t *sa, uint64_t *sb);

static int timed(bench_fn fn, void *data, uint64_t *ret_ns)
{
	uint64_t t0;
	int r;

	if (!fn)
		return 0;
	if (cur_prep && (r = cur_prep(data)) < 0)
		return r;
	t0 = now_ns();
	r = fn(data);
	*ret_ns = now_ns() - t0;
	return r;
}

int bench_pair(bench_fn a, bench_fn b, void *data, unsigned warmup, unsigned reps,
	       struct bench_stat *ret_a, struct bench_stat *ret_b)
{
	return bench_pair_prep(a, b, NULL, data, warmup, reps, ret_a, ret_b);
}

int bench_pair_prep(bench_fn a, bench_fn b, bench_fn prep, void *data, unsigned warmup,
		    unsigned reps, struct bench_stat *ret_a, struct bench_stat *ret_b)
{
	_cleanup_free_ uint64_t *sa = calloc(reps ? reps : 1, sizeof(*sa));
	_cleanup_free_ uint64_t *sb = calloc(reps ? reps : 1, sizeof(*sb));
	int r;

	if (!sa || !sb)
		return -ENOMEM;
	cur_prep = prep;
	r = run_pairs(a, b, data, warmup, reps, sa, sb);
	cur_prep = NULL;
	if (r < 0)
		return r;
	if (ret_a)
		bench_stat_compute(sa, a ? reps : 0, ret_a);
	if (ret_b)
		bench_stat_compute(sb, b ? reps : 0, ret_b);
	return 0;
}

static int run_pairs(bench_fn a, bench_fn b, void *data, unsigned warmup, unsigned reps,
		     uint64_t *sa, uint64_t *sb)
{
	uint64_t dummy;
	int r;

	for (unsigned i = 0; i < warmup; i++) {
		if ((r = timed(a, data, &dummy)) < 0 || (r = timed(b, data, &dummy)) < 0)
			return r;
	}
	for (unsigned i = 0; i < reps; i++) {
		/* Alternate the order so neither always runs on the caches the other warmed. */
		if (i % 2 == 0) {
			if ((r = timed(a, data, &sa[i])) < 0 || (r = timed(b, data, &sb[i])) < 0)
				return r;
		} else {
			if ((r = timed(b, data, &sb[i])) < 0 || (r = timed(a, data, &sa[i])) < 0)
				return r;
		}
	}
	return 0;
}

char *bench_fmt_ns(char *buf, size_t len, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, len, "%llu ns", (unsigned long long)ns);
	else if (ns < 10000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	return buf;
}

char *bench_fmt_stat(char *buf, size_t len, const struct bench_stat *s)
{
	char a[32], b[32];

	snprintf(buf, len, "%s / %s", bench_fmt_ns(a, sizeof(a), s->median_ns),
		 bench_fmt_ns(b, sizeof(b), s->p99_ns));
	return buf;
}

char *bench_fmt_rate(char *buf, size_t len, double amount, uint64_t ns, const char *unit)
{
	double rate = ns ? amount * 1e9 / (double)ns : 0;

	if (rate >= 1e9)
		snprintf(buf, len, "%.2f G%s", rate / 1e9, unit);
	else if (rate >= 1e6)
		snprintf(buf, len, "%.2f M%s", rate / 1e6, unit);
	else if (rate >= 1e3)
		snprintf(buf, len, "%.2f k%s", rate / 1e3, unit);
	else
		snprintf(buf, len, "%.2f %s", rate, unit);
	return buf;
}

enum bench_goal bench_goal_at_least(double ratio, double min)
{
	return ratio >= min ? BENCH_GOAL_MET : BENCH_GOAL_NOT_MET;
}

static const char *met_name(enum bench_goal met)
{
	switch (met) {
	case BENCH_GOAL_MET: return "met";
	case BENCH_GOAL_NOT_MET: return "NOT MET";
	case BENCH_GOAL_NONE: break;
	}
	return "-";
}

void bench_report(const struct bench_row *row)
{
	const char *path = getenv("VGB_BENCH_ROWS");
	char ratio[32] = "-";

	if (row->ratio >= 10)
		snprintf(ratio, sizeof(ratio), "%.1fx", row->ratio);
	else if (row->ratio >= 0.1)
		snprintf(ratio, sizeof(ratio), "%.2fx", row->ratio);
	else if (row->ratio >= 0)
		snprintf(ratio, sizeof(ratio), "%.2gx", row->ratio);
	printf("# %-10s | %-34s | %-24s | %-24s | %8s | %-8s | %-7s | %s\n", row->bench, row->name,
	       row->ours, row->base, ratio, row->goal ? row->goal : "-", met_name(row->met),
	       row->notes);
	fflush(stdout);
	if (path && *path) {
		FILE *f = fopen(path, "ae");

		if (!f) {
			fprintf(stderr, "bench: %s: %m\n", path);
			return;
		}
		fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row->bench, row->name, row->ours,
			row->base, ratio, row->goal ? row->goal : "-", met_name(row->met),
			row->notes[0] ? row->notes : "-");
		fclose(f);
	}
}

int bench_count_vmas(void)
{
	/* leak.c's count leaves out the ASan allocator's range, which splits as the heap grows. */
	int n = leak_count_maps();

	return n < 0 ? -EIO : n;
}

void bench_check_vmas(int before, const char *what)
{
#if defined(__SANITIZE_ADDRESS__)
	(void)before;
	tap_skip("ASan's quarantine keeps freed large blocks mapped", "%s", what);
#else
	tap_is_int(bench_count_vmas(), before, "%s", what);
#endif
}

int bench_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the DIR's own */
}

uint64_t bench_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

void bench_shuffle(uint32_t *v, size_t n, uint64_t *state)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(bench_rand(state) % i);
		uint32_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

void bench_print_machine(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256], model[128] = "unknown";
	struct utsname u;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (f) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');

			if (!strncmp(line, "model name", 10) && colon) {
				snprintf(model, sizeof(model), "%s", colon + 2);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		}
		fclose(f);
	}
	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	printf("# machine: %s, %ld CPUs online, Linux %s\n", model, ncpu, u.release);
	fflush(stdout);
}
