"""Shared test fixtures: a small real SynthTok corpus, and the real TikTok captures in ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.synth import generate

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def tiktok_fixtures() -> Path:
    path = SHARED_FIXTURES / "tiktok"
    if not path.is_dir():
        pytest.skip(f"real TikTok captures not found at {path} (they live in the workspace's shared/)")
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 short videos: enough for every file-level check, in a few seconds."""
    out = tmp_path_factory.mktemp("synthtok") / "corpus"
    generate(out, 12, seed=7, seconds=(2.0, 3.0), progress=False)
    return out


@pytest.fixture(scope="session")
def twin_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 one-second videos: enough for two pages of a popular tag."""
    out = tmp_path_factory.mktemp("twin") / "corpus"
    generate(out, 80, seed=11, seconds=(1.0, 1.0), progress=False)
    return out


def common_keys(objects: list[dict]) -> set[str]:
    """The keys every one of `objects` has."""
    return set.intersection(*(set(o) for o in objects))


@pytest.fixture(scope="session")
def corpus_card(small_corpus: Path) -> dict:
    return json.loads((small_corpus / "corpus.json").read_text())


@pytest.fixture(scope="session")
def synth_db(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small corpus imported into DuckDB, its media registered in place: what a collection leaves."""
    db = tmp_path_factory.mktemp("db") / "tk.duckdb"
    summary = import_captures(
        db, sorted((small_corpus / "items").glob("*.json")), small_corpus / "media", False
    )
    assert summary.media_ok == 12
    return db


@pytest.fixture(scope="session")
def built_shards(synth_db: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real `build_shards` output for the small corpus, with SynthTok's categories as labels."""
    out = tmp_path_factory.mktemp("shards") / "shards"
    params = ShardParams(
        samples_per_shard=3, size=128, labels=str(small_corpus / "corpus.json"), ratios=(0.5, 0.25, 0.25)
    )
    build_shards(synth_db, out, params, progress=False)
    return out
