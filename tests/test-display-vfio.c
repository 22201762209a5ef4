/* SPDX-License-Identifier: MIT */
/*
 * vm suite, in a Linux 7.2 guest (run by tests/vm/guest-display.sh in a chroot of the host's
 * userspace): a frame whose pages lie scattered in BAR2 of a vfio-pci ivshmem device.
 *  - the blob is exported as a real VFIO dmabuf (4 reordered ranges, one ioctl), whose mmap
 *    fails; the segment mapper builds the CPU view over the VFIO device fd
 *  - weston --use-pixman (no linux-dmabuf) shows it through wl_shm: one damage-limited copy;
 *    the screenshot equals what the host wrote into the BAR's backing file
 *  - a caller that passes the VFIO device fd as the view's "memfd" does not get it handed to
 *    the compositor: the sink copies
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lab.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "vgb/vfio.h"
#include "weston-harness.h"

#define W 64
#define H 64 /* 64 * 64 * 4 = 4 pages */
#define STRIDE (W * 4)
#define PAGES 4

int main(void)
{
	static const uint64_t slots[PAGES] = { 9, 2, 30, 17 };
	static uint32_t got[W * H], want[W * H];
	struct vm_lab_device labdev[VM_LAB_MAX_DEVICES];
	struct vgb_vfio_range ranges[PAGES];
	struct vgb_segment segs[PAGES];
	struct vgb_vfio_device *dev = NULL;
	struct vgb_segmap *map = NULL;
	struct vgb_display_options opts = { .title = "vfiovm", .fullscreen = true,
					    .timeout_ms = 120000 /* llvmpipe in TCG, busy host */ };
	struct vgb_display *d = NULL;
	struct vgb_display_stats st;
	struct vgb_dmabuf buf;
	struct weston w;
	int n, r, dmabuf_fd;

	tap_plan_lazy();
	n = vm_lab_devices(labdev, VM_LAB_MAX_DEVICES);
	if (n < 1)
		tap_bail("needs the lab's ivshmem devices (VGB_IVSHMEM_*), got %d", n);
	r = vgb_vfio_kernel_open(labdev[0].bdf, 0, &dev);
	if (!tap_is_int(r, 0, "%s: open through vfio-pci", labdev[0].bdf))
		tap_bail("no device");

	for (int k = 0; k < PAGES; k++)
		ranges[k] = (struct vgb_vfio_range){ slots[k] * VGB_PAGE_SIZE, VGB_PAGE_SIZE };
	dmabuf_fd = vgb_vfio_create_dmabuf(dev, 2, ranges, PAGES);
	tap_ok(dmabuf_fd >= 0, "a real VFIO dmabuf of 4 scattered BAR2 pages (%d)", dmabuf_fd);
	r = 0;
	for (int k = 0; k < PAGES && r == 0; k++)
		r = vgb_vfio_segment(dev, 2, ranges[k].offset, ranges[k].length, &segs[k]);
	tap_is_int(r, 0, "segments of the same pages");
	r = vgb_segmap_create(segs, PAGES, dmabuf_fd, &map);
	tap_is_int(r, 0, "the CPU view (the dmabuf itself refuses mmap: %s)",
		   map && map->via_dmabuf ? "no, it mapped" : "yes");
	if (r < 0)
		tap_bail("no CPU view");

	/* What the host wrote: the lab's pattern at each page's BAR offset. */
	for (uint32_t y = 0; y < H; y++) {
		for (uint32_t x = 0; x < W; x++) {
			uint64_t o = (uint64_t)y * STRIDE + x * 4;
			uint64_t bar = ranges[o / VGB_PAGE_SIZE].offset + o % VGB_PAGE_SIZE;
			want[y * W + x] = vm_lab_word(labdev[0].seed, bar);
		}
	}

	setenv("VGB_WESTON_RENDERER", "pixman", 1);
	r = weston_start(&w, W, H);
	if (!tap_is_int(r, 0, "weston --use-pixman is up"))
		tap_bail("no weston");
	r = vgb_display_create_wayland(w.socket, &opts, &d);
	if (!tap_is_int(r, 0, "sink connected"))
		tap_bail("no sink");

	vgb_dmabuf_init(&buf);
	buf.width = W;
	buf.height = H;
	buf.fourcc = DRM_FORMAT_XRGB8888;
	buf.modifier = DRM_FORMAT_MOD_LINEAR;
	buf.n_planes = 1;
	buf.fd[0] = dmabuf_fd;
	buf.stride[0] = STRIDE;
	struct vgb_cpu_view view = { .data = map->addr, .stride = STRIDE, .memfd = -1 };
	struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
			       .buffer_id = 1, .dmabuf = &buf, .cpu = &view, .done = frame_done };

	r = present_and_wait(d, &f);
	tap_is_int(r, 0, "the BAR frame is shown");
	vgb_display_get_stats(d, &st);
	tap_is_str(vgb_present_path_name(st.last_path), "shm-copy",
		   "through the CPU view and one copy (no linux-dmabuf under pixman)");
	tap_is_uint(st.bytes_copied, (uint64_t)W * H * 4, "one frame's bytes copied");
	r = weston_screenshot(&w, got);
	tap_ok(r == 0 && compare_pixels(got, want, W, H) == 0,
	       "the screenshot equals what the host wrote into the BAR's backing file");

	/* The VFIO device fd offered as if it were a memfd: never handed to the compositor. */
	view.memfd = segs[0].fd;
	view.memfd_offset = segs[0].offset;
	view.memfd_size = labdev[0].size;
	f.buffer_id = 2;
	r = present_and_wait(d, &f);
	tap_is_int(r, 0, "a view claiming the VFIO device fd as its memfd");
	vgb_display_get_stats(d, &st);
	tap_is_str(vgb_present_path_name(st.last_path), "shm-copy",
		   "is copied: the device fd is not a memfd, so no wl_shm pool on it");
	tap_is_uint(st.cached_buffers, 0, "no wl_buffer was made on it");
	r = weston_screenshot(&w, got);
	tap_ok(r == 0 && compare_pixels(got, want, W, H) == 0, "same pixels");

	vgb_display_destroy(d);
	weston_stop(&w);
	vgb_segmap_destroy(map);
	close(dmabuf_fd);
	vgb_vfio_device_destroy(dev);
	return tap_done();
}
