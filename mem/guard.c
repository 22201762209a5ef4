/* SPDX-License-Identifier: MIT */
/*
 * Guarded copies (vgb/guard.h). One process-wide SIGBUS handler, installed on first use, that
 * turns a fault inside the thread's current guarded copy into a siglongjmp back to it, and
 * hands every other SIGBUS to whatever was installed before.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "vgb/guard.h"

struct guard {
	volatile sig_atomic_t active;
	uintptr_t lo[2], hi[2]; /* source and destination extents, [lo, hi) */
	sigjmp_buf jump;
};

static __thread struct guard guard;
static struct sigaction previous;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_err;
static uint64_t faults;

static bool in_guarded_range(const struct guard *g, uintptr_t addr)
{
	for (unsigned i = 0; i < 2; i++)
		if (addr >= g->lo[i] && addr < g->hi[i])
			return true;
	return false;
}

/* Whatever SIGBUS did before we were installed. */
static void chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	if (previous.sa_handler == SIG_IGN) {
		/* A sent SIGBUS stays ignored; a fault cannot be ignored (the kernel would kill us
		 * on the retry anyway), so it takes the default below. */
		if (si->si_code <= 0)
			return;
	} else if (previous.sa_handler != SIG_DFL) {
		if (previous.sa_flags & SA_SIGINFO)
			previous.sa_sigaction(sig, si, uc);
		else
			previous.sa_handler(sig);
		return;
	}
	/* The default: die by SIGBUS. The signal is blocked while we run, so it is delivered,
	 * with the default action, as soon as we return. */
	sigaction(SIGBUS, &dfl, NULL);
	raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct guard *g = &guard;

	/* si_code > 0: raised by the kernel for a fault, not sent by someone. */
	if (g->active && si && si->si_code > 0 && in_guarded_range(g, (uintptr_t)si->si_addr)) {
		g->active = 0;
		siglongjmp(g->jump, 1);
	}
	chain(sig, si, uc);
}

static void install(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_ONSTACK };

	if (sigaction(SIGBUS, NULL, &previous) < 0) {
		install_err = -errno;
		return;
	}
	/* The previous handler is chained to with the mask it asked for. */
	sa.sa_mask = previous.sa_mask;
	sigaddset(&sa.sa_mask, SIGBUS);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		install_err = -errno;
}

/* Out of line so that no local of guarded() lives across the sigsetjmp (-Wclobbered). */
static __attribute__((noinline)) void copy_rows(void *dst, size_t dst_stride, const void *src,
						 size_t src_stride, size_t row_bytes, size_t rows)
{
	for (size_t i = 0; i < rows; i++)
		memcpy((char *)dst + i * dst_stride, (const char *)src + i * src_stride, row_bytes);
}

static int guarded(void *dst, size_t dst_stride, const void *src, size_t src_stride,
		   size_t row_bytes, size_t rows)
{
	struct guard *g = &guard;
	uint64_t src_ext, dst_ext;
	int r;

	if (rows == 0 || row_bytes == 0)
		return 0;
	if (__builtin_mul_overflow((uint64_t)src_stride, (uint64_t)(rows - 1), &src_ext) ||
	    __builtin_add_overflow(src_ext, (uint64_t)row_bytes, &src_ext) ||
	    __builtin_add_overflow((uintptr_t)src, src_ext, &src_ext) ||
	    __builtin_mul_overflow((uint64_t)dst_stride, (uint64_t)(rows - 1), &dst_ext) ||
	    __builtin_add_overflow(dst_ext, (uint64_t)row_bytes, &dst_ext) ||
	    __builtin_add_overflow((uintptr_t)dst, dst_ext, &dst_ext))
		return -EINVAL;
	r = pthread_once(&install_once, install);
	if (r != 0)
		return -r;
	if (install_err < 0)
		return install_err;
	/* Guarded copies do not nest (nothing inside one calls back out). */
	if (g->active)
		return -EBUSY;
	g->lo[0] = (uintptr_t)src;
	g->hi[0] = (uintptr_t)src_ext;
	g->lo[1] = (uintptr_t)dst;
	g->hi[1] = (uintptr_t)dst_ext;
	/* Saving the mask: the handler runs with SIGBUS blocked and leaves by siglongjmp, so the
	 * mask must come back with it or the next fault would find SIGBUS blocked. */
	if (sigsetjmp(g->jump, 1)) {
		__atomic_fetch_add(&faults, 1, __ATOMIC_RELAXED);
		return -EIO;
	}
	g->active = 1;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	copy_rows(dst, dst_stride, src, src_stride, row_bytes, rows);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	g->active = 0;
	return 0;
}

int vgb_guarded_copy(void *dst, const void *src, size_t len)
{
	if ((!dst || !src) && len)
		return -EINVAL;
	return guarded(dst, 0, src, 0, len, len ? 1 : 0);
}

int vgb_guarded_copy_2d(void *dst, size_t dst_stride, const void *src, size_t src_stride,
			size_t row_bytes, size_t rows)
{
	if ((!dst || !src) && rows && row_bytes)
		return -EINVAL;
	return guarded(dst, dst_stride, src, src_stride, row_bytes, rows);
}

uint64_t vgb_guarded_faults(void)
{
	return __atomic_load_n(&faults, __ATOMIC_RELAXED);
}
