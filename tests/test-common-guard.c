/* SPDX-License-Identifier: MIT */
/*
 * Guarded copies with real SIGBUS: a memfd mapped two pages long and then truncated to one
 * page faults on the second page, exactly as a VFIO BAR does once memory decode is off.
 *   - a copy that faults returns -EIO; the process lives on, copies keep working
 *   - the 2D copy, on the main thread and on another thread
 *   - SIGBUS outside a guarded copy keeps its previous meaning: the default still kills, a
 *     handler installed before still runs (faults and sent signals), an ignored sent SIGBUS
 *     stays ignored
 *   - nothing leaks
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leak.h"
#include "tap.h"
#include "vgb/guard.h"
#include "vgb/util.h"

#define PG VGB_PAGE_SIZE

struct shrunk {
	int fd;
	uint8_t *map; /* 2 pages; the second is past EOF */
};

/* Two pages of a memfd, mapped; the file is then cut to one page under the mapping. */
static int shrunk_create(struct shrunk *s)
{
	s->fd = memfd_create("guard-test", MFD_CLOEXEC);
	if (s->fd < 0 || ftruncate(s->fd, 2 * PG) < 0)
		return -errno;
	s->map = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->map == MAP_FAILED)
		return -errno;
	for (unsigned i = 0; i < 2 * PG; i++)
		s->map[i] = (uint8_t)(i * 13 + 1);
	if (ftruncate(s->fd, PG) < 0)
		return -errno;
	return 0;
}

static void shrunk_destroy(struct shrunk *s)
{
	munmap(s->map, 2 * PG);
	close(s->fd);
}

static void test_copy(void)
{
	struct shrunk s;
	static uint8_t dst[2 * PG], want[PG];
	uint64_t f0 = vgb_guarded_faults();

	if (!tap_ok(shrunk_create(&s) == 0, "a memfd mapping truncated under the view"))
		return;
	for (unsigned i = 0; i < PG; i++)
		want[i] = (uint8_t)(i * 13 + 1);
	tap_is_int(vgb_guarded_copy(dst, s.map, PG), 0, "copy of the page still backed");
	tap_is_mem(dst, want, PG, "its bytes");
	tap_is_int(vgb_guarded_copy(dst, s.map, 2 * PG), -EIO,
		   "copy reaching the truncated page: -EIO, no SIGBUS");
	tap_is_int(vgb_guarded_copy(dst, s.map + PG + 100, 8), -EIO, "copy inside it: -EIO");
	tap_is_uint(vgb_guarded_faults() - f0, 2, "both faults counted");
	memset(dst, 0, sizeof(dst));
	tap_is_int(vgb_guarded_copy(dst, s.map, PG), 0, "after a fault, copies work again");
	tap_is_mem(dst, want, PG, "with the right bytes");
	/* A fault in the destination is caught too (a shm pool cut by its other user). */
	tap_is_int(vgb_guarded_copy(s.map + PG, want, 16), -EIO, "a faulting destination: -EIO");
	tap_is_int(vgb_guarded_copy(dst, s.map, 0), 0, "an empty copy");
	tap_is_int(vgb_guarded_copy(NULL, s.map, 1), -EINVAL, "NULL destination: -EINVAL");
	shrunk_destroy(&s);
}

static void test_2d(void)
{
	struct shrunk s;
	static uint8_t dst[4 * 256];
	int r;

	if (!tap_ok(shrunk_create(&s) == 0, "a truncated mapping for 2D copies"))
		return;
	/* 4 rows of 256 bytes, 1024 apart, from offset 0: all in the first page. */
	r = vgb_guarded_copy_2d(dst, 256, s.map, 1024, 256, 4);
	tap_is_int(r, 0, "2D copy inside the backed page");
	tap_ok(r == 0 && dst[256] == s.map[1024] && dst[3 * 256 + 255] == s.map[3 * 1024 + 255],
	       "rows land at the destination stride");
	/* 8 rows 1024 apart: rows 4..7 are on the truncated page. */
	tap_is_int(vgb_guarded_copy_2d(dst, 0, s.map, 1024, 256, 8), -EIO,
		   "2D copy whose later rows fault: -EIO");
	tap_is_int(vgb_guarded_copy_2d(dst, 256, s.map, SIZE_MAX / 2, 256, 4), -EINVAL,
		   "an extent that overflows: -EINVAL");
	shrunk_destroy(&s);
}

static void *thread_copy(void *data)
{
	struct shrunk *s = data;
	static uint8_t dst[2 * PG];
	intptr_t r1 = vgb_guarded_copy(dst, s->map, 2 * PG);
	intptr_t r2 = vgb_guarded_copy(dst, s->map, PG);

	return (void *)(intptr_t)(r1 == -EIO && r2 == 0 ? 1 : 0);
}

static void test_thread(void)
{
	struct shrunk s;
	pthread_t t;
	void *ok = NULL;

	if (shrunk_create(&s) < 0)
		return;
	tap_ok(pthread_create(&t, NULL, thread_copy, &s) == 0 && pthread_join(t, &ok) == 0 &&
		       ok == (void *)1,
	       "on another thread: a fault gives -EIO, the next copy works");
	shrunk_destroy(&s);
}

/* Runs @fn in a child; returns its wait status. */
static int in_child(void (*fn)(void))
{
	int status = -1;
	pid_t pid = fork();

	if (pid == 0) {
		fn();
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

/* After the handler is installed, an unguarded fault still kills by SIGBUS. */
static void child_unguarded_fault(void)
{
	struct shrunk s;
	uint8_t b[8];

	/* What "before" means here: the default (a sanitizer runtime may have its own). */
	signal(SIGBUS, SIG_DFL);
	if (shrunk_create(&s) < 0 || vgb_guarded_copy(b, s.map, sizeof(b)) != 0)
		_exit(3);
	*(volatile uint8_t *)(s.map + PG + 1);
	_exit(4);
}

/* A SIGBUS sent to us (not a fault) with the default disposition still kills. */
static void child_sent(void)
{
	uint8_t a[8] = { 0 }, b[8];

	signal(SIGBUS, SIG_DFL);
	if (vgb_guarded_copy(b, a, sizeof(b)) != 0)
		_exit(3);
	raise(SIGBUS);
	_exit(4);
}

static volatile sig_atomic_t prev_calls, prev_code;
static sigjmp_buf prev_jump;

static void prev_handler(int sig, siginfo_t *si, void *uc)
{
	prev_calls++;
	prev_code = si->si_code;
	if (si->si_code > 0)
		siglongjmp(prev_jump, 1); /* a fault: do not retry the access */
}

/* A handler installed before the first guarded copy still gets faults and sent signals. */
static void child_previous_handler(void)
{
	struct sigaction sa = { .sa_sigaction = prev_handler, .sa_flags = SA_SIGINFO };
	struct shrunk s;
	uint8_t b[8];

	if (sigaction(SIGBUS, &sa, NULL) < 0 || shrunk_create(&s) < 0)
		_exit(3);
	if (vgb_guarded_copy(b, s.map + PG, sizeof(b)) != -EIO || prev_calls != 0)
		_exit(5); /* a guarded fault is ours, not the previous handler's */
	if (sigsetjmp(prev_jump, 1) == 0) {
		*(volatile uint8_t *)(s.map + PG + 1);
		_exit(4);
	}
	if (prev_calls != 1 || prev_code <= 0)
		_exit(6);
	raise(SIGBUS);
	if (prev_calls != 2 || prev_code > 0)
		_exit(7);
	_exit(0);
}

/* An ignored SIGBUS that is sent stays ignored. */
static void child_ignored(void)
{
	uint8_t a[8] = { 0 }, b[8];

	signal(SIGBUS, SIG_IGN);
	if (vgb_guarded_copy(b, a, sizeof(b)) != 0)
		_exit(3);
	raise(SIGBUS);
	_exit(0);
}

static const char *describe(int status)
{
	static char buf[64];

	if (WIFSIGNALED(status))
		snprintf(buf, sizeof(buf), "killed by signal %d", WTERMSIG(status));
	else if (WIFEXITED(status))
		snprintf(buf, sizeof(buf), "exit %d", WEXITSTATUS(status));
	else
		snprintf(buf, sizeof(buf), "status %d", status);
	return buf;
}

static void test_unrelated(void)
{
	int st;

	st = in_child(child_unguarded_fault);
	tap_ok(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS,
	       "an unguarded fault still kills by SIGBUS (%s)", describe(st));
	st = in_child(child_sent);
	tap_ok(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS,
	       "a sent SIGBUS still kills by default (%s)", describe(st));
	st = in_child(child_previous_handler);
	tap_ok(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "a handler installed before gets unguarded faults and sent signals (%s)",
	       describe(st));
	st = in_child(child_ignored);
	tap_ok(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	       "an ignored, sent SIGBUS stays ignored (%s)", describe(st));
}

int main(void)
{
	struct leak_snapshot before;

	tap_plan_lazy();
	/* The unrelated-signal children come first, before this process installs the handler
	 * (each child installs its own, after its own setup). */
	test_unrelated();
	leak_snapshot(&before);
	test_copy();
	test_2d();
	leak_check(&before, "guarded copies leak no fd and no mapping");
	/* Last: glibc keeps a joined thread's stack mapped for reuse. */
	test_thread();
	return tap_done();
}
