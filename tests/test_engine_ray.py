"""`--engine ray`: the same worker functions as Ray tasks on a real two-node local cluster, and the
default path that never imports Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_collect_workers import TWIN_SEED, busiest_users, collect_command, rows, run
from tkds.collector.workers import parts_folder
from tkds.dataset.build import ShardParams, build_shards
from tkds.engines import LocalEngine, RayEngine, check_engine, open_engine
from tkds.errors import TkdsError
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
def ray_cluster() -> Iterator[str]:
    """A real local Ray cluster of two one-CPU nodes (its start-up paid once); yields its address."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        yield cluster.address
    finally:
        cluster.shutdown()


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


@pytest.mark.slow
def test_collect_on_a_two_node_ray_cluster_equals_local(
    twin_corpus: Path, tmp_path: Path, ray_cluster: str
) -> None:
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        run(collect_command(twin, tmp_path / "local.duckdb", tmp_path / "local", busiest_users(twin), 2))
    with serve(twin_corpus, seed=TWIN_SEED, speed=0) as twin:
        command = collect_command(twin, tmp_path / "ray.duckdb", tmp_path / "ray", busiest_users(twin), 2)
        run([*command, "--engine", "ray", "--ray-address", ray_cluster])
        served = list(twin.state.requests)
    assert len(list((tmp_path / "ray").glob("*.mp4"))) == 24
    assert rows(tmp_path / "ray.duckdb") == rows(tmp_path / "local.duckdb")
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
