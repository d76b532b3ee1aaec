#!/usr/bin/env python3
"""Forward a loopback port into another network namespace: how Milvus is kept off the network.

    relay.py LISTEN_PORT NETNS_PATH TARGET_PORT

Milvus standalone 2.3 listens on every interface, on about ten ports, whatever its
configuration says. scripts/services/milvus.sh therefore runs it in a network namespace of
its own, which has only a loopback interface, so none of those ports can be reached from
outside it. This relay is the one way in: it listens on 127.0.0.1:LISTEN_PORT here, then
enters the namespace at NETNS_PATH (``/proc/PID/ns/net``), so that every connection it
accepts is forwarded to 127.0.0.1:TARGET_PORT there (Milvus's client port). The listening
socket was made before the switch and stays in this namespace. Standard library only; runs
until killed.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def _enter(netns_path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(netns_path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({netns_path}): {os.strerror(error)}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(listener: socket.socket, target_port: int) -> None:
    async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        for writer in (client_w, server_w):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # gRPC's small frames must not wait for Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    server = await asyncio.start_server(forward, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    listen_port, netns_path, target_port = int(argv[0]), argv[1], int(argv[2])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(128)
    _enter(netns_path)
    asyncio.run(_serve(listener, target_port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
