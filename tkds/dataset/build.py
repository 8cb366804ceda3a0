"""`tkds shard`: select → prepare (transcode) → dedupe → split → write, from the collector's DuckDB.

Each video is prepared once into OUT/.work/ID/ (kept across a killed run), so near-duplicate detection
can use the frame hashes that the transcode produced for free. Shards are then written whole
(`tkds.dataset.write`), and `dataset.json` names them (`tkds.dataset.manifest`).

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
import math
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from tkds import ids
from tkds.collector.store import Store, utcnow
from tkds.console import progress_bar
from tkds.dataset.card import write_card
from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.manifest import FORMAT_VERSION, SHARD_URL, read_manifest, verify_shards, write_manifest
from tkds.dataset.select import KINDS, Candidate, read_labels, select_candidates
from tkds.dataset.split import SPLIT_METHODS, SPLITS, assign_splits, check_ratios
from tkds.dataset.transcode import (
    Prepared,
    TranscodeParams,
    load_prepared,
    passthrough,
    prepare,
    prepare_photo,
)
from tkds.dataset.write import own_folder, write_splits
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

    @property
    def failures_by_reason(self) -> Counter:
        reasons = [*self.failures.values(), *self.refused]
        return Counter(reason.split(":")[0] for reason in reasons)


def check_params(params: ShardParams) -> None:
    """Refuse settings no build can use, in one line naming the option."""
    if params.split_by not in SPLIT_METHODS:
        raise TkdsError(
            f"--split-by {ids.preview(params.split_by)}: choose one of {', '.join(SPLIT_METHODS)}"
        )
    check_ratios(params.ratios)
    if not _whole(params.samples_per_shard) or params.samples_per_shard < 1:
        raise TkdsError(
            f"--samples-per-shard {ids.preview(params.samples_per_shard)}: give a whole number, 1 or more"
        )
    if params.shard_mb is not None and not (_number(params.shard_mb) and 0 < params.shard_mb <= 1e6):
        raise TkdsError(f"--shard-mb {ids.preview(params.shard_mb)}: give a size in MB above 0")
    if not _whole(params.size) or not (params.size == 0 or 16 <= params.size <= MAX_SIZE):
        raise TkdsError(
            f"--size {ids.preview(params.size)}: give a short side from 16 to {MAX_SIZE} px, "
            "or 0 to keep the sources"
        )
    if not (_number(params.fps) and 0 < params.fps <= MAX_FPS):
        raise TkdsError(f"--fps {ids.preview(params.fps)}: give a frame rate above 0 and at most {MAX_FPS:g}")
    if not _whole(params.seed) or abs(params.seed) >= 2**63:
        raise TkdsError(f"--seed {ids.preview(params.seed)}: give a whole number")
    if not isinstance(params.kind, str) or params.kind not in KINDS:
        raise TkdsError(f"--kind {ids.preview(params.kind)}: choose one of {', '.join(KINDS)}")
    if params.where is not None and (not isinstance(params.where, str) or len(params.where) > MAX_WHERE):
        raise TkdsError(
            f"--where {ids.preview(params.where)}: give one SQL condition of at most {MAX_WHERE} characters"
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def build_shards(
    db: str | Path,
    out: str | Path,
    params: ShardParams | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ShardSummary:
    """Build WebDataset shards with leak-free splits from the videos in `db` whose media is ok."""
    params = params or ShardParams()
    check_params(params)
    started = time.perf_counter()
    out, db = Path(out), Path(db)
    summary = ShardSummary()
    cut = _parse_cut(params.cut_date)
    with Store.open(db, create=False) as store, exclusive_folder(out, "--out"):
        new_config = _claim_out(out, params, db)
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
            labels = read_labels(Path(params.labels))
            for video in candidates:
                video.labels.update(labels.get(video.id, {}))
        if new_config:  # only once the selection works: a mistyped --where must not claim OUT
            write_json(out / BUILD_CONFIG, new_config, indent=1)
        summary.selected = len(candidates)
        fingerprint = _fingerprint(candidates, params)
        if _up_to_date(out, fingerprint):
            return _summary_of_finished(out, started, summary.refused)
        dataset = str(out.resolve())
        work = own_folder(out, WORK_DIR)
        prepared = _prepare_all(candidates, work, params, workers, progress, summary)
        by_sha = {video.sha256: prepared[video.id] for video in candidates if video.id in prepared}
        usable = [video for video in candidates if video.sha256 in by_sha]
        hashes = {video_id: p.frame_hash for video_id, p in prepared.items()}
        clusters = duplicate_clusters(usable, hashes)
        _record_media_hashes(store, hashes, clusters)
        kept = [video for video in usable if clusters.get(video.id, video.id) == video.id]
        summary.duplicates = len(usable) - len(kept)
        # the dropped duplicates too: they tie their authors to their keeper's split
        splits = assign_splits(usable, params.split_by, params.ratios, params.seed, cut, clusters)
        prep_of = {video.id: by_sha[video.sha256] for video in kept}
        shard_rows = write_splits(out, work, kept, prep_of, splits, params, summary, progress)
        rows = [(v, splits[v], shard, "ok", None) for v, shard in shard_rows.items()]
        rows += [(v, None, None, "duplicate", f"duplicate of {k}") for v, k in clusters.items() if v != k]
        rows += [(v, None, None, "failed", reason) for v, reason in summary.failures.items()]
        _record_samples(store, dataset, rows)
        summary.wall_s = time.perf_counter() - started
        manifest = write_manifest(out, params, summary, db, kept, fingerprint)
        write_card(out, manifest, kept, splits)
        shutil.rmtree(work, ignore_errors=True)  # OUT/.work, checked to be a real folder inside OUT
    return summary


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
        computed = _encoded(video, params.size)
        facts = vars(video) | {
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


def _parse_cut(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise TkdsError(f"--cut-date {text!r}: give a date as YYYY-MM-DD") from None


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


def _prepare_all(
    candidates: list[Candidate],
    work: Path,
    params: ShardParams,
    workers: int | None,
    progress: bool,
    summary: ShardSummary,
) -> dict[str, Prepared]:
    """Prepare one video per distinct sha256 (exact copies share it), reusing earlier runs' work."""
    transcode = TranscodeParams(size=params.size, fps=params.fps)
    prepared: dict[str, Prepared] = {}
    pending: list[Candidate] = []
    seen: set[str] = set()
    for video in sorted(candidates, key=lambda v: (v.create_time or 0, v.id)):
        if video.sha256 in seen:
            continue
        seen.add(video.sha256)
        encoded = _encoded(video, params.size)
        earlier = load_prepared(work, video.id, video.sha256, transcode, video.kind) if encoded else None
        if earlier:
            prepared[video.id] = earlier
        elif missing := _missing_media(video):
            summary.failures[video.id] = missing
        elif not encoded:
            prepared[video.id] = passthrough(video.id, video.path, video.media, video.sha256)
        else:
            pending.append(video)
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool,
        progress_bar("transcode", len(pending), enabled=progress) as bar,
    ):
        results = pool.map(lambda v: _prepare(v, work, transcode), pending)
        for video, result in zip(pending, results, strict=True):
            if result.error is None:
                prepared[video.id] = result
            elif result.error.startswith("disk_full"):
                raise TkdsError(
                    f"video {video.id}: no space left on device while transcoding into {work}; "
                    "free space and re-run the same command to resume"
                )
            else:
                summary.failures[video.id] = result.error
            bar.advance(0)
    summary.prepare_s = time.perf_counter() - started
    summary.prepared = len(prepared)
    return prepared


def _encoded(video: Candidate, size: int) -> bool:
    """Whether the build encodes this post (and computes its frame hashes): every post at a size, and a
    photo post's slideshow even at --size 0."""
    return bool(size) or video.kind == "photo"


def _missing_media(video: Candidate) -> str | None:
    """Why a selected video or photo post cannot be prepared from its files, or None."""
    if video.kind != "photo":
        files = [video.path]
    elif not video.images:
        return "missing: no images are recorded for this photo post; re-collect it"
    else:
        files = [Path(image["path"]) for image in video.images] + ([video.path] if video.path else [])
    for path in files:
        if path is None or not path.is_file():
            return f"missing: media file {path} is gone; re-collect it"
    return None


def _prepare(video: Candidate, work: Path, transcode: TranscodeParams) -> Prepared:
    if video.kind == "photo":
        return prepare_photo(video.id, video.images, video.path, work, transcode, video.media, video.sha256)
    return prepare(video.id, video.path, work, transcode, video.media, video.sha256)


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
