"""The read-outs a bench cell saves are the ones its metrics score and the ones `tkds serve` serves."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from sklearn.ensemble import IsolationForest

from tests.test_serve import a_video, base_url, predictor, run_dir, running  # noqa: F401 - fixtures reused
from tests.test_tasks_scale import likes_table
from tkds.benchmarks import readouts
from tkds.benchmarks.features import embedding, in_split, l2_normalise, metadata_features
from tkds.benchmarks.metrics import author_demeaned_spearman, ndcg_at_k, r2
from tkds.benchmarks.run import bench
from tkds.benchmarks.tasks import hashtags, likes, originality
from tkds.errors import TkdsError
from tkds.files import file_sha256
from tkds.serve.app import create_app
from tkds.serve.predictor import Predictor, likes_with_interval

TASKS = ("likes", "hashtags", "originality")


def cell_of(run: Path) -> Path:
    return run / "random" / "seed0"


def assert_identical(saved: object, fitted: object, where: str = "") -> None:
    """Every field equal: arrays in dtype, shape and bits; nested read-outs field by field."""
    assert type(saved) is type(fitted), where
    for field in dataclasses.fields(saved):
        a, b, name = getattr(saved, field.name), getattr(fitted, field.name), f"{where}.{field.name}"
        if dataclasses.is_dataclass(a):
            assert_identical(a, b, name)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert a.tobytes() == b.tobytes(), name
        else:
            assert type(a) is type(b) and (a == b or (a != a and b != b)), (name, a, b)


def test_the_saved_readouts_are_the_cells_fit_bit_for_bit(run_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    cell = cell_of(run_dir)
    table = pl.read_parquet(cell / "embeddings.parquet")
    saved = readouts.load_readouts(cell, "video")
    assert set(saved) == set(TASKS)
    refitted = readouts.fit_readouts(table, "video", 0, TASKS)
    for task in TASKS:
        assert_identical(saved[task], refitted[task], task)
    readouts.save_readouts(tmp_path, table, "video", 0, TASKS)  # save → load once more
    again = readouts.load_readouts(tmp_path, "video")
    for task in TASKS:
        assert_identical(again[task], saved[task], task)


def test_the_leaderboard_metrics_are_the_saved_readouts_scores(run_dir: Path) -> None:  # noqa: F811
    board = json.loads((run_dir / "leaderboard.json").read_text())
    row = next(r for r in board["rows"] if (r["method"], r["features"]) == ("random", "video"))
    metric = {task: {name: v["mean"] for name, v in m.items()} for task, m in row["metrics"].items()}
    cell = cell_of(run_dir)
    table = pl.read_parquet(cell / "embeddings.parquet")
    saved = readouts.load_readouts(cell, "video")

    likes = saved["likes"]
    assert likes.inputs == "combined"
    test = in_split(table, "test") & table["likes"].is_not_null().to_numpy()
    y = np.log1p(table["likes"].to_numpy()[test].astype(float))
    predicted = likes.predict(metadata_features(table)[test], embedding(table, "video")[test])
    assert metric["likes"]["r2_combined"] == likes.r2 == r2(y, predicted)
    assert likes.test_rows == test.sum()

    tags = saved["hashtags"]
    _, truth, answerable = hashtags.train_test(table)
    x_test = embedding(table, "video")[in_split(table, "test")][answerable]
    votes = tags.votes(*tags.neighbours(x_test))
    assert metric["hashtags"]["NDCG@5_knn"] == pytest.approx(
        ndcg_at_k(votes, truth[answerable], 5), rel=1e-12
    )

    forest = saved["originality"]
    assert np.array_equal(forest.score(embedding(table, "video")), forest.corpus_scores)
    rows = (table["likes"].is_not_null() & table["author_id"].is_not_null()).to_numpy()
    log_likes = np.log1p(table["likes"].to_numpy()[rows].astype(float))
    against_likes = (forest.corpus_scores[rows], log_likes, table["author_id"].to_numpy()[rows])
    assert metric["originality"]["spearman_iforest"] == author_demeaned_spearman(*against_likes)


def test_the_forest_scores_as_scikit_learn_does_bit_for_bit() -> None:
    rng = np.random.default_rng(3)
    x = l2_normalise(rng.standard_normal((300, 12)).astype(np.float32))
    x[:5] = 0.0  # rows without the modality
    for seed in (0, 1):
        reference = (
            -IsolationForest(n_estimators=originality.TREES, random_state=seed).fit(x).score_samples(x)
        )
        forest = originality.Forest.fit(x, seed)
        assert np.array_equal(forest.score(x, block=64), reference)
        queries = rng.standard_normal((7, 12))  # float64 queries are compared in float32, as the trees do
        expected = (
            -IsolationForest(n_estimators=originality.TREES, random_state=seed).fit(x).score_samples(queries)
        )
        assert np.array_equal(forest.score(queries), expected)


def served_percentile(score: float, cohort: str, labels: np.ndarray, corpus_scores: np.ndarray) -> float:
    """The percentile of `score` in the cohort the page names ("N videos with category “X”" or all)."""
    named = re.match(r"(\d+) videos with \S+ “(.+)”$", cohort)
    scores = corpus_scores[labels == named.group(2)] if named else corpus_scores
    assert named is None or len(scores) == int(named.group(1))
    return round(100.0 * (np.sum(scores < score) + 0.5 * np.sum(scores == score)) / len(scores), 1)


@pytest.mark.parametrize("followers", [5000, None])
def test_the_app_serves_the_saved_readouts(
    base_url: str,  # noqa: F811
    predictor: Predictor,  # noqa: F811
    run_dir: Path,  # noqa: F811
    small_corpus: Path,
    followers: int | None,
) -> None:
    video = a_video(small_corpus).read_bytes()
    fields = {"caption": "try #fyp"} | ({} if followers is None else {"followers": str(followers)})
    response = httpx.post(
        f"{base_url}/api/predict", files={"file": ("v.mp4", video)}, data=fields, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()

    saved = readouts.load_readouts(cell_of(run_dir), "video")  # read afresh from the cell, not the app's
    query = predictor.embed(video)[0]
    author = metadata_features(pl.DataFrame({"followers": [followers]}, schema={"followers": pl.Int64}))
    log_likes = float(saved["likes"].predict(author, query)[0])
    assert body["likes_log1p"] == log_likes
    likes, interval = likes_with_interval(log_likes, saved["likes"].residuals)
    assert (body["likes"], tuple(body["interval"])) == (likes, interval)
    assert body["interval"][0] <= body["likes"] <= body["interval"][1]
    if followers is None:  # the train median of log(1 + followers), over the rows the ridge was fitted on
        table = predictor_table(run_dir)
        train = in_split(table, "train") & table["likes"].is_not_null().to_numpy()
        median = np.nanmedian(np.log1p(table["followers"].cast(pl.Float64).to_numpy()[train]))
        assert body["followers"] == round(np.expm1(median)) and body["followers_assumed"]
    r2 = saved["likes"].r2
    assert body["likes_model"] == f"combined ridge of random (video), R² {r2:.2f} on test"
    assert f"likes: {body['likes_model']}" in httpx.get(base_url).text

    shares = saved["hashtags"].shares(query)[0]
    vocabulary = saved["hashtags"].vocabulary.tolist()
    top = sorted(range(len(vocabulary)), key=lambda i: (-shares[i], vocabulary[i]))[:5]
    assert [(t["tag"], t["score"]) for t in body["hashtags"]] == [
        (vocabulary[i], round(shares[i], 3)) for i in top
    ]

    forest = saved["originality"]
    assert body["originality_score"] == forest.score(query)[0]
    labels = predictor_table(run_dir)["label"].to_numpy()
    percentile = served_percentile(body["originality_score"], body["cohort"], labels, forest.corpus_scores)
    assert body["originality"] == percentile


def test_the_app_gives_the_likes_readout_the_followers_and_imputes_the_rest(
    predictor: Predictor,  # noqa: F811
    small_corpus: Path,
) -> None:
    """The tiny corpus's train split has one author, so there followers weigh nothing; a read-out fitted
    where followers drive likes checks what the app feeds it: the count given, else the train median,
    and every other author statistic at its train median (known in every row or not)."""
    table = likes_table(400, predictor.x.shape[1])
    readout = likes.fit_readout(table, "video", 0)
    train = in_split(table, "train") & table["likes"].is_not_null().to_numpy()
    hearts = np.log1p(table["author_hearts"].to_numpy()[train].astype(float))
    kept = readout.ridge.standardiser.kept
    assert kept.tolist()[:4] == [True, True, True, False]  # age is unknown everywhere: dropped
    assert readout.ridge.standardiser.fill[1] == np.median(hearts)  # hearts are never unknown there
    video = a_video(small_corpus).read_bytes()
    query = predictor.embed(video)[0]
    served = {}
    with running(create_app(dataclasses.replace(predictor, likes=readout))) as url:
        for followers in (50, 10**6, None):
            data = {} if followers is None else {"followers": str(followers)}
            response = httpx.post(
                f"{url}/api/predict", files={"file": ("v.mp4", video)}, data=data, timeout=60
            )
            body = response.json()
            author = metadata_features(
                pl.DataFrame({"followers": [followers]}, schema={"followers": pl.Int64})
            )
            assert body["likes_log1p"] == float(readout.predict(author, query)[0]), followers
            served[followers] = body
    assert served[50]["likes_log1p"] < served[None]["likes_log1p"] < served[10**6]["likes_log1p"]
    assert served[None]["followers"] == round(readout.median("followers"))
    assert (
        f"No follower count given: assumed the train median, {served[None]['followers']:,}."
        in served[None]["notes"]
    )


def predictor_table(run: Path) -> pl.DataFrame:
    return pl.read_parquet(cell_of(run) / "embeddings.parquet")


def test_a_run_without_readouts_is_refused_in_one_line(run_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    old = tmp_path / "run"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("readouts"))
    result = subprocess.run(
        [sys.executable, "-m", "tkds", "serve", "--run", str(old), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert (
        result.stderr.startswith("tkds: error: ") and "re-run tkds bench to save read-outs" in result.stderr
    )
    assert str(cell_of(old) / "readouts" / "video.json") in result.stderr


def test_a_rerun_saves_the_missing_readouts_and_keeps_the_checkpoint(
    run_dir: Path,  # noqa: F811
    built_shards: Path,
    tmp_path: Path,
) -> None:
    old = tmp_path / "run"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("readouts"))
    checkpoint = cell_of(old) / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    summary = bench(built_shards, old, ("random", "metadata-only"), seeds=1, progress=False)
    assert summary.done == ["random/seed0"] and summary.reused == ["metadata-only/seed0"]
    assert checkpoint.stat().st_mtime_ns == before
    assert (cell_of(old) / "readouts" / "video.json").is_file()
    assert Predictor.load(old).row["method"] == "random"


def test_a_changed_or_pickled_readout_is_refused_without_running_it(run_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    npz, record = readouts.paths(cell_of(run), "video")
    stored = dict(np.load(npz))
    np.savez(npz, **{**stored, "likes.ridge.coefficients": stored["likes.ridge.coefficients"] * 2})
    with pytest.raises(TkdsError, match="does not match its recorded sha256"):
        Predictor.load(run)

    class Bomb:  # unpickling it would run code
        def __reduce__(self) -> tuple:
            return (Path(tmp_path / "ran").touch, ())

    np.savez(npz, **{**stored, "likes.residuals": np.array([Bomb()], dtype=object)}, allow_pickle=True)
    meta = json.loads(record.read_text())
    record.write_text(json.dumps({**meta, "npz_sha256": file_sha256(npz)}))
    with pytest.raises(TkdsError, match=r"video\.json is not a read-out this tkds can load") as error:
        Predictor.load(run)
    assert "\n" not in str(error.value) and not (tmp_path / "ran").exists()

    np.savez(npz, **{**stored, "originality.forest.left": stored["originality.forest.left"][::-1].copy()})
    record.write_text(json.dumps({**meta, "npz_sha256": file_sha256(npz)}))
    with pytest.raises(TkdsError, match="the forest's trees do not hold together"):
        readouts.load_readouts(cell_of(run), "video")


def test_a_run_whose_readouts_lack_a_task_is_refused_naming_it(run_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    table = pl.read_parquet(cell_of(run) / "embeddings.parquet")
    readouts.save_readouts(cell_of(run), table, "video", 0, ("likes", "originality"))
    with pytest.raises(
        TkdsError, match="has no hashtags read-out for random \\(video\\): not among the run's"
    ):
        Predictor.load(run)
    readouts.save_readouts(cell_of(run), table.with_columns(likes=None), "video", 0, TASKS)
    with pytest.raises(
        TkdsError, match="has no likes read-out for random \\(video\\): 'likes' is null in every"
    ):
        Predictor.load(run)
