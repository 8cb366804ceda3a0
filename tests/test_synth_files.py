"""A SynthTok corpus on disk: real H.264/AAC that torchcodec decodes, TikTok-shaped item JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchcodec.decoders import AudioDecoder, VideoDecoder

from tkds.tiktok import rounded_count

from .conftest import common_keys


def test_every_video_decodes_with_matching_durations(small_corpus: Path, corpus_card: dict) -> None:
    config = corpus_card["config"]
    assert len(corpus_card["videos"]) == config["videos"] == 12
    for video in corpus_card["videos"]:
        path = small_corpus / "media" / f"{video['id']}.mp4"
        item = json.loads((small_corpus / "items" / f"{video['id']}.json").read_text())
        decoder = VideoDecoder(str(path), seek_mode="approximate")
        meta = decoder.metadata
        assert (meta.codec, meta.width, meta.height) == ("h264", config["width"], config["height"])
        assert meta.average_fps == pytest.approx(config["fps"])
        frames = decoder.get_frames_in_range(0, len(decoder)).data
        assert frames.shape == (video["frames"], 3, config["height"], config["width"])
        assert frames.float().std() > 10, "frames should carry a picture, not a flat colour"
        assert meta.duration_seconds == pytest.approx(video["duration_s"], abs=1 / config["fps"])
        assert abs(item["video"]["duration"] - video["duration_s"]) <= 0.5

        audio = AudioDecoder(str(path))
        samples = audio.get_all_samples()
        assert audio.metadata.codec == "aac" and samples.sample_rate == config["sample_rate"]
        assert samples.data.shape[0] == 1
        assert samples.duration_seconds == pytest.approx(video["duration_s"], abs=0.1)
        assert torch.sqrt(torch.mean(samples.data**2)) > 0.01, "the soundtrack should not be silent"


def test_layout_is_complete_and_leaves_no_partial_files(small_corpus: Path, corpus_card: dict) -> None:
    ids = {v["id"] for v in corpus_card["videos"]}
    assert {p.stem for p in (small_corpus / "media").glob("*.mp4")} == ids
    assert {p.stem for p in (small_corpus / "items").glob("*.json")} == ids
    assert not list(small_corpus.rglob("*.partial"))


def test_item_json_has_the_itemstruct_fields_of_real_captures(
    small_corpus: Path, corpus_card: dict, tiktok_fixtures: Path
) -> None:
    real = json.loads((tiktok_fixtures / "api_item_list_2021.json").read_text())
    ours = [json.loads(p.read_text()) for p in sorted((small_corpus / "items").glob("*.json"))]
    assert common_keys(real) <= common_keys(ours)
    assert {"challenges", "textExtra", "statsV2"} <= common_keys(ours)
    for block in ("video", "author", "music", "stats", "authorStats"):
        real_keys = common_keys([item[block] for item in real])
        assert real_keys <= common_keys([item[block] for item in ours]), block
        for item in ours:  # same value types as the capture, block by block
            for key in real_keys:
                assert type(item[block][key]) is type(real[0][block][key]), (block, key)


def test_item_json_values_follow_tiktok_conventions(small_corpus: Path, corpus_card: dict) -> None:
    by_id = {v["id"]: v for v in corpus_card["videos"]}
    for path in (small_corpus / "items").glob("*.json"):
        item = json.loads(path.read_text())
        truth = by_id[item["id"]]
        for value in (item["id"], item["author"]["id"], item["music"]["id"]):
            assert isinstance(value, str) and value.isdigit() and len(value) == 19
        assert int(item["id"]) >> 32 == item["createTime"] == truth["create_time"]
        assert item["author"]["id"] == truth["author_id"] and item["music"]["id"] == truth["sound_id"]
        assert item["music"]["original"] == truth["original_sound"]
        exact = {key: int(value) for key, value in item["statsV2"].items()}
        assert exact["diggCount"] == truth["likes"]
        for key, value in item["stats"].items():
            assert value == rounded_count(exact[key])
        tags = [c["title"] for c in item["challenges"]]
        assert tags == truth["hashtags"]
        for entity in item["textExtra"]:
            assert item["desc"][entity["start"] : entity["end"]] == "#" + entity["hashtagName"]
        assert "x-expires=" in item["video"]["playAddr"] and item["video"]["playAddr"].startswith("https://")


def test_corpus_card_states_factors_and_ceilings(corpus_card: dict) -> None:
    ceilings = corpus_card["bayes_r2"]["population"]
    assert 0 < ceilings["content_only"] < ceilings["author_only"] < ceilings["all"] < 1
    for video in corpus_card["videos"]:
        terms = video["likes_terms"]
        assert set(terms) >= {"followers", "skill", "category", "sound", "originality", "age", "noise"}
        assert sum(terms.values()) == pytest.approx(video["log1p_likes"], abs=0.01 + 1 / (1 + video["likes"]))
    assert len(corpus_card["categories"]) == corpus_card["config"]["categories"]
