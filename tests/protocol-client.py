#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A vgbridged client written from docs/protocol.md alone (no C header, no shared code), to
check that the document is enough to speak the protocol from another language.

Usage: protocol-client.py PATH-TO-VGBRIDGED       (prints TAP)
"""
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile

# docs/protocol.md, "Messages": type u16, flags u16, length u32, id u64; little-endian.
HEADER = struct.Struct("<HHIQ")
REPLY_FLAG = 0x0001
# Every reply payload starts with result s32, n_fds u32.
REPLY = struct.Struct("<iI")

HELLO, ADD_RAM, ADD_VFIO_DEVICE, MAP_VFIO_WINDOW, REMOVE_WINDOW = 1, 2, 3, 4, 5
REMOVE_DEVICE, VIRTIO_GPU_CMD, EXPORT_BLOB, STATS, QUERY_DEVICE = 6, 7, 8, 9, 10

# virtio 1.2, 5.7.6.7
CMD_GET_DISPLAY_INFO, CMD_RESOURCE_FLUSH, CMD_TRANSFER_TO_HOST_2D = 0x0100, 0x0104, 0x0105
CMD_RESOURCE_CREATE_BLOB, CMD_SET_SCANOUT_BLOB = 0x010C, 0x010D
RESP_OK_NODATA, RESP_OK_DISPLAY_INFO = 0x1100, 0x1101
RESP_ERR_INVALID_RESOURCE_ID = 0x1203
FLAG_FENCE = 1
CTRL_HDR = struct.Struct("<IIQIB3x")  # type, flags, fence_id, ctx_id, ring_idx, padding

EEXIST, EPROTO, EBADMSG, EOPNOTSUPP, EINVAL = 17, 71, 74, 95, 22

n_tests = 0
failures = 0


def ok(cond, what):
    global n_tests, failures
    n_tests += 1
    if not cond:
        failures += 1
    print(("ok" if cond else "not ok") + f" {n_tests} - {what}", flush=True)
    return cond


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.next_id = 1

    def send(self, mtype, payload=b"", fds=(), flags=0, length=None):
        mid = self.next_id
        self.next_id += 1
        hdr = HEADER.pack(mtype, flags, len(payload) if length is None else length, mid)
        if fds:
            socket.send_fds(self.sock, [hdr + payload], list(fds))
        else:
            self.sock.send(hdr + payload)
        return mid

    def recv(self):
        data, fds, _flags, _addr = socket.recv_fds(self.sock, 1 << 20, 4)
        mtype, flags, length, mid = HEADER.unpack_from(data)
        assert flags & REPLY_FLAG and length == len(data) - HEADER.size
        result, n_fds = REPLY.unpack_from(data, HEADER.size)
        assert n_fds == len(fds)
        return mtype, mid, result, data[HEADER.size + REPLY.size:], fds

    def call(self, mtype, payload=b"", fds=(), **kw):
        mid = self.send(mtype, payload, fds, **kw)
        rtype, rid, result, body, rfds = self.recv()
        assert rid == mid and rtype == mtype, (rid, mid, rtype, mtype)
        return result, body, rfds

    def gpu(self, cmd):
        # VIRTIO_GPU_CMD: queue u32 (0 controlq), reserved u32, then the command bytes
        result, body, _ = self.call(VIRTIO_GPU_CMD, struct.pack("<II", 0, 0) + cmd)
        return result, body


def start_daemon(tmp):
    notify_path = os.path.join(tmp, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    sock_path = os.path.join(tmp, "vgb.sock")
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    proc = subprocess.Popen([sys.argv[1], "--socket", sock_path, "--display", "none",
                             "--log-level", "error", "--virtual-device",
                             "bar0=4K,bar2=4M,name=py-gpu"], env=env)
    ready, _, _ = select.select([notify], [], [], 30)
    if not ready or notify.recv(64) != b"READY=1":
        print("Bail out! vgbridged did not get ready")
        proc.kill()
        sys.exit(1)
    notify.close()
    return proc, sock_path


def main():
    if len(sys.argv) != 2:
        print("Bail out! usage: protocol-client.py VGBRIDGED")
        return 1
    with tempfile.TemporaryDirectory(prefix="vgb-pyclient-") as tmp:
        proc, path = start_daemon(tmp)
        try:
            run(path)
        finally:
            proc.send_signal(signal.SIGTERM)
            ok(proc.wait(30) == 0, "vgbridged exits 0 on SIGTERM")
    print(f"1..{n_tests}")
    return 1 if failures else 0


def run(path):
    c = Client(path)

    # Before HELLO every request answers -EPROTO.
    r, _, _ = c.call(STATS, struct.pack("<II", 0, 0))
    ok(r == -EPROTO, f"a request before HELLO: {r} (-EPROTO)")

    r, body, _ = c.call(HELLO, struct.pack("<IIQ", 1, 0, 0))
    ok(r == 0 and len(body) == 40, f"HELLO: result {r}, {len(body)}-byte body")
    version, n_devices, features, max_entries, max_res, max_blob, client_id, max_windows = \
        struct.unpack("<IIQIIQII", body)
    ok(version == 1 and n_devices == 1 and features == 0,
       f"HELLO: version {version}, {n_devices} daemon device, features {features}")
    ok(max_entries == 16384 and max_windows > 0 and client_id > 0,
       f"HELLO: max_entries {max_entries}, max_windows {max_windows}, client {client_id}")

    # ADD_RAM: n_fds u32, flags u32, gpa u64, size u64, offset u64; the memfd in SCM_RIGHTS.
    memfd = os.memfd_create("py-guest-ram", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(memfd, 4 << 20)
    with open(memfd, "r+b", closefd=False) as f:
        f.write(bytes(range(256)) * 256)
    r, _, _ = c.call(ADD_RAM, struct.pack("<IIQQQ", 1, 0, 0x100000, 4 << 20, 0), [memfd])
    ok(r == 0, f"ADD_RAM of a 4 MiB memfd at 0x100000: {r}")
    r, _, _ = c.call(ADD_RAM, struct.pack("<IIQQQ", 1, 0, 0x200000, 1 << 20, 0), [memfd])
    ok(r == -EEXIST, f"an overlapping ADD_RAM: {r} (-EEXIST)")
    r, _, _ = c.call(ADD_RAM, struct.pack("<IIQQQ", 1, 0, 0x10000000, 1 << 20, 0))
    ok(r == -EBADMSG, f"ADD_RAM stating 1 fd, carrying none: {r} (-EBADMSG)")
    r, _, _ = c.call(ADD_RAM, struct.pack("<IIQQQ", 1, 0, 0x10000000, 1 << 20, 0), [memfd],
                     length=16)
    ok(r == -EBADMSG, f"a header length that lies: {r} (-EBADMSG)")
    r, _, _ = c.call(99, b"")
    ok(r == -EOPNOTSUPP, f"unknown type 99: {r} (-EOPNOTSUPP)")

    # MAP_VFIO_WINDOW on the daemon's device: gpa, size, device_id, region_index, region_offset.
    r, _, _ = c.call(MAP_VFIO_WINDOW, struct.pack("<QQIIQ", 0x40000000, 1 << 20, 1, 2, 0))
    ok(r == 0, f"MAP_VFIO_WINDOW on device 1 BAR2: {r}")

    # QUERY_DEVICE: device_id, region_index, flags, reserved -> 88 bytes.
    r, body, fds = c.call(QUERY_DEVICE, struct.pack("<IIII", 1, 2, 0, 0))
    if ok(r == 0 and len(body) == 88, f"QUERY_DEVICE 1/2: {r}"):
        caps, num_regions, rflags, _res, size = struct.unpack_from("<IIIIQ", body)
        name = body[24:88].split(b"\0")[0].decode()
        ok(size == 4 << 20 and name == "py-gpu", f"QUERY_DEVICE: '{name}', BAR2 {size} bytes")

    # virtio-gpu commands, as the spec lays them out.
    r, body = c.gpu(CTRL_HDR.pack(CMD_GET_DISPLAY_INFO, 0, 0, 0, 0))
    ok(r == 0 and struct.unpack_from("<I", body)[0] == RESP_OK_DISPLAY_INFO and len(body) == 408,
       f"GET_DISPLAY_INFO: OK_DISPLAY_INFO, {len(body)} bytes")

    entries = [(0x100000 + 0x30000, 0x10000), (0x100000, 0x8000), (0x100000 + 0x8000, 0x8000)]
    blob = struct.pack("<IIIIQQ", 1, 1, 2, len(entries), 0, 0x20000)  # GUEST, USE_SHAREABLE
    blob += b"".join(struct.pack("<QII", a, l, 0) for a, l in entries)
    r, body = c.gpu(CTRL_HDR.pack(CMD_RESOURCE_CREATE_BLOB, 0, 0, 0, 0) + blob)
    ok(r == 0 and struct.unpack_from("<I", body)[0] == RESP_OK_NODATA,
       "RESOURCE_CREATE_BLOB (3 entries inline): OK_NODATA")

    t2d = struct.pack("<IIIIQII", 0, 0, 64, 64, 0, 1, 0)  # rect, offset, resource_id, padding
    r, body = c.gpu(CTRL_HDR.pack(CMD_TRANSFER_TO_HOST_2D, 0, 0, 0, 0) + t2d)
    ok(r == 0 and struct.unpack_from("<I", body)[0] == RESP_OK_NODATA,
       "TRANSFER_TO_HOST_2D on a blob: OK_NODATA")

    # SET_SCANOUT_BLOB: rect, scanout_id, resource_id, width, height, format, padding,
    # strides[4], offsets[4]. 128x64 B8G8R8X8 (2).
    sb = struct.pack("<IIII", 0, 0, 128, 64) + struct.pack("<IIIIII", 0, 1, 128, 64, 2, 0)
    sb += struct.pack("<4I", 512, 0, 0, 0) + struct.pack("<4I", 0, 0, 0, 0)
    r, body = c.gpu(CTRL_HDR.pack(CMD_SET_SCANOUT_BLOB, 0, 0, 0, 0) + sb)
    ok(r == 0 and struct.unpack_from("<I", body)[0] == RESP_OK_NODATA,
       "SET_SCANOUT_BLOB: OK_NODATA")

    flush = struct.pack("<IIIIII", 0, 0, 128, 64, 1, 0)  # rect, resource_id, padding
    r, body = c.gpu(CTRL_HDR.pack(CMD_RESOURCE_FLUSH, FLAG_FENCE, 7, 0, 0) + flush)
    rtype, rflags, fence_id, _ctx, _ring = CTRL_HDR.unpack_from(body)
    ok(r == 0 and rtype == RESP_OK_NODATA and rflags & FLAG_FENCE and fence_id == 7,
       f"fenced RESOURCE_FLUSH: OK_NODATA with fence {fence_id}")

    flush9 = struct.pack("<IIIIII", 0, 0, 16, 16, 9, 0)
    r, body = c.gpu(CTRL_HDR.pack(CMD_RESOURCE_FLUSH, 0, 0, 0, 0) + flush9)
    ok(r == 0 and struct.unpack_from("<I", body)[0] == RESP_ERR_INVALID_RESOURCE_ID,
       "RESOURCE_FLUSH of an unknown resource: ERR_INVALID_RESOURCE_ID (a guest error, result 0)")

    # EXPORT_BLOB: a dmabuf (udmabuf) where /dev/udmabuf exists, else -EOPNOTSUPP.
    r, body, fds = c.call(EXPORT_BLOB, struct.pack("<II", 1, 0))
    if r == 0:
        strategy, _res, size = struct.unpack_from("<IIQ", body)
        ok(len(fds) == 1 and strategy in (1, 2) and size == 0x20000,
           f"EXPORT_BLOB: strategy {strategy}, {size} bytes, {len(fds)} fd")
    else:
        ok(r == -EOPNOTSUPP and not fds, f"EXPORT_BLOB: {r} (-EOPNOTSUPP: CPU view only)")
    for fd in fds:
        os.close(fd)

    # STATS: 136-byte global part, n_clients u32 at offset 108, 336-byte rows.
    r, body, _ = c.call(STATS, struct.pack("<II", 1, 0))
    if ok(r == 0 and len(body) >= 136, f"STATS (SELF_ONLY): {r}, {len(body)} bytes"):
        n_clients = struct.unpack_from("<I", body, 108)[0]
        ok(n_clients == 1 and len(body) == 136 + 336 * n_clients, f"STATS: {n_clients} row")
        row = body[136:]
        cid, pid, windows, devices, resources = struct.unpack_from("<IiIII", row)
        flushes, = struct.unpack_from("<Q", row, 120)
        fences, = struct.unpack_from("<Q", row, 152)
        ok(cid == client_id and pid == os.getpid() and windows == 2 and resources == 1,
           f"STATS row: client {cid}, pid {pid}, {windows} windows, {resources} resource")
        ok(flushes >= 1 and fences == 1, f"STATS row: {flushes} flushes, {fences} fence")

    r, _, _ = c.call(REMOVE_WINDOW, struct.pack("<Q", 0x40000000))
    ok(r == 0, f"REMOVE_WINDOW 0x40000000: {r}")
    r, _, _ = c.call(REMOVE_DEVICE, struct.pack("<II", 1, 0))
    ok(r == -1, f"REMOVE_DEVICE of the daemon's device: {r} (-EPERM)")
    c.sock.close()
    os.close(memfd)


if __name__ == "__main__":
    sys.exit(main())
