"""`tkds shard`: select → prepare (transcode) → dedupe → split → write, from the collector's DuckDB.

Each video is prepared once into OUT/.work/ID/ (kept across a killed run), so near-duplicate detection
can use the frame hashes that the transcode produced for free. Shards are then written whole: under a
temporary name, fsynced, renamed, and marked done by their `*_stats.json`, written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from io import BytesIO
from pathlib import Path

import tkds
from tkds.collector.store import Store, utcnow
from tkds.console import progress_bar
from tkds.dataset.card import write_card
from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.select import Candidate, read_labels, select_candidates
from tkds.dataset.split import SPLITS, assign_splits, unit_hash
from tkds.dataset.transcode import Prepared, TranscodeParams, load_prepared, passthrough, prepare
from tkds.errors import TkdsError
from tkds.files import write_json
from tkds.tiktok import video_page_url

WORK_DIR = ".work"
MANIFEST = "dataset.json"
BUILD_CONFIG = ".build.json"


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


@dataclass
class ShardSummary:
    selected: int = 0
    prepared: int = 0
    duplicates: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # video id -> reason
    samples: dict[str, int] = field(default_factory=dict)  # split -> count
    shards: int = 0
    shards_reused: int = 0
    bytes: int = 0
    prepare_s: float = 0.0
    wall_s: float = 0.0

    @property
    def failures_by_reason(self) -> Counter:
        return Counter(reason.split(":")[0] for reason in self.failures.values())


def build_shards(
    db: str | Path,
    out: str | Path,
    params: ShardParams | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ShardSummary:
    """Build WebDataset shards with leak-free splits from the videos in `db` whose media is ok."""
    params = params or ShardParams()
    started = time.perf_counter()
    out, db = Path(out), Path(db)
    summary = ShardSummary()
    cut = _parse_cut(params.cut_date)
    _claim_out(out, params)
    with Store.open(db) as store:
        candidates = select_candidates(store.db, params.where, db)
        if not candidates:
            raise TkdsError(
                f"no videos selected from {db}: none has media with status ok"
                + (f" and matches --where {params.where!r}" if params.where else "")
                + "; collect with --media first, or loosen --where"
            )
        if params.labels:
            labels = read_labels(Path(params.labels))
            for video in candidates:
                video.labels.update(labels.get(video.id, {}))
        summary.selected = len(candidates)
        fingerprint = _fingerprint(candidates)
        if _up_to_date(out, fingerprint):
            return _summary_of_finished(out, started)
        dataset = str(out.resolve())
        prepared = _prepare_all(candidates, out / WORK_DIR, params, workers, progress, summary)
        by_sha = {video.sha256: prepared[video.id] for video in candidates if video.id in prepared}
        usable = [video for video in candidates if video.sha256 in by_sha]
        hashes = {video_id: p.frame_hash for video_id, p in prepared.items()}
        clusters = duplicate_clusters(usable, hashes)
        _record_media_hashes(store, hashes, clusters)
        kept = [video for video in usable if clusters.get(video.id, video.id) == video.id]
        summary.duplicates = len(usable) - len(kept)
        splits = assign_splits(kept, params.split_by, params.ratios, params.seed, cut)
        prep_of = {video.id: by_sha[video.sha256] for video in kept}
        shard_rows = _write_splits(out, kept, prep_of, splits, params, summary, progress)
        rows = [(v, splits[v], shard, "ok", None) for v, shard in shard_rows.items()]
        rows += [(v, None, None, "duplicate", f"duplicate of {k}") for v, k in clusters.items() if v != k]
        rows += [(v, None, None, "failed", reason) for v, reason in summary.failures.items()]
        _record_samples(store, dataset, rows)
    summary.wall_s = time.perf_counter() - started
    manifest = _write_manifest(out, params, summary, db, kept, fingerprint)
    write_card(out, manifest, kept, splits)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return summary


def _fingerprint(candidates: list[Candidate]) -> str:
    """What the selection would write: ids, media hashes and sample metadata."""
    digest = hashlib.sha256()
    for video in candidates:
        digest.update(json.dumps(vars(video), default=str, sort_keys=True).encode())
    return digest.hexdigest()


def _up_to_date(out: Path, fingerprint: str) -> bool:
    try:
        manifest = _read_manifest(out)
    except (OSError, ValueError):
        return False
    return manifest.get("inputs_sha256") == fingerprint and all(
        (out / url).is_file() for url in manifest["shards"]
    )


def _summary_of_finished(out: Path, started: float) -> ShardSummary:
    manifest = _read_manifest(out)
    counts = manifest["counts"]
    return ShardSummary(
        selected=counts["selected"],
        duplicates=counts["duplicates"],
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


def _claim_out(out: Path, params: ShardParams) -> None:
    """Refuse to mix two configurations in one folder; a re-run with the same one resumes."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / BUILD_CONFIG
    wanted = json.loads(json.dumps(asdict(params)))
    if config.exists():
        previous = json.loads(config.read_text())
        changed = sorted(key for key in wanted if previous.get(key) != wanted[key])
        if changed:
            raise TkdsError(
                f"{out} was built with other settings ({', '.join(changed)}); "
                "use the same ones to resume, or another --out"
            )
    elif any(out.iterdir()):
        raise TkdsError(f"{out} is not empty and holds no tkds build; choose an empty or new --out")
    else:
        write_json(config, wanted, indent=1)


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
    work.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, Prepared] = {}
    pending: list[Candidate] = []
    seen: set[str] = set()
    for video in sorted(candidates, key=lambda v: (v.create_time or 0, v.id)):
        if video.sha256 in seen:
            continue
        seen.add(video.sha256)
        earlier = load_prepared(work, video.id)
        if earlier:
            prepared[video.id] = earlier
        elif not video.path.is_file():
            summary.failures[video.id] = f"missing: media file {video.path} is gone; re-collect it"
        elif not params.size:
            prepared[video.id] = passthrough(video.id, video.path, video.media)
        else:
            pending.append(video)
    started = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool,
        progress_bar("transcode", len(pending), enabled=progress) as bar,
    ):
        results = pool.map(lambda v: prepare(v.id, v.path, work, transcode, v.media), pending)
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


def _sample_json(video: Candidate, prep: Prepared, split: str) -> dict:
    return {
        "id": video.id,
        "description": video.description,
        "hashtags": video.hashtags,
        "music_id": video.music_id,
        "music_title": video.music_title,
        "author_id": video.author_id,
        "author_unique_id": video.author_unique_id,
        "url": video_page_url(video.author_unique_id or "", video.id),
        "create_time": video.create_time,
        "stats": video.stats,
        "author_stats": video.author_stats,
        "duration_s": prep.duration_s,
        "width": prep.width,
        "height": prep.height,
        "fps": prep.fps,
        "has_audio": prep.has_audio,
        "audio_silent": prep.audio_silent,
        "split": split,
        "labels": video.labels,
        "source": {
            "sha256": video.sha256,
            "vcodec": prep.source_vcodec,
            "acodec": prep.source_acodec,
            "video_stream": prep.video_stream,
            "audio_stream": prep.audio_stream,
        },
    }


def _members(work: Path, video: Candidate, prep: Prepared, split: str) -> list[tuple[str, bytes]]:
    sample = (f"{video.id}.json", json.dumps(_sample_json(video, prep, split)).encode())
    if prep.source_path:
        return [(f"{video.id}.{prep.video_ext}", Path(prep.source_path).read_bytes()), sample]
    folder = work / prep.video_id  # an exact copy's files are its keeper's
    members = [(f"{video.id}.{prep.video_ext}", (folder / f"video.{prep.video_ext}").read_bytes())]
    if prep.has_audio:
        members.append((f"{video.id}.flac", (folder / "audio.flac").read_bytes()))
    members.append(sample)
    members.append((f"{video.id}.jpg", (folder / "thumb.jpg").read_bytes()))
    return members


def _sample_bytes(work: Path, prep: Prepared) -> int:
    if prep.source_path:
        return Path(prep.source_path).stat().st_size
    return sum(file.stat().st_size for file in (work / prep.video_id).iterdir())


def _chunks(videos: list[Candidate], sizes: dict[str, int], params: ShardParams) -> list[list[Candidate]]:
    if params.shard_mb is None:
        step = max(1, params.samples_per_shard)
        return [videos[i : i + step] for i in range(0, len(videos), step)]
    chunks: list[list[Candidate]] = [[]]
    filled = 0
    for video in videos:
        if chunks[-1] and filled + sizes[video.id] > params.shard_mb * 1e6:
            chunks.append([])
            filled = 0
        chunks[-1].append(video)
        filled += sizes[video.id]
    return chunks


def _write_splits(
    out: Path,
    kept: list[Candidate],
    prep_of: dict[str, Prepared],
    splits: dict[str, str],
    params: ShardParams,
    summary: ShardSummary,
    progress: bool,
) -> dict[str, str]:
    """Write every split's shards and index; returns video id → shard path (relative to OUT)."""
    work = out / WORK_DIR
    sizes = {video.id: _sample_bytes(work, prep_of[video.id]) for video in kept}
    placed: dict[str, str] = {}
    with progress_bar("shards", len(kept), enabled=progress) as bar:
        for split in SPLITS:
            videos = sorted(
                (v for v in kept if splits[v.id] == split), key=lambda v: unit_hash(v.id, params.seed)
            )
            (out / split).mkdir(exist_ok=True)
            shardlist = []
            for number, chunk in enumerate(_chunks(videos, sizes, params)):
                name = f"{split}/{split}-{number:06d}.tar"
                stats = _write_shard(
                    out / name, chunk, split, lambda v, s: _members(work, v, prep_of[v.id], s), summary
                )
                shardlist.append(
                    {
                        "url": name,
                        "nsamples": stats["count"],
                        "filesize": stats["bytes"],
                        "sha256": stats["sha256"],
                    }
                )
                placed.update({video.id: name for video in chunk})
                bar.advance(0, len(chunk))
            _remove_stale_shards(out / split, len(shardlist))
            summary.samples[split] = len(videos)
            index = {"wids_version": 1, "name": f"tkds-{split}", "shardlist": shardlist}
            write_json(out / f"{split}.json", index, indent=1)
    return placed


def _stats_path(shard: Path) -> Path:
    return shard.with_name(shard.name.removesuffix(".tar") + "_stats.json")


def _write_shard(path: Path, chunk: list[Candidate], split: str, members, summary: ShardSummary) -> dict:
    """One tar, atomically; an existing shard whose stats list the same samples is kept as it is."""
    keys = [video.id for video in chunk]
    stats_path = _stats_path(path)
    if stats_path.exists() and path.exists():
        stats = json.loads(stats_path.read_text())
        if stats.get("keys") == keys:
            summary.shards += 1
            summary.shards_reused += 1
            summary.bytes += stats["bytes"]
            return stats
    stats_path.unlink(missing_ok=True)
    started = time.time()
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as raw:
        hashing = _HashingWriter(raw, digest)
        with tarfile.open(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for video in chunk:
                for name, data in members(video, split):
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), 0o444, video.create_time or 0
                    tar.addfile(info, BytesIO(data))
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, path)
    stats = {
        "shard": path.name,
        "count": len(chunk),
        "keys": keys,
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
        "start_time": started,
        "end_time": time.time(),
    }
    write_json(stats_path, stats, indent=1)  # last: it marks the shard as done
    summary.shards += 1
    summary.bytes += stats["bytes"]
    return stats


class _HashingWriter:
    """A file wrapper that hashes what is written, so a shard is hashed without being read back."""

    def __init__(self, raw, digest) -> None:
        self.raw, self.digest = raw, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()


def _remove_stale_shards(folder: Path, count: int) -> None:
    """Shards numbered past this build's last one come from an earlier, larger selection."""
    for shard in folder.glob("*.tar*"):
        number = int(shard.name.split("-")[-1].split(".")[0].split("_")[0])
        if number >= count:
            shard.unlink()
    for stats in folder.glob("*_stats.json"):
        if int(stats.name.split("-")[-1].split("_")[0]) >= count:
            stats.unlink()


def label_column(videos: list[Candidate]) -> str:
    """SynthTok's (or a --labels file's) category when there is one, else the collection target."""
    return "category" if any(v.labels.get("category") is not None for v in videos) else "target"


def _write_manifest(
    out: Path, params: ShardParams, summary: ShardSummary, db: Path, kept: list[Candidate], fingerprint: str
) -> dict:
    shards = {}
    for split in SPLITS:
        for entry in json.loads((out / f"{split}.json").read_text())["shardlist"]:
            shards[entry["url"]] = {
                "sha256": entry["sha256"],
                "bytes": entry["filesize"],
                "nsamples": entry["nsamples"],
            }
    column = label_column(kept)
    manifest = {
        "format": "tkds-shards",
        "format_version": 1,
        "tkds_version": tkds.__version__,
        "created_at": utcnow().isoformat(timespec="seconds"),
        "source_db": str(db.resolve()),
        "counts": {"selected": summary.selected, "kept": len(kept), "duplicates": summary.duplicates,
                   "failed": len(summary.failures), **summary.samples},
        "failures_by_reason": dict(summary.failures_by_reason),
        "split": {"method": params.split_by, "ratios": list(params.ratios), "seed": params.seed,
                  "cut_date": params.cut_date, "salt": f"tkds-split-v1:{params.seed}"},
        "params": {"size": params.size, "fps": params.fps, "sample_rate": 16000, "keyframe_interval_s": 1.0,
                   "video_codec": "h264" if params.size else "source",
                   "audio_codec": "aac (mp4), flac (sidecar)",
                   "samples_per_shard": params.samples_per_shard, "shard_mb": params.shard_mb,
                   "where": params.where, "labels": params.labels},
        "label_column": column,
        "label_names": sorted({str(v.labels[column]) for v in kept if v.labels.get(column) is not None}),
        "shards": shards,
        "inputs_sha256": fingerprint,
    }  # fmt: skip
    write_json(out / MANIFEST, manifest, indent=1)
    return manifest


def _read_manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def verify_shards(out: str | Path, progress: bool = True) -> list[str]:
    """Re-hash every shard against the manifest; returns the problems found (empty when all is well)."""
    out = Path(out)
    try:
        manifest = _read_manifest(out)
    except (OSError, ValueError) as error:
        raise TkdsError(
            f"{out / MANIFEST} is missing or unreadable ({error}); build the shards first"
        ) from None
    problems = []
    with progress_bar("verify", len(manifest["shards"]), enabled=progress) as bar:
        for url, expected in manifest["shards"].items():
            path = out / url
            if not path.is_file():
                problems.append(f"{url}: missing")
            else:
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                if digest.hexdigest() != expected["sha256"]:
                    problems.append(f"{url}: sha256 differs from the manifest (corrupt or changed)")
            bar.advance(0)
    return problems
