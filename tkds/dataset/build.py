"""`tkds shard`: select → prepare (transcode) → dedupe → split → write, from the collector's DuckDB.

Each video is prepared once into OUT/.work/ID/ (kept across a killed run, `tkds.dataset.prepare`), so
near-duplicate detection can use the frame hashes that the transcode produced for free. Shards are then
written whole (`tkds.dataset.write`), and `dataset.json` names them (`tkds.dataset.manifest`).

OUT is held with an exclusive lock for the whole build and belongs to one source database (recorded in
OUT/.build.json with the settings). Nothing is reused unless it is provably the same: the whole build when
the fingerprint of its inputs matches the manifest's, a prepared video when its facts name the same source
sha256 and transcode recipe, a shard when its stats list the same keys and the same digest of its samples.
Video ids reach paths only through `ids.id_path` and tar members only through `ids.member_name`.
A photo post is a sample like a video (its slideshow mp4, audio, thumbnail), plus its images;
`--kind` selects videos, photo posts or both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from tkds import ids
from tkds.collector.store import Store, utcnow
from tkds.dataset.card import write_card
from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.manifest import FORMAT_VERSION, SHARD_URL, read_manifest, verify_shards, write_manifest
from tkds.dataset.prepare import check_workers, encoded, prepare_all
from tkds.dataset.select import Candidate, check_kind, read_labels, select_candidates
from tkds.dataset.split import (
    SPLITS,
    assign_splits,
    check_ratios,
    check_seed,
    check_split_method,
    is_number,
    is_whole,
)
from tkds.dataset.transcode import TranscodeParams
from tkds.dataset.write import own_folder, write_splits
from tkds.engines import check_engine, open_engine
from tkds.errors import TkdsError
from tkds.files import LOCK_NAME, exclusive_folder, write_json

__all__ = ["ShardParams", "ShardSummary", "build_shards", "check_params", "verify_shards"]

WORK_DIR = ".work"
BUILD_CONFIG = ".build.json"
MAX_SIZE = 4096  # px of short side; more is a typo
MAX_FPS = 240.0
MAX_WHERE = 4000  # characters


@dataclass
class ShardParams:
    """Everything that decides a dataset's bytes: a resumed build must use the same."""

    split_by: str = "author"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cut_date: str | None = None
    seed: int = 0
    samples_per_shard: int = 256
    shard_mb: float | None = None
    size: int = 256
    fps: float = 15.0
    where: str | None = None
    labels: str | None = None
    kind: str = "all"  # "video", "photo" (photo posts) or "all"

    def __post_init__(self) -> None:
        if isinstance(self.labels, os.PathLike):
            self.labels = os.fspath(self.labels)
        check_params(self)


@dataclass
class ShardSummary:
    selected: int = 0
    prepared: int = 0
    duplicates: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # video id -> reason
    refused: list[str] = field(default_factory=list)  # reasons of rows whose video id is invalid
    samples: dict[str, int] = field(default_factory=dict)  # split -> count
    shards: int = 0
    shards_reused: int = 0
    bytes: int = 0
    prepare_s: float = 0.0
    wall_s: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # step (select, …, manifest) -> seconds
    steps_cpu: dict[str, float] = field(default_factory=dict)  # the same in this process's CPU seconds

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step `name`, in wall and CPU seconds (added up when it runs twice)."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - wall
            self.steps_cpu[name] = self.steps_cpu.get(name, 0.0) + time.process_time() - cpu

    @property
    def failures_by_reason(self) -> Counter:
        reasons = [*self.failures.values(), *self.refused]
        return Counter(reason.split(":")[0] for reason in reasons)


def check_params(params: ShardParams) -> None:
    """Refuse settings no build can use, in one line naming the option."""
    if params.cut_date is not None:
        _parse_cut(params.cut_date)
    check_split_method(params.split_by, params.cut_date)
    check_ratios(params.ratios)
    if not is_whole(params.samples_per_shard) or params.samples_per_shard < 1:
        raise TkdsError(
            f"--samples-per-shard {ids.preview(params.samples_per_shard)}: give a whole number, 1 or more"
        )
    if params.shard_mb is not None and not (is_number(params.shard_mb) and 0 < params.shard_mb <= 1e6):
        raise TkdsError(f"--shard-mb {ids.preview(params.shard_mb)}: give a size in MB above 0")
    if not is_whole(params.size) or not (params.size == 0 or 16 <= params.size <= MAX_SIZE):
        raise TkdsError(
            f"--size {ids.preview(params.size)}: give a short side from 16 to {MAX_SIZE} px, "
            "or 0 to keep the sources"
        )
    if not (is_number(params.fps) and 0 < params.fps <= MAX_FPS):
        raise TkdsError(f"--fps {ids.preview(params.fps)}: give a frame rate above 0 and at most {MAX_FPS:g}")
    check_seed(params.seed)
    check_kind(params.kind)
    if params.where is not None and (not isinstance(params.where, str) or len(params.where) > MAX_WHERE):
        raise TkdsError(
            f"--where {ids.preview(params.where)}: give one SQL condition of at most {MAX_WHERE} characters"
        )
    if params.labels is not None and not isinstance(params.labels, str):
        raise TkdsError(f"--labels {ids.preview(params.labels)}: give the path of a corpus.json or CSV file")


def build_shards(
    db: str | Path,
    out: str | Path,
    params: ShardParams | None = None,
    workers: int | None = None,
    progress: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
) -> ShardSummary:
    """Build WebDataset shards with leak-free splits from the videos in `db` whose media is ok.

    `engine` "ray" runs each post's transcode as a Ray task (on the cluster at `ray_address`, or a local
    Ray); OUT must then be a folder every node mounts. Shards are written here, the same bytes either way.
    """
    params = ShardParams() if params is None else params
    if not isinstance(params, ShardParams):
        raise TkdsError(f"params {ids.preview(params)}: give a ShardParams")
    for name, value in (("--db", db), ("--out", out)):
        if not isinstance(value, str | os.PathLike):
            raise TkdsError(f"{name} {ids.preview(value)}: give a path")
    check_params(params)
    workers = check_workers(workers)
    check_engine(engine, ray_address)
    started = time.perf_counter()
    out, db = Path(out), Path(db)
    summary = ShardSummary()
    cut = _parse_cut(params.cut_date)
    with Store.open(db, create=False) as store, exclusive_folder(out, "--out"):
        new_config = _claim_out(out, params, db)
        with summary.step("select"):
            candidates, summary.refused = select_candidates(store.db, params.where, db, params.kind)
        if not candidates:
            raise TkdsError(
                f"no {'photo posts' if params.kind == 'photo' else 'videos'} selected from {db}: "
                "none has media with status ok and a valid id"
                + (f" and matches --where {ids.preview(params.where)}" if params.where else "")
                + "; collect with --media first, or loosen --where"
                + (" or --kind" if params.kind != "all" else "")
            )
        if params.labels:
            with summary.step("select"):
                labels = read_labels(Path(params.labels))
                for video in candidates:
                    video.labels.update(labels.get(video.id, {}))
        if new_config:  # only once the selection works: a mistyped --where must not claim OUT
            write_json(out / BUILD_CONFIG, new_config, indent=1)
        summary.selected = len(candidates)
        with summary.step("fingerprint"):
            fingerprint = _fingerprint(candidates, params)
            if _up_to_date(out, fingerprint):
                return _summary_of_finished(out, started, summary.refused)
        dataset = str(out.resolve())
        work = own_folder(out, WORK_DIR)
        with summary.step("prepare"), _engine(engine, workers, ray_address, summary) as distributor:
            prepared = prepare_all(candidates, work, params, workers, progress, summary, distributor)
        with summary.step("dedupe"):
            by_sha = {video.sha256: prepared[video.id] for video in candidates if video.id in prepared}
            usable = [video for video in candidates if video.sha256 in by_sha]
            hashes = {video_id: p.frame_hash for video_id, p in prepared.items()}
            clusters = duplicate_clusters(usable, hashes)
            _record_media_hashes(store, hashes, clusters)
            kept = [video for video in usable if clusters.get(video.id, video.id) == video.id]
            summary.duplicates = len(usable) - len(kept)
        with summary.step("split"):
            # the dropped duplicates too: they tie their authors to their keeper's split
            splits = assign_splits(usable, params.split_by, params.ratios, params.seed, cut, clusters)
        with summary.step("write"):
            prep_of = {video.id: by_sha[video.sha256] for video in kept}
            shard_rows = write_splits(out, work, kept, prep_of, splits, params, summary, progress)
        with summary.step("record"):
            rows = [(v, splits[v], shard, "ok", None) for v, shard in shard_rows.items()]
            rows += [(v, None, None, "duplicate", f"duplicate of {k}") for v, k in clusters.items() if v != k]
            rows += [(v, None, None, "failed", reason) for v, reason in summary.failures.items()]
            _record_samples(store, dataset, rows)
        with summary.step("manifest"):
            summary.wall_s = time.perf_counter() - started
            manifest = write_manifest(out, params, summary, db, kept, fingerprint)
            write_card(out, manifest, kept, splits)
            shutil.rmtree(work, ignore_errors=True)  # OUT/.work, checked to be a real folder inside OUT
    return summary


@contextmanager
def _engine(engine: str, workers: int, address: str | None, summary: ShardSummary) -> Iterator:
    """The distributor for the prepare step; Ray's start-up is timed as step "engine_startup"."""
    with summary.step("engine_startup") if engine == "ray" else nullcontext():
        distributor = open_engine(engine, workers, address)
    try:
        yield distributor
    finally:
        distributor.close()


def _fingerprint(candidates: list[Candidate], params: ShardParams) -> str:
    """The build's true inputs: settings, format and transcode versions, and each sample's source facts.

    The frame hashes are left out when the build computes them (size > 0, and photo posts' at any
    size): it writes them into the database itself, so counting them would make the first re-run of a
    finished build start over.
    """
    digest = hashlib.sha256()
    transcode = TranscodeParams(size=params.size, fps=params.fps)
    recipes = [transcode.recipe(), transcode.photo_recipe()]
    settings = {"format_version": FORMAT_VERSION, "recipe": recipes, "params": asdict(params)}
    digest.update(json.dumps(settings, default=str, sort_keys=True).encode())
    for video in candidates:
        computed = encoded(video, params.size)
        facts = {column.name: getattr(video, column.name) for column in fields(video)} | {
            "media": {k: v for k, v in video.media.items() if k != "frame_hash" or not computed}
        }
        digest.update(json.dumps(facts, default=str, sort_keys=True).encode())
    return digest.hexdigest()


def _up_to_date(out: Path, fingerprint: str) -> bool:
    try:
        manifest = read_manifest(out)
        if manifest.get("inputs_sha256") != fingerprint:
            return False
        return all(
            SHARD_URL.fullmatch(url)
            and (out / url).is_file()
            and (out / url).stat().st_size == entry["bytes"]
            for url, entry in manifest["shards"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _summary_of_finished(out: Path, started: float, refused: list[str]) -> ShardSummary:
    manifest = read_manifest(out)
    counts = manifest["counts"]
    return ShardSummary(
        selected=counts["selected"],
        duplicates=counts["duplicates"],
        failures=dict(manifest.get("failures", {})),
        refused=refused,
        samples={split: counts[split] for split in SPLITS},
        shards=len(manifest["shards"]),
        shards_reused=len(manifest["shards"]),
        bytes=sum(entry["bytes"] for entry in manifest["shards"].values()),
        wall_s=time.perf_counter() - started,
    )


def _parse_cut(text: object) -> datetime | None:
    if text is None:
        return None
    try:
        cut = datetime.fromisoformat(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TkdsError(f"--cut-date {ids.preview(text)}: give a date as YYYY-MM-DD") from None
    return cut if cut.tzinfo is None else cut.astimezone(UTC).replace(tzinfo=None)  # create times are UTC


def _claim_out(out: Path, params: ShardParams, db: Path) -> dict | None:
    """Refuse to mix two databases or two configurations in one folder; a re-run with the same resumes.

    Returns the build config to record when OUT holds no build yet.
    """
    config = out / BUILD_CONFIG
    wanted = json.loads(json.dumps(asdict(params)))
    wanted.update(source_db=str(db.resolve()), format_version=FORMAT_VERSION)
    if config.exists():
        try:
            previous = json.loads(config.read_text())
            previous_db = previous.get("source_db")
            previous.setdefault("kind", "all")  # builds from before --kind held every post
        except (OSError, ValueError, AttributeError):
            raise TkdsError(f"{config} is unreadable; remove {out} or choose another --out") from None
        if previous_db != wanted["source_db"]:
            raise TkdsError(
                f"{out} holds a build from another database ({ids.preview(previous_db, 200)}); "
                "use that --db to resume, or another --out"
            )
        changed = sorted(key for key in wanted if previous.get(key) != wanted[key])
        if changed:
            raise TkdsError(
                f"{out} was built with other settings ({', '.join(changed)}); "
                "use the same ones to resume, or another --out"
            )
    elif any(entry.name != LOCK_NAME for entry in out.iterdir()):
        raise TkdsError(f"{out} is not empty and holds no tkds build; choose an empty or new --out")
    else:
        return wanted
    return None


def _record_media_hashes(store: Store, hashes: dict[str, str], clusters: dict[str, str]) -> None:
    ids = sorted(set(hashes) | set(clusters))
    store.db.execute(
        """UPDATE media SET frame_hash = coalesce(u.h, media.frame_hash), duplicate_cluster = u.c
           FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::VARCHAR[]) AS h, unnest(?::VARCHAR[]) AS c) u
           WHERE media.video_id = u.id""",
        [ids, [hashes.get(i) for i in ids], [clusters.get(i) for i in ids]],
    )


def _record_samples(store: Store, dataset: str, rows: list[tuple]) -> None:
    store.db.execute("DELETE FROM dataset_samples WHERE dataset = ?", [dataset])
    if rows:
        columns = list(zip(*rows, strict=True))
        store.db.execute(
            """INSERT INTO dataset_samples SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
               unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?""",
            [dataset, *[list(c) for c in columns], utcnow()],
        )
