"""Other tools' JSON exports through `tkds import` into a real DuckDB: tiktok-scraper, Apify's TikTok
Scraper, TikTok Research API responses and TikTok-Api's item dicts.

The fixtures under tests/fixtures/imports/ are written in each tool's documented shape with synthetic
values. Each is detected from its content (here under a .txt name), read field by field, and its bad
items (ids written as floats) are refused by reason while the good ones are stored.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from tkds.cli import main
from tkds.collector import formats
from tkds.collector.formats import FileReport, ImportOptions, apify, jsonstream, tiktok_scraper
from tkds.collector.formats.flat import FIELDS
from tkds.collector.parse import CaptureError
from tkds.console import console

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
SAVED_AT = datetime(2024, 5, 1, tzinfo=UTC)
EXPORTS = {
    "tiktok_scraper.json": "tiktok-scraper-json",
    "tiktok_scraper_module.json": "tiktok-scraper-json",
    "apify.json": "apify-json",
    "apify_overview.json": "apify-json",
    "research_videos.json": "research-api",
    "research_responses.jsonl": "research-api",
    "tiktokapi_items.json": "tiktok-web",
}


def rows(db: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return db.execute(sql, list(params)).fetchall()


def one(db: duckdb.DuckDBPyConnection, sql: str, *params: object) -> tuple:
    found = rows(db, sql, *params)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """Every fixture (and one file of no format) imported by one `tkds import` into one DuckDB."""
    folder = tmp_path_factory.mktemp("exports")
    files = [shutil.copy(FIXTURES / name, folder / name) for name in [*EXPORTS, "not_tiktok.json"]]
    for file in files:  # none of these exports has a scrape time: the file's is the snapshot's
        os.utime(file, (SAVED_AT.timestamp(), SAVED_AT.timestamp()))
    db = folder / "tk.duckdb"
    wide = pytest.MonkeyPatch()
    wide.setattr(console, "width", 1000)  # one printed line per file
    try:
        with console.capture() as printed, pytest.raises(SystemExit) as exited:
            main(["import", "--db", str(db), *map(str, files)])
    finally:
        wide.undo()
    assert exited.value.code == 0
    with duckdb.connect(str(db), read_only=True) as connection:
        yield connection, " ".join(printed.get().split())


@pytest.mark.parametrize(("name", "expected"), sorted(EXPORTS.items()))
def test_each_export_is_detected_from_its_content_not_its_name(
    tmp_path: Path, name: str, expected: str
) -> None:
    renamed = tmp_path / "export.txt"
    shutil.copy(FIXTURES / name, renamed)
    assert formats.detect(renamed).name == expected


def test_a_file_of_no_format_names_every_format_tried(
    imported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    _, printed = imported
    assert "not_tiktok.json: matches no known import format: tried" in printed
    with pytest.raises(CaptureError) as error:
        read_all(FIXTURES / "not_tiktok.json")
    for title in ("tiktok-scraper JSON export", "Apify TikTok Scraper JSON export", "TikTok Research API"):
        assert title in str(error.value)


def test_every_row_records_its_source_format(imported: tuple[duckdb.DuckDBPyConnection, str]) -> None:
    db, printed = imported
    sources = dict(rows(db, "SELECT source, count(*) FROM videos GROUP BY source"))
    assert sources == {
        "import:tiktok-scraper-json:tiktok_scraper.json": 3,
        "import:tiktok-scraper-json:tiktok_scraper_module.json": 2,
        "import:apify-json:apify.json": 3,
        "import:apify-json:apify_overview.json": 2,
        "import:research-api:research_videos.json": 2,
        "import:research-api:research_responses.jsonl": 3,
        "import:tiktok-web:tiktokapi_items.json": 2,
    }
    assert (
        "tiktok_scraper.json: tiktok-scraper JSON export: 3 videos, 3 authors; items in a JSON array"
        in printed
    )
    assert "items in the 'collector' array" in printed


def test_snapshots_are_observed_when_the_export_was_saved(
    imported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    db, _ = imported
    for table in ("video_stats", "author_stats"):
        assert rows(db, f"SELECT DISTINCT observed_at FROM {table}") == [(SAVED_AT.replace(tzinfo=None),)]


def test_tiktok_scraper_items_field_by_field(imported: tuple[duckdb.DuckDBPyConnection, str]) -> None:
    db, _ = imported
    video = one(
        db,
        """SELECT author_id, music_id, description, epoch(create_time), duration_s, width, height
           FROM videos WHERE id = '7311000000000000001'""",
    )
    assert video == ("6811000000000000001", "6911000000000000001", "first clip #Cats #fyp @friend.one",
                     1700000001, 17.0, 576, 1024)  # fmt: skip
    stats = "SELECT plays, likes, comments, shares, collects, rounded FROM video_stats WHERE video_id = ?"
    assert one(db, stats, "7311000000000000001") == (18800, 4165, 58, 117, None, False)
    author = "SELECT unique_id, sec_uid, nickname, verified, private, signature FROM authors WHERE id = ?"
    author_b = (
        "synth_creator_b",
        "MS4wLjABAAAAsynth02",
        "Synth_Creator_B",
        True,
        False,
        "bio of synth_creator_b",
    )
    assert one(db, author, "6811000000000000002") == author_b
    followers = "SELECT followers, following, hearts, videos, rounded FROM author_stats WHERE author_id = ?"
    assert one(db, followers, "6811000000000000002") == (43500, 195, 1093998, 78, False)  # "heart": "1093998"
    music = "SELECT title, author_name, original, duration_s FROM music WHERE id = ?"
    assert one(db, music, "6911000000000000002") == ("Song B", "Band B", False, 17.0)
    # createTime written as a string, as the README shows it
    assert one(db, "SELECT epoch(create_time) FROM videos WHERE id = '7311000000000000002'") == (1700000002,)
    tags = "SELECT list(tag ORDER BY position) FROM video_hashtags WHERE video_id = ?"
    assert one(db, tags, "7311000000000000001") == (["cats", "fyp"],)  # hashtags[].name
    assert one(db, tags, "7311000000000000002") == (["dogs", "puppy"],)  # none listed: the caption's


def test_a_float_id_is_recovered_from_the_video_url_or_refused_as_lossy(
    imported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    db, printed = imported
    ids = [row[0] for row in rows(db, "SELECT id FROM videos WHERE source LIKE '%:tiktok_scraper.json'")]
    assert sorted(ids) == ["7311000000000000001", "7311000000000000002", "7311000000000000003"]
    assert not rows(db, "SELECT id FROM videos WHERE id LIKE '%e%' OR id LIKE '%.%' OR id LIKE '7311%4'")
    # The refused item keeps what is exact in it: its author, not its lossy sound.
    assert one(db, "SELECT unique_id FROM authors WHERE id = '6811000000000000004'") == ("synth.creator_d",)
    assert not rows(db, "SELECT id FROM music WHERE id LIKE '69110000000000000_4'")
    counts = json.loads(one(db, "SELECT counts FROM crawl_runs")[0])
    assert counts["refused"] == {"lossy id": 3, "no author id": 1}
    assert "refused in" in printed and "written as a float, so its last digits are lost" in printed
    assert "3 lossy id, 1 no author id" in printed


def test_apify_items_photo_posts_and_flattened_views(imported: tuple[duckdb.DuckDBPyConnection, str]) -> None:
    db, _ = imported
    video = """SELECT author_id, music_id, description, epoch(create_time), duration_s, width, height, is_ad,
                      location, kind FROM videos WHERE id = ?"""
    assert one(db, video, "7322000000000000003") == (
        "6822000000000000002", "6922000000000000002", "caption only #Tagged words", 1754083665, 74.0, 576,
        1024, True, "GB", "video")  # fmt: skip
    # A photo post: its images in order (TikTok's links, not Apify's copies), no 0 sizes, no sound "0".
    photo = (None, None, 1754483302, None, None, None, False, None, "photo")
    assert one(db, video, "7322000000000000002")[1:] == photo
    images = rows(
        db, "SELECT position, url FROM video_images WHERE video_id = '7322000000000000002' ORDER BY 1"
    )
    assert [url.rsplit("/", 1)[1] for _, url in images] == ["p1-1.jpeg", "p1-2.jpeg"]
    assert not rows(db, "SELECT id FROM music WHERE id = '0'")
    stats = "SELECT plays, likes, comments, shares, collects FROM video_stats WHERE video_id = ?"
    assert one(db, stats, "7322000000000000001") == (145900, 23400, 46, 145, 1637)
    author = "SELECT unique_id, nickname, private, signature FROM authors WHERE id = '6822000000000000001'"
    assert one(db, author) == ("synth.apify_a", "Synth.Apify_A", False, "fashion | lifestyle")
    tags = "SELECT list(tag ORDER BY position) FROM video_hashtags WHERE video_id = ?"
    assert one(db, tags, "7322000000000000001") == (["outfit", "fit"],)
    assert one(db, tags, "7322000000000000003") == (["tagged"],)  # [{"name": ""}]: the caption's
    # The "Overview" view: flattened names, no id but the URL's, no author or sound id to store.
    overview = "SELECT author_id, duration_s, epoch(create_time) FROM videos WHERE id = '7322000000000000011'"
    assert one(db, overview) == (None, 16.0, 1754160303)
    assert one(db, stats, "7322000000000000011") == (55700, 5344, 24, 701, 291)


def test_research_api_videos_keep_exact_ids_and_user_info_is_counted_not_stored(
    imported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    db, printed = imported
    video = """SELECT author_id, music_id, description, epoch(create_time), duration_s, location
               FROM videos WHERE id = ?"""
    assert one(db, video, "7333000000000000001") == (
        None, "6933000000000000001", "video 1 #STEM #learn", 1704067201, 31.0, "DE")  # fmt: skip
    stats = "SELECT plays, likes, comments, shares, collects, rounded FROM video_stats WHERE video_id = ?"
    assert one(db, stats, "7333000000000000001") == (1200, 80, 5, 3, 7, False)  # favorites_count: collects
    assert one(db, stats, "7333000000000000012")[1] == 0  # a real 0 stays 0
    tags = "SELECT list(tag ORDER BY position) FROM video_hashtags WHERE video_id = ?"
    assert one(db, tags, "7333000000000000001") == (["stem", "learn"],)
    assert one(db, tags, "7333000000000000002") == (["physics"],)
    assert one(db, "SELECT music_id FROM videos WHERE id = '7333000000000000002'") == (None,)  # music_id 0
    assert not rows(db, "SELECT id FROM videos WHERE id = '7333000000000000003'")  # its id was a float
    # JSON Lines: a video response, a user info (no id to store it by), an error, a bare video.
    assert "responses: 3, videos: 3, user infos: 1, errors 'rate_limit_exceeded': 1" in printed
    assert "user infos carry no user id: not stored" in printed
    assert not rows(db, "SELECT id FROM authors WHERE nickname = 'Synth Researcher'")


def test_tiktokapi_item_dicts_import_as_web_item_structs(
    imported: tuple[duckdb.DuckDBPyConnection, str],
) -> None:
    db, _ = imported
    assert rows(
        db, "SELECT id, author_id FROM videos WHERE source LIKE '%tiktokapi_items.json' ORDER BY 1"
    ) == [
        ("7344000000000000001", "6844000000000000001"),
        ("7344000000000000002", "6844000000000000001"),
    ]
    assert one(db, "SELECT unique_id FROM authors WHERE id = '6844000000000000001'") == ("synth.api_user",)


def read_all(path: Path) -> tuple[list, FileReport]:
    report = FileReport()
    batches = list(formats.detect(path).read(path, ImportOptions(), report))
    return [video for batch in batches for video in batch.videos], report


@pytest.mark.parametrize("name", ["tiktok_scraper.json", "apify.json"])
def test_json_lines_exports_read_like_arrays(tmp_path: Path, name: str) -> None:
    items = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    lines = tmp_path / "export.jsonl"
    lines.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    as_array, array_report = read_all(FIXTURES / name)
    as_lines, lines_report = read_all(lines)
    assert [v.id for v in as_lines] == [v.id for v in as_array] and as_lines
    assert lines_report.rows == array_report.rows == len(items)
    assert lines_report.notes == ["one item per line (JSON Lines)"]


def test_a_truncated_export_keeps_the_items_before_the_fault(tmp_path: Path) -> None:
    text = (FIXTURES / "tiktok_scraper.json").read_text(encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(text[: text.index('{"id":"7311000000000000002"') + 40], encoding="utf-8")
    report = FileReport()
    seen = []
    with pytest.raises(CaptureError, match="malformed JSON: after item 1"):
        for batch in tiktok_scraper.read(cut, ImportOptions(), report):
            seen += batch.videos
    assert report.rows == 1  # streamed: item 1 was read before the fault was met


def test_apify_flattened_columns_read_like_its_nested_items() -> None:
    """APIFY_COLUMNS and apify.fields, as a CSV reader sees the columns ("authorMeta/name",
    "hashtags/0/name", "slideshowImageLinks/0/tiktokLink"), agree with the nested JSON."""
    photo = json.loads((FIXTURES / "apify.json").read_text(encoding="utf-8"))[1]
    photo["hashtags"] = [{"name": "one"}, {"name": "two"}]
    flat = {key: value for key, value in photo.items() if not isinstance(value, dict | list)}
    for meta in ("authorMeta", "musicMeta", "videoMeta"):
        flat |= {f"{meta}/{key}": value for key, value in photo[meta].items()}
    flat |= {"hashtags/0/name": "one", "hashtags/1/name": "two", "isSlideshow": "true"}
    for n, link in enumerate(photo["slideshowImageLinks"]):
        flat |= {f"slideshowImageLinks/{n}/{key}": url for key, url in link.items()}
    nested, columns = apify.fields(photo), apify.fields(flat)
    assert columns == nested | {"hashtags": ["one", "two"]}
    assert nested["images"] == [link["tiktokLink"] for link in photo["slideshowImageLinks"]]
    assert nested["kind"] == "photo" and "music_id" not in nested and "width" not in nested
    assert set(apify.APIFY_COLUMNS.values()) <= set(FIELDS)
    assert set(tiktok_scraper.COLUMNS.values()) <= set(FIELDS)


@pytest.mark.parametrize(
    "name", ["tiktok_scraper.json", "tiktok_scraper_module.json", "research_responses.jsonl"]
)
def test_items_cut_at_every_chunk_boundary_decode_as_json_loads_reads_them(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    text = (FIXTURES / name).read_text(encoding="utf-8")
    whole = [json.loads(line) for line in text.splitlines()] if name.endswith(".jsonl") else json.loads(text)
    expected = whole["collector"] if isinstance(whole, dict) else whole
    prefix = {"tiktok_scraper.json": "item", "tiktok_scraper_module.json": "collector.item"}.get(name, "")
    monkeypatch.setattr(jsonstream, "CHUNK", 7)  # values, numbers and ids cut mid-way, over and over
    assert list(jsonstream.items(FIXTURES / name, prefix)) == expected


def test_an_item_nested_too_deeply_is_named_without_exhausting_memory(tmp_path: Path) -> None:
    """64 KiB of "[" took ijson's item streaming 10 GB; here the item is refused as too deep."""
    deep = tmp_path / "deep.json"
    item = '{"id":"7311000000000000001","authorMeta":{"id":"1"},"musicMeta":{},"diggCount":1,"x":'
    deep.write_text("[" + item + "[" * 200_000 + "]" * 200_000 + "}]", encoding="utf-8")
    with pytest.raises(CaptureError, match="nested too deeply to be a TikTok capture: item 1"):
        read_all(deep)
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text('{"collector": [' + item + "1}], " + '"json": ' + "[" * 200_000, encoding="utf-8")
    with pytest.raises(CaptureError, match="too deeply"):
        read_all(wrapped)


def test_a_number_cut_by_a_chunk_is_read_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = [{"id": "7311000000000000001"}, 123456789012, True, None, 7.5e18, "text", [1, 2]]
    export = tmp_path / "values.json"
    export.write_text(json.dumps(values), encoding="utf-8")
    for chunk in (3, 5, 7):
        monkeypatch.setattr(jsonstream, "CHUNK", chunk)
        assert list(jsonstream.items(export, "item")) == values
