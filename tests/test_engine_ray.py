"""`--engine ray`: the same worker functions as Ray tasks on a real two-node local cluster, and the
default path that never imports Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.test_collect_workers import TWIN_SEED, busiest_users, collect_command, rows, run
from tkds import engines
from tkds.collector.workers import parts_folder
from tkds.dataset.build import ShardParams, build_shards
from tkds.engines import LocalEngine, RayEngine, check_engine, open_engine
from tkds.errors import TkdsError
from tkds.tiktok import VIDEO_CDN_HOST
from tkds.twin import serve


def test_default_path_never_imports_ray() -> None:
    code = "import sys, tkds.cli, tkds.dataset.build, tkds.collector.workers; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_missing_ray_is_one_line_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(TkdsError, match=r"pip install 'tkds\[ray\]'"):
        open_engine("ray", 1)


def test_engine_options_are_checked() -> None:
    with pytest.raises(TkdsError, match="--engine"):
        check_engine("spark")
    with pytest.raises(TkdsError, match="--ray-address"):
        check_engine("local", "auto")


def test_local_engine_keeps_input_order() -> None:
    results = list(LocalEngine(3).map(lambda n: n * n, range(10), ahead=4))
    assert results == [(n, n * n) for n in range(10)]


def _shard_digests(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "dataset.json").read_text())
    return {url: entry["sha256"] for url, entry in manifest["shards"].items()}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A real local Ray cluster of two one-CPU nodes (its start-up paid once): a head, which drivers on
    this machine join, and one worker node, which the node-kill tests kill and replace."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def ray_cluster(cluster: Any) -> str:
    """The two-node cluster's address."""
    return cluster.address


@pytest.mark.slow
def test_shard_on_a_two_node_ray_cluster_equals_local(
    synth_db: Path, tmp_path: Path, ray_cluster: str
) -> None:
    db = tmp_path / "tk.duckdb"
    shutil.copy(synth_db, db)
    params = ShardParams(samples_per_shard=3, size=64, fps=5.0)
    local = build_shards(db, tmp_path / "local", params, workers=2, progress=False)
    remote = build_shards(
        db, tmp_path / "ray", params, workers=2, progress=False, engine="ray", ray_address=ray_cluster
    )
    assert remote.prepared == local.prepared == 12
    assert not remote.failures
    assert _shard_digests(tmp_path / "ray") == _shard_digests(tmp_path / "local")


@pytest.mark.slow
def test_a_relaunch_on_ray_redoes_only_unfinished_posts(
    synth_db: Path, tmp_path: Path, ray_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "tk.duckdb"
    shutil.copy(synth_db, db)
    params = ShardParams(samples_per_shard=3, size=64, fps=5.0)
    submitted: list[str] = []
    ray_map = RayEngine.map

    def killed_after_five(self, work, items, ahead):  # the driver dies once 5 results are in
        for count, (item, result) in enumerate(ray_map(self, work, items, ahead), 1):
            yield item, result
            if count == 5:
                raise KeyboardInterrupt

    def counted(self, work, items, ahead):
        items = list(items)
        submitted.extend(video.id for video in items)
        yield from ray_map(self, work, items, ahead)

    monkeypatch.setattr(RayEngine, "map", killed_after_five)
    with pytest.raises(KeyboardInterrupt):
        build_shards(
            db, tmp_path / "out", params, workers=2, progress=False, engine="ray", ray_address=ray_cluster
        )
    monkeypatch.setattr(RayEngine, "map", counted)
    summary = build_shards(
        db, tmp_path / "out", params, workers=2, progress=False, engine="ray", ray_address=ray_cluster
    )
    assert summary.prepared == 12 and not summary.failures
    assert len(submitted) <= 12 - 5  # the five finished before the kill are reused, not redone
    build_shards(db, tmp_path / "local", params, workers=2, progress=False)
    assert _shard_digests(tmp_path / "out") == _shard_digests(tmp_path / "local")


@pytest.fixture(scope="module")
def local_collection(twin_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local two-worker collection from the twin: its folder holds local.duckdb and local/ (media)."""
    out = tmp_path_factory.mktemp("collect")
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        run(collect_command(twin, out / "local.duckdb", out / "local", busiest_users(twin), 2))
    return out


@pytest.mark.slow
def test_collect_on_a_two_node_ray_cluster_equals_local(
    twin_corpus: Path, tmp_path: Path, ray_cluster: str, local_collection: Path
) -> None:
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        command = collect_command(twin, tmp_path / "ray.duckdb", tmp_path / "ray", busiest_users(twin), 2)
        run([*command, "--engine", "ray", "--ray-address", ray_cluster])
        served = list(twin.state.requests)
    assert len(list((tmp_path / "ray").glob("*.mp4"))) == 24
    assert rows(tmp_path / "ray.duckdb") == rows(local_collection / "local.duckdb")
    assert not parts_folder(tmp_path / "ray.duckdb").exists()
    busiest = max(_busiest_windows(served, WINDOW_S).items(), key=lambda item: item[1])
    print("busiest host window:", busiest, "requests:", len(served))
    # --rate 10 shared by the two workers on two nodes: a window holds at most 10 * WINDOW_S requests
    # per host, and one more per worker (each may start on its own slot at the window's edge).
    assert busiest[1] <= 10 * WINDOW_S + 2, busiest


WINDOW_S = 3.0


def _busiest_windows(requests: list[tuple[float, str, str]], window: float) -> dict[str, int]:
    """host → the most requests the twin logged for it within any `window` seconds."""
    by_host: dict[str, list[float]] = {}
    for at, host, _ in requests:
        by_host.setdefault(host, []).append(at)
    most = {}
    for host, times in by_host.items():
        times.sort()
        start, most[host] = 0, 0
        for end, at in enumerate(times):
            while at - times[start] > window:
                start += 1
            most[host] = max(most[host], end - start + 1)
    return most


# --- a worker node killed mid-run
class NodeKill:
    """From a thread: once a task runs on the cluster's worker node and `ready()` holds, kill -9 that
    node (its raylet and agents, by `remove_node`, then every process that was below its raylet: the
    task's worker and its ffmpeg or Chromium). On exit, a fresh one-CPU node takes its place."""

    def __init__(self, cluster: Any, ready: Callable[[], bool] = lambda: True) -> None:
        self.cluster, self.ready = cluster, ready
        self.killed: list[str] = []  # the command lines of the processes below the raylet
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> NodeKill:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.killed:
            self.cluster.add_node(num_cpus=1)  # two nodes again for the next test

    def _watch(self) -> None:
        try:
            (node,) = self.cluster.worker_nodes
            raylet = node.all_processes["raylet"][0].process.pid
            while not self._stop.wait(0.02):
                below = _descendants(raylet)
                commands = [_command(pid) for pid in below]
                if any(c.startswith("ray::_call") for c in commands) and self.ready():
                    self.cluster.remove_node(node, allow_graceful=False)
                    for pid in below:
                        with suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.killed = commands
                    return
        except BaseException as error:  # the test reports it
            self.error = error


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ran_on_the_worker_node(kill: NodeKill) -> None:
    assert kill.error is None, kill.error
    assert any(c.startswith("ray::_call") for c in kill.killed), "no task ran on the worker node"
    print("killed below the raylet:", [c.split()[0] for c in kill.killed if c])


def _prepared_ids(out: Path) -> set[str]:
    """The posts whose transcode is published in OUT/.work (their facts file written last)."""
    return {
        folder.name
        for folder in (out / ".work").glob("*")
        if not folder.name.endswith(".partial") and (folder / "facts.json").is_file()
    }


def _sample_keys(out: Path) -> list[str]:
    """Every sample key in OUT's tars, as often as it appears."""
    keys = []
    for path in sorted(out.rglob("*.tar")):
        with tarfile.open(path) as tar:
            keys += sorted({member.name.split(".")[0] for member in tar.getmembers()})
    return keys


def _files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(out.rglob("*")) if p.is_file()}


SHARD = ShardParams(samples_per_shard=3, size=64, fps=5.0)


@pytest.fixture(scope="module")
def local_build(synth_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "shards"
    build_shards(synth_db, out, SHARD, workers=2, progress=False)
    return out


def _ray_build(db: Path, out: Path, address: str):
    return build_shards(db, out, SHARD, workers=2, progress=False, engine="ray", ray_address=address)


@pytest.mark.slow
def test_shard_survives_a_worker_node_killed_mid_run(
    synth_db: Path, tmp_path: Path, cluster: Any, local_build: Path
) -> None:
    db, out = tmp_path / "tk.duckdb", tmp_path / "ray"
    shutil.copy(synth_db, db)
    with NodeKill(cluster) as kill:
        summary = _ray_build(db, out, cluster.address)
    _ran_on_the_worker_node(kill)
    assert summary.prepared == 12 and not summary.failures  # the killed tasks ran again on the head
    assert _shard_digests(out) == _shard_digests(local_build)
    keys = _sample_keys(out)
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(_sample_keys(local_build))
    written = _files(out)
    again = _ray_build(db, out, cluster.address)  # the same command again: nothing to redo
    assert again.shards_reused == again.shards == summary.shards
    assert _files(out) == written


@pytest.mark.slow
def test_a_node_killed_with_no_retries_left_is_one_line_and_a_rerun_resumes(
    synth_db: Path,
    tmp_path: Path,
    cluster: Any,
    local_build: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, out = tmp_path / "tk.duckdb", tmp_path / "ray"
    shutil.copy(synth_db, db)
    monkeypatch.setattr(engines, "RAY_RETRIES", 0)
    with NodeKill(cluster, ready=lambda: bool(_prepared_ids(out))) as kill, pytest.raises(TkdsError) as error:
        _ray_build(db, out, cluster.address)
    _ran_on_the_worker_node(kill)
    message = str(error.value)
    assert "\n" not in message and "re-run the same command to resume" in message, message
    done = _prepared_ids(out)
    print(message, "| prepared before the kill:", len(done))
    monkeypatch.setattr(engines, "RAY_RETRIES", 3)
    submitted: list[str] = []
    ray_map = RayEngine.map

    def counted(self, work, items, ahead):
        items = list(items)
        submitted.extend(video.id for video in items)
        yield from ray_map(self, work, items, ahead)

    monkeypatch.setattr(RayEngine, "map", counted)
    summary = _ray_build(db, out, cluster.address)
    assert summary.prepared == 12 and not summary.failures
    assert done and not done & set(submitted), (done, submitted)  # what was written is not redone
    assert len(done) + len(submitted) == 12
    assert _shard_digests(out) == _shard_digests(local_build)


@pytest.mark.slow
def test_collect_survives_a_worker_node_killed_mid_run(
    twin_corpus: Path, tmp_path: Path, cluster: Any, local_collection: Path
) -> None:
    db, media = tmp_path / "ray.duckdb", tmp_path / "ray"
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        command = collect_command(twin, db, media, busiest_users(twin), 2)
        command += ["--engine", "ray", "--ray-address", cluster.address]
        with NodeKill(cluster, ready=lambda: any(media.glob("*.mp4"))) as kill:  # in the fetch stage
            run(command)  # the killed part's task ran again on the head, resuming its part file
        _ran_on_the_worker_node(kill)
        assert rows(db) == rows(local_collection / "local.duckdb")
        written, before = _files(media), len(twin.state.requests)
        run(command)  # the same command again: no video downloaded twice
        downloads = [host for _, host, _ in list(twin.state.requests)[before:] if host == VIDEO_CDN_HOST]
    assert downloads == [] and _files(media) == written
    mp4s = {p.name: p.read_bytes() for p in media.glob("*.mp4")}
    assert mp4s == {p.name: p.read_bytes() for p in (local_collection / "local").glob("*.mp4")}
    assert len(mp4s) == 24 and rows(db) == rows(local_collection / "local.duckdb")
    assert not parts_folder(db).exists() and not list(media.glob(".partial*"))
