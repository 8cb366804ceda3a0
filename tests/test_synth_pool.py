"""`--media-pool`: K rendered clips that every post's media links to, with full metadata for each post."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tkds.synth import generate

POSTS, CLIPS, SEED = 20, 3, 8
OPTIONS = {"seed": SEED, "seconds": (1.0, 1.0), "photo_share": 0.3, "workers": 2, "progress": False}
MEDIA_FACTS = {"frames", "duration_s", "clip"}  # card row fields that describe the file served


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pool")
    generate(root / "pooled", POSTS, media_pool=CLIPS, **OPTIONS)
    generate(root / "plain", POSTS, **OPTIONS)
    return root / "pooled", root / "plain"


def _card(corpus: Path) -> dict:
    return json.loads((corpus / "corpus.json").read_text())


def _relative_link_into_pool(link: Path, corpus: Path) -> Path:
    target = os.readlink(link)
    assert not os.path.isabs(target), f"{link} -> {target} is not relative"
    resolved = (link.parent / target).resolve()
    assert resolved.is_file() and resolved.parent.is_relative_to((corpus / "pool").resolve())
    return resolved


def test_only_k_clips_are_rendered_and_every_video_links_to_its_clip(corpora: tuple[Path, Path]) -> None:
    pooled, _ = corpora
    card = _card(pooled)
    assert sorted(path.name for path in (pooled / "pool").glob("*.mp4")) == [
        "0000.mp4",
        "0001.mp4",
        "0002.mp4",
    ]
    assert card["media_pool"]["clips"] == CLIPS and "not for learning or dedupe" in card["media_pool"]["note"]
    assert card["config"]["media_pool"] == CLIPS
    videos = [row for row in card["videos"] if row["kind"] == "video"]
    assert {row["clip"] for row in videos} == {f"pool/{k:04d}.mp4" for k in range(CLIPS)}
    for row in videos:
        link = pooled / "media" / f"{row['id']}.mp4"
        assert link.is_symlink() and os.readlink(link) == f"../{row['clip']}"
        assert _relative_link_into_pool(link, pooled) == (pooled / row["clip"]).resolve()
    assert sorted(path.stem for path in (pooled / "media").iterdir()) == sorted(row["id"] for row in videos)


def test_photo_posts_images_and_sounds_link_into_the_pool(corpora: tuple[Path, Path]) -> None:
    pooled, _ = corpora
    photos = [row for row in _card(pooled)["videos"] if row["kind"] == "photo"]
    assert photos
    for row in photos:
        images = sorted((pooled / "images" / row["id"]).iterdir())
        assert len(images) == len(row["images"])
        for image in images:
            assert image.is_symlink()
            _relative_link_into_pool(image, pooled)
        _relative_link_into_pool(pooled / "sounds" / f"{row['sound_id']}.mp3", pooled)
    posts_files = [
        path for folder in ("media", "images", "sounds") for path in (pooled / folder).rglob("*.*")
    ]
    assert posts_files and all(path.is_symlink() for path in posts_files)


def test_metadata_matches_the_unpooled_corpus_but_for_media_facts(corpora: tuple[Path, Path]) -> None:
    pooled, plain = corpora
    pooled_card, plain_card = _card(pooled), _card(plain)
    for key in set(pooled_card) | set(plain_card):
        if key not in ("config", "media_pool", "videos"):
            assert pooled_card[key] == plain_card[key], key
    first_clip_source = None
    for pooled_row, plain_row in zip(pooled_card["videos"], plain_card["videos"], strict=True):
        same = {k: v for k, v in pooled_row.items() if k not in MEDIA_FACTS}
        assert same == {k: v for k, v in plain_row.items() if k not in MEDIA_FACTS}
        if pooled_row.get("clip") == "pool/0000.mp4" and first_clip_source is None:
            first_clip_source = plain_row["id"]
    # a clip is the very mp4 of the video post it was rendered from
    assert (pooled / "pool" / "0000.mp4").read_bytes() == (
        plain / "media" / f"{first_clip_source}.mp4"
    ).read_bytes()
    for item_path in sorted((plain / "items").glob("*.json")):
        plain_item = json.loads(item_path.read_text())
        pooled_item = json.loads((pooled / "items" / item_path.name).read_text())
        for item in (plain_item, pooled_item):
            item["video"].pop("duration"), item["video"].pop("bitrate", None)
        assert pooled_item == plain_item


def test_pooled_items_describe_the_clip_they_link_to(corpora: tuple[Path, Path]) -> None:
    pooled, _ = corpora
    for row in _card(pooled)["videos"]:
        if row["kind"] == "video":
            video = json.loads((pooled / "items" / f"{row['id']}.json").read_text())["video"]
            clip = pooled / row["clip"]
            assert video["duration"] == round(row["duration_s"])
            assert video["bitrate"] == int(clip.stat().st_size * 8 / row["duration_s"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--media-pool", "0"], "--media-pool must be a whole number of at least 1"),
        (["--media-pool", "-3"], "--media-pool must be a whole number of at least 1"),
        (["--media-pool", "2.5"], "'2.5' is not a valid integer"),
        (["--media-pool", "many"], "'many' is not a valid integer"),
        (["--media-pool", "9"], "--media-pool 9 is more clips than --videos 4"),
        (["--media-pool", "2", "--near-duplicates", "0.1"], "drop one of the two"),
        (["--near-duplicates", "0.9"], "--near-duplicates must be a fraction 0..0.5"),
    ],
)
def test_bad_pool_arguments_fail_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tkds", "synth", str(tmp_path / "out"), "--videos", "4", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (1, 2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tkds: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "corpus.json").exists()


def test_corpus_json_is_written_as_json_dumps_writes_it(corpora: tuple[Path, Path]) -> None:
    for corpus in corpora:  # the card is streamed row by row; its bytes are the one-shot dump's
        text = (corpus / "corpus.json").read_text(encoding="utf-8")
        assert json.dumps(json.loads(text), ensure_ascii=False, indent=1) == text


def test_a_killed_pooled_run_resumes_to_the_same_corpus(corpora: tuple[Path, Path], tmp_path: Path) -> None:
    pooled, _ = corpora
    copy = tmp_path / "copy"
    shutil.copytree(pooled, copy, symlinks=True)
    video = next(row for row in _card(copy)["videos"] if row.get("clip") == "pool/0001.mp4")
    for path in (copy / "corpus.json", copy / "pool" / "0001.mp4", copy / "media" / f"{video['id']}.mp4"):
        path.unlink()  # as a kill before the end leaves it: no card, a clip and a link missing
    summary = generate(copy, POSTS, media_pool=CLIPS, **OPTIONS)
    assert summary.rendered == 1
    for path in sorted(pooled.rglob("*")):
        twin = copy / path.relative_to(pooled)
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes(), path.relative_to(pooled)
