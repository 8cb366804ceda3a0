"""The twin's front door: an HTTP forward proxy that tunnels CONNECT for TikTok's hosts only.

Each tunnel is piped, byte for byte, to the twin app's internal TLS port. The client's TLS session
therefore ends at the app, with a certificate for TikTok's host names from the twin's own CA. Other
hosts get 403, so nothing reaches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from tkds.tiktok import is_tiktok_host
from tkds.twin.faults import FaultDice

CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close with a TCP RST, as a dropped connection looks
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _respond(writer: asyncio.StreamWriter, status: str, body: str = "") -> None:
    payload = body.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


class TunnelProxy:
    """Handles each client connection; remembers open tunnels so that stopping closes them."""

    def __init__(self, app_port: int, dice: FaultDice) -> None:
        self.app_port, self.dice = app_port, dice
        self.open: set[asyncio.StreamWriter] = set()

    def close_all(self) -> None:
        for writer in list(self.open):
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        method, _, target = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        target = target.rsplit(" ", 1)[0]
        if method != "CONNECT":
            await _respond(writer, "405 Method Not Allowed", "the tkds twin only tunnels HTTPS (CONNECT)\n")
            return
        host = target.rsplit(":", 1)[0].strip("[]")
        if not is_tiktok_host(host):
            await _respond(writer, "403 Forbidden", f"the tkds twin serves TikTok only, not {host}\n")
            return
        if self.dice.roll(("reset",)):
            _reset(writer)
            return
        try:
            app_reader, app_writer = await asyncio.open_connection("127.0.0.1", self.app_port)
        except OSError:
            await _respond(writer, "502 Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await writer.drain()
        self.open.update((writer, app_writer))
        try:
            await asyncio.gather(_pipe(reader, app_writer), _pipe(app_reader, writer))
        finally:
            self.open.difference_update((writer, app_writer))
