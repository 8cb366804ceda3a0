"""Distributors: one worker function, run by a local pool or by Ray, unchanged.

The unit of work of a stage (one post's transcode for `tkds shard`, one collect part for
`tkds collect`) is a plain importable function of picklable arguments that writes its output into a
folder every node mounts and its completion marker last. A distributor only decides where the calls
run: `LocalEngine` on threads of this process, `RayEngine` as Ray tasks of the SAME function on the
cluster's nodes, retried (`max_retries`) when a node dies. Results come back in the order of the inputs,
with only a window of calls in flight, so a 290,000-post build holds a handful of futures.

Ray is imported only when `--engine ray` is chosen: the default path never pays its start-up.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from tkds import ids
from tkds.errors import TkdsError

__all__ = ["ENGINES", "LocalEngine", "RayEngine", "check_engine", "open_engine"]

ENGINES = ("local", "ray")
RAY_RETRIES = 3  # attempts after a worker or node dies mid-task
RAY_INSTALL = "pip install 'tkds[ray]'"
REACH_TIMEOUT_S = 5.0

Item = TypeVar("Item")
Result = TypeVar("Result")


def check_engine(engine: object, address: object = None) -> None:
    """Refuse an unknown --engine, or a --ray-address without --engine ray, in one line."""
    if engine not in ENGINES:
        raise TkdsError(f"--engine {ids.preview(engine)}: choose one of {', '.join(ENGINES)}")
    if address is not None and (engine != "ray" or not isinstance(address, str) or not address):
        raise TkdsError(f"--ray-address {ids.preview(address)}: give it with --engine ray (e.g. auto)")


class LocalEngine:
    """Threads of this process; the work function itself runs its subprocess (ffmpeg, a part worker)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(
        self, work: Callable[[Item], Result], items: Iterable[Item], ahead: int
    ) -> Iterator[tuple[Item, Result]]:
        """(item, work(item)) in the order of `items`, at most `ahead` submitted at a time."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            yield from _in_order(pool.submit, _future_result, work, items, ahead, Future.cancel)

    def close(self) -> None:
        pass


class RayEngine:
    """Ray tasks of the same function on a cluster (`address`, e.g. "auto"), or a local Ray when None.

    Each task asks one CPU, so a node runs as many at a time as it has cores. A task whose worker or node
    dies is run again, up to `RAY_RETRIES` times; the work function's markers make that safe. One that
    dies every time is a one-line `TkdsError` naming its item and the fix (re-run: finished work is kept).
    """

    name = "ray"

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise TkdsError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL}") from None
        if address and address != "auto":
            _check_reachable(address)
        self.workers = workers
        self._ray = ray
        started = time.perf_counter()
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                if address:
                    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                else:
                    ray.init(num_cpus=workers, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise TkdsError(
                    f"--ray-address {ids.preview(address)}: cannot join a Ray cluster ({first[:200]}); "
                    "start one with `ray start --head` or give its address"
                ) from None
        self.startup_s = time.perf_counter() - started
        self.retries = RAY_RETRIES
        self._remote = ray.remote(num_cpus=1, max_retries=self.retries, retry_exceptions=False)(_call)

    def map(
        self, work: Callable[[Item], Result], items: Iterable[Item], ahead: int
    ) -> Iterator[tuple[Item, Result]]:
        """(item, work(item)) in the order of `items`, at most `ahead` tasks in flight."""
        ray = self._ray
        work_ref = ray.put(work)

        def submit(function: Callable, item: Any) -> Any:
            return self._remote.remote(work_ref, item)

        def result(item: Any, task: Any) -> Any:
            try:
                return ray.get(task)
            except ray.exceptions.RayTaskError:
                raise  # the work function's own exception (a TkdsError stays one)
            except ray.exceptions.RayError as error:  # its worker or node died, every retry spent
                raise TkdsError(
                    f"item {ids.preview(getattr(item, 'id', item))}: its Ray task died "
                    f"({type(error).__name__}) and was retried {self.retries} times; "
                    "re-run the same command to resume (finished work is kept)"
                ) from None

        yield from _in_order(submit, result, work, items, ahead, ray.cancel)

    def submit(self, work: Callable[..., Any], *args: Any) -> Any:
        """Run `work(*args)` as one task; returns its handle for `done`, `succeeded` and `cancel`."""
        return self._remote.remote(work, *args)

    def done(self, task: Any) -> bool:
        ready, _ = self._ray.wait([task], timeout=0)
        return bool(ready)

    def succeeded(self, task: Any) -> bool:
        """Whether a finished task returned (its retries spent on a dead node, or a crash, is False)."""
        try:
            self._ray.get(task)
        except Exception:  # a RayTaskError, WorkerCrashedError, NodeDiedError, TaskCancelledError
            return False
        return True

    def cancel(self, task: Any) -> None:
        self._ray.cancel(task, force=True)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def _check_reachable(address: str) -> None:
    """Refuse a HOST:PORT no cluster answers on, in one line (ray.init would wait on it for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TkdsError(f"--ray-address {ids.preview(address)}: give HOST:PORT of a Ray head, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as error:
        raise TkdsError(
            f"--ray-address {ids.preview(address)}: no Ray head answers there ({error.strerror or error}); "
            "start one with `ray start --head` or give its address"
        ) from None


def _call(work: Callable[..., Any], *args: Any) -> Any:
    """Every task's body: the stage's own worker function, called unchanged."""
    return work(*args)


def open_engine(engine: str, workers: int, address: str | None = None) -> LocalEngine | RayEngine:
    """The distributor named by --engine."""
    check_engine(engine, address)
    return RayEngine(workers, address) if engine == "ray" else LocalEngine(workers)


def _future_result(item: Any, future: Future) -> Any:
    return future.result()


def _in_order(
    submit: Callable[[Callable, Any], Any],
    result: Callable[[Any, Any], Any],
    work: Callable,
    items: Iterable,
    ahead: int,
    cancel: Callable[[Any], Any],
) -> Iterator[tuple[Any, Any]]:
    running: deque = deque()
    try:
        for item in items:
            running.append((item, submit(work, item)))
            if len(running) >= ahead:
                done, future = running.popleft()
                yield done, result(done, future)
        while running:
            done, future = running.popleft()
            yield done, result(done, future)
    finally:  # closed early (a full disk): what has not started never starts
        for _, future in running:
            cancel(future)
