"""Hostile input where records enter: ids in captures, foreign DuckDB files, odd files, a full disk.

End to end through the CLI with real DuckDB files: what is valid is stored, what is hostile is refused
and counted by reason, a foreign file is left byte-identical, and every failure is one line.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tkds.cli import main
from tkds.collector import formats
from tkds.collector.importer import import_captures
from tkds.collector.parse import CaptureError, parse_api, parse_page
from tkds.collector.records import Author, Comment, Music, Parsed, Video, VideoStats
from tkds.collector.sources import parse_video_url
from tkds.collector.store import Store
from tkds.errors import TkdsError

REPO = Path(__file__).resolve().parent.parent
TKDS = [sys.executable, "-m", "tkds"]
HOSTILE_IDS = ["..", "../x", "../../../victim", "a/b", "12\x0034", "1" * 1000, 7.5e18, -5, "١٢٣", True]


def item(video_id: object, author_id: object = "6800000000000000001", **fields: object) -> dict:
    """A SynthTok-style itemStruct: video, author, music, stats and a caption tag."""
    return {
        "id": video_id,
        "desc": "a clip #cats",
        "createTime": 1700000000,
        "video": {"duration": 3, "width": 576, "height": 1024},
        "author": {"id": author_id, "uniqueId": "some.user_1", "nickname": "Some User"},
        "authorStats": {"followerCount": 10, "heartCount": 5},
        "music": {"id": "6900000000000000001", "title": "original sound"},
        "stats": {"playCount": 100, "diggCount": 7},
        "textExtra": [{"type": 1, "hashtagName": "cats"}],
        **fields,
    }


def good_id(n: int) -> str:
    return str(7300000000000000000 + n)


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def tkds(*args: object, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*TKDS, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"},
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tkds {args[0]} failed: {result.stderr[-2000:]}")
    return result


def output(result: subprocess.CompletedProcess) -> str:
    """What the command printed: its summary goes to stderr, with the progress bars."""
    return result.stdout + result.stderr


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("tkds:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file in `folder`: what must stay byte-identical."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


# --- ids inside otherwise valid captures


def test_hostile_ids_in_captures_are_refused_counted_and_the_rest_stored(tmp_path: Path) -> None:
    hostile = [item(value) for value in HOSTILE_IDS]
    listing = write(tmp_path / "listing.json", {"statusCode": 0, "itemList": [item(good_id(1)), *hostile]})
    references = write(
        tmp_path / "references.json",
        [
            item(good_id(2), author_id="../../../victim"),
            item(good_id(3), music={"id": "../m"}),
            item(good_id(4), author={"id": "6800000000000000004", "uniqueId": "../../etc/passwd"}),
        ],
    )
    comments = write(
        tmp_path / "comments.json",
        {
            "status_code": 0,
            "comments": [
                {
                    "cid": "7400000000000000001",
                    "aweme_id": good_id(1),
                    "text": "ok",
                    "user": {"unique_id": "a"},
                },
                {"cid": "../c", "aweme_id": good_id(1), "text": "bad cid"},
                {"cid": "7400000000000000003", "aweme_id": "..", "text": "bad video"},
            ],
        },
    )
    db = tmp_path / "tk.duckdb"
    result = tkds("import", "--db", db, listing, references, comments, check=True)

    stored = {row[0] for row in rows(db, "SELECT id FROM videos")}
    assert stored == {good_id(n) for n in (1, 2, 3, 4)}
    for table, column in [
        ("video_stats", "video_id"),
        ("video_hashtags", "video_id"),
        ("comments", "video_id"),
    ]:
        assert {row[0] for row in rows(db, f"SELECT {column} FROM {table}")} <= stored
    assert rows(db, f"SELECT author_id FROM videos WHERE id = '{good_id(2)}'") == [(None,)]
    assert rows(db, f"SELECT music_id FROM videos WHERE id = '{good_id(3)}'") == [(None,)]
    assert rows(db, "SELECT unique_id FROM authors WHERE id = '6800000000000000004'") == [(None,)]
    assert rows(db, "SELECT id FROM authors WHERE NOT regexp_full_match(id, '[0-9]+')") == []
    assert rows(db, "SELECT id FROM music") == [("6900000000000000001",)]
    assert rows(db, "SELECT id FROM comments") == [("7400000000000000001",)]

    summary = next(line for line in output(result).splitlines() if "refused (invalid ids)" in line)
    assert f"{len(HOSTILE_IDS) + 1} video id" in summary  # the comment's bad aweme_id is a video id too
    assert "1 author id" in summary and "1 music id" in summary and "1 comment id" in summary
    assert "1 username" in summary
    assert "3 of 3 imported" in output(result)
    assert all(len(line) < 400 for line in output(result).splitlines())  # the 1000-digit id is a prefix


def test_the_parser_refuses_what_python_would_take_for_digits() -> None:
    for value in HOSTILE_IDS:
        parsed = Parsed()
        parsed.extend(parse_capture_of({"itemList": [item(value)]}))
        assert parsed.videos == [] and [r.reason for r in parsed.refused] == ["video id"], value
    assert "١٢٣".isdigit()  # what str.isdigit would have let through
    big = parse_capture_of({"itemList": [item(good_id(9), createTime=10**12, stats={"playCount": 10**30})]})
    assert big.videos[0].create_time == 10**12 and big.video_stats[0].plays is None


def parse_capture_of(payload: dict) -> Parsed:
    return parse_api(copy.deepcopy(payload))


def test_the_store_is_the_last_gate(tmp_path: Path) -> None:
    """Records built by other code than the parser meet the same checks in upsert."""
    parsed = Parsed(
        videos=[
            Video(id=good_id(1), author_id="../a", music_id="m/1", hashtags=["ok"]),
            Video(id="../../../victim", hashtags=["bad"]),
        ],
        video_stats=[VideoStats(good_id(1), plays=1), VideoStats("../../../victim", plays=2)],
        authors=[Author(id="../a"), Author(id="6800000000000000001", unique_id="bad/name")],
        music=[Music(id="m/1")],
        comments=[Comment(id="..", video_id=good_id(1)), Comment(id="7400000000000000001", video_id="x")],
    )
    with Store.open(tmp_path / "tk.duckdb") as store:
        counts = store.upsert(parsed, source="test")
        assert (counts["new"], counts["updated"]) == (1, 0)
        assert counts["refused_reasons"] == {"author id": 1, "music id": 1, "video id": 2, "username": 1,
                                             "comment id": 1}  # fmt: skip
        assert counts["refused"] == 6 and len(counts["refused_examples"]) == 3
        assert store.db.execute("SELECT id, author_id, music_id FROM videos").fetchall() == [
            (good_id(1), None, None)
        ]
        assert store.db.execute("SELECT video_id FROM video_stats").fetchall() == [(good_id(1),)]
        assert store.db.execute("SELECT video_id FROM video_hashtags").fetchall() == [(good_id(1),)]
        assert store.db.execute("SELECT id, unique_id FROM authors").fetchall() == [
            ("6800000000000000001", None)
        ]
        assert store.count("music") == store.count("comments") == 0
        refused = store.add_targets(
            [("video", "../x"), ("media", ".."), ("video", good_id(2)), ("hashtag", "a")]
        )
        assert refused == 2
        assert store.db.execute("SELECT kind, key FROM crawl_targets ORDER BY kind").fetchall() == [
            ("hashtag", "a"),
            ("video", good_id(2)),
        ]


def craft_db(path: Path) -> None:
    """A tkds-schema file where someone INSERTed hostile ids directly, next to valid rows."""
    with Store.open(path):
        pass
    with duckdb.connect(str(path)) as db:
        for video_id in ("..", "../../../victim", "a/b", "", good_id(1), good_id(2)):
            db.execute("INSERT INTO videos (id, author_id) VALUES (?, '6800000000000000001')", [video_id])
            db.execute(
                "INSERT INTO crawl_targets VALUES ('video', ?, NULL, NULL, 'pending', 0, NULL, NULL)",
                [video_id],
            )
            db.execute(
                "INSERT INTO crawl_targets VALUES ('media', ?, NULL, NULL, 'failed', 1, 'x', NULL)",
                [video_id],
            )
            db.execute(
                "INSERT INTO media (video_id, status, error) VALUES (?, 'failed', 'http_error')", [video_id]
            )
        db.execute("INSERT INTO authors (id, unique_id) VALUES ('6800000000000000001', '../../x')")


def test_a_crafted_db_never_hands_out_a_hostile_id(tmp_path: Path) -> None:
    db = tmp_path / "crafted.duckdb"
    craft_db(db)
    with Store.open(db) as store:
        expected = [(good_id(1), "_"), (good_id(2), "_")]  # the bad uniqueId never reaches a URL either
        assert store.pending_videos() == expected
        assert store.known_videos() == expected
        store.db.execute("UPDATE crawl_targets SET status = 'done' WHERE kind = 'video'")
        assert store.videos_needing_media(9) == expected
        assert store.invalid_video_ids() == 4 + 8


# --- files that are not captures


def test_deep_json_between_two_good_files_is_named_and_the_rest_imported(tmp_path: Path) -> None:
    first = write(tmp_path / "a.json", [item(good_id(1))])
    deep_list = tmp_path / "b.json"
    deep_list.write_text("[" * 100_000 + "]" * 100_000)
    deep_dict = tmp_path / "c.json"
    deep_dict.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    deep_page = tmp_path / "d.html"
    deep_page.write_text('<script id="SIGI_STATE">' + "[" * 100_000 + "]" * 100_000 + "</script>")
    last = write(tmp_path / "e.json", [item(good_id(2))])
    db = tmp_path / "tk.duckdb"
    result = tkds("import", "--db", db, first, deep_list, deep_dict, deep_page, last, check=True)
    assert {row[0] for row in rows(db, "SELECT id FROM videos")} == {good_id(1), good_id(2)}
    for bad in (deep_list, deep_dict, deep_page):
        assert f"skipped {bad}: nested too deeply to be a TikTok capture" in output(result)
    assert "2 of 5 imported" in output(result)


def test_files_that_are_not_captures_are_skipped_with_their_reason(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", [item(good_id(1))])
    folder = tmp_path / "folder.json"
    folder.mkdir()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff" + os.urandom(2**20))  # never starting with "<", which reads as HTML
    script_bomb = tmp_path / "bomb.html"
    script_bomb.write_text("<script" * 200_000)  # quadratic for a `<script[^>]*\bid=` regex
    long_number = tmp_path / "number.json"
    long_number.write_text("[" + "9" * 5000 + "]")
    oversized = tmp_path / "oversized.json"
    oversized.write_text("[" + " " * 2**16)  # a JSON head, so the web format takes it
    os.truncate(oversized, 300 * 2**20)  # sparse past the head: refused by its size, never read whole
    huge_string = tmp_path / "string.json"
    huge_string.write_text(json.dumps("x" * 20_000_000))
    odd_values = write(
        tmp_path / "odd.json",
        [
            item(good_id(2), desc="nul\x00 and a lone \ud800 surrogate", createTime=10**15),
            item(good_id(3), stats={"playCount": 1e400, "diggCount": 10**30}, video={"width": 10**12}),
            item(good_id(4), desc="y" * 5_000_000),
        ],
    )
    db = tmp_path / "tk.duckdb"
    files = [good, folder, fifo, garbage, script_bomb, long_number, oversized, huge_string, odd_values]
    result = tkds("import", "--db", db, *files, check=True)
    out = output(result)
    assert f"skipped {folder}: not a regular file: a directory" in out
    assert f"skipped {fifo}: not a regular file: a FIFO" in out
    assert f"skipped {garbage}: matches no known import format: tried " in out
    assert all(f.title in " ".join(out.split()) for f in formats.formats())
    assert f"skipped {script_bomb}: no embedded JSON" in out
    assert f"skipped {long_number}: malformed JSON" in out
    assert f"skipped {oversized}: too large to be a TikTok capture" in out
    assert f"skipped {huge_string}: matches no known import format" in out
    assert "2 of 9 imported" in out and all(len(line) < 400 for line in out.splitlines())
    videos = rows(db, "SELECT id, description, create_time, width FROM videos ORDER BY id")
    assert [v[0] for v in videos] == [good_id(n) for n in (1, 2, 3, 4)]
    assert videos[1][1] == "nul\x00 and a lone \ufffd surrogate" and videos[1][2] is None
    assert videos[2][3] is None and len(videos[3][1]) == 5_000_000
    assert rows(db, f"SELECT plays, likes FROM video_stats WHERE video_id = '{good_id(3)}'") == [(None, None)]


def test_bad_lines_in_a_urls_file_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    urls = tmp_path / "urls.txt"
    good = f"https://www.tiktok.com/@some.user/video/{good_id(1)}"
    for bad in (
        "https://www.tiktok.com/@some.user/video/١٢٣",
        "https://www.tiktok.com/@../video/123",
        f"https://www.tiktok.com/@u/video/{'1' * 1000}",
        "https://www.tiktok.com/@u/video/123/../../x",
    ):
        urls.write_text(f"{good}\n\n{bad}\n")
        db = tmp_path / "tk.duckdb"
        with pytest.raises(SystemExit) as exit_:
            main(["collect", "--db", str(db), "--no-media", "--urls", str(urls)])
        captured = capsys.readouterr()
        line = one_line_error(subprocess.CompletedProcess([], exit_.value.code, captured.out, captured.err))
        assert f"line 3: '{bad[:10]}" in line and len(line) < 400
        assert not db.exists()  # refused before the store, let alone a browser
    assert parse_video_url(good) == ("some.user", good_id(1))
    assert parse_video_url(f"https://www.tiktok.com/@u/video/{good_id(1)}?lang=en") == ("u", good_id(1))
    with pytest.raises(TkdsError, match="username"):
        parse_video_url("https://www.tiktok.com/@a%2F..%2F/video/123")


def test_finding_a_script_tag_stays_linear() -> None:
    """On old code this page took hours (a backtracking regex); a hang is what a timeout catches."""
    code = "from tkds.collector.parse import parse_page, CaptureError\n" \
           "try: parse_page('<script' * 300000)\nexcept CaptureError as e: print(e.kind)"  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "no_data"
    page = '<div id="SIGI_STATE"></div><script type="x" id="SIGI_STATE">{"ItemModule": {}}</script>'
    assert parse_page(page).videos == []
    with pytest.raises(CaptureError) as error:
        parse_page('<script id="SIGI_STATE">[1,</script>')
    assert error.value.kind == "malformed"


# --- foreign DuckDB files


def foreign_files(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    other_app = folder / "other.duckdb"
    with duckdb.connect(str(other_app)) as db:
        db.execute("CREATE TABLE media (id INTEGER, blob BLOB); CREATE TABLE customers (name VARCHAR)")
        db.execute("INSERT INTO customers VALUES ('someone'); INSERT INTO media VALUES (1, 'x'::BLOB)")
    reshaped = folder / "reshaped.duckdb"
    with duckdb.connect(str(reshaped)) as db:
        db.execute("CREATE TABLE videos (id INTEGER PRIMARY KEY, raw JSON)")
    a_view = folder / "view.duckdb"
    with duckdb.connect(str(a_view)) as db:
        db.execute("CREATE VIEW report AS SELECT 42 AS answer")
    unflushed = folder / "unflushed.duckdb"  # an application killed with its last write in the WAL
    crash = (
        f"import duckdb, os; c = duckdb.connect({str(unflushed)!r}); c.execute('CREATE TABLE t (a INT)');"
        "c.execute('CHECKPOINT'); c.execute('INSERT INTO t VALUES (1)'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", crash], check=True)
    assert unflushed.with_name(unflushed.name + ".wal").exists()
    text = folder / "notes.duckdb"
    text.write_text("just some notes\n" * 100)
    random_bytes = folder / "random.duckdb"
    random_bytes.write_bytes(os.urandom(300_000))
    return {
        "other": other_app,
        "reshaped": reshaped,
        "view": a_view,
        "unflushed": unflushed,
        "text": text,
        "random": random_bytes,
    }


@pytest.mark.slow
def test_a_foreign_file_as_db_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    capture = write(tmp_path / "capture.json", [item(good_id(1))])
    files = foreign_files(tmp_path / "foreign")
    for name, db in files.items():
        before = folder_digest(db.parent)
        commands = [
            ("import", "--db", db, capture),
            ("collect", "--db", db, "--hashtag", "cats", "--no-media"),
            ("shard", "--db", db, "--out", tmp_path / f"shards-{name}"),
        ]
        for command in commands:
            line = one_line_error(tkds(*command))
            expected = "cannot open" if name in ("text", "random") else "is not a tkds database"
            assert expected in line and str(db) in line, (name, command[0], line)
            assert folder_digest(db.parent) == before, (name, command[0])
    assert "table 'customers', table media with other columns" in one_line_error(
        tkds("import", "--db", files["other"], capture)
    )


def test_store_open_refuses_foreign_files_and_takes_empty_and_older_ones(tmp_path: Path) -> None:
    for name, db in foreign_files(tmp_path / "foreign").items():
        before = folder_digest(db.parent)
        with pytest.raises(TkdsError) as error:
            Store.open(db)
        assert "\n" not in str(error.value) and str(db) in str(error.value), name
        assert folder_digest(db.parent) == before, name  # the file, and its WAL where it has one

    capture = write(tmp_path / "capture.json", [item(good_id(1))])
    empty = tmp_path / "empty.duckdb"  # valid, made by someone else, with no tables: just empty
    duckdb.connect(str(empty)).close()
    assert import_captures(empty, [capture], progress=False).imported == 1
    assert rows(empty, "SELECT id FROM videos") == [(good_id(1),)]

    older = tmp_path / "older.duckdb"
    with Store.open(older):
        pass
    with duckdb.connect(str(older)) as db:  # what a tkds from before the stream-choice columns made
        db.execute("ALTER TABLE media DROP COLUMN video_stream; ALTER TABLE media DROP COLUMN audio_stream")
        db.execute("DROP TABLE dataset_samples")
    assert import_captures(older, [capture], progress=False).imported == 1
    media_columns = "SELECT column_name FROM duckdb_columns() WHERE table_name = 'media'"
    assert [row[0] for row in rows(older, media_columns)][-2:] == ["video_stream", "audio_stream"]


# --- a full disk under --db


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MB tmpfs (root only), the way tests/test_collector.py simulates a full disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be simulated here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_under_db_is_one_line_and_a_rerun_completes(tmp_path: Path, small_disk: Path) -> None:
    captures = tmp_path / "captures"
    captures.mkdir()
    files = [
        write(captures / f"{n:03}.json", [item(good_id(n), desc=os.urandom(10_000).hex())]) for n in range(60)
    ]  # 2.4 MB of captions, stored twice (in the row and its raw JSON): past the 2 MB the filler leaves
    filler, db = small_disk / "filler", small_disk / "tk.duckdb"
    fill = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fill, b"\0" * 2**20)
    os.close(fill)
    line = one_line_error(tkds("import", "--db", db, *files))  # no room even for a new file's header
    assert "is full" in line and not db.exists()  # no half-made file that the re-run could not open
    os.truncate(filler, 14 * 2**20)
    line = one_line_error(tkds("import", "--db", db, *files))
    assert "is full" in line and str(db) in line and "re-run the same command to resume" in line
    filler.unlink()
    tkds("import", "--db", db, *files, check=True)  # space freed: the same command completes
    assert rows(db, "SELECT count(*) FROM videos") == [(60,)]


def test_emoji_codes_in_names_are_printed_as_written(tmp_path: Path) -> None:
    """Rich reads ":x:" as an emoji code: a file name or a table's column must reach the user unchanged."""
    table = tmp_path / "export:thumbs_up:.csv"
    table.write_text("root:x:0,other\n1,2\n")
    result = tkds("import", "--db", tmp_path / "tk.duckdb", "--table", table)
    out = " ".join(output(result).split())
    assert f"skipped {table}" in out and "'root:x:0, other'" in out and "👍" not in out and "❌" not in out


def test_a_fifo_or_a_folder_given_as_a_table_is_refused_never_read(tmp_path: Path) -> None:
    """`--table` skips detection, not the check that the file is a regular one: a FIFO would block."""
    fifo, folder = tmp_path / "fifo.csv", tmp_path / "folder.csv"
    os.mkfifo(fifo)
    folder.mkdir()
    result = tkds("import", "--db", tmp_path / "tk.duckdb", "--table", fifo, "--table", folder)
    out = output(result)
    assert f"skipped {fifo}: not a regular file: a FIFO" in out
    assert f"skipped {folder}: not a regular file: a directory" in out


def test_binary_data_is_never_taken_for_a_page_or_a_table(tmp_path: Path) -> None:
    """Random bytes holding "<a " (the HTML sniff) or a CSV-like first line match no format, whatever
    else is in them: detection must not depend on the luck of the draw."""
    crafted = tmp_path / "blob.bin"
    crafted.write_bytes(os.urandom(1000) + b"<a href>" + os.urandom(1000) + b"\0")
    table_like = tmp_path / "blob.csv"
    table_like.write_bytes(b"video_id,likes\n" + os.urandom(2000) + b"\0")
    for blob in (crafted, table_like):
        with pytest.raises(CaptureError, match="matches no known import format"):
            formats.detect(blob)
