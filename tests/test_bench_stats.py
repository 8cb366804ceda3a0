"""The leaderboard's statistics: bootstrap intervals that cover at their stated rate, fast paths equal to
the plain metrics, the normalised score's floor and ceiling, significance marks, and the ranking.

The simulated tables follow a latent model sized on docs/results.md's cpu-small run (accuracy near 0.8,
a seed spread near 0.01 on 400 test videos): video i is solved by seed s of a method of skill θ when
z_i + θ + a_s + ε_si > 0, with z_i ~ N(0, 1) the video's ease (shared by every method), a_s ~ N(0, 0.02²)
the seed's luck and ε_si ~ N(0, 0.3²) its luck on that video, so the true accuracy is
Φ(θ / √(1 + 0.02² + 0.3²)).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from scipy.stats import binom, norm
from sklearn.metrics import roc_auc_score

from tkds.benchmarks import stats
from tkds.benchmarks.leaderboard import HEADLINE, levels, ranked, row_label, write_leaderboard
from tkds.benchmarks.metrics import r2
from tkds.benchmarks.run import checked_manifest, metadata_table
from tkds.cli import cli
from tkds.errors import TkdsError

SEED_SD, VIDEO_SD, CLASSES = 0.02, 0.3, 8


def solved(rng: np.random.Generator, ease: np.ndarray, theta: float, seeds: int = 3) -> np.ndarray:
    """seeds × videos: whether each seed of a method of skill `theta` solves each video."""
    luck = rng.normal(0, SEED_SD, (seeds, 1)) + rng.normal(0, VIDEO_SD, (seeds, ease.size))
    return ease + theta + luck > 0


def true_accuracy(theta: float) -> float:
    return float(norm.cdf(theta / np.sqrt(1 + SEED_SD**2 + VIDEO_SD**2)))


def classified(
    rng: np.random.Generator, keys: np.ndarray, truth: np.ndarray, right: np.ndarray
) -> stats.Outputs:
    """Outputs of a classifier that is right where `right` says, and some other class elsewhere."""
    wrong = (truth + rng.integers(1, CLASSES, right.shape)) % CLASSES
    return stats.Outputs(keys, np.tile(truth, (len(right), 1)), np.where(right, truth, wrong).astype(float))


def test_intervals_cover_the_true_accuracy_and_difference_at_the_stated_rate() -> None:
    rng = np.random.default_rng(2026)
    thetas, n, tables = (0.9, 0.8), 400, 400
    truths = [true_accuracy(theta) for theta in thetas]
    row_hits = difference_hits = 0
    for table in range(tables):
        ease = rng.normal(size=n)
        truth = rng.integers(0, CLASSES, n).astype(float)
        a, b = (classified(rng, np.arange(n), truth, solved(rng, ease, theta)) for theta in thetas)
        drawn = stats.draws(n, resamples=300, seed=table)
        samples_a, samples_b = stats.replicates(a, "accuracy", drawn), stats.replicates(b, "accuracy", drawn)
        low, high = stats.interval(samples_a)
        row_hits += low <= truths[0] <= high
        diff = stats.difference(samples_a, samples_b, stats.point(a, "accuracy") - stats.point(b, "accuracy"))
        difference_hits += diff.low <= truths[0] - truths[1] <= diff.high
    # The central 99.9 % of a binomial count of 400 tables at 95 %: within it, the rate is the stated one.
    # The difference's interval may be wider than needed (resampling videos and seeds together counts a
    # seed's luck on single videos more than once; see stats.py), so it is held to the lower end only.
    lowest, highest = binom.interval(0.999, tables, stats.LEVEL)
    assert lowest <= row_hits <= highest, row_hits
    assert lowest <= difference_hits, difference_hits


def test_seeds_are_resampled_too() -> None:
    """Three seeds that agree on every video but not with each other: the videos' resamples alone would
    give an interval of one point (2/3); the seeds give the spread of their means."""
    n = 50
    truth = np.zeros((3, n))
    score = np.array([np.zeros(n), np.ones(n), np.zeros(n)])  # seed 1 is wrong on every video
    samples = stats.replicates(stats.Outputs(np.arange(n), truth, score), "accuracy", stats.draws(n))
    assert stats.interval(samples) == (0.0, 1.0)  # all three draws seed 1 in 1 of 27 resamples


def test_the_fast_paths_give_the_plain_metrics_on_the_same_draws() -> None:
    rng = np.random.default_rng(7)
    n, keys = 300, np.arange(300)
    truth = rng.integers(0, CLASSES, n).astype(float)
    likes = rng.normal(3, 1, n)
    outlier = (rng.random(n) < 0.1).astype(float)
    ties = np.round(outlier + rng.normal(0, 1, (3, n)), 1)  # many ties, which AUROC counts as half
    cases = {
        "accuracy": (
            classified(rng, keys, truth, solved(rng, rng.normal(size=n), 0.8)),
            lambda t, s: float(np.mean(t == s)),
        ),
        "mean": (stats.Outputs(keys, np.full((3, n), np.nan), rng.random((3, n))), lambda t, s: np.mean(s)),
        "r2": (stats.Outputs(keys, np.tile(likes, (3, 1)), likes + rng.normal(0, 0.7, (3, n))), r2),
        "auroc": (stats.Outputs(keys, np.tile(outlier, (3, 1)), ties), roc_auc_score),
    }
    drawn = stats.draws(n, resamples=40, seed=3)
    for kind, (outputs, plain) in cases.items():
        fast, slow = stats.per_seed(outputs, kind, drawn), stats.per_seed(outputs, plain, drawn)
        assert np.allclose(fast, slow, rtol=0, atol=1e-12), kind
        each = [plain(t, s) for t, s in zip(outputs.y_true, outputs.y_score, strict=True)]
        assert stats.point(outputs, kind) == pytest.approx(np.mean(each)), kind
    assert [stats.metric_kind(m) for m in HEADLINE.values()] == ["accuracy", "mean", "auroc", "r2", "mean"]


def test_the_normalised_score_is_0_at_the_floor_and_1_at_the_ceiling_and_says_why_when_undefined() -> None:
    assert stats.normalised(0.4, 0.4, 0.9) == (0.0, "")
    assert stats.normalised(0.9, 0.4, 0.9) == (1.0, "")
    assert stats.normalised(0.65, 0.4, 0.9)[0] == pytest.approx(0.5)
    assert stats.normalised(0.3, 0.4, 0.9)[0] == pytest.approx(-0.2)  # below the floor: negative
    assert stats.normalised(0.5, None, 0.9) == (None, "no floor row (a random encoder) on this task")
    assert stats.normalised(0.5, 0.4, None)[0] is None and "no ceiling" in stats.normalised(0.5, 0.4, None)[1]
    assert stats.normalised(0.5, 0.6, 0.6) == (None, "the ceiling (0.600) is not above the floor (0.600)")


def _cell(run: Path, method: str, seed: int, outputs: stats.Outputs) -> None:
    """A bench cell as a learned method writes it: metrics.json and its per-video outputs."""
    cell = run / method / f"seed{seed}"
    (cell / stats.OUTPUTS_DIR).mkdir(parents=True)
    metric = HEADLINE["classification"]
    top1 = float(np.mean(outputs.y_true[seed] == outputs.y_score[seed]))
    rows = {"video": {"metrics": {"classification": {metric: top1}}, "skipped": {}}}
    (cell / "metrics.json").write_text(json.dumps({"rows": rows, "modality": "video", "device": "cpu"}))
    pl.DataFrame({
        "key": [f"v{k:04d}" for k in outputs.keys], "task": "classification", "metric": metric,
        "y_true": outputs.y_true[seed], "y_score": outputs.y_score[seed],
    }).write_parquet(cell / stats.OUTPUTS_DIR / "video.parquet")  # fmt: skip


def test_the_leaderboard_marks_the_pair_that_differs_and_not_the_pair_that_does_not(
    built_shards: Path, tmp_path: Path
) -> None:
    """random and simclr have the same skill, av-simclr more, supervised most: of the first two pairs
    only av-simclr vs simclr is significant; random is the floor (0) and supervised the ceiling (1)."""
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["bench", "--shards", str(built_shards), "--out", str(run),
                                      "--methods", "metadata-only"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rng = np.random.default_rng(11)
    n = 600
    ease, truth = rng.normal(size=n), rng.integers(0, CLASSES, n).astype(float)
    skills = {"random": 0.4, "simclr": 0.4, "av-simclr": 0.9, "supervised": 1.4}
    for method, theta in skills.items():
        outputs = classified(rng, np.arange(n), truth, solved(rng, ease, theta))
        for seed in range(3):
            _cell(run, method, seed, outputs)
    methods = (*skills, "metadata-only")
    rows = write_leaderboard(run, built_shards, checked_manifest(built_shards), methods, 3,
                             metadata_table(built_shards, "category"))  # fmt: skip
    board = json.loads((run / "leaderboard.json").read_text())
    pairs = {(p["a"].split()[0], p["b"].split()[0]): p for p in board["differences"]["classification"]}
    assert not pairs["random", "simclr"]["significant"]
    assert pairs["simclr", "av-simclr"]["significant"] and pairs["simclr", "av-simclr"]["diff"] < 0
    assert pairs["random", "supervised"]["significant"]
    assert len(pairs) == 6  # every two of the four rows above; metadata-only scored other videos
    by_method = {row["method"]: row for row in rows}
    top1 = by_method["av-simclr"]["metrics"]["classification"][HEADLINE["classification"]]
    assert top1["ci"][0] < top1["mean"] < top1["ci"][1] and top1["ci_videos"] == n and top1["ci_seeds"] == 3
    reference = by_method["metadata-only"]["metrics"]["classification"][HEADLINE["classification"]]
    assert 0 < reference["ci_videos"] < n  # its own cells' outputs: the fixture's few test videos
    assert by_method["random"]["normalised"]["classification"] == 0.0
    assert by_method["supervised"]["normalised"]["classification"] == 1.0
    assert by_method["metadata-only"]["normalised"]["likes"] == 0.0  # the likes floor: author counts alone
    assert board["levels"]["likes"]["ceiling"]["row"] == "bayes-optimal (reference: true factors)"
    assert by_method["bayes-optimal"]["normalised"]["likes"] == 1.0
    markdown = (run / "leaderboard.md").read_text()
    shown = f"{top1['mean']:.3f} [{top1['ci'][0]:.3f}, {top1['ci'][1]:.3f}]"
    assert shown in markdown and "Paired differences of linear_top1" in markdown
    page = (run / "leaderboard.html").read_text()
    assert shown in page and "Paired differences of <code>linear_top1</code>" in page


def test_an_unreadable_outputs_file_leaves_mean_and_std_and_says_why(tmp_path: Path) -> None:
    cell = tmp_path / "simclr" / "seed0" / stats.OUTPUTS_DIR
    cell.mkdir(parents=True)
    table = pl.DataFrame({"key": ["a", "a"], "task": "classification", "metric": "linear_top1",
                          "y_true": [1.0, 1.0], "y_score": [1.0, 0.0]})  # fmt: skip
    table.write_parquet(cell / "video.parquet")
    with pytest.raises(TkdsError, match="lists a video twice"):
        stats.read_outputs([cell / "video.parquet"], "classification", "linear_top1")
    (cell / "video.parquet").write_text("not parquet")
    with pytest.raises(TkdsError, match="is not an outputs table"):
        stats.read_outputs([cell / "video.parquet"], "classification", "linear_top1")


def test_the_headline_table_is_ranked_by_mean_normalised_score(built_shards: Path, tmp_path: Path) -> None:
    """A real bench of the reference rows, printed by the CLI (with 3 seeds by default): rows in the order
    of their mean normalised score, the Bayes-optimal ceiling last, then the floor and ceiling rows."""
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["bench", "--shards", str(built_shards), "--out", str(run),
                                      "--methods", "metadata-only,sound-id"])  # fmt: skip
    assert result.exit_code == 0, result.output
    board = json.loads((run / "leaderboard.json").read_text())
    assert {row["seeds"] for row in board["rows"] if row["method"] != "bayes-optimal"} == {3}
    found = levels(board["rows"])
    assert found == board["levels"]
    floor, ceiling = found["likes"]["floor"]["value"], found["likes"]["ceiling"]["value"]
    for row in board["rows"]:
        score = row["metrics"]["likes"]["r2_combined"]["mean"]
        assert row["normalised"]["likes"] == pytest.approx((score - floor) / (ceiling - floor))
    expected = sorted(board["rows"][:-1], key=lambda row: -row["normalised_mean"]) + board["rows"][-1:]
    assert expected != board["rows"]  # sound-id's likes R² beats the author counts': the order changes
    assert [row_label(r) for r in ranked(board["rows"])] == [row_label(r) for r in expected]
    text = " ".join(result.output.split())
    labels = [row_label(r)[:7] for r in expected]  # what a narrow terminal shows of them
    positions = [text.index(f"│ {label}") for label in labels] + [
        text.index("│ floor"),
        text.index("│ ceiling"),
    ]
    assert positions == sorted(positions), text


def test_the_content_only_ceiling_sees_the_content_terms_and_the_category_mean_of_the_rest(
    tmp_path: Path,
) -> None:
    from tkds.benchmarks.leaderboard import bayes_row

    rng = np.random.default_rng(0)
    n, categories = 400, 4
    category = rng.integers(0, categories, n)
    content = rng.normal(0, 1.0, n)  # the category, sound and originality terms together
    author = rng.normal(0, 1.0, n) + 0.5 * category  # what only the author's statistics say
    terms = [
        {
            "intercept": 6.0,
            "category": c,
            "sound": 0.0,
            "originality": 0.0,
            "followers": a,
            "skill": 0.0,
            "age": 0.0,
            "noise": 0.0,
        }
        for c, a in zip(content, author, strict=True)
    ]
    log_likes = 6.0 + content + author
    videos = [
        {
            "id": f"v{i}",
            "category": int(category[i]),
            "likes_terms": terms[i],
            "log1p_likes": float(log_likes[i]),
        }
        for i in range(n)
    ]
    card = tmp_path / "corpus.json"
    card.write_text(json.dumps({"videos": videos}))
    metadata = pl.DataFrame({
        "key": [v["id"] for v in videos],
        "split": ["test" if i % 2 else "train" for i in range(n)],
        "likes": np.round(np.expm1(log_likes)).astype(np.int64),
        "create_time": [None] * n,
    }, schema_overrides={"create_time": pl.Int64})  # fmt: skip
    row = bayes_row({"params": {"labels": str(card)}}, metadata)
    likes = row["metrics"]["likes"]
    assert likes["r2_combined"]["mean"] > 0.99  # likes is rounded to an integer, nothing else is lost
    test = np.arange(n) % 2 == 1
    rest = np.array([author[category == c].mean() for c in range(categories)])[category]
    expected = r2(np.log1p(metadata["likes"].to_numpy().astype(float))[test], (6.0 + content + rest)[test])
    assert likes["r2_content"]["mean"] == pytest.approx(expected)
    assert 0.3 < likes["r2_content"]["mean"] < 0.8  # the author half of the variance is not in content
