#!/bin/sh
# In the vm lab's guest (busybox sh, host / read-only at /host over 9p): runs a display test
# program of the host's build (dynamically linked) in a chroot of the host's userspace, with
# the guest's own /dev (vgem's card0), /proc, /sys and writable /tmp and /run.
# Usage: guest-display.sh PROGRAM [ARGS...]   (PROGRAM: an absolute host path)
set -e
R=/host
mount -t tmpfs tmpfs $R/tmp
mount -t tmpfs tmpfs $R/run
mount -o bind /dev $R/dev
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
# llvmpipe (kms_swrast on card0): no GPU in a TCG guest.
# The lab's environment (VGB_IVSHMEM_*) passes through.
exec chroot $R /usr/bin/env PATH=/usr/bin:/bin HOME=/tmp LIBGL_ALWAYS_SOFTWARE=1 "$@"
