/* SPDX-License-Identifier: MIT */
#ifndef VGB_VFIO_USER_SERVER_VUS_H
#define VGB_VFIO_USER_SERVER_VUS_H

/*
 * The vfio-user server: the virtual GPU (a virtual device spec, docs/virtual-device.md) served
 * as a PCI device to one vfio-user client at a time (QEMU's vfio-user-pci, or vfio/'s own
 * backend). Everything runs on the caller's loop: vgb_vus_get_fd() is an epoll fd that is
 * readable when vgb_vus_dispatch() has something to do, and nothing in it blocks.
 *
 * Per connection: the input is one message buffer (max_data_xfer_size + 64 bytes); replies
 * queue until the socket takes them, and the server stops reading a client whose queued
 * replies exceed max_out_bytes until it reads them. A client that sends garbage that cannot
 * be framed (a header shorter than itself, an unknown type, a message over the size limit) is
 * answered with an error when possible and dropped; every other bad message gets an error
 * reply and the connection stays. When a client goes, its DMA fds and IRQ eventfds are closed;
 * the device's memory stays, and the next client gets the device as vfio-pci's open does
 * (config space at power-on state).
 */

#include <stdbool.h>
#include <stdint.h>

struct vgb_vus;
struct vgb_vfio_device;

struct vgb_vus_options {
	uint32_t max_data_xfer_size; /* 0: 1 MiB; at most 64 MiB */
	uint32_t max_msg_fds;        /* fds we accept in one message; 0: 8 */
	uint32_t max_dma_maps;       /* 0: 1024 */
	uint64_t max_out_bytes;      /* queued reply bytes before reading pauses; 0: 4 MiB */
};

struct vgb_vus_stats {
	uint64_t clients;       /* clients served (attached), cumulative */
	uint64_t refused;       /* connections refused because a client was attached */
	uint64_t dropped;       /* clients dropped for garbage or a failed socket */
	uint64_t messages;      /* requests handled */
	uint64_t errors;        /* error replies */
	uint64_t resets;
	uint32_t dma_maps;      /* live DMA mappings */
	uint32_t irq_fds;       /* live IRQ eventfds */
	uint32_t dma_fds;       /* live DMA fds */
	bool connected;
};

/*
 * Creates a server for the device @spec. BAR and ROM sizes must be powers of two (a PCI
 * rule the virtual device does not have). Returns 0, -EINVAL for a bad spec or options, or
 * the -errno of making the device or the epoll fd.
 */
int vgb_vus_create(const char *spec, const struct vgb_vus_options *opts, struct vgb_vus **ret);
/* Destroys @s, its clients and its device. Accepts NULL. */
void vgb_vus_destroy(struct vgb_vus *s);

/* Serves clients that connect to @listen_fd (a listening AF_UNIX stream socket; made
 * non-blocking here). Takes ownership of @listen_fd, on failure too. Returns 0 or -errno. */
int vgb_vus_listen(struct vgb_vus *s, int listen_fd);
/* Serves the connected stream socket @fd. Takes ownership of @fd, on failure too. Returns 0,
 * -EBUSY when a client is attached, or -errno. */
int vgb_vus_attach(struct vgb_vus *s, int fd);

/* An epoll fd (owned by @s), readable when vgb_vus_dispatch() has work. */
int vgb_vus_get_fd(const struct vgb_vus *s);
/* Waits up to @timeout_ms (0: not at all) and handles what is ready. Returns 0 or -errno of
 * epoll_wait; client failures are not errors (the client is dropped). */
int vgb_vus_dispatch(struct vgb_vus *s, int timeout_ms);

/* The device behind the server (borrowed), e.g. for vgb_vfio_vdev_region_memfd(). */
struct vgb_vfio_device *vgb_vus_device(struct vgb_vus *s);
/* Signals interrupt @index (VFIO_PCI_INTX_IRQ_INDEX or VFIO_PCI_MSI_IRQ_INDEX) through the
 * client's eventfd. Returns 0, -ENOENT when no eventfd is set, -EAGAIN when INTx is masked,
 * or -errno of the write. */
int vgb_vus_trigger_irq(struct vgb_vus *s, uint32_t index);
void vgb_vus_get_stats(const struct vgb_vus *s, struct vgb_vus_stats *ret);

#endif
