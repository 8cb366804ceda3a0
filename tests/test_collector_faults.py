"""The collector under hostile conditions: heavy faults, transient failures that later runs must retry,
secrets that must not outlive a crash, a media folder shared by two collectors, and bad option values.

Real components throughout: the twin, Chromium, yt-dlp, DuckDB and the CLI in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pytest

from tkds.collector.collect import MAX_TARGET_RUNS, collect
from tkds.errors import TkdsError
from tkds.files import exclusive_folder
from tkds.synth import generate
from tkds.twin import serve

TKDS = [sys.executable, "-m", "tkds"]
HEAVY_FAULTS = {
    "rate429": 0.3,
    "error5xx": 0.2,
    "empty": 0.2,
    "reset": 0.1,
    "truncate": 0.2,
    "challenge": 0.1,
}
MAX_RUNS = 6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 one-second videos by four authors."""
    out = tmp_path_factory.mktemp("faults") / "corpus"
    generate(out, 40, seed=11, seconds=(1.0, 1.0), progress=False)
    return out


def tkds(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    wide = {**os.environ, "COLUMNS": "250"}  # summary rows unwrapped, so that tests can read them
    return subprocess.run([*TKDS, *args], capture_output=True, text=True, timeout=timeout, env=wide)


def collect_through(twin, db: Path, *args: str) -> subprocess.CompletedProcess:
    return tkds("collect", "--db", str(db), "--proxy", twin.proxy_url, "--ca-cert", str(twin.ca_path), *args)


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode in (1, 2), result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow
def test_repeated_runs_converge_through_heavy_faults(corpus: Path, tmp_path: Path) -> None:
    db, media = tmp_path / "tk.duckdb", tmp_path / "media"
    with serve(corpus, faults=HEAVY_FAULTS, seed=3) as twin:
        served = {video_id: sha256(path) for video_id, path in twin.state.corpus.media_paths.items()}
        users = sorted(twin.state.corpus.by_author)
        args = [arg for user in users for arg in ("--user", user)]
        args += ["--limit", "40", "--media", str(media), "--rate", "60", "--concurrency", "8"]
        args += ["--detail", "always"]  # video pages too, so that their faults are met
        runs = []
        while len(runs) < MAX_RUNS:
            result = collect_through(twin, db, *args)
            runs.append(result)
            assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
            if query(db, "SELECT count(*) FROM media WHERE status = 'ok'") == [(len(served),)]:
                break
        fired = {kind: n for kind, n in twin.state.dice.fired.items() if n}
    assert set(fired) == set(HEAVY_FAULTS), f"every fault should have fired: {fired}"
    assert len(runs) > 1, "at these rates the first run should have left work owed"
    assert runs[0].stderr.count("owed: none") < 3, "and its summary should say so"
    assert runs[-1].stderr.count("owed: none") == 3, runs[-1].stderr

    assert sorted(r[0] for r in query(db, "SELECT id FROM videos")) == sorted(served)
    stored = dict(query(db, "SELECT video_id, sha256 FROM media WHERE status = 'ok'"))
    on_disk = {path.stem: sha256(path) for path in media.glob("*.mp4")}
    assert stored == on_disk == served, "the media must be the twin's files, byte for byte"
    assert {p.name for p in media.iterdir()} == {f"{v}.mp4" for v in served} | {".tkds.lock"}
    states = query(db, "SELECT kind, status, count(*) FROM crawl_targets GROUP BY ALL ORDER BY ALL")
    assert states == [("media", "ok", len(served)), ("user", "done", 4), ("video", "done", len(served))]


@pytest.mark.slow
def test_a_transient_failure_is_retried_by_later_runs_within_bounds(corpus: Path, tmp_path: Path) -> None:
    db = tmp_path / "tk.duckdb"
    with serve(corpus, seed=4) as twin:
        ids = sorted(twin.state.corpus.item_paths)[:5]
        author = twin.state.corpus.author_of
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"https://www.tiktok.com/@{author[v]}/video/{v}\n" for v in ids))
    args = ["--urls", str(urls), "--no-media", "--rate", "60"]

    # Every page answers 429 (Retry-After: 0): each video fails its in-run tries, and stays owed.
    with serve(corpus, faults={"rate429": 1.0, "retry_after_s": 0}, seed=4) as twin:
        first = collect_through(twin, db, *args)
    assert first.returncode == 0, first.stderr
    assert "owed: 5 (5 http 429)" in first.stderr
    rows = query(db, "SELECT key, status, attempts, last_error FROM crawl_targets ORDER BY key")
    assert rows == [(v, "failed", 1, "http 429") for v in ids]

    # A video that a later run cannot fix (private), and one out of runs, are left alone.
    private, exhausted, retried = ids[0], ids[1], ids[2:]
    with duckdb.connect(str(db)) as connection:
        connection.execute("UPDATE crawl_targets SET last_error = 'private' WHERE key = ?", [private])
        connection.execute(
            "UPDATE crawl_targets SET attempts = ? WHERE key = ?", [MAX_TARGET_RUNS, exhausted]
        )

    with serve(corpus, seed=4) as twin:
        second = collect_through(twin, db, *args)
    assert second.returncode == 0, second.stderr
    assert "3 ok; failed: none; owed: none" in second.stderr
    rows = query(db, "SELECT key, status, attempts, last_error FROM crawl_targets ORDER BY key")
    assert rows == [
        (private, "failed", 1, "private"),
        (exhausted, "failed", MAX_TARGET_RUNS, "http 429"),
        *((v, "done", 2, None) for v in retried),
    ]
    assert sorted(r[0] for r in query(db, "SELECT id FROM videos")) == retried


@pytest.mark.slow
def test_an_unreachable_network_fails_targets_with_reasons_not_tracebacks(tmp_path: Path) -> None:
    db, urls = tmp_path / "tk.duckdb", tmp_path / "urls.txt"
    urls.write_text("https://www.tiktok.com/@someone/video/7000000000000000001\n")
    result = tkds(
        "collect", "--db", str(db), "--proxy", refused_proxy(), "--hashtag", "cats", "--urls", str(urls),
        "--media", str(tmp_path / "media"), "--rate", "60",
    )  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = query(db, "SELECT kind, status, attempts, last_error FROM crawl_targets ORDER BY kind")
    assert [row[:3] for row in rows] == [("hashtag", "failed", 1), ("video", "failed", 1)]
    assert rows[0][3].startswith("page: connection: ERR_") and rows[1][3].startswith("connection: ")
    assert "owed: 1 (1 page: connection: ERR_" in result.stderr


def refused_proxy() -> str:
    """A proxy URL on a loopback port that was just free: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.slow
def test_the_session_cookie_never_outlives_a_kill_9_nor_reaches_disk(corpus: Path, tmp_path: Path) -> None:
    secret = "sessionid-" + os.urandom(12).hex()
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n.tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\t{secret}\n")
    db, media = tmp_path / "tk.duckdb", tmp_path / "media"
    temp = Path(tempfile.gettempdir())
    with serve(corpus, seed=5) as twin:
        user = max(twin.state.corpus.by_author, key=lambda u: len(twin.state.corpus.by_author[u]))
        command = [
            *TKDS,
            "collect",
            "--db",
            str(db),
            "--proxy",
            twin.proxy_url,
            "--ca-cert",
            str(twin.ca_path),
        ]
        command += ["--user", user, "--media", str(media), "--cookies", str(cookies), "--rate", "5"]
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while not (found := list((media / ".partial").glob("cookies-*.txt"))):
            assert process.poll() is None, "collect finished without a cookie file in MEDIA/.partial"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        written = found[0]
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert secret in written.read_text(), "the cookie file is the one that holds the session"

        result = collect_through(
            twin, db, "--user", user, "--media", str(media), "--cookies", str(cookies), "--rate", "60"
        )
        assert result.returncode == 0, result.stderr
        # The next run sweeps the killed run's cookie file at once, before it needs one of its own.
        assert not written.exists()

    assert not (media / ".partial").exists()
    leftovers = [p for p in media.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    leftovers += [p for p in temp.glob("tkds-cookies-*/*") if p.is_file() and secret in p.read_text()]
    assert leftovers == []
    for path in (db, db.with_name(db.name + ".wal")):
        assert not path.exists() or secret.encode() not in path.read_bytes()
    assert secret not in result.stderr + result.stdout
    assert query(db, "SELECT count(*) FROM media WHERE status = 'ok'")[0][0] > 0


def test_a_second_collector_on_the_same_media_folder_is_refused(tmp_path: Path) -> None:
    media, db, urls = tmp_path / "media", tmp_path / "tk.duckdb", tmp_path / "urls.txt"
    urls.write_text("https://www.tiktok.com/@someone/video/7000000000000000001\n")
    with exclusive_folder(media, "--media"):  # what a running collector holds
        result = tkds("collect", "--db", str(db), "--urls", str(urls), "--media", str(media), timeout=60)
    line = one_line_error(result)
    assert "--media" in line and "in use by another tkds process" in line
    assert not db.exists(), "a refused run writes nothing"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--concurrency", "0"),
        ("--concurrency", "-3"),
        ("--concurrency", "100000"),
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--rate", "0"),
        ("--limit", "0"),
        ("--comments", "-1"),
        ("--proxy", "ftp://example.com"),
        ("--proxy", "not a url"),
        ("--hashtag", "a/../b"),
        ("--hashtag", "<script>"),
        ("--user", "../../etc"),
        ("--user", "x" * 5000),
        ("--music", "12/34"),
        ("--search", "cats\x07dogs"),
    ],
)
def test_bad_option_values_are_one_line_errors_not_hangs(option: str, value: str, tmp_path: Path) -> None:
    db, urls = tmp_path / "tk.duckdb", tmp_path / "urls.txt"
    urls.write_text("https://www.tiktok.com/@someone/video/7000000000000000001\n")
    result = tkds("collect", "--db", str(db), "--urls", str(urls), "--no-media", option, value, timeout=60)
    assert option in one_line_error(result)
    assert not db.exists()


def test_the_library_checks_its_own_options(tmp_path: Path) -> None:
    url = "https://www.tiktok.com/@someone/video/7000000000000000001"
    for bad in ({"concurrency": 0}, {"rate": float("nan")}, {"limit": -1}, {"comments": 1.5}):
        with pytest.raises(TkdsError, match=f"--{next(iter(bad))} must be"):
            collect(tmp_path / "tk.duckdb", urls=[url], **bad)
    assert not (tmp_path / "tk.duckdb").exists()


def test_cookie_folders_of_earlier_versions_are_swept(tmp_path, monkeypatch) -> None:
    from tkds.collector.media import sweep_partials

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", None)
    legacy = tmp_path / "tmp" / "tkds-cookies-abc123"
    legacy.mkdir(parents=True)
    (legacy / "cookies.txt").write_text(".tiktok.com\tTRUE\t/\tTRUE\t0\tsessionid\tsecret\n")
    other = tmp_path / "tmp" / "someone-else"
    other.mkdir()
    sweep_partials(tmp_path / "media")
    assert not legacy.exists() and other.exists()
