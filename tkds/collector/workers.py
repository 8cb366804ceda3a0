"""`tkds collect --workers N`: several collector processes fill one DuckDB file, which only one writes.

DuckDB lets one process write a file, so the coordinator (the `tkds collect` process) alone opens --db,
and every worker writes a DuckDB file of its own, a part:

- Partitions come from the inputs alone. Each listing target still to discover is one
  ("discover-K", K its place among the command's targets). Then the videos with work left (a page to
  fetch, media to download, stats to refresh, comments) are cut into N by a hash of their id
  (`partition_of`): "fetch-I-of-N".
- For each, the coordinator seeds DB.parts/NAME.duckdb with the rows its worker reads, keeps a copy of
  that seed (NAME.seed.duckdb) and starts `python -m tkds.collector.workers PART` with the run's
  settings on stdin: the ordinary `Collector` on the part, at --rate divided by the workers running.
- A worker writes its summary to NAME.done.json, the completion marker, once its part is closed.
  However it ends (done, failed, killed), the coordinator merges what it changed (the part's rows that
  are not in its seed) into --db in one transaction, by the store's own conflict rules, then deletes
  the part. A kill -9 loses only the work in flight; what the worker had not finished stays pending.
  Parts that a killed coordinator left behind are merged when the next run opens --db.
- Media: the coordinator holds the --media folder's lock; every worker writes MEDIA/ID.mp4 (fetch
  partitions share no video) through its own MEDIA/.partial-NAME, which only its own sweeps clear.

On several machines the same function runs a part: its inputs are the seed file and the spec, its
outputs the part file and its marker, and only the coordinator writes --db.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from tkds.collector import media
from tkds.collector.browser import BrowserSession
from tkds.collector.collect import Collector, read_cookies
from tkds.collector.downloads import MEDIA_GIVE_UP_AFTER
from tkds.collector.drift import FieldCensus, ShapeCount
from tkds.collector.outcome import CollectSummary, RequestCount
from tkds.collector.sources import parse_video_url
from tkds.collector.store import (
    AUTHOR_CONFLICT,
    AUTHOR_STATS_CONFLICT,
    COMMENT_CONFLICT,
    IMAGE_CONFLICT,
    MUSIC_CONFLICT,
    VIDEO_CONFLICT,
    VIDEO_STATS_CONFLICT,
    Store,
)
from tkds.console import progress_bar
from tkds.engines import RayEngine, check_engine, open_engine
from tkds.errors import TkdsError
from tkds.files import write_json
from tkds.ids import preview

MAX_WORKERS = 32  # each worker runs its own Chromium (about 300 MB)
POLL_S = 0.2
WORKER_PARTIAL = ".partial-"  # MEDIA/.partial-NAME: one worker's half-written files
PR_SET_PDEATHSIG = 1  # prctl(2)
RESUME = "re-run the same command to resume"

# How a part's changed rows meet --db: by the store's upsert rules, or, for crawl state and media,
# the part's row replaces the old one (the worker wrote it last). media_images follow their media row.
MERGED = (
    ("videos", VIDEO_CONFLICT),
    ("authors", AUTHOR_CONFLICT),
    ("music", MUSIC_CONFLICT),
    ("video_hashtags", "ON CONFLICT DO NOTHING"),
    ("video_images", IMAGE_CONFLICT),
    ("video_stats", VIDEO_STATS_CONFLICT),
    ("author_stats", AUTHOR_STATS_CONFLICT),
    ("comments", COMMENT_CONFLICT),
)
REPLACED = ("media", "crawl_targets")
NOT_WRITTEN_BY_WORKERS = ("takedown", "dataset_samples", "crawl_runs")

# A fetch part's seed, given TEMP table part_ids (its video ids): what its Collector reads.
FETCH_SEED = (
    ("crawl_targets", "SELECT t.* FROM crawl_targets t JOIN part_ids p ON p.id = t.key "
                      "WHERE t.kind IN ('video', 'media')"),
    ("videos", "SELECT v.* FROM videos v JOIN part_ids p ON p.id = v.id"),
    ("authors", "SELECT * FROM authors WHERE id IN "
                "(SELECT v.author_id FROM videos v JOIN part_ids p ON p.id = v.id)"),
    ("music", "SELECT * FROM music WHERE id IN "
              "(SELECT v.music_id FROM videos v JOIN part_ids p ON p.id = v.id)"),
    ("video_images", "SELECT i.* FROM video_images i JOIN part_ids p ON p.id = i.video_id"),
    ("media", "SELECT m.* FROM media m JOIN part_ids p ON p.id = m.video_id"),
    ("takedown", "SELECT d.* FROM takedown d JOIN part_ids p ON p.id = d.video_id"),
)  # fmt: skip
# A discovery part's seed: its target, every video target (a video another target listed keeps its
# state), and every video's id and source (what counts towards a target's --limit).
DISCOVER_SEED = (
    ("crawl_targets", "SELECT * FROM crawl_targets WHERE kind = 'video' OR (kind = ? AND key = ?)"),
    ("videos", "SELECT id, source FROM videos"),
)
# Summary fields not added up from the workers: the coordinator counts them itself, on --db.
NOT_ADDED = frozenset({"wall_s", "targets_owed", "videos_owed", "media_owed", "warnings"})


def check_workers(workers: object) -> None:
    """Refuse a --workers value the run cannot use."""
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise TkdsError(f"--workers must be a whole number from 1 to {MAX_WORKERS} (got {workers!r})")


def partition_of(video_id: str, parts: int) -> int:
    """The fetch partition of a video among `parts`: from its id alone, the same on every machine."""
    digest = hashlib.md5(video_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % parts


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker's `Collector` is made with: the run's options, but for --rate, which they share.
    `cookies` is the --cookies file (each worker reads it), so no secret goes into a file of ours."""

    limit: int
    concurrency: int
    proxies: list[str]
    ca_cert: str | None
    media_dir: str | None
    comments: int
    cookies: str | None
    detail: str


@dataclass
class Part:
    name: str
    stage: str  # "discover" or "fetch"
    targets: list[tuple[str, str]] = field(default_factory=list)  # discover: its listing target
    video_ids: list[str] = field(default_factory=list)  # fetch: the videos it works on
    urls: list[str] = field(default_factory=list)  # --urls: a fetch part's own; every one for discovery
    refresh_stats: bool = False


def parts_folder(db: Path) -> Path:
    return db.with_name(db.name + ".parts")


def _seed_path(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".duckdb") + ".seed.duckdb")


def _marker_path(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".duckdb") + ".done.json")


def _log_path(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".duckdb") + ".log")


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _remove_part(part: Path) -> None:
    seed = _seed_path(part)
    for path in (part, seed, _marker_path(part), _log_path(part)):
        for made in (path, path.with_name(path.name + ".wal")):
            made.unlink(missing_ok=True)


def sweep_worker_partials(media_dir: Path) -> None:
    """Remove the half-written files of workers that were killed (only with the folder's lock held)."""
    for folder in media_dir.glob(WORKER_PARTIAL + "*"):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


# --- the coordinator
def collect_in_parts(
    collector: Collector,
    settings: WorkerSettings,
    *,
    rate: float,
    targets: list[tuple[str, str]],
    urls: list[str],
    refresh_stats: bool,
    workers: int,
    engine: str = "local",
    ray_address: str | None = None,
) -> None:
    """Run `collector`'s work (on --db) in up to `workers` worker processes, merging their parts into
    --db; the run's summary (`collector.summary`) adds up theirs. A worker that dies is reported, in one
    `TkdsError` at the end, after everything that can still run has run and been merged.

    `engine` "ray" runs each part's `run_part` as a Ray task instead (on the cluster at `ray_address`),
    retried when its node dies; --db's folder and --media must then be mounted on every node."""
    check_engine(engine, ray_address)
    store, summary = collector.store, collector.summary
    url_ids = [parse_video_url(url)[1] for url in urls]
    store.add_targets(targets + [("video", video_id) for video_id in sorted(set(url_ids))])
    given_up = collector.retry_failed()
    discover = []
    for index, (kind, key) in enumerate(dict.fromkeys(targets)):  # a target named twice is one part
        if (kind, key) in given_up:
            summary.targets_failed[f"{kind}:{key}"] = f"{given_up[kind, key]} (not retried)"
        elif store.target(kind, key)["status"] != "done":
            discover.append(Part(f"discover-{index}", "discover", targets=[(kind, key)], urls=urls))
    distributor = open_engine(engine, workers, ray_address) if engine == "ray" else None
    pool = _Pool(collector, settings, rate, workers, distributor)
    try:
        pool.run(discover)
        pool.run(_fetch_parts(collector, urls, refresh_stats, workers))
    finally:
        with contextlib.suppress(OSError):  # every part is merged: an empty folder
            pool.folder.rmdir()
        if distributor is not None:
            distributor.close()
    collector.count_owed(targets)
    if pool.died:
        more = f" (and {len(pool.died) - 1} more)" if len(pool.died) > 1 else ""
        raise TkdsError(f"{pool.died[0]}{more}; {RESUME}")


def _fetch_parts(collector: Collector, urls: list[str], refresh_stats: bool, workers: int) -> list[Part]:
    """The videos with work left, cut into `workers` partitions by id."""
    store = collector.store
    work = {video_id for video_id, _ in store.pending_videos()}
    if collector.media_dir is not None:
        work |= {video_id for video_id, _ in store.videos_needing_media(MEDIA_GIVE_UP_AFTER)}
    if refresh_stats or collector.comments:
        work |= {video_id for video_id, _ in store.known_videos()}
    groups: list[list[str]] = [[] for _ in range(workers)]
    for video_id in sorted(work):
        groups[partition_of(video_id, workers)].append(video_id)
    return [
        Part(
            f"fetch-{index}-of-{workers}",
            "fetch",
            video_ids=group,
            urls=[url for url in urls if partition_of(parse_video_url(url)[1], workers) == index],
            refresh_stats=refresh_stats,
        )
        for index, group in enumerate(groups)
        if group
    ]


class _Pool:
    """Worker processes (or Ray tasks, given `ray`), at most `workers` at a time, each part merged into
    --db as its worker ends."""

    def __init__(
        self,
        collector: Collector,
        settings: WorkerSettings,
        rate: float,
        workers: int,
        ray: RayEngine | None = None,
    ) -> None:
        self.collector, self.settings, self.rate, self.workers = collector, settings, rate, workers
        self.ray = ray
        self.folder = parts_folder(collector.store.path)
        self.died: list[str] = []  # "worker NAME died (signal 9)"

    def run(self, parts: list[Part]) -> None:
        if not parts:
            return
        self.folder.mkdir(exist_ok=True)
        rate = self.rate / min(self.workers, len(parts))  # the workers running share --rate
        waiting, running = list(parts), {}
        errors: list[str] = []
        label = f"collect: {parts[0].stage} ({min(self.workers, len(parts))} workers)"
        with progress_bar(label, len(parts), self.collector.progress) as bar:
            try:
                while waiting or running:
                    while waiting and len(running) < self.workers:
                        part = waiting.pop(0)
                        running[part.name] = (part, self._start(part, rate))
                    time.sleep(POLL_S)
                    for name, (part, process) in list(running.items()):
                        if process.poll() is not None:
                            del running[name]
                            errors += self._finish(part, process)
                            bar.advance(0)
            except BaseException:  # Ctrl-C or a failed merge: stop the others, keep what they stored
                for _, process in running.values():
                    process.terminate()
                for part, process in running.values():
                    process.wait()
                    self._finish(part, process)
                raise
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise TkdsError(f"{errors[0]}{more}")

    def _start(self, part: Part, rate: float) -> subprocess.Popen | _RayPart:
        path = self.folder / f"{part.name}.duckdb"
        _remove_part(path)
        seed_part(self.collector.store, part, path)
        spec = {
            "stage": part.stage,
            "targets": part.targets,
            "urls": part.urls,
            "refresh_stats": part.refresh_stats,
            "rate": rate,
            "settings": dataclasses.asdict(self.settings),
            "parent": os.getpid(),
        }
        if self.ray is not None:
            return _RayPart(self.ray, path.resolve(), spec)  # absolute: any node may run it
        with open(_log_path(path), "wb") as log:  # the worker's stderr: tracebacks stay out of sight
            process = subprocess.Popen(
                [sys.executable, "-m", "tkds.collector.workers", str(path)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError), process.stdin:  # if it died at once, _finish says so
            process.stdin.write(json.dumps(spec).encode())
        return process

    def _finish(self, part: Part, process: subprocess.Popen | _RayPart) -> list[str]:
        """Merge a part whose worker has ended; returns the error it reported, if any."""
        path = self.folder / f"{part.name}.duckdb"
        marker = _read_marker(_marker_path(path))
        errors = []
        if marker is None:
            code = process.returncode
            how = f"signal {-code}" if code < 0 else f"exit status {code}{_last_line(_log_path(path))}"
            self.died.append(f"worker {part.name} died ({how})")
        else:
            absorb(self.collector.summary, marker["summary"])
            if marker["error"]:
                errors.append(f"worker {part.name}: {marker['error']}")
        merge_part(self.collector.store, path)
        if self.collector.media_dir is not None:
            shutil.rmtree(self.collector.media_dir / f"{WORKER_PARTIAL}{part.name}", ignore_errors=True)
        return errors


class _RayPart:
    """A part's `run_part` as a Ray task, seen as `_Pool` sees a worker process (poll, returncode,
    terminate, wait). The task's return value is not needed: its marker file says how it ended."""

    def __init__(self, ray: RayEngine, path: Path, spec: dict[str, Any]) -> None:
        self._ray = ray
        self._task = ray.submit(run_part, path, spec)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._ray.done(self._task):
            self.returncode = 0 if self._ray.succeeded(self._task) else 1
        return self.returncode

    def terminate(self) -> None:
        self._ray.cancel(self._task)

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(POLL_S)
        return self.returncode


def seed_part(store: Store, part: Part, path: Path) -> None:
    """Write `part`'s seed: the rows of --db that its worker reads, in a new part file at `path`, and a
    copy of them beside it (what the merge leaves out)."""
    Store.open(path).close()  # tkds's schema
    db = store.db
    with store.writing():
        db.execute(f"ATTACH {_sql_path(path)} AS tkds_part")
        try:
            if part.stage == "discover":
                ((kind, key),) = part.targets
                for table, select in DISCOVER_SEED:
                    params = [kind, key] if "?" in select else []
                    db.execute(f"INSERT INTO tkds_part.{table} BY NAME {select}", params)
            else:
                db.execute(
                    "CREATE OR REPLACE TEMP TABLE part_ids AS SELECT unnest(?::VARCHAR[]) AS id",
                    [part.video_ids],
                )
                for table, select in FETCH_SEED:
                    db.execute(f"INSERT INTO tkds_part.{table} BY NAME {select}")
                db.execute("DROP TABLE part_ids")
        finally:
            db.execute("DETACH tkds_part")
        seed = _seed_path(path)
        shutil.copyfile(path, seed.with_name(seed.name + ".partial"))
        os.replace(seed.with_name(seed.name + ".partial"), seed)  # the seed's presence: seeding is done


def merge_part(store: Store, path: Path) -> None:
    """Merge into --db, in one transaction, what a worker changed in its part (the rows not in its
    seed), then delete the part. Merging a part twice writes the same rows again."""
    seed = _seed_path(path)
    if path.exists() and seed.exists():
        Store.open(path).close()  # refuses a foreign file; replays a killed worker's last writes
        db = store.db
        with store.writing():
            db.execute(f"ATTACH {_sql_path(path)} AS tkds_part (READ_ONLY)")
            db.execute(f"ATTACH {_sql_path(seed)} AS tkds_seed (READ_ONLY)")
            try:
                _merge(db)
            finally:
                db.execute("DETACH tkds_part")
                db.execute("DETACH tkds_seed")
    _remove_part(path)


def _merge(db) -> None:
    def changed(table: str) -> str:
        return f"(SELECT * FROM tkds_part.{table} EXCEPT SELECT * FROM tkds_seed.{table})"

    db.execute("BEGIN TRANSACTION")
    try:
        db.execute(f"CREATE OR REPLACE TEMP TABLE part_media AS SELECT video_id FROM {changed('media')}")
        db.execute("DELETE FROM media_images WHERE video_id IN (SELECT video_id FROM part_media)")
        db.execute(
            """INSERT INTO media_images BY NAME SELECT * FROM tkds_part.media_images
               WHERE video_id IN (SELECT video_id FROM part_media)"""
        )
        db.execute("DROP TABLE part_media")
        for table, conflict in MERGED:
            db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {changed(table)} {conflict}")
        for table in REPLACED:
            db.execute(f"INSERT OR REPLACE INTO {table} BY NAME SELECT * FROM {changed(table)}")
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended the transaction
            db.execute("ROLLBACK")
        raise


def merge_leftover_parts(store: Store) -> int:
    """Merge the parts a killed coordinator left beside --db (before anything else writes it); returns
    how many there were."""
    folder = parts_folder(store.path)
    if not folder.is_dir():
        return 0
    parts = sorted(p for p in folder.glob("*.duckdb") if not p.name.endswith(".seed.duckdb"))
    for path in parts:
        merge_part(store, path)
    shutil.rmtree(folder, ignore_errors=True)
    return len(parts)


def _last_line(log: Path) -> str:
    """ ": " and the last line a worker wrote (what it died of), or nothing."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {preview(lines[-1], 160)}" if lines else ""


def _read_marker(path: Path) -> dict | None:
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("summary"), dict) else None


# --- summaries: a worker's as JSON, and added to the run's
def summary_dict(summary: CollectSummary) -> dict[str, Any]:
    """Every field of `summary` as JSON."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(summary):
        value = getattr(summary, item.name)
        if isinstance(value, RequestCount):
            out[item.name] = dict(value.by_kind)
        elif isinstance(value, FieldCensus):
            out[item.name] = value.as_dict()
        elif isinstance(value, set):
            out[item.name] = sorted(value)
        else:
            out[item.name] = value
    return out


def absorb(total: CollectSummary, part: dict[str, Any]) -> None:
    """Add a worker's summary (`summary_dict`) to the run's: counts, requests, videos and fields add
    up; a stage's time is its slowest worker's. What is still owed is counted on --db afterwards."""
    for item in dataclasses.fields(total):
        name, value, theirs = item.name, getattr(total, item.name), part.get(item.name)
        if theirs is None or name in NOT_ADDED:
            continue
        if name == "stage_s":
            for stage, seconds in theirs.items():
                value[stage] = max(value.get(stage, 0.0), seconds)
        elif isinstance(value, RequestCount):
            value.by_kind.update(theirs)
        elif isinstance(value, FieldCensus):
            _absorb_census(value, theirs)
        elif isinstance(value, set | Counter | dict):
            value.update(theirs)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            setattr(total, name, value + theirs)


def _absorb_census(census: FieldCensus, fields: dict) -> None:
    for source, shapes in fields.items():
        for shape, counts in shapes.items():
            count = census.counts.setdefault((source, shape), ShapeCount())
            count.items += counts["items"]
            count.missing.update(counts["missing"])
            count.keys.update(counts["unseen_keys"])
            count.keys_untracked += counts["unseen_keys_untracked"]


# --- a worker
def run_part(path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one part: the ordinary `Collector` on the part file at `path`, as `spec` says. Writes the
    completion marker (its summary, and its error or None) once the part is closed, and returns it."""
    settings = WorkerSettings(**spec["settings"])
    media_dir = Path(settings.media_dir) if settings.media_dir else None
    # This process's half-written files: a sibling's sweep of MEDIA/.partial must not take them.
    media.PARTIAL_DIR = f"{WORKER_PARTIAL}{path.stem}"
    collector, error = None, None
    try:
        with Store.open(path) as store:
            collector = (_DiscoverCollector if spec["stage"] == "discover" else _FetchCollector)(
                store,
                limit=settings.limit,
                rate=spec["rate"],
                concurrency=settings.concurrency,
                proxies=settings.proxies,
                ca_cert=Path(settings.ca_cert) if settings.ca_cert else None,
                media_dir=media_dir,
                comments=settings.comments,
                cookies=read_cookies(Path(settings.cookies)) if settings.cookies else None,
                progress=False,
                detail_mode=settings.detail,
            )
            asyncio.run(collector.run_part(spec))
    except TkdsError as failure:
        error = str(failure)
    except KeyboardInterrupt:
        error = "interrupted"
    except Exception as failure:  # reported in one line by the coordinator; the traceback to the log
        traceback.print_exc()
        error = f"internal error: {type(failure).__name__}: {str(failure)[:200]}"
    marker = {"summary": summary_dict(collector.summary if collector else CollectSummary()), "error": error}
    write_json(_marker_path(path), marker)
    return marker


class _DiscoverCollector(Collector):
    """A discovery part's: its listing targets only; their videos' pages and media are fetch parts'."""

    async def run_part(self, spec: dict[str, Any]) -> None:
        self.page_required = {parse_video_url(url)[1] for url in spec["urls"]}
        async with BrowserSession(
            self.proxies[0], self.ca_cert is not None, self.limiter, self.cookies, self.summary.requests
        ) as browser:
            with self.stage("discover"):
                for kind, key in spec["targets"]:
                    await self.discover(browser, kind, key, {})


class _FetchCollector(Collector):
    """A fetch part's: the ordinary run, over its videos only (its seed holds no listing target)."""

    async def run_part(self, spec: dict[str, Any]) -> None:
        await self.run([], spec["urls"], spec["refresh_stats"])


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the coordinator dies (kill -9 included), so no orphan goes
    on writing a part that the next run merges."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


def main() -> None:
    """`python -m tkds.collector.workers PART`, the spec as JSON on stdin: how the coordinator starts a
    worker. Exits 0 when the part is done, 1 when it reported an error."""
    spec = json.loads(sys.stdin.buffer.read())
    _die_with(spec["parent"])
    marker = run_part(Path(sys.argv[1]), spec)
    sys.exit(0 if marker["error"] is None else 1)


if __name__ == "__main__":
    main()
