"""Start and stop the twin: the app over TLS on an internal port, and the CONNECT proxy in front.

with tkds.twin.serve("corpus", faults="rate429=0.05", seed=0) as twin:
    httpx.Client(proxy=twin.proxy_url, verify=str(twin.ca_path))
"""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
import uvicorn
import uvloop

from tkds.errors import TkdsError
from tkds.twin.app import TwinState, build_app
from tkds.twin.corpus import load_corpus
from tkds.twin.faults import FaultDice, FaultSpec
from tkds.twin.living import TwinClock
from tkds.twin.pages import PAGE_FORMATS
from tkds.twin.proxy import TunnelProxy

CERT_NAMES = ("tiktok.com", "*.tiktok.com", "*.tiktokcdn.com", "*.tiktokcdn-us.com", "*.tiktokv.com")


@dataclass
class Twin:
    proxy_url: str
    ca_path: Path
    state: TwinState

    @property
    def clock(self) -> TwinClock:
        return self.state.clock


class _Servers:
    """The two servers on one event loop."""

    def __init__(self, state: TwinState, port: int, workdir: Path, ca_out: Path) -> None:
        authority = trustme.CA(organization_name="tkds TikTok twin")
        authority.cert_pem.write_to_path(str(ca_out))
        leaf = authority.issue_cert(*CERT_NAMES)
        self.key_path, self.cert_path = workdir / "twin-key.pem", workdir / "twin-cert.pem"
        leaf.private_key_pem.write_to_path(str(self.key_path))
        leaf.cert_chain_pems[0].write_to_path(str(self.cert_path))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(self.cert_path), append=True)
        self.state, self.port = state, port
        self.proxy: asyncio.Server | None = None
        self.app_server: uvicorn.Server | None = None

    async def start(self) -> int:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so (else +40 ms each)
        app_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        app_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        app_socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            build_app(self.state),
            ssl_keyfile=str(self.key_path),
            ssl_certfile=str(self.cert_path),
            log_level="critical",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,
        )
        self.app_server = uvicorn.Server(config)
        self.app_task = asyncio.create_task(self.app_server.serve(sockets=[app_socket]))
        while not self.app_server.started:
            if self.app_task.done():
                self.app_task.result()
            await asyncio.sleep(0.01)
        self.tunnels = TunnelProxy(app_socket.getsockname()[1], self.state.dice)
        try:
            self.proxy = await asyncio.start_server(
                self.tunnels.handle, "127.0.0.1", self.port, limit=64 * 1024
            )
        except OSError as error:
            self.app_server.should_exit = True
            raise TkdsError(
                f"cannot listen on 127.0.0.1:{self.port} ({error.strerror}); pick another --port"
            ) from None
        return self.proxy.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.proxy:
            self.proxy.close()
            self.tunnels.close_all()
        if self.app_server:
            self.app_server.should_exit = True
            await self.app_task


def _state(
    corpus: str | Path, faults: str | dict | None, seed: int, page_format: str, speed: float
) -> TwinState:
    if page_format not in (*PAGE_FORMATS, "mixed"):
        raise TkdsError(f"page format {page_format!r} is not one of {', '.join(PAGE_FORMATS)}, mixed")
    loaded = load_corpus(corpus)
    return TwinState(
        corpus=loaded,
        clock=TwinClock(loaded.observed_at, speed=speed),
        dice=FaultDice(FaultSpec.parse(faults), seed),
        seed=seed,
        page_format=page_format,
    )


@contextmanager
def serve(
    corpus: str | Path,
    *,
    faults: str | dict[str, float] | None = None,
    seed: int = 0,
    port: int = 0,
    ca_out: str | Path | None = None,
    page_format: str = "universal",
    speed: float = 1.0,
) -> Iterator[Twin]:
    """Serve `corpus` as TikTok on loopback, in a background thread, for the `with` block."""
    state = _state(corpus, faults, seed, page_format, speed)
    with tempfile.TemporaryDirectory(prefix="tkds-twin-") as workdir:
        ca_path = Path(ca_out) if ca_out else Path(workdir) / "twin-ca.pem"
        servers = _Servers(state, port, Path(workdir), ca_path)
        loop = uvloop.new_event_loop()
        ready: dict = {}
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                ready["port"] = loop.run_until_complete(servers.start())
            except BaseException as error:  # surfaced in the caller's thread
                ready["error"] = error
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(servers.stop())
            loop.close()

        thread = threading.Thread(target=run, name="tkds-twin", daemon=True)
        thread.start()
        started.wait()
        if "error" in ready:
            raise ready["error"]
        try:
            yield Twin(f"http://127.0.0.1:{ready['port']}", ca_path, state)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)


@contextmanager
def spawn(corpus: str | Path, ca_out: str | Path, faults: str = "") -> Iterator[str]:
    """`tkds twin` in its own process (its own GIL, as in use); yields the proxy URL."""
    command = [
        sys.executable,
        "-m",
        "tkds",
        "twin",
        "--corpus",
        str(corpus),
        "--port",
        "0",
        "--ca-out",
        str(ca_out),
    ]
    process = subprocess.Popen([*command, "--faults", faults], stderr=subprocess.PIPE, text=True)
    try:
        while not (found := re.search(r"http://127\.0\.0\.1:\d+", process.stderr.readline() or "EOF")):
            if process.poll() is not None:
                raise TkdsError(f"tkds twin exited early: {process.stderr.read().strip()}")
        yield found.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def run_forever(
    corpus: str | Path,
    *,
    port: int,
    ca_out: str | Path,
    faults: str | None,
    seed: int,
    page_format: str,
    on_ready,
) -> None:
    """The CLI's twin: serve in the foreground until Ctrl-C."""
    state = _state(corpus, faults, seed, page_format, 1.0)
    # The indexes live as long as the process: out of every later collection, so that a collection's
    # pause between requests does not grow with the corpus.
    gc.freeze()

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="tkds-twin-") as workdir:
            servers = _Servers(state, port, Path(workdir), Path(ca_out))
            bound = await servers.start()
            on_ready(Twin(f"http://127.0.0.1:{bound}", Path(ca_out), state))
            try:
                await servers.app_task
            finally:
                await servers.stop()

    uvloop.run(main())
