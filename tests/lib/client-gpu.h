/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_CLIENT_GPU_H
#define VGB_TESTS_CLIENT_GPU_H

#include <stddef.h>
#include <stdint.h>

struct vgb_client;

/* Sends one virtio-gpu command on the control queue; returns the response's type
 * (VIRTIO_GPU_RESP_*; 0 for a response shorter than its header) or the call's -errno. */
int64_t client_gpu(struct vgb_client *c, const void *cmd, size_t len);

#endif
