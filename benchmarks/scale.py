"""Every stage at thesis scale: N videos and N/10, on this machine, in one run.

synth      `tkds synth --media-pool K` (full metadata for every video, K shared clips)
twin       `tkds twin` on that corpus: seconds until it serves, and its resident memory over the run
collect    `tkds collect --trending --no-media --limit N --rate 1000 --concurrency 8` through the twin
media      the same with media, for a fixed sample of videos (--media-sample)
shard      `tkds shard` on the media sample (select, dedupe, split, transcode, write)
dedupe     benchmarks/dedupe.py at N: the near-duplicate search, clusters and split on frame hashes
tasks      benchmarks/tasks.py at N: every bench task on synthetic embeddings of the gpu-full width

For each stage: seconds, videos/s, peak resident memory of its whole process tree (Chromium included),
and its on-disk size; `vs N/10` is the stage's videos/s at N over its videos/s at N/10, so 1.0 means
linear (the media and shard stages work on the same sample at both sizes, so theirs says whether the
corpus size slows them). The last line is one JSON object keyed by stage.

`--engine ray` runs the collect, media and shard stages' work as Ray tasks (`--engine ray` of those
commands): on the cluster at `--ray-address`, or on a local Ray that this script starts once (its
start-up is printed, not counted in any stage). A stage's peak memory then includes the local Ray node's
raylet and workers, where its Chromium and ffmpeg run. `--workers N` is each of those commands' --workers.

  python benchmarks/scale.py [--videos 29000] [--pool 256] [--media-sample 300] [--out DIR]
                             [--engine local|ray] [--ray-address ADDRESS] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb

BIN = Path(sys.executable).parent
BENCHMARKS = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
COLLECT_FLAGS = ["--rate", "1000", "--concurrency", "8"]


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        todo += children.get(pid, [])
    return total


class TreePeak:
    """The highest resident memory of process trees (added up), sampled every 0.5 s in a thread."""

    def __init__(self, *pids: int) -> None:
        self.pids, self.peak = pids, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, sum(tree_rss(pid) for pid in self.pids))
            if self._done.wait(0.5):
                return

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def run(command: list[str], log: Path, also: tuple[int, ...] = ()) -> dict:
    """Run a command to its end; its seconds, peak memory (its tree's, and `also`'s trees) and last
    output line."""
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        peak = TreePeak(process.pid, *also)
        code = process.wait()
    figures = {"seconds": time.perf_counter() - started, "peak_rss": peak.stop()}
    lines = log.read_text(errors="replace").strip().splitlines()
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({code}); see {log}: {lines[-1:]}")
    figures["last_line"] = lines[-1] if lines else ""
    return figures


def folder_bytes(path: Path) -> int:
    """Bytes on disk under `path`, not following links (a pooled corpus's media are links)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink() and p.is_file())


class Twin:
    """`tkds twin` on a corpus, in its own process, with its readiness time and memory."""

    def __init__(self, corpus: Path, log: Path) -> None:
        self.log = log
        self.started = time.perf_counter()
        command = [str(BIN / "tkds"), "twin", "--corpus", str(corpus), "--port", "0"]
        with open(log, "w") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [*command, "--ca-out", str(corpus.parent / "twin-ca.pem")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.peak = TreePeak(self.process.pid)
        while not (match := re.search(r"proxy\s+(http://\S+)", log.read_text(errors="replace"))):
            if self.process.poll() is not None:
                raise SystemExit(f"the twin stopped; see {log}")
            time.sleep(0.1)
        self.ready_s = time.perf_counter() - self.started
        self.proxy, self.ca = match.group(1), str(corpus.parent / "twin-ca.pem")

    def stop(self) -> int:
        self.process.terminate()
        self.process.wait(30)
        return self.peak.stop()


def videos_in(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute("SELECT count(*) FROM videos").fetchone()[0]


class Engine:
    """The --engine flags of the collect, media and shard commands, and the processes that do their work
    outside the command's own tree (a local Ray node's raylet, whose workers run the tasks)."""

    def __init__(self, engine: str, address: str | None, workers: int | None) -> None:
        self.name, self.address, self.startup_s, self.raylets = engine, address, 0.0, ()
        self._ray = None
        if engine == "ray" and address is None:
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, logging_level="ERROR")
            self.startup_s, self._ray = time.perf_counter() - started, ray
            self.address = ray.get_runtime_context().gcs_address
            self.raylets = tuple(pid for pid in child_pids(os.getpid()) if "raylet" in command_name(pid))
        self.flags = ["--workers", str(workers)] if workers else []
        if engine == "ray":
            self.flags += ["--engine", "ray", "--ray-address", self.address]

    def close(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return os.path.basename(cmdline.read().split(b"\0")[0].decode(errors="replace"))
    except OSError:
        return ""


def one_size(videos: int, pool: int, sample: int, folder: Path, engine: Engine) -> dict[str, dict]:
    """Every stage on a corpus of `videos` posts; figures keyed by stage."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus, tkds = folder / "corpus", str(BIN / "tkds")
    figures: dict[str, dict] = {}

    pooled = ["--videos", str(videos), "--media-pool", str(pool), "--photo-share", "0"]
    synth = run([tkds, "synth", str(corpus), *pooled], folder / "synth.log")
    figures["synth"] = {**synth, "videos": videos, "disk_bytes": folder_bytes(corpus)}

    twin = Twin(corpus, folder / "twin.log")
    try:
        figures["twin"] = {"seconds": twin.ready_s, "videos": videos}
        via = ["--proxy", twin.proxy, "--ca-cert", twin.ca]
        meta_db = folder / "metadata.duckdb"
        collect = run(
            [tkds, "collect", "--trending", "--no-media", "--limit", str(videos), *COLLECT_FLAGS, *via,
             "--db", str(meta_db), *engine.flags],
            folder / "collect.log", engine.raylets,
        )  # fmt: skip
        stored = videos_in(meta_db)
        figures["collect"] = {
            **collect, "videos": stored, "disk_bytes": meta_db.stat().st_size,
            "db_bytes_per_1000": meta_db.stat().st_size * 1000 / max(stored, 1),
        }  # fmt: skip
        media_db, media = folder / "media.duckdb", folder / "media"
        collect_media = run(
            [tkds, "collect", "--trending", "--limit", str(sample), *COLLECT_FLAGS, *via,
             "--db", str(media_db), "--media", str(media), *engine.flags],
            folder / "media.log", engine.raylets,
        )  # fmt: skip
        figures["media"] = {**collect_media, "videos": videos_in(media_db), "disk_bytes": folder_bytes(media)}
    finally:
        figures["twin"]["peak_rss"] = twin.stop()

    shards = folder / "shards"
    shard = run(
        [tkds, "shard", "--db", str(media_db), "--out", str(shards), *engine.flags],
        folder / "shard.log",
        engine.raylets,
    )
    figures["shard"] = {**shard, "videos": figures["media"]["videos"], "disk_bytes": folder_bytes(shards)}

    python = str(BIN / "python")
    dedupe = run(
        [python, str(BENCHMARKS / "dedupe.py"), "--videos", str(videos), "--reference", "0"],
        folder / "dedupe.log",
    )
    figures["dedupe"] = {**dedupe, "videos": videos, "detail": json.loads(dedupe["last_line"])}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=29_000)
    parser.add_argument("--pool", type=int, default=256, help="--media-pool: distinct clips")
    parser.add_argument("--media-sample", type=int, default=300, help="videos collected with media")
    parser.add_argument("--out", type=Path, default=None, help="keep everything here (default: a temp dir)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="collect/shard on Ray")
    parser.add_argument("--ray-address", default=None, help="with --engine ray: a running cluster")
    parser.add_argument("--workers", type=int, default=None, help="--workers of collect and shard")
    args = parser.parse_args()
    if args.ray_address and args.engine != "ray":
        raise SystemExit("--ray-address goes with --engine ray")
    if args.videos < 10 * args.media_sample:
        raise SystemExit(f"--videos must be at least 10 x --media-sample ({10 * args.media_sample})")
    engine = Engine(args.engine, args.ray_address, args.workers)
    root = args.out or Path(tempfile.mkdtemp(prefix="tkds-scale-"))
    try:
        tenth = one_size(args.videos // 10, args.pool, args.media_sample, root / "tenth", engine)
        full = one_size(args.videos, args.pool, args.media_sample, root / "full", engine)
        tasks = run(
            [str(BIN / "python"), str(BENCHMARKS / "tasks.py"), "--videos", str(args.videos)],
            root / "tasks.log",
        )
    finally:
        engine.close()
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB, load {load:.1f}")  # fmt: skip
    print(f"videos: {args.videos:,} (and {args.videos // 10:,}); pool {args.pool} clips; "
          f"media sample {args.media_sample}")  # fmt: skip
    started = f", a local Ray started in {engine.startup_s:.1f} s" if engine.startup_s else ""
    print(f"engine: {engine.name} (flags: {' '.join(engine.flags) or 'none'}{started})")
    print(f"{'stage':8} {'videos':>8} {'s':>9} {'videos/s':>9} {'vs N/10':>8} {'peak MB':>8} {'disk MB':>8}")
    result: dict[str, dict] = {}
    for stage, figures in full.items():
        per_s = figures["videos"] / figures["seconds"]
        small = tenth[stage]
        ratio = per_s / (small["videos"] / small["seconds"])
        peak_mb = figures.get("peak_rss", 0) / 2**20
        disk_mb = figures.get("disk_bytes", 0) / 2**20
        result[stage] = {
            "videos": figures["videos"], "seconds": round(figures["seconds"], 2),
            "videos_per_s": round(per_s, 1), "ratio_vs_tenth": round(ratio, 3),
            "peak_rss_mb": round(peak_mb, 1), "disk_mb": round(disk_mb, 1),
        }  # fmt: skip
        if stage == "collect":
            result[stage]["db_kb_per_1000"] = round(figures["db_bytes_per_1000"] / 1024, 1)
        print(f"{stage:8} {figures['videos']:8,} {figures['seconds']:9.1f} {per_s:9.1f} {ratio:8.2f} "
              f"{peak_mb:8.0f} {disk_mb:8.0f}")  # fmt: skip
    task_figures = json.loads(tasks["last_line"])["tasks"]
    for name, figures in task_figures.items():
        print(f"{'task ' + name:24} {figures['seconds']:9.1f} s, vs N/10 {figures['ratio_vs_tenth']:.2f}"
              f" (CPU), peak {figures['peak_rss_gib'] * 1024:.0f} MB")  # fmt: skip
    result["tasks"] = {"seconds": round(tasks["seconds"], 1), "by_task": task_figures}
    result["load"] = load
    result["engine"] = {
        "name": engine.name,
        "flags": engine.flags,
        "ray_startup_s": round(engine.startup_s, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
