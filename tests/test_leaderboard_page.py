"""The leaderboard page as a reader sees it: Chromium at a laptop's width, the glossary and levels, marks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import sync_playwright

from tkds.benchmarks.glossary import HIGHER, baselines, describe
from tkds.benchmarks.run import bench, metadata_table
from tkds.collector.browser import CHROMIUM, CHROMIUM_ARGS

LAPTOP = {"width": 1366, "height": 768}


def test_the_page_fits_a_laptop_names_no_path_and_explains_every_metric(
    built_shards: Path, tmp_path: Path
) -> None:
    shards = tmp_path / "shards <i onclick=alert(1)>x"  # a folder name is text on the page, never markup
    shutil.copytree(built_shards, shards)
    run = tmp_path / "run"
    bench(shards, run, ("metadata-only", "sound-id"), seeds=2, progress=False)
    html = (run / "leaderboard.html").read_text()
    assert "shards &lt;i onclick=alert(1)&gt;x" in html and "<i onclick" not in html
    assert str(tmp_path) not in html and str(tmp_path) not in (run / "leaderboard.md").read_text()
    rows = json.loads((run / "leaderboard.json").read_text())["rows"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=LAPTOP)
        page.goto((run / "leaderboard.html").as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
        page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
        headline = page.locator("#headline + p + .scroll table")
        labels = headline.locator("tbody tr td:first-child").all_inner_texts()
        glossary = page.locator("#glossary ~ dl dt").all_inner_texts()
        cells = page.evaluate(
            """[...document.querySelectorAll('#headline + p + .scroll tbody tr')].map(tr => ({level:
                tr.className === 'level', cells: [...tr.cells].map(td => [td.innerText, td.className])}))"""
        )
        browser.close()

    assert "metadata-only (reference: author counts and video age)" in labels
    assert "bayes-optimal (reference: true factors)" in labels and "chance" in labels
    scored = [row["cells"] for row in cells if not row["level"]]
    marked = 0
    for column in range(1, len(scored[0])):
        values = [float(row[column][0].split(" ")[0]) for row in scored if row[column][0] != "–"]
        best = [row[column][1] == "best" for row in scored if row[column][0] != "–"]
        if len(set(values)) > 1:  # the largest value, and only it, is marked
            assert best == [value == max(values) for value in values], column
            marked += 1
        else:
            assert not any(best), column
    assert marked >= 2
    for row in rows:
        for task, metrics in row["metrics"].items():
            for metric in metrics:
                assert metric in glossary, (task, metric)
                assert describe(task, metric).text != metric, (task, metric)


def test_chance_and_majority_levels_are_those_of_the_rows_scored(built_shards: Path) -> None:
    metadata = metadata_table(built_shards, "category")
    levels = baselines(metadata)
    train = metadata.filter(pl.col("split") == "train")["label"].to_list()
    test = metadata.filter(pl.col("split") == "test")["label"].to_list()
    top = max(set(train), key=lambda label: (train.count(label), label in test))
    classes = len(set(train) | set(test))
    assert levels["chance"]["classification"]["linear_top1"] == 1 / classes
    majority = levels["majority"]["classification"]["linear_top1"]
    assert majority in {
        test.count(label) / len(test) for label in set(train) if train.count(label) == train.count(top)
    }
    # A random ranking's AP is the share of relevant items in the gallery, on average over queries.
    shares = [train.count(label) / len(train) for label in test if label in train]
    expected = pytest.approx(sum(shares) / len(shares)) if shares else None
    assert levels["chance"].get("retrieval", {}).get("mAP") == expected
    assert levels["chance"]["originality"]["auroc_iforest"] == 0.5
    assert describe("likes", "r2_combined_time").direction == HIGHER
    assert "time-forward" in describe("likes", "r2_combined_time").text
    assert describe("originality", "spearman_iforest_sound").direction != HIGHER
