"""Tables through `tkds import`: any CSV, TSV or Parquet, and the CSV exports of tiktok-scraper, Apify
and pyktok, each detected from its content, field by field into a real DuckDB through the CLI.

The fixtures (tests/fixtures/imports/table_*, csv_*) are synthetic, written in each tool's documented
shape: the research table in the column style of published 2025 TikTok tables (`vid_nlike` = "21.9K",
`vid_duration` = "00:31", ids as floats), tiktok-scraper's json2csv export (dotted columns, JSON cells,
`INPUT_<ms>.csv`), Apify's `/`-flattened dataset CSV and pyktok's `generate_data_row` header.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tkds.collector.importer import import_captures
from tkds.errors import TkdsError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "imports"
TABLES = [
    "table_research.csv",
    "table_float_ids.csv",
    "table_research_api.tsv",
    "csv_tiktok_scraper_1718000000000.csv",
    "csv_tiktok_scraper_legacy.csv",
    "csv_apify_dataset.csv",
    "csv_pyktok.csv",
]


def vid(n: int) -> str:
    """The fixtures' video ids."""
    return str(7400000000000000000 + n * 1000003)


def tkds(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tkds", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1"},
        timeout=300,
    )


def printed(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())  # rich wraps long lines


def rows(db: Path, sql: str, *params: object) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Every table fixture in one `tkds import`, each detected from its content: the DuckDB and the output."""
    db = tmp_path_factory.mktemp("tables") / "tk.duckdb"
    result = tkds("import", "--db", db, *(FIXTURES / name for name in TABLES))
    assert result.returncode == 0, result.stderr[-3000:]
    return db, printed(result)


def test_each_table_is_detected_and_its_source_names_the_format(imported: tuple[Path, str]) -> None:
    db, output = imported
    sources = dict(rows(db, "SELECT source, count(*) FROM videos GROUP BY source"))
    assert sources == {
        "import:table:table_research.csv": 20,
        "import:table:table_float_ids.csv": 2,
        "import:table:table_research_api.tsv": 5,
        "import:tiktok-scraper-csv:csv_tiktok_scraper_1718000000000.csv": 3,
        "import:tiktok-scraper-csv:csv_tiktok_scraper_legacy.csv": 2,
        "import:apify-csv:csv_apify_dataset.csv": 4,
        "import:pyktok-csv:csv_pyktok.csv": 3,
    }
    assert "7 of 7 imported" in output
    assert "table_research.csv: CSV, TSV or Parquet table: 20 videos; columns: user_name→username" in output
    assert "vid_nlike→likes" in output and "vid_duration→duration" in output
    assert "unmapped: music_nused, topic" in output


def test_research_table_rounded_counts_durations_and_scrape_time(imported: tuple[Path, str]) -> None:
    db, _ = imported
    first = rows(
        db,
        """SELECT v.duration_s, v.create_time, s.observed_at, s.plays, s.likes, s.comments, s.collects,
                  s.rounded
           FROM videos v JOIN video_stats s ON s.video_id = v.id WHERE v.id = ?""",
        vid(0),
    )
    # vid_nview "21.9K", vid_nlike "1.4M": parsed, and flagged as rounded; the scrape time is the snapshot's
    assert first == [
        (31.0, datetime(2025, 3, 1, 10, 0), datetime(2025, 4, 1, 8, 0), 21900, 1400000, 10, 0, True)
    ]
    durations = dict(rows(db, "SELECT id, duration_s FROM videos WHERE source LIKE '%table_research.csv'"))
    assert [durations[vid(n)] for n in range(5)] == [31.0, 62.0, 9.0, 165.0, 15.0]  # "00:31" … "0:15"
    likes = "SELECT likes, rounded FROM video_stats WHERE video_id = ?"
    assert rows(db, likes, vid(2)) == [(2500, True)]  # "2,5 K"
    assert rows(db, likes, vid(6)) == [(1234, False)]  # "1,234" and "999" are exact: not flagged
    second_scrape = rows(db, "SELECT observed_at FROM video_stats WHERE video_id = ?", vid(15))
    assert second_scrape == [(datetime(2025, 4, 2, 8, 0),)]
    tags = rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(1))
    assert [tag for (tag,) in tags] == ["synthtag1", "fyp", "tag1"]  # "synthtag1, fyp, tag1"
    music = rows(db, "SELECT title, author_name, original FROM music WHERE id = '6900000000000000001'")
    assert music == [("synthetic sound 1", "synth.artist1", True)]


def test_float_ids_are_recovered_from_the_url_column(imported: tuple[Path, str]) -> None:
    db, _ = imported
    # Rows 3, 7, 11, … wrote vid_id as a float ("7.400000000003e+18"): their vid_url holds the exact id.
    assert (FIXTURES / "table_research.csv").read_text().count("e+18,") >= 5
    recovered = rows(
        db, "SELECT id FROM videos WHERE id IN (?, ?, ?, ?, ?)", *(vid(n) for n in (3, 7, 11, 15, 19))
    )
    assert len(recovered) == 5
    # A lossy music id with no music URL is refused: the video stays, without a wrong sound id.
    assert rows(db, "SELECT music_id FROM videos WHERE id = ?", vid(4)) == [(None,)]
    sounds = rows(
        db, "SELECT DISTINCT music_id FROM videos WHERE source LIKE '%table_research.csv' ORDER BY 1"
    )
    assert sounds == [(f"690000000000000000{n}",) for n in range(6)] + [(None,)]


def test_float_ids_without_a_url_are_refused_keeping_the_exact_entities(imported: tuple[Path, str]) -> None:
    db, output = imported
    videos = dict(rows(db, "SELECT id, author_id FROM videos WHERE source LIKE '%table_float_ids.csv'"))
    assert videos == {vid(100): "6800000000000000100", vid(102): None}  # the lossy video is not stored
    authors = dict(rows(db, "SELECT id, unique_id FROM authors WHERE id LIKE '68000000000000001%'"))
    assert authors == {"6800000000000000100": "synth.ok", "6800000000000000101": "synth.kept_author"}
    followers = rows(
        db, "SELECT followers, rounded FROM author_stats WHERE author_id = '6800000000000000101'"
    )
    assert followers == [(304900, True)]
    assert "lossy id" in output


def test_tsv_with_research_api_column_names(imported: tuple[Path, str]) -> None:
    db, output = imported
    video = rows(
        db,
        """SELECT v.description, v.location, v.duration_s, v.music_id, s.likes, s.plays, s.rounded
           FROM videos v JOIN video_stats s ON s.video_id = v.id WHERE v.id = ?""",
        vid(200),
    )
    assert video == [("tsv row 200, with a comma", "DE", 17.0, "6900000000000000400", 1200, 50200, False)]
    assert "delimiter '\\t'" in output and "like_count→likes" in output
    tags = rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(200))
    assert tags == [("tsvtag",), ("second",)]


def test_tiktok_scraper_csv(imported: tuple[Path, str]) -> None:
    db, output = imported
    video = rows(
        db,
        """SELECT v.author_id, v.music_id, v.description, v.duration_s, v.width, v.height, s.observed_at,
                  s.plays, s.likes, s.rounded
           FROM videos v JOIN video_stats s ON s.video_id = v.id WHERE v.id = ?""",
        vid(401),
    )
    assert video == [
        (
            "6800000000000000401",
            "6900000000000000801",
            "scraper clip 401 #scrapertag0 @synth.user_01",
            11.0,
            576,
            1024,
            datetime(2024, 6, 10, 6, 13, 20),  # the scrape time in the file name, …_1718000000000.csv
            50401,
            1401,
            False,
        )
    ]
    tags = rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(401))
    assert tags == [("scrapertag0",), ("scrapertag1",)]  # from the JSON array in its hashtags cell
    author = rows(
        db, "SELECT unique_id, sec_uid, nickname, verified FROM authors WHERE id = '6800000000000000401'"
    )
    assert author == [("synth.user_01", "MS4wLjABAAAA401", "Synth User 1", False)]
    music = rows(db, "SELECT title, author_name, original FROM music WHERE id = '6900000000000000801'")
    assert music == [("synth sound 401", "synth.artist", True)]
    assert "tiktok-scraper CSV export: 3 videos, 2 authors; columns: id→video_id" in output
    assert "videoUrl→download_url" in output  # the media address, not the page (webVideoUrl→video_url)
    legacy = rows(db, "SELECT author_id, music_id, description FROM videos WHERE id = ?", vid(410))
    assert legacy == [("24155620", "6740971113720842651", "legacy clip #oldtag410")]


def test_apify_csv(imported: tuple[Path, str]) -> None:
    db, output = imported
    video = rows(
        db,
        """SELECT v.author_id, v.music_id, v.kind, v.duration_s, v.create_time, s.likes, s.collects
           FROM videos v JOIN video_stats s ON s.video_id = v.id WHERE v.id = ?""",
        vid(500),
    )
    posted = datetime(2024, 6, 10, 6, 21, 40)
    assert video == [("6800000000000000500", "6900000000000001000", "video", 23.0, posted, 2500, 7)]
    assert rows(db, "SELECT kind FROM videos WHERE id = ?", vid(503)) == [("photo",)]  # isSlideshow
    tags = rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(500))
    assert tags == [("apifytag",), ("tag500",), ("third",)]  # hashtags/0/name, /1/name, /2/name
    stats = rows(
        db,
        "SELECT followers, following, hearts, videos, rounded FROM author_stats WHERE author_id = ?",
        "6800000000000000501",
    )
    assert stats == [(2003, 80, 90503, 42, False)]
    assert rows(db, "SELECT unique_id, verified FROM authors WHERE id = '6800000000000000501'") == [
        ("synth.user_11", True)
    ]
    assert "Apify TikTok Scraper CSV export: 4 videos" in output and "isSlideshow→kind" in output


def test_pyktok_csv(imported: tuple[Path, str]) -> None:
    db, output = imported
    video = rows(
        db,
        """SELECT v.description, v.location, v.is_ad, v.duration_s, v.create_time, s.plays, s.likes,
                  s.comments, s.shares
           FROM videos v JOIN video_stats s ON s.video_id = v.id WHERE v.id = ?""",
        vid(601),
    )
    posted = datetime(2024, 5, 2, 12, 0)
    assert video == [("pyktok clip 601 #pyktag #second", "US", False, 15.0, posted, 70601, 3601, None, 12)]
    tags = rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(601))
    assert tags == [("pyktag",), ("second",)]  # from the caption: pyktok writes no hashtag column
    assert "pyktok CSV: 3 videos" in output and "read as UTC" in output


def test_parquet_written_with_polars(tmp_path: Path) -> None:
    exact = tmp_path / "exact.parquet"
    pl.DataFrame(
        {
            "aweme_id": [int(vid(700)), int(vid(701))],
            "diggCount": ["1.2K", "5"],
            "scraped_at": [datetime(2025, 1, 1, 12), datetime(2025, 1, 1, 12)],
            "hashtags": [["a", "b"], []],
        }
    ).write_parquet(exact)
    lossy = tmp_path / "lossy.parquet"  # float64 ids: lossy by construction
    pl.DataFrame(
        {
            "vid_id": [float(vid(702)), float(vid(703))],
            "vid_url": [f"https://www.tiktok.com/@a/video/{vid(702)}", None],
        }
    ).write_parquet(lossy)
    db = tmp_path / "tk.duckdb"
    result = tkds("import", "--db", db, exact, "--table", lossy)
    assert result.returncode == 0, result.stderr[-2000:]
    stats = rows(db, "SELECT video_id, observed_at, likes, rounded FROM video_stats ORDER BY video_id")
    assert stats[:2] == [
        (vid(700), datetime(2025, 1, 1, 12), 1200, True),
        (vid(701), datetime(2025, 1, 1, 12), 5, False),
    ]
    stored = {video_id for (video_id,) in rows(db, "SELECT id FROM videos")}
    assert stored == {vid(700), vid(701), vid(702)}  # 703 was refused, never stored wrong
    assert rows(db, "SELECT tag FROM video_hashtags WHERE video_id = ? ORDER BY position", vid(700)) == [
        ("a",),
        ("b",),
    ]
    assert "Parquet; columns: aweme_id→video_id, diggCount→likes" in printed(result)
    assert "1 lossy id" in printed(result)


def test_mixed_rows_import_the_good_and_count_the_bad_by_reason(tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    result = tkds("import", "--db", db, FIXTURES / "csv_mixed_rows.csv")
    assert result.returncode == 0, result.stderr[-2000:]
    stored = {video_id for (video_id,) in rows(db, "SELECT id FROM videos")}
    assert stored == {vid(300), vid(301), vid(305), vid(307)}
    output = printed(result)
    for reason in ("2 malformed row", "1 undecodable row", "1 lossy id", "1 video id", "1 no id"):
        assert reason in output
    assert "line 4: 3 fields where the header has 6" in output
    counts = rows(db, "SELECT counts FROM crawl_runs")[0][0]
    assert '"malformed row": 2' in counts


def test_a_table_without_an_id_column_is_refused_naming_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    result = tkds("import", "--db", db, "--table", FIXTURES / "table_no_id.csv")
    assert result.returncode == 1
    assert (
        "no column holds a video id: its columns are 'title, likes, author'; "
        "name the id column with --map COLUMN=video_id (or COLUMN=video_url)"
    ) in printed(result)
    as_file = tkds("import", "--db", db, FIXTURES / "table_no_id.csv")  # not --table: no format claims it
    assert "matches no known import format" in printed(as_file) and "CSV, TSV or Parquet table" in printed(
        as_file
    )


def test_map_names_columns_and_prints_the_mapping(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(f"clip,n_hearts,vid_nview\n{vid(800)},21.9K,1000\n", encoding="utf-8")
    db = tmp_path / "tk.duckdb"
    result = tkds(
        "import", "--db", db, "--table", table, "--map", "clip=video_id,n_hearts=likes,absent=plays"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = printed(result)
    assert "columns: clip→video_id, n_hearts→likes, vid_nview→plays" in output
    assert "--map columns not in this table: absent" in output
    assert rows(db, "SELECT likes, plays, rounded FROM video_stats") == [(21900, 1000, True)]


def test_map_with_a_bad_field_is_a_one_line_error(tmp_path: Path) -> None:
    result = tkds("import", "--db", tmp_path / "tk.duckdb", "--table", FIXTURES / "table_no_id.csv",
                  "--map", "title=caption")  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("tkds:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "'caption' is not a tkds field; the fields are video_id, video_url" in errors[0]
    assert not (tmp_path / "tk.duckdb").exists()
    with pytest.raises(TkdsError, match="'caption': not a tkds field"):  # the Python API checks it too
        import_captures(
            tmp_path / "tk.duckdb", [], tables=[FIXTURES / "table_no_id.csv"], mapping={"title": "caption"}
        )
    assert not (tmp_path / "tk.duckdb").exists()


def test_an_exact_count_replaces_a_rounded_one_for_the_same_scrape(tmp_path: Path) -> None:
    header = "vid_id,vid_nlike,vid_scrapeTime\n"
    rounded = tmp_path / "rounded.csv"
    rounded.write_text(f"{header}{vid(900)},21.9K,2025-04-01 08:00:00\n", encoding="utf-8")
    exact = tmp_path / "exact.csv"
    exact.write_text(f"{header}{vid(900)},21934,2025-04-01 08:00:00\n", encoding="utf-8")
    db = tmp_path / "tk.duckdb"
    for files in ([rounded, exact], [rounded]):  # exact after rounded, then rounded again
        assert tkds("import", "--db", db, *files).returncode == 0
    assert rows(db, "SELECT observed_at, likes, rounded FROM video_stats") == [
        (datetime(2025, 4, 1, 8, 0), 21934, False)
    ]


def test_odd_tables_an_id_list_a_comments_table_and_an_overlong_line(tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"  # one column: a list of video ids is a table too
    ids.write_text(f"video_id\n{vid(950)}\n{vid(951)}\n", encoding="utf-8")
    # pyktok's comment CSV: aweme_id is the video, digg_count the comment's likes; never read as videos
    comments = f"cid,text,aweme_id,digg_count\n7300000000000000001,nice,{vid(952)},5\n"
    (tmp_path / "comments.csv").write_text(comments, encoding="utf-8")
    (tmp_path / "forced.csv").write_text(comments, encoding="utf-8")
    unclosed = (
        tmp_path / "unclosed.csv"
    )  # a 17 MiB line (an unclosed quote): counted, skipped in bounded memory
    long_line = "x" * 17 * 2**20
    unclosed.write_text(
        f'video_id,description\n{vid(953)},ok\n{vid(954)},"never closed {long_line}\n{vid(955)},after\n',
        encoding="utf-8",
    )
    tagged = tmp_path / "tagged.csv"  # a caption with an HTML tag: still a table, not a saved page
    tagged.write_text(f'video_id,description\n{vid(956)},"see <a href=x>this</a>"\n', encoding="utf-8")
    db = tmp_path / "tk.duckdb"
    files, tables = [ids, tmp_path / "comments.csv", tagged], [tmp_path / "forced.csv", unclosed]
    summary = import_captures(db, files, tables=tables, progress=False)
    assert "matches no known import format" in summary.failures[str(tmp_path / "comments.csv")]
    assert "it holds comments (a cid column), not videos" in summary.failures[str(tmp_path / "forced.csv")]
    stored = {video_id for (video_id,) in rows(db, "SELECT id FROM videos")}
    assert stored == {vid(950), vid(951), vid(953), vid(955), vid(956)}  # 955: after the long line
    assert summary.refused["malformed row"] == 1
    assert summary.reports[str(unclosed)].rows == 3
