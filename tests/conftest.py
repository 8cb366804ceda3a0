"""Shared test fixtures: a small real SynthTok corpus, and the real TikTok captures in ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
