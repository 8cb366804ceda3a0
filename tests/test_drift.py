"""Payload drift is loud: the census of expected fields and unseen keys, its warnings, and the twin's
drop faults that make a drift on demand, through real collect and import runs into DuckDB."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.collector.drift import MAX_KEYS, FieldCensus
from tkds.collector.parse import parse_api
from tkds.errors import TkdsError
from tkds.twin import serve
from tkds.twin.faults import FaultSpec

TKDS = [sys.executable, "-m", "tkds"]


def fixture_items(tiktok_fixtures: Path) -> list[dict]:
    """Ten real itemStructs of an API item list (2021), every one with stats, author, sound and URL."""
    return json.loads((tiktok_fixtures / "api_item_list_2021.json").read_text())


def census_of(items: list[dict], source: str = "item lists", shape: str | None = None) -> FieldCensus:
    census = FieldCensus()
    parsed = parse_api(items)
    parsed.shape = shape or parsed.shape
    census.add(parsed, source)
    return census


def without(items: list[dict], keys: tuple[str, ...], how_many: int) -> list[dict]:
    """`items`, the first `how_many` of them without `keys`."""
    items = copy.deepcopy(items)
    for item in items[:how_many]:
        for key in keys:
            item.pop(key, None)
    return items


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def last_run_counts(db: Path) -> dict:
    return json.loads(query(db, "SELECT counts FROM crawl_runs ORDER BY started_at DESC LIMIT 1")[0][0])


def test_the_census_counts_missing_fields_per_source_and_format(tiktok_fixtures: Path) -> None:
    items = without(fixture_items(tiktok_fixtures), ("stats", "music"), 3)
    census = census_of(items)
    counts = census.as_dict()["item lists"]["api"]
    assert counts["items"] == 10
    assert counts["missing"]["stats"] == 3 and counts["missing"]["music"] == 3
    assert counts["missing"]["author"] == 0 and counts["missing"]["media"] == 0
    # The real items' keys are all TikTok's own: none is unseen.
    assert counts["unseen_keys"] == {} and counts["unseen_keys_untracked"] == 0


def test_a_field_missing_in_most_items_warns_in_one_line(tiktok_fixtures: Path) -> None:
    items = fixture_items(tiktok_fixtures)
    half = census_of(without(items, ("stats",), 5))  # 50 %: not most
    assert half.warnings({}) == []
    most = census_of(without(items, ("stats",), 9))
    assert most.warnings({}) == [
        "item lists (api): stats missing in 90 % of 10 items; TikTok may have changed its page format"
    ]
    few = census_of(without(items[:4], ("stats",), 4))  # 4 items say nothing about a format
    assert few.warnings({}) == []


def test_no_warning_for_a_field_the_format_never_had(tiktok_fixtures: Path) -> None:
    items = without(fixture_items(tiktok_fixtures), ("music", "challenges", "textExtra", "desc"), 10)
    table = census_of(items, "import:some-table", shape="some-table")
    assert table.as_dict()["import:some-table"]["some-table"]["missing"]["music"] == 10
    assert table.warnings({}) == []  # no run of that format had a sound: never a warning
    never = {"items": 10, "missing": {"music": 10, "hashtags": 10}}
    assert table.warnings({("import:some-table", "some-table"): [never]}) == []
    # TikTok's own lists: a post without hashtags is common, so only history makes them expected.
    web = census_of(items)
    assert web.warnings({}) == [
        "item lists (api): music missing in 100 % of 10 items; TikTok may have changed its page format"
    ]
    had = {"items": 20, "missing": {"music": 0, "hashtags": 2}}
    assert table.warnings({("import:some-table", "some-table"): [had]}) == [
        "import:some-table: music missing in 100 % of 10 items; its exporter may have changed its format",
        "import:some-table: hashtags missing in 100 % of 10 items; its exporter may have changed its format",
    ]


def test_unseen_keys_are_counted_bounded_and_new_ones_warned(tiktok_fixtures: Path) -> None:
    items = fixture_items(tiktok_fixtures)
    for item in items:
        item["itemStructV3"] = {}
    items[-1].update({f"junk{n}": n for n in range(MAX_KEYS + 50)})  # after itemStructV3 is tracked
    census = census_of(items)
    counts = census.as_dict()["item lists"]["api"]
    assert counts["unseen_keys"]["itemStructV3"] == 10
    assert len(counts["unseen_keys"]) == MAX_KEYS and counts["unseen_keys_untracked"] == 51
    assert census.warnings({}) == [
        "item lists (api): keys never seen before (itemStructV3) in up to 100 % of 10 items; "
        "TikTok may have changed its page format"
    ]
    seen = {"items": 10, "missing": {}, "unseen_keys": {"itemStructV3": 10}}
    assert census.warnings({("item lists", "api"): [seen]}) == []


def test_a_drop_fault_names_the_droppable_fields() -> None:
    assert FaultSpec.parse("drop_stats=1").rates == {"drop_stats": 1.0}
    with pytest.raises(TkdsError, match="cannot drop likes; droppable fields: stats, author, music"):
        FaultSpec.parse("drop_likes=1")


def test_an_import_of_items_without_stats_warns_and_keeps_the_counts(
    tiktok_fixtures: Path, tmp_path: Path
) -> None:
    capture, db = tmp_path / "items.json", tmp_path / "tk.duckdb"
    capture.write_text(json.dumps(without(fixture_items(tiktok_fixtures), ("stats",), 10)))
    result = subprocess.run(
        [*TKDS, "import", "--db", str(db), str(capture)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    line = (
        "import:tiktok-web (api): stats missing in 100 % of 10 items; TikTok may have changed its page format"
    )
    assert line in result.stderr
    counts = last_run_counts(db)
    assert counts["fields"]["import:tiktok-web"]["api"]["missing"]["stats"] == 10
    assert counts["warnings"] == [line]


def run_collect(twin, db: Path, *args: str) -> str:
    command = [*TKDS, "collect", "--db", str(db), "--proxy", twin.proxy_url, "--ca-cert", str(twin.ca_path)]
    result = subprocess.run([*command, "--no-media", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


@pytest.mark.slow
def test_the_twin_drops_a_field_and_the_collect_summary_says_so(twin_corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    with serve(twin_corpus, seed=3) as twin:
        clean = run_collect(twin, db, "--hashtag", "viral", "--limit", "6", "--detail", "always")
        assert "warning" not in clean
        before = last_run_counts(db)["fields"]
        assert before["video pages"]["universal"]["items"] == 6
        assert before["video pages"]["universal"]["missing"]["stats"] == 0

        twin.state.dice.spec = FaultSpec.parse("drop_stats=1,drop_hashtags=1")
        drifted = run_collect(twin, db, "--hashtag", "trending", "--limit", "6", "--refresh-stats")
        cause = "TikTok may have changed its page format"
        stats_lines = [line for line in drifted.splitlines() if "stats missing in 100 %" in line]
        assert any(line.startswith("warning video pages (universal): stats") for line in stats_lines)
        assert any(line.startswith("warning item lists (api): stats") for line in stats_lines)
        assert all(line.endswith(cause) for line in stats_lines)
        # Hashtags: not every post has them, but the last run's pages did, so their loss is a drift too.
        assert "video pages (universal): hashtags missing in 100 %" in drifted
        counts = last_run_counts(db)
        pages = counts["fields"]["video pages"]["universal"]
        assert pages["items"] >= 6 and pages["missing"]["stats"] == pages["items"]
        assert counts["fields"]["item lists"]["api"]["missing"]["stats"] == 6
        assert len(counts["warnings"]) == 4

        twin.state.dice.spec = FaultSpec.parse("")
        recovered = run_collect(twin, db, "--refresh-stats")
        assert "warning" not in recovered
        assert last_run_counts(db)["fields"]["video pages"]["universal"]["missing"]["stats"] == 0
