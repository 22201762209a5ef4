#!/bin/sh
# In the vm lab's guest (busybox sh, host / read-only at /host over 9p): runs a display test
# program of the host's build (dynamically linked) in a chroot of the host's userspace, with
# the guest's own /dev (vgem's card0), /proc, /sys and a writable scratch directory.
# Usage: guest-display.sh PROGRAM [ARGS...]   (PROGRAM: an absolute host path)
set -e
R=/host
# The scratch tmpfs hides what lies under its mount point: never the build tree (CI clones
# may live under /tmp).
case "$1" in
  /run/*) scratch=/tmp ;;
  *) scratch=/run ;;
esac
mount -t tmpfs tmpfs $R$scratch
mount -o bind /dev $R/dev
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
# llvmpipe (kms_swrast on card0): no GPU in a TCG guest. The lab's environment
# (VGB_IVSHMEM_*) passes through.
exec chroot $R /usr/bin/env PATH=/usr/bin:/bin HOME=$scratch TMPDIR=$scratch \
  XDG_CACHE_HOME=$scratch/cache LIBGL_ALWAYS_SOFTWARE=1 "$@"
