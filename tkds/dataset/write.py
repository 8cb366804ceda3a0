"""Write: a build's samples into WebDataset tars, one split at a time, each shard whole or not at all.

A shard is written under a temporary name, fsynced, renamed, and marked done by its `*_stats.json`,
written last. It is reused only when those stats list the same keys and the same digest of the samples'
inputs. Member names come from `ids.member_name`; the prepared files from `ids.id_path`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from tkds import ids
from tkds.console import progress_bar
from tkds.dataset.manifest import FORMAT_VERSION
from tkds.dataset.select import Candidate
from tkds.dataset.split import SPLITS, unit_hash
from tkds.dataset.transcode import Prepared
from tkds.errors import TkdsError
from tkds.files import write_json
from tkds.tiktok import photo_page_url, video_page_url

if TYPE_CHECKING:
    from tkds.dataset.build import ShardParams, ShardSummary

SHARD_FILE = re.compile(r"(?:train|val|test)-(?P<number>[0-9]{6})(?:\.tar|_stats\.json)(?:\.partial)?")


def own_folder(out: Path, name: str) -> Path:
    """OUT/NAME, created; a link or a file there is refused, so nothing is written or removed outside OUT."""
    folder = out / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise TkdsError(f"{folder} is not a folder of this build (a link or a file); remove it and re-run")
    folder.mkdir(exist_ok=True)
    return folder


def _sample_json(video: Candidate, prep: Prepared, split: str) -> dict:
    return {
        "id": video.id,
        "kind": video.kind,  # "video", or "photo": a photo post, its mp4 a slideshow of `images`
        "images": prep.images,  # a photo post's, in slideshow order: member, width, height, sha256
        "description": video.description,
        "hashtags": video.hashtags,
        "music_id": video.music_id,
        "music_title": video.music_title,
        "author_id": video.author_id,
        "author_unique_id": video.author_unique_id,
        "url": (photo_page_url if video.kind == "photo" else video_page_url)(
            video.author_unique_id or "", video.id
        ),
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
    def member(extension: str) -> str:
        return ids.member_name(video.id, extension)

    sample = (member("json"), json.dumps(_sample_json(video, prep, split)).encode())
    if prep.source_path:
        return [(member(prep.video_ext), Path(prep.source_path).read_bytes()), sample]
    folder = ids.id_path(work, prep.video_id)  # an exact copy's files are its keeper's
    members = [(member(prep.video_ext), (folder / f"video.{prep.video_ext}").read_bytes())]
    if prep.has_audio:
        members.append((member("flac"), (folder / "audio.flac").read_bytes()))
    members.append(sample)
    members.append((member("jpg"), (folder / "thumb.jpg").read_bytes()))
    members += [(member(image["member"]), (folder / image["member"]).read_bytes()) for image in prep.images]
    return members


def _shard_inputs(chunk: list[Candidate], split: str, prep_of: dict[str, Prepared]) -> str:
    """A digest of what decides a shard's bytes: each sample's json, source sha256 and recipe."""
    digest = hashlib.sha256(f"tkds-shard-v{FORMAT_VERSION}".encode())
    for video in chunk:
        prep = prep_of[video.id]
        sample = [_sample_json(video, prep, split), prep.recipe, prep.source_path]
        digest.update(json.dumps(sample, default=str, sort_keys=True).encode())
    return digest.hexdigest()


def _sample_bytes(work: Path, prep: Prepared) -> int:
    if prep.source_path:
        return Path(prep.source_path).stat().st_size
    return sum(file.stat().st_size for file in ids.id_path(work, prep.video_id).iterdir())


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


def write_splits(
    out: Path,
    work: Path,
    kept: list[Candidate],
    prep_of: dict[str, Prepared],
    splits: dict[str, str],
    params: ShardParams,
    summary: ShardSummary,
    progress: bool,
) -> dict[str, str]:
    """Write every split's shards and index; returns video id → shard path (relative to OUT)."""
    sizes = {video.id: _sample_bytes(work, prep_of[video.id]) for video in kept}
    placed: dict[str, str] = {}
    with progress_bar("shards", len(kept), enabled=progress) as bar:
        for split in SPLITS:
            videos = sorted(
                (v for v in kept if splits[v.id] == split), key=lambda v: unit_hash(v.id, params.seed)
            )
            folder = own_folder(out, split)
            shardlist = []
            for number, chunk in enumerate(_chunks(videos, sizes, params)):
                name = f"{split}/{split}-{number:06d}.tar"
                stats = _write_shard(
                    out / name,
                    chunk,
                    split,
                    lambda v, s: _members(work, v, prep_of[v.id], s),
                    _shard_inputs(chunk, split, prep_of),
                    summary,
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
            _remove_stale_shards(folder, len(shardlist))
            summary.samples[split] = len(videos)
            index = {"wids_version": 1, "name": f"tkds-{split}", "shardlist": shardlist}
            write_json(out / f"{split}.json", index, indent=1)
    return placed


def _stats_path(shard: Path) -> Path:
    return shard.with_name(shard.name.removesuffix(".tar") + "_stats.json")


def _reusable_stats(path: Path, keys: list[str], inputs: str) -> dict | None:
    """The stats of an existing shard written from the same samples and inputs, or None."""
    try:
        stats = json.loads(_stats_path(path).read_text())
        same = stats["keys"] == keys and stats["inputs_sha256"] == inputs
        return stats if same and path.stat().st_size == stats["bytes"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_shard(
    path: Path, chunk: list[Candidate], split: str, members, inputs: str, summary: ShardSummary
) -> dict:
    """One tar, atomically; an existing shard with the same keys and inputs digest is kept as it is."""
    keys = [video.id for video in chunk]
    stats_path = _stats_path(path)
    stats = _reusable_stats(path, keys, inputs)
    if stats is not None:
        summary.shards += 1
        summary.shards_reused += 1
        summary.bytes += stats["bytes"]
        return stats
    stats_path.unlink(missing_ok=True)
    started = time.time()
    partial = path.with_name(path.name + ".partial")
    digest = hashlib.sha256()
    try:
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
    except OSError as error:
        partial.unlink(missing_ok=True)
        where = f": {error.filename}" if error.filename else ""
        raise TkdsError(
            f"cannot write shard {path} ({error.strerror}{where}); free space or fix permissions, "
            "then re-run the same command to resume"
        ) from None
    stats = {
        "shard": path.name,
        "count": len(chunk),
        "keys": keys,
        "inputs_sha256": inputs,
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
    """Shards numbered past this build's last one come from an earlier, larger selection.

    Only this build's own file names are removed (a link is removed as a link); anything else is left.
    """
    for entry in folder.iterdir():
        match = SHARD_FILE.fullmatch(entry.name)
        if match and int(match["number"]) >= count and not entry.is_dir():
            entry.unlink()
