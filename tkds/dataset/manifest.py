"""The manifest: dataset.json names every shard with its sha256; `verify_shards` checks them against it.

Shard urls in a manifest are checked against tkds's own names, so a crafted manifest cannot point
verification (or a reuse check) at a file outside the dataset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import tkds
from tkds import ids
from tkds.collector.store import utcnow
from tkds.console import progress_bar
from tkds.dataset.select import Candidate
from tkds.dataset.split import SPLITS
from tkds.errors import TkdsError
from tkds.files import file_sha256, shared_folder, write_json

if TYPE_CHECKING:
    from tkds.dataset.build import ShardParams, ShardSummary

MANIFEST = "dataset.json"
FORMAT_VERSION = 1  # of the shards' layout and sample json; part of every fingerprint
SHARD_URL = re.compile(r"(?P<split>train|val|test)/(?P=split)-[0-9]{6}\.tar")


def label_column(videos: list[Candidate]) -> str:
    """SynthTok's (or a --labels file's) category when there is one, else the collection target."""
    return "category" if any(v.labels.get("category") is not None for v in videos) else "target"


def write_manifest(
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
        "format_version": FORMAT_VERSION,
        "tkds_version": tkds.__version__,
        "created_at": utcnow().isoformat(timespec="seconds"),
        "source_db": str(db.resolve()),
        "counts": {"selected": summary.selected, "kept": len(kept), "duplicates": summary.duplicates,
                   "failed": len(summary.failures) + len(summary.refused), **summary.samples},
        "failures_by_reason": dict(summary.failures_by_reason),
        "failures": summary.failures,
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


def read_manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def verify_shards(out: str | Path, progress: bool = True) -> list[str]:
    """Re-hash every shard against the manifest; returns the problems found (empty when all is well)."""
    out = Path(out)
    with shared_folder(
        out, f"--out {out} is being built by another tkds process; verify it once that has finished"
    ):
        try:
            shards = dict(read_manifest(out)["shards"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TkdsError(
                f"{out / MANIFEST} is missing or unreadable ({ids.preview(str(error), 120)}); "
                "build the shards first"
            ) from None
        return _verify(out, shards, progress)


def _verify(out: Path, shards: dict, progress: bool) -> list[str]:
    problems = []
    with progress_bar("verify", len(shards), enabled=progress) as bar:
        for url, expected in shards.items():
            path = out / str(url)
            if not isinstance(url, str) or not SHARD_URL.fullmatch(url):
                problems.append(f"{ids.preview(url)}: not a tkds shard name")
            elif not isinstance(expected, dict) or "sha256" not in expected:
                problems.append(f"{url}: the manifest gives no sha256")
            elif not path.is_file():
                problems.append(f"{url}: missing")
            else:
                if file_sha256(path) != expected["sha256"]:
                    problems.append(f"{url}: sha256 differs from the manifest (corrupt or changed)")
            bar.advance(0)
    return problems
