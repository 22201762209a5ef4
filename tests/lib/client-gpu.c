/* SPDX-License-Identifier: MIT */
#include "client-gpu.h"
#include "client.h"
#include "guest.h"

int64_t client_gpu(struct vgb_client *c, const void *cmd, size_t len)
{
	uint8_t resp[512];
	size_t rlen = 0;
	int r = vgb_client_gpu_cmd(c, VGB_GPU_QUEUE_CONTROL, cmd, len, resp, sizeof(resp), &rlen);

	if (r < 0)
		return r;
	return vgb_guest_resp_type(resp, rlen);
}
