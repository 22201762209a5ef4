/* SPDX-License-Identifier: MIT */
/* struct vgb_dmabuf: _dup() duplicates each distinct fd once, unwinds on failure, _finish()
 * closes shared fds once. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "leak.h"
#include "tap.h"
#include "vgb/dmabuf.h"

static int make_fd(void)
{
	return memfd_create("dmabuf-test", MFD_CLOEXEC);
}

int main(void)
{
	struct leak_snapshot before;
	struct vgb_dmabuf a, b;
	int r;

	tap_plan(12);
	leak_snapshot(&before);

	vgb_dmabuf_init(&a);
	tap_ok(a.fd[0] == -1 && a.fd[3] == -1 && a.n_planes == 0, "init leaves every fd at -1");

	/* Two planes sharing one fd, a third with its own. */
	a.n_planes = 3;
	a.fd[0] = make_fd();
	a.fd[1] = a.fd[0];
	a.fd[2] = make_fd();
	a.stride[0] = 4096;
	r = vgb_dmabuf_dup(&a, &b);
	tap_is_int(r, 0, "dup of a 3-plane descriptor");
	tap_ok(b.fd[0] >= 0 && b.fd[0] != a.fd[0] && b.fd[2] != a.fd[2], "dup gives new fds");
	tap_ok(b.fd[1] == b.fd[0], "planes that shared an fd share one duplicate");
	tap_ok(b.stride[0] == 4096 && b.n_planes == 3, "dup copies the layout");
	tap_ok((fcntl(b.fd[0], F_GETFD) & FD_CLOEXEC) != 0, "duplicates are CLOEXEC");
	vgb_dmabuf_finish(&b);
	tap_ok(b.fd[0] == -1 && b.n_planes == 0, "finish resets the descriptor");

	/* Unwind: make the second dup fail with EMFILE by lowering the fd limit. */
	struct rlimit old, lim;
	getrlimit(RLIMIT_NOFILE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)leak_count_fds() + 4; /* room for exactly one more fd */
	setrlimit(RLIMIT_NOFILE, &lim);
	int pad[8], npad = 0;
	while (npad < 8) {
		int fd = make_fd();
		if (fd < 0)
			break;
		pad[npad++] = fd;
	}
	/* Free exactly one slot: the first dup succeeds, the second fails. */
	close(pad[--npad]);
	struct leak_snapshot mid;
	leak_snapshot(&mid);
	vgb_dmabuf_init(&b);
	r = vgb_dmabuf_dup(&a, &b);
	tap_is_int(r, -EMFILE, "dup fails when the second fd cannot be duplicated");
	tap_ok(b.fd[0] == -1, "a failed dup leaves the destination untouched");
	leak_check(&mid, "failed dup unwinds the first duplicate");
	while (npad > 0)
		close(pad[--npad]);
	setrlimit(RLIMIT_NOFILE, &old);

	struct vgb_dmabuf bad;
	vgb_dmabuf_init(&bad);
	bad.n_planes = 1;
	tap_is_int(vgb_dmabuf_dup(&bad, &b), -EINVAL, "dup of a plane without an fd is EINVAL");

	vgb_dmabuf_finish(&a);
	vgb_dmabuf_finish(NULL);
	leak_check(&before, "no fd leaked overall");
	return tap_done();
}
