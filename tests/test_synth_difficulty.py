"""`tkds synth --difficulty`: nuisance factors that hide the category, measured on the files they make.

`easy` is the corpus of the versions before difficulties, byte for byte; `standard` and `hard` put more
videos on trending sounds, draw distractor shapes, pan the camera and compress harder, each as its
`DIFFICULTIES` entry (and the corpus card) says.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tkds.cli import cli, main
from tkds.errors import TkdsError
from tkds.synth import generate
from tkds.synth.factors import DIFFICULTIES, SynthConfig
from tkds.synth.visuals import VisualSpec, render_frames

# The digest of generate(OUT, 16, seed=1, seconds=(1, 1), photo_share=0.2, near_duplicates=0.5) made by
# the code before difficulties existed (photo posts, their sounds and two near duplicates included).
EASY_DIGEST = "79fed7c3a2b2581ab0ff3e434476f4aa5cb6f6e1c512ccd23c8733f847cfa0c0"
EASY_ARGS = {"seed": 1, "seconds": (1.0, 1.0), "photo_share": 0.2, "near_duplicates": 0.5}


def corpus_digest(out: Path) -> str:
    """sha256 over every file's path and bytes; corpus.json's `tkds_version` is left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name, data = path.relative_to(out).as_posix(), path.read_bytes()
        if name == "corpus.json":
            card = json.loads(data)
            card["tkds_version"] = "-"
            data = json.dumps(card, indent=1, ensure_ascii=False).encode()
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def card(out: Path) -> dict:
    return json.loads((out / "corpus.json").read_text())


def test_easy_is_the_corpus_of_before_byte_for_byte(tmp_path: Path) -> None:
    generate(tmp_path / "api", 16, **EASY_ARGS, workers=1, progress=False)
    assert corpus_digest(tmp_path / "api") == EASY_DIGEST
    args = ["synth", str(tmp_path / "cli"), "--videos", "16", "--seed", "1", "--seconds", "1-1"]
    args += ["--photo-share", "0.2", "--near-duplicates", "0.5", "--difficulty", "easy", "--workers", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert corpus_digest(tmp_path / "cli") == EASY_DIGEST
    easy = card(tmp_path / "cli")
    assert "difficulty" not in easy and "difficulty" not in easy["config"]
    assert easy["config"]["home_sound_prob"] == 0.7
    assert not any("nuisance" in row for row in easy["videos"])


def test_a_difficulty_is_recorded_and_deterministic_for_a_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate(tmp_path / name, 12, seed=4, seconds=(0.5, 0.5), difficulty="standard", progress=False)
    generate(tmp_path / "easy", 12, seed=4, seconds=(0.5, 0.5), progress=False)
    assert corpus_digest(tmp_path / "a") == corpus_digest(tmp_path / "b")
    assert corpus_digest(tmp_path / "a") != corpus_digest(tmp_path / "easy")

    standard, easy = card(tmp_path / "a"), card(tmp_path / "easy")
    level = DIFFICULTIES["standard"]
    assert standard["config"]["difficulty"] == "standard"
    assert standard["config"]["home_sound_prob"] == level.home_sound_prob
    assert standard["difficulty"] == {
        "name": "standard",
        "home_sound_prob": 0.3,
        "clutter": [2, 5],
        "camera": 0.12,
        "crf": [28, 34],
        "trending_share": round((1 - 0.12) * (1 - 0.3), 6),
    }
    # Nuisances hide the category; they change no post's id, author or category.
    keep = ("id", "author_id", "category", "create_time")
    rows = {
        name: [[r[k] for k in keep] for r in corpus["videos"]]
        for name, corpus in (("s", standard), ("e", easy))
    }
    assert rows["s"] == rows["e"]


def test_a_partial_corpus_resumes_only_at_its_own_difficulty(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    generate(out, 3, seed=2, seconds=(0.5, 0.5), progress=False)
    (out / "corpus.json").unlink()  # as a killed run leaves it
    with pytest.raises(TkdsError, match=r"other arguments \(difficulty, home_sound_prob\)") as error:
        generate(out, 3, seed=2, seconds=(0.5, 0.5), difficulty="hard", progress=False)
    assert "\n" not in str(error.value)
    generate(out, 3, seed=2, seconds=(0.5, 0.5), progress=False)  # the same arguments resume


def _measured_shares(out: Path) -> dict[str, float]:
    """Shares measured on the files: item sounds against the card's catalogue, CRFs from the mp4s."""
    corpus = card(out)
    homes = {s["id"]: s["home_category"] for s in corpus["sounds"]}
    weights = {s["id"]: s["popularity_weight"] for s in corpus["sounds"] if not s["original"]}
    own = np.zeros(len(corpus["categories"]))
    for sound_id, weight in weights.items():
        own[homes[sound_id]] += weight / sum(weights.values())
    off, expected_off, crfs = [], [], []
    for row in corpus["videos"]:
        item = json.loads((out / "items" / f"{row['id']}.json").read_text())
        off.append(homes[item["music"]["id"]] != row["category"])
        # a trending sound is another category's unless popularity picks one of its own
        expected_off.append(1 - own[row["category"]])
        x264 = re.search(rb"crf=(\d+)\.0", (out / "media" / f"{row['id']}.mp4").read_bytes())
        crfs.append(int(x264.group(1)))
    return {"off_category": float(np.mean(off)), "own_share": 1 - float(np.mean(expected_off)), "crfs": crfs}


@pytest.mark.parametrize("level", ["easy", "standard", "hard"])
def test_factor_shares_measured_on_the_items_are_the_documented_ones(tmp_path: Path, level: str) -> None:
    n = 120
    out = tmp_path / level
    generate(out, n, seed=5, size=(64, 112), seconds=(0.5, 0.5), difficulty=level, progress=False)
    corpus, documented, measured = card(out), DIFFICULTIES[level], _measured_shares(out)

    trending = (1 - 0.12) * (1 - documented.home_sound_prob)
    expected = trending * (1 - measured["own_share"])
    spread = 4 * np.sqrt(expected * (1 - expected) / n)
    assert abs(measured["off_category"] - expected) < spread, (measured["off_category"], expected)
    lo, hi = documented.crf
    assert lo <= min(measured["crfs"]) and max(measured["crfs"]) <= hi
    assert len(set(measured["crfs"])) > 1 or lo == hi  # drawn per video
    if level == "easy":
        assert set(measured["crfs"]) == {23} and "difficulty" not in corpus
        return
    assert corpus["difficulty"]["trending_share"] == round(trending, 6)
    rows = [row["nuisance"] for row in corpus["videos"]]
    assert [r["crf"] for r in rows] == measured["crfs"]
    trending_rows = np.mean([r["sound"] == "trending" for r in rows])
    assert abs(trending_rows - trending) < 4 * np.sqrt(trending * (1 - trending) / n)
    clutter = [r["clutter"] for r in rows]
    assert set(clutter) == set(range(documented.clutter[0], documented.clutter[1] + 1))
    camera = np.array([r["camera_px"] for r in rows]) / 64
    assert documented.camera / 2 <= camera.min() and camera.max() <= documented.camera


def _spec(**changes) -> VisualSpec:
    spec = VisualSpec(
        width=144, height=256, fps=15, frames=45, shape="circle", motion="spin", hue=200.0,
        saturation=0.8, size=0.15, speed=0.5, count=3, background=3, background_hues=(30.0, 120.0),
        overlay_text="", overlay_top=True, noise_level=0.0, seed=9,
    )  # fmt: skip
    return replace(spec, **changes)


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """The global translation between two frames, in pixels, by phase correlation."""
    fa, fb = np.fft.fft2(a.mean(axis=2)), np.fft.fft2(b.mean(axis=2))
    cross = fa * np.conj(fb)
    peak = np.unravel_index(np.argmax(np.abs(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))), a.shape[:2])
    dy, dx = (p if p <= s // 2 else p - s for p, s in zip(peak, a.shape[:2], strict=True))
    return float(np.hypot(dx, dy))


def _shape_travel(frames: np.ndarray) -> float:
    """How far the centroid of the shapes' pixels (saturation 0.8; the backdrop's is 0.3) travels."""
    rgb = frames.astype(float)
    mask = (rgb.max(axis=3) - rgb.min(axis=3)) > 0.6 * rgb.max(axis=3)
    centroids = np.array([np.argwhere(m).mean(axis=0) for m in mask])
    return float(np.hypot(*np.ptp(centroids, axis=0)))


def test_the_camera_pans_the_whole_scene_and_clutter_adds_shapes() -> None:
    still, panned = render_frames(_spec()), render_frames(_spec(camera_px=40.0))
    # The backdrop alone: without a pan it only jitters (at most 2 x 6 px at this width).
    backdrop, backdrop_panned = render_frames(_spec(count=0)), render_frames(_spec(count=0, camera_px=40.0))
    assert np.median([_shift(backdrop[0], frame) for frame in backdrop]) <= 13
    assert np.median([_shift(backdrop_panned[0], frame) for frame in backdrop_panned]) >= 25
    # Spinning circles stay put unless the camera moves.
    assert _shape_travel(still) < 3
    assert _shape_travel(panned) >= 25
    # Clutter draws from a stream of its own: everything else is as without it, plus the distractors.
    cluttered = render_frames(_spec(clutter=6))
    changed = np.any(cluttered != still, axis=3).mean(axis=(1, 2))
    assert changed.min() > 0.01
    assert np.array_equal(render_frames(_spec(clutter=0, camera_px=0.0)), still)


def test_a_bad_difficulty_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(tmp_path / "cli"), "--difficulty", "medium"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1
    assert "'medium' is not one of 'easy', 'standard', 'hard'" in error
    assert not (tmp_path / "cli").exists()
    with pytest.raises(TkdsError) as error:
        generate(tmp_path / "api", 2, difficulty="medium", progress=False)
    assert str(error.value) == "--difficulty must be one of easy, standard, hard (got 'medium')"
    assert not (tmp_path / "api").exists()
    with pytest.raises(TkdsError, match="got None"):
        SynthConfig(videos=2, difficulty=None)
    synth = cli.commands["synth"]
    choices = next(p for p in synth.params if p.name == "difficulty").type.choices
    assert tuple(choices) == tuple(DIFFICULTIES)  # the CLI lists every level, and only those
