/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_CTL_BRIDGE_H
#define VGB_BRIDGE_CTL_BRIDGE_H

/*
 * vgbctl subcommands that talk to a running vgbridged: `stats`, `replay FILE`, `scenario`.
 * Each takes the arguments after its name (argv[0] is the subcommand) and returns the process
 * exit status (0 success, 1 failure, 2 usage).
 */

#include <stddef.h>

int vgb_ctl_stats(int argc, char **argv);
int vgb_ctl_replay(int argc, char **argv);
int vgb_ctl_scenario(int argc, char **argv);

/* The daemon's default socket path ($XDG_RUNTIME_DIR/vgbridge.sock or /tmp/vgbridge-UID.sock). */
void vgb_ctl_default_socket(char *buf, size_t size);

#endif
