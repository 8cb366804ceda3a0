"""The dataset card: README.md in the Datasheets-for-Datasets style, from the manifest and the samples.

Hashtags, label names, `--where` and paths come from outside: each is shown as plain text (`_text`), so no
HTML or Markdown in them becomes live markup, and a long one is cut short.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from tkds.dataset.select import Candidate
from tkds.dataset.split import SPLITS
from tkds.dataset.transcode import IMAGE_SECONDS, PHOTO_MAX_SECONDS
from tkds.errors import TkdsError

SHOWN = 60  # characters of an outside value shown in the card
PHOTO_CADENCE = {"image_seconds": IMAGE_SECONDS, "max_seconds": PHOTO_MAX_SECONDS}
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")  # what can start markup mid-line

FIELDS = """| member | content |
|---|---|
| `ID.mp4` | H.264 yuv420p, short side {size} px (never upscaled, aspect kept), {fps} fps, a keyframe \
every second, AAC mono 16 kHz when the source has audio (`--size 0`: the source file, \
`.mp4`/`.webm`/`.mkv`); a photo post's is a slideshow of its images, each shown {image_seconds:g} s \
(TikTok's photo-mode default) and fitted into the first image's frame, looping to cover its sound up to \
{max_seconds:g} s, with the sound as its audio |
| `ID.flac` | the same audio, mono 16 kHz (absent when the video has no audio) |
| `ID.json` | id, kind (`video` or `photo`), images (a photo post's: member, width, height, sha256), \
description, hashtags, music_id, music_title, author_id, author_unique_id, url, \
create_time (unix s), stats (the latest snapshot, with \
its observed_at) and author_stats, duration_s, width, height, fps, has_audio, audio_silent, split, labels, \
source (sha256, codecs, the streams used) |
| `ID.jpg` | a representative frame, for thumbnails |
| `ID.img0.jpg`, `ID.img1.jpg`, … | a photo post's images as collected (`.png`/`.webp` when they were), \
in order |"""


AUTHOR_SPLIT = " No author appears in two splits."


def _text(value: object, limit: int = SHOWN) -> str:
    """`value` as inert Markdown text on one line: HTML escaped, Markdown punctuation backslashed."""
    text = " ".join(str(value).split())
    text = "".join(char for char in text if char.isprintable())
    if len(text) > limit:
        text = text[:limit] + "…"
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _table(rows: list[tuple]) -> str:
    """A Markdown table; the first row is its header."""
    lines = ["| " + " | ".join(_text(cell) for cell in row) + " |" for row in rows]
    return "\n".join([lines[0], "|" + "---|" * len(rows[0]), *lines[1:]])


def write_card(out: Path, manifest: dict, kept: list[Candidate], splits: dict[str, str]) -> None:
    counts = manifest["counts"]
    split = manifest["split"]
    params = manifest["params"]
    authors = {name: len({v.author_id for v in kept if splits[v.id] == name}) for name in SPLITS}
    photos = {name: sum(v.kind == "photo" for v in kept if splits[v.id] == name) for name in SPLITS}
    sounds = Counter(v.music_id for v in kept)
    tags = Counter(tag for v in kept for tag in v.hashtags)
    rows = [("split", "samples", "authors", "shards")]
    rows += [
        (
            name,
            counts.get(name, 0),
            authors[name],
            sum(1 for url in manifest["shards"] if url.startswith(name)),
        )
        for name in SPLITS
    ]
    failures = (
        ", ".join(f"{n} {_text(reason)}" for reason, n in manifest["failures_by_reason"].items()) or "none"
    )
    names = manifest["label_names"]
    text = f"""---
configs:
- config_name: default
  data_files:
  - {{split: train, path: "train/*.tar"}}
  - {{split: validation, path: "val/*.tar"}}
  - {{split: test, path: "test/*.tar"}}
---
# TikTok video dataset (tkds {manifest["tkds_version"]})

## Motivation
Short-form videos with their audio and metadata, for self-supervised video and audio-visual learning and
for the downstream tasks of `tkds bench` (category, retrieval, originality, likes, hashtags).

## Composition
{counts["kept"]} samples in WebDataset shards (videos: {counts["kept"] - sum(photos.values())}, \
photo posts: {sum(photos.values())}), keyed by TikTok video id, one folder per split:

{_table(rows)}

Photo posts (TikTok's photo mode): {", ".join(f"{name} {photos[name]}" for name in SPLITS)}.

Each sample holds:

{FIELDS.format(size=params["size"], fps=params["fps"], **PHOTO_CADENCE)}

Labels: the `{manifest["label_column"]}` column, {len(names)} values
({", ".join(_text(name) for name in names[:12])}{", …" if len(names) > 12 else ""}).
Sounds: {len(sounds)} distinct, the most used by {sounds.most_common(1)[0][1] if sounds else 0} videos.
Hashtags: {len(tags)} distinct; most used: {", ".join(f"#{_text(t)} ({n})" for t, n in tags.most_common(8))}.

## Collection process
Collected with `tkds collect` (TikTok's web pages and item-list APIs, media from their play URLs
or through yt-dlp, photo posts' images and sounds from TikTok's CDNs) into the DuckDB
file {_text(manifest["source_db"], 200)}; selected where media probed as whole and no takedown applies
{f"(and {_text(params['where'], 200)})" if params["where"] else ""}.

## Preprocessing and cleaning
- {counts["selected"]} videos selected; {counts["failed"]} failed or refused ({failures});
  {counts["duplicates"]} duplicates removed (same sha256, or frame pHashes within 4 bits on average),
  keeping the earliest upload of each cluster. Both are recorded in the DuckDB tables `media` and
  `dataset_samples` with their reasons.
- Splits: by **{split["method"]}**, ratios {split["ratios"]}, seed {split["seed"]}
  {f"(cut date {split['cut_date']})" if split["cut_date"] else ""}: a video's split is a salted hash
  (`{split["salt"]}`) of its {"author" if split["method"] != "random" else "id"}, joined with its duplicate
  cluster: a cluster goes to one split whole, with its authors' videos, so adding videos moves old ones only
  when a new duplicate links two groups.{AUTHOR_SPLIT if split["method"] == "author" else ""}
- The sound id (`music_id`) is kept so that tasks can exclude same-sound pairs: TikTok sounds are reused
  across many videos and leak audio between splits.

## Known biases
- What TikTok's recommendation and search surfaced for the collection targets, not a random sample of
  TikTok; popular creators, sounds and hashtags are over-represented.
- Counts (likes, plays, followers) are a snapshot at collection time and keep growing afterwards.
- Videos that were private, removed or region-blocked at collection time are missing.

## Uses, distribution and licence
The videos belong to their creators and are subject to TikTok's terms of service. Use them for research;
prefer sharing `dataset.json` (ids, hashes, splits) and this tooling over the media.

## Maintenance and takedown
To remove a video, add its id to the `takedown` table of the source DuckDB file and rebuild with
`tkds shard`: taken-down ids are always filtered out. Check the integrity of a copy with
`tkds shard --out DIR --verify`.
"""
    try:
        (out / "README.md").write_text(text, encoding="utf-8")
    except OSError as error:
        raise TkdsError(
            f"cannot write {out / 'README.md'} ({error.strerror}); free space or fix permissions, "
            "then re-run the same command"
        ) from None
