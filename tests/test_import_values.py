"""Honest values from exports and tables, the one hashtag function, and rounded against exact snapshots."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tkds import ids
from tkds.collector.formats.flat import flat_record, parse_mapping
from tkds.collector.hashtags import hashtags, item_hashtags
from tkds.collector.parse import parse_capture
from tkds.collector.records import Parsed, Video, VideoStats
from tkds.collector.store import Store
from tkds.collector.values import LossyId, count, duration_s, exact_id, unix_time
from tkds.errors import TkdsError

GOOD_ID = "7506832745952218112"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("304.9K", (304_900, True)),
        ("1.4M", (1_400_000, True)),
        ("2,5 K", (2_500, True)),
        ("21.9k", (21_900, True)),
        ("1,234,567", (1_234_567, False)),
        ("532", (532, False)),
        (532, (532, False)),
        (12.0, (12, False)),
        (Decimal("12"), (12, False)),
        (4.0e18, (4_000_000_000_000_000_000, True)),  # a float that large has lost its last digits
        ("nan", (None, False)),
        ("-3", (None, False)),
        (-3, (None, False)),
        ("1.5", (None, False)),
        ("many", (None, False)),
        (True, (None, False)),
    ],
)
def test_counts_parse_display_text_and_flag_rounding(text: object, expected: tuple) -> None:
    assert count(text) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:31", 31.0),
        ("1:02:03", 3723.0),
        ("31", 31.0),
        ("31s", 31.0),
        (15.5, 15.5),
        ("soon", None),
        (-1, None),
    ],
)
def test_durations_in_mm_ss_and_seconds(text: object, seconds: float | None) -> None:
    assert duration_s(text) == seconds


def test_times_in_seconds_milliseconds_and_iso() -> None:
    assert unix_time("2025-03-01T10:00:00.000Z") == unix_time(1740823200) == 1740823200
    assert unix_time("1740823200000") == 1740823200 and unix_time("2025-03-01 11:00:00+01:00") == 1740823200
    assert unix_time("yesterday") is None


def test_an_id_written_as_a_float_is_lossy_unless_small_and_integral() -> None:
    assert exact_id(GOOD_ID) == GOOD_ID and exact_id(int(GOOD_ID)) == GOOD_ID
    assert exact_id("123.0") == "123" and exact_id(12345.0) == "12345"
    for lossy in ("7.506832745952218e+18", 7.506832745952218e18, Decimal("7.5E+18"), "7506832745952218112.0"):
        with pytest.raises(LossyId, match="written as a float"):
            exact_id(lossy)
    with pytest.raises(ids.InvalidId):
        exact_id("12.5")


def test_a_float_id_is_recovered_from_the_url_or_refused_keeping_exact_entities() -> None:
    url = f"https://www.tiktok.com/@some.one/video/{GOOD_ID}"
    row = {"video_id": "7.506832745952218e+18", "video_url": url, "likes": "21.9K", "author_id": "42"}
    recovered = flat_record(row, row, "table")
    assert [v.id for v in recovered.videos] == [GOOD_ID] and not recovered.refused
    assert recovered.authors[0].unique_id == "some.one"
    assert recovered.video_stats[0].likes == 21_900 and recovered.video_stats[0].rounded

    row = {"video_id": "7.506832745952218e+18", "author_id": "42", "music_id": 7.1e18, "followers": "3"}
    refused = flat_record(row, row, "table")
    assert not refused.videos and [a.id for a in refused.authors] == ["42"] and not refused.music
    assert [r.reason for r in refused.refused] == ["lossy id", "lossy id"]


def test_one_hashtag_function_reads_every_shape() -> None:
    untyped = [{"hashtagName": "Dance", "start": 0}, {"userId": "1", "hashtagName": "", "userUniqueId": "x"}]
    assert hashtags(untyped) == ["dance"]
    assert hashtags([{"type": 0, "hashtagName": "mention"}, {"type": 1, "hashtagName": "Tag"}]) == ["tag"]
    assert hashtags([{"name": "a"}, {"title": "b"}]) == ["a", "b"]
    assert hashtags(["x", "#y"]) == ["x", "y"] and hashtags("a, b, c") == ["a", "b", "c"]
    assert hashtags("#one #two") == ["one", "two"] and hashtags("['p', 'q']") == ["p", "q"]
    assert hashtags(None, [], caption="caption #Fyp and #cats") == ["fyp", "cats"]
    assert hashtags([{"name": "first"}], caption="#ignored") == ["first"]
    item = {"desc": "#caption", "contents": [{"textExtra": [{"hashtagName": "Nested"}]}], "challenges": []}
    assert item_hashtags(item) == ["nested"]


def test_hashtags_on_every_real_capture(tiktok_fixtures: Path) -> None:
    """Every item of every capture gets the tags its caption names; none are lost to a missing `type`."""
    checked = 0
    for capture in sorted(tiktok_fixtures.glob("*.*")):
        if capture.suffix not in (".json", ".html"):
            continue
        for video in parse_capture(capture).videos:
            named = {word.lower() for word in (video.description or "").split() if word.startswith("#")}
            named = {tag.strip("#").rstrip(".,!?") for tag in named}
            assert {tag for tag in named if tag.isalnum()} <= set(video.hashtags) | {""}, video.id
            checked += 1
    assert checked > 100


def test_untyped_2026_text_extra_keeps_its_tags(tmp_path: Path) -> None:
    items = [
        {"id": str(10 + n), "desc": "caption", "video": {}, "contents": [{"desc": "caption", "textExtra": [
            {"hashtagName": f"tag{n}", "start": 8, "end": 13}, {"userId": "5", "userUniqueId": "someone"}]}]}
        for n in range(5)
    ]  # fmt: skip
    capture = tmp_path / "items.json"
    capture.write_text(json.dumps({"itemList": items}))
    assert [v.hashtags for v in parse_capture(capture).videos] == [[f"tag{n}"] for n in range(5)]


def test_an_exact_snapshot_replaces_a_rounded_one_and_never_the_reverse(tmp_path: Path) -> None:
    seen = datetime(2025, 3, 1)
    with Store.open(tmp_path / "tk.duckdb") as store:
        for likes, rounded in ((21_900, True), (21_933, False), (22_000, True)):
            batch = Parsed(
                videos=[Video(GOOD_ID)], video_stats=[VideoStats(GOOD_ID, likes=likes, rounded=rounded)]
            )
            store.upsert(batch, "test", seen)
        assert store.db.execute("SELECT likes, rounded FROM video_stats").fetchall() == [(21_933, False)]
        scraped = VideoStats(GOOD_ID, likes=30_000, rounded=True, observed_at=datetime(2025, 4, 1))
        store.upsert(
            Parsed(videos=[Video(GOOD_ID)], video_stats=[scraped]), "test", seen
        )  # its own time wins
        rows = store.db.execute(
            "SELECT observed_at, rounded FROM video_stats ORDER BY observed_at"
        ).fetchall()
        assert rows == [(seen, False), (datetime(2025, 4, 1), True)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vid_id", "not COLUMN=FIELD"),
        ("vid_id=identity", "'identity' is not a tkds field"),
        ("a=likes,a=plays", "names the column 'a' twice"),
        (" , ", "--map is empty"),
    ],
)
def test_bad_map_text_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(TkdsError, match=message):
        parse_mapping(text)
    assert parse_mapping("vid_id=video_id, vid_nlike = likes") == {"vid_id": "video_id", "vid_nlike": "likes"}
