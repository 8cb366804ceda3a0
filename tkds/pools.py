"""Process pools that a user's script can start without `if __name__ == "__main__":`.

A spawn-context worker re-imports the parent's main script before it runs anything, so a script that calls
tkds at its top level would run again in every worker, and start pools from there (Python's "start a new
process before the current process has finished its bootstrapping phase"). tkds's workers run only
tkds's own functions, so they never need the user's script: while a tkds pool is open, the main module
says it is `__main__` by name, which multiprocessing skips when it prepares a worker.
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


@contextmanager
def spawn_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context ProcessPoolExecutor of `workers` processes whose workers never run the caller's
    script; only importable functions (not ones defined in that script) can be submitted to it."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    by_name = main is not None and getattr(main, "__file__", None) is not None
    if by_name:
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool
    finally:
        if by_name:
            main.__spec__ = spec
