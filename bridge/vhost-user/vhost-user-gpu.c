/* SPDX-License-Identifier: MIT */
/* vgbridge-vhost-user-gpu: the vhost-user-gpu backend alone (same as vgbridged --vhost-user). */
#include "vhost-user.h"

int main(int argc, char **argv)
{
	return vgb_vhost_user_main(argc, argv);
}
