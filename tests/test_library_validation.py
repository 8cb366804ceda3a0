"""The library checks its own arguments: each bad value is one `TkdsError` line naming the item and the fix,
raised before any work starts, from Python as from the CLI (which only parses)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import tkds
from tkds.collector.store import Store
from tkds.dataset.build import ShardParams, build_shards
from tkds.dataset.dedupe import duplicate_clusters
from tkds.dataset.select import Candidate, select_candidates
from tkds.dataset.split import assign_splits
from tkds.errors import TkdsError
from tkds.models.embed import embed, write_embeddings
from tkds.models.train import train


def refused(call, match: str) -> str:
    """The one-line message of the TkdsError that `call()` raises, checked against `match`."""
    with pytest.raises(TkdsError, match=match) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


def candidates(count: int = 40) -> list[Candidate]:
    return [
        Candidate(
            id=str(7_000_000_000_000_000_000 + n), author_id=str(100 + n % 7), author_unique_id=None,
            music_id=None, music_title=None, description=None, create_time=1_700_000_000 + 86_400 * n,
            source=None, path=Path("x"), sha256=str(n), bytes=1, stats={}, author_stats={}, hashtags=[],
        )
        for n in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (
            {"ratios": (0.5, 0.5, 0.5)},
            r"^--ratios '\(0\.5, 0\.5, 0\.5\)': give train,val,test as three finite",
        ),
        ({"ratios": (1.0, 0.0)}, "^--ratios .*summing to 1"),
        ({"ratios": (math.nan, 0.5, 0.5)}, "^--ratios .*finite"),
        ({"ratios": "0.8,0.1,0.1"}, "^--ratios '0.8,0.1,0.1': give train,val,test"),
        ({"method": "diagonal"}, "^--split-by 'diagonal': choose one of author, time, random"),
        ({"method": "time"}, "^--split-by time needs --cut-date YYYY-MM-DD"),
        ({"seed": 1.5}, r"^--seed '1\.5': give a whole number"),
        ({"seed": True}, "^--seed 'True': give a whole number"),
        ({"method": "time", "cut": "2024-01-01"}, "^cut '2024-01-01': give a datetime"),
        ({"clusters": [("a", "b")]}, "^clusters .*: give a mapping of video id to keeper id"),
    ],
)
def test_assign_splits_refuses_bad_arguments(arguments: dict, match: str) -> None:
    refused(lambda: assign_splits(candidates(), **arguments), match)


def test_assign_splits_refuses_a_generator_and_keeps_valid_input_as_it_was() -> None:
    videos = candidates()
    refused(lambda: assign_splits(iter(videos)), "^candidates '.*': give a list of Candidate")
    assert assign_splits(tuple(videos)) == assign_splits(videos)
    assert assign_splits(videos, ratios=(1, 0, 0)) == {video.id: "train" for video in videos}
    # an aware cut is the same instant as its naive UTC form (it used to raise a TypeError)
    cut = datetime(2023, 12, 1)
    aware = cut.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    assert assign_splits(videos, "time", cut=aware) == assign_splits(videos, "time", cut=cut)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"split_by": "diagonal"}, "^--split-by 'diagonal': choose one of"),
        ({"split_by": "time"}, "^--split-by time needs --cut-date"),
        (
            {"split_by": "time", "cut_date": "2024-13-45"},
            "^--cut-date '2024-13-45': give a date as YYYY-MM-DD",
        ),
        ({"cut_date": 20240101}, "^--cut-date '20240101': give a date as YYYY-MM-DD"),
        ({"ratios": (0.5, 0.5, 0.5)}, "^--ratios .*summing to 1"),
        ({"ratios": (-0.1, 0.6, 0.5)}, "^--ratios .*non-negative"),
        ({"ratios": (math.inf, 0, 0)}, "^--ratios .*finite"),
        ({"seed": "0"}, "^--seed '0': give a whole number"),
        ({"seed": 2**63}, "^--seed '9223372036854775808': give a whole number"),
        ({"samples_per_shard": 0}, "^--samples-per-shard '0': give a whole number, 1 or more"),
        ({"samples_per_shard": 2.0}, "^--samples-per-shard '2.0': give a whole number"),
        ({"shard_mb": 0}, "^--shard-mb '0': give a size in MB above 0"),
        ({"shard_mb": math.nan}, "^--shard-mb 'nan': give a size in MB"),
        ({"size": 8}, "^--size '8': give a short side from 16 to 4096 px, or 0"),
        ({"size": True}, "^--size 'True': give a short side"),
        ({"fps": 0}, "^--fps '0': give a frame rate above 0"),
        ({"fps": "15"}, "^--fps '15': give a frame rate"),
        ({"where": 1}, "^--where '1': give one SQL condition"),
        ({"where": "x" * 5000}, "^--where 'x+.*': give one SQL condition of at most 4000 characters"),
        ({"labels": 7}, "^--labels '7': give the path of a corpus.json or CSV file"),
        ({"kind": "gif"}, "^--kind 'gif': choose one of video, photo, all"),
    ],
)
def test_shard_params_check_every_field(settings: dict, match: str) -> None:
    refused(lambda: ShardParams(**settings), match)


def test_valid_shard_params_are_unchanged(tmp_path: Path) -> None:
    assert ShardParams() == ShardParams(ratios=(0.8, 0.1, 0.1))
    params = ShardParams(ratios=(1, 0, 0), fps=5, split_by="time", cut_date="2024-01-01T00:00:00+02:00")
    assert params.ratios == (1, 0, 0) and params.fps == 5  # kept as given: fingerprints stay the same
    assert ShardParams(labels=tmp_path / "labels.csv").labels == str(tmp_path / "labels.csv")
    refused(lambda: replace(params, fps=-1), "^--fps '-1'")


def test_build_shards_refuses_bad_arguments_before_claiming_out(synth_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    refused(
        lambda: build_shards(synth_db, out, {"size": 64}, progress=False), "^params .*: give a ShardParams"
    )
    refused(lambda: build_shards(None, out, progress=False), "^--db 'None': give a path")
    refused(lambda: build_shards(synth_db, 3, progress=False), "^--out '3': give a path")
    params = ShardParams(size=64)
    params.samples_per_shard = -1  # changed after it was checked
    refused(lambda: build_shards(synth_db, out, params, progress=False), "^--samples-per-shard '-1'")
    refused(
        lambda: build_shards(synth_db, out, ShardParams(), workers=0, progress=False),
        "^--workers '0': give the number of parallel ffmpeg processes",
    )
    assert not out.exists()


def test_selection_and_dedupe_check_their_arguments(synth_db: Path) -> None:
    with Store.open(synth_db, create=False) as store:
        refused(lambda: select_candidates(store.db, None, synth_db, "gif"), "^--kind 'gif': choose one of")
    videos = candidates(3)
    refused(
        lambda: duplicate_clusters(videos, {videos[0].id: 123}),
        f"^video '{videos[0].id}': frame hash '123' is not",
    )
    refused(lambda: duplicate_clusters(videos, [videos[0].id]), "^hashes .*: give a mapping")
    refused(lambda: duplicate_clusters(iter(videos), {}), "^candidates '.*': give a list")
    assert duplicate_clusters(videos, {video.id: None for video in videos}) == {}


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"frames": 0}, "^frames '0': give a whole number, 1 or more"),
        ({"size": 1.5}, r"^size '1\.5': give a whole number"),
        ({"views": True}, "^views 'True': give a whole number"),
        ({"n_mels": -4}, "^n_mels '-4': give a whole number"),
        ({"sample_rate": "16000"}, "^sample_rate '16000': give a whole number"),
        ({"audio_seconds": math.nan}, "^audio_seconds 'nan': give a number of seconds above 0"),
        ({"audio_seconds": 0}, "^audio_seconds '0': give a number of seconds above 0"),
        ({"split": "../train"}, r"^split '\.\./train': give a split's name, such as train, val or test"),
        ({"split": None}, "^split 'None': give a split's name"),
        ({"shuffle": "yes"}, "^shuffle 'yes': give True or False"),
        ({"seed": -1}, "^seed '-1': give a whole number from 0 to"),
        ({"path": 12}, "^path '12': give the folder that tkds shard wrote"),
    ],
)
def test_load_shards_checks_its_arguments(built_shards: Path, arguments: dict, match: str) -> None:
    arguments = {"path": built_shards, **arguments}
    refused(lambda: tkds.load_shards(**arguments), match)


def test_the_loaders_other_entries_check_theirs(built_shards: Path) -> None:
    refused(
        lambda: tkds.dataset.load_eval_clips(built_shards, "val", clips=0), "^clips '0': give a whole number"
    )
    dataset = tkds.load_shards(built_shards)
    refused(lambda: dataset.set_epoch(-1), "^epoch '-1': give a whole number from 0")
    refused(lambda: dataset.set_epoch(1.0), "^epoch '1.0': give a whole number")


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"split": "dev"}, "^--split 'dev': use one of train, val, test"),
        ({"clips": 0}, "^--clips '0': use a whole number from 1 to 64"),
        ({"clips": 65}, "^--clips '65': use a whole number from 1 to 64"),
        ({"device": "tpu"}, "^--device tpu: use cpu, cuda or cuda:N"),
        ({"batch_size": 0}, "^batch_size '0': use a whole number of videos, 1 or more"),
        ({"num_workers": -1}, "^num_workers -1: use a whole number from 0 to 256"),
    ],
)
def test_embed_checks_its_arguments_before_reading_anything(
    arguments: dict, match: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"  # neither checkpoint nor shards exist: the arguments are refused first
    arguments = {"split": "test", **arguments}
    refused(lambda: embed(missing / "checkpoint.pt", missing, **arguments), match)
    if set(arguments) <= {"split", "clips", "device"}:  # write_embeddings takes these three
        refused(
            lambda: write_embeddings(missing / "c.pt", missing, out=tmp_path / "e.parquet", **arguments),
            match,
        )


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"seed": -1}, "^--seed -1: use a whole number from 0 to"),
        ({"max_steps": 0}, "^--max-steps 0: use a whole number of at least 1"),
        ({"num_workers": 1.5}, r"^num_workers '1\.5': use a whole number from 0 to 256"),
        ({"num_classes": 0}, "^num_classes 0: use a whole number of classes, 1 or more"),
    ],
)
def test_train_checks_its_arguments_before_reading_anything(
    arguments: dict, match: str, tmp_path: Path
) -> None:
    refused(lambda: train(tmp_path / "missing", tmp_path / "run", "simclr", "cpu-tiny", **arguments), match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"videos": True}, r"--videos must be a whole number"),
        ({"videos": "3"}, r"--videos must be a whole number"),
        ({"seed": -1}, r"--seed must be 0 or more"),
        ({"seed": 1.5}, r"--seed must be a whole number"),
        ({"size": (144,)}, r"--size must be two numbers"),
        ({"seconds": ("a", 2)}, r"--seconds must be two numbers"),
        ({"fps": 15.0}, r"--fps must be a whole number"),
        ({"photo_share": "abc"}, r"--photo-share must be a fraction"),
        ({"near_duplicates": float("nan")}, r"--near-duplicates must be a fraction"),
    ],
)
def test_synth_checks_its_arguments_before_writing(tmp_path: Path, arguments: dict, match: str) -> None:
    from tkds.synth.generate import generate

    out = tmp_path / "corpus"
    refused(lambda: generate(out, **{"videos": 3, **arguments}, progress=False), match)
    assert not out.exists()
