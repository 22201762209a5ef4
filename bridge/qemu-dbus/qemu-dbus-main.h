/* SPDX-License-Identifier: MIT */
#ifndef VGB_QEMU_DBUS_MAIN_H
#define VGB_QEMU_DBUS_MAIN_H

/* vgbridged --qemu-dbus ADDRESS | --qemu-dbus-fd N: runs until SIGTERM/SIGINT. Exit status. */
int vgb_qemu_dbus_main(int argc, char **argv);

#endif
