"""`tkds shard` against hostile and faulty input: crafted DuckDB rows, stale or foreign work, bad options.

Every test builds from a real tkds DuckDB file (the small SynthTok corpus imported with its media), tampered
with directly in DuckDB the way a hostile capture or another tool could, and runs the real builder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import pytest

from tkds.dataset.build import ShardParams, build_shards, verify_shards
from tkds.dataset.transcode import TranscodeParams, prepare
from tkds.errors import TkdsError
from tkds.files import exclusive_folder

HOSTILE_IDS = ["..", "../x", "../../../victim", "../../keep", "a/b", "7\x00..", "9" * 1000, ".", "1 ", "-1"]
SMALL = ["--size", "64", "--samples-per-shard", "3"]


def tkds(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tkds", *args], capture_output=True, text=True, timeout=600)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's error: exit 1 and one line on stderr."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("tkds: error: "), result.stderr[-2000:]
    assert len(lines[-1]) < 400, lines[-1][:400]
    return lines[-1]


def copy_db(synth_db: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(synth_db, target)
    return target


def good_ids(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [row[0] for row in con.execute("SELECT video_id FROM media ORDER BY video_id").fetchall()]


def plant(db: Path, video_id: str, like: str, sha256: str) -> None:
    """A row with `video_id` whose media is the real mp4 of `like`: what a crafted DB holds."""
    with duckdb.connect(str(db)) as con:
        con.execute(
            "INSERT INTO videos (id, author_id, create_time, source) "
            "SELECT ?, author_id, create_time, source FROM videos WHERE id = ?",
            [video_id, like],
        )
        con.execute(
            "INSERT INTO media SELECT * REPLACE (? AS video_id, ? AS sha256) FROM media WHERE video_id = ?",
            [video_id, sha256, like],
        )
        con.execute("INSERT INTO video_hashtags VALUES (?, 'hostile', 0)", [video_id])


def all_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """key → member extension → bytes, over every shard of the manifest, read with tarfile."""
    found: dict[str, dict[str, bytes]] = {}
    for url in json.loads((out / "dataset.json").read_text())["shards"]:
        with tarfile.open(out / url) as tar:
            for member in tar.getmembers():
                key, _, extension = member.name.partition(".")
                found.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return found


def member_names(out: Path) -> list[str]:
    names = []
    for shard in out.glob("*/*.tar"):
        with tarfile.open(shard) as tar:
            names += tar.getnames()
    return names


def canary(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("canary")
    return folder


@pytest.mark.slow
def test_hostile_ids_in_a_crafted_db_are_refused_and_nothing_outside_out_changes(
    synth_db: Path, tmp_path: Path
) -> None:
    db = copy_db(synth_db, tmp_path / "db" / "tk.duckdb")
    good = good_ids(db)
    for number, video_id in enumerate(HOSTILE_IDS):
        plant(db, video_id, like=good[number % len(good)], sha256=f"hostile-{number}")
    with duckdb.connect(str(db)) as con:  # hostile author and username on good videos: read as unknown
        con.execute("UPDATE videos SET author_id = '../evil' WHERE id = ?", [good[0]])
        con.execute(
            "UPDATE authors SET unique_id = '<b>x</b>/../..' "
            "WHERE id = (SELECT author_id FROM videos WHERE id = ?)",
            [good[1]],
        )
    out = tmp_path / "outer" / "out"
    victim, keep = canary(tmp_path / "victim"), canary(tmp_path / "outer" / "keep")

    result = tkds("shard", "--db", str(db), "--out", str(out), *SMALL)

    assert result.returncode == 0, result.stderr
    assert (victim / "keep.txt").read_text() == "canary" and (keep / "keep.txt").read_text() == "canary"
    assert sorted(os.listdir(tmp_path)) == ["db", "outer", "victim"]
    assert sorted(os.listdir(tmp_path / "outer")) == ["keep", "out"]
    assert f"{len(HOSTILE_IDS)} invalid_id" in result.stderr
    assert (
        max(len(line) for line in result.stderr.splitlines()) < 400
    )  # the 1000-digit id is not quoted whole
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["failures_by_reason"] == {"invalid_id": len(HOSTILE_IDS)}
    samples = all_samples(out)
    assert sorted(samples) == good and manifest["counts"]["kept"] == len(good)
    for name in member_names(out):
        assert "/" not in name and ".." not in name and "\0" not in name, name
    meta = {key: json.loads(members["json"]) for key, members in samples.items()}
    assert meta[good[0]]["author_id"] is None and meta[good[1]]["author_unique_id"] is None
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT dataset, video_id FROM dataset_samples").fetchall()
    # The session's DB may hold other tests' builds too; a refused id is recorded in none of them.
    assert sorted(video for dataset, video in rows if dataset == str(out.resolve())) == good
    assert not {video for _, video in rows} & set(HOSTILE_IDS)
    verified = tkds("shard", "--out", str(out), "--verify")
    assert verified.returncode == 0 and "match dataset.json" in " ".join(verified.stderr.split())

    # ../victim seen from OUT/.work is OUT/victim: a rebuild (another selection) leaves it alone too
    inside = canary(out / "victim")
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO takedown VALUES (?, 'test', now())", [good[2]])
    again = tkds("shard", "--db", str(db), "--out", str(out), *SMALL)
    assert again.returncode == 0, again.stderr
    assert (inside / "keep.txt").read_text() == "canary" and (victim / "keep.txt").read_text() == "canary"
    assert sorted(all_samples(out)) == [video_id for video_id in good if video_id != good[2]]


def test_the_first_rerun_of_a_finished_build_returns_at_once(synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    with duckdb.connect(str(db)) as con:  # as after a collection: the build computes the frame hashes
        con.execute("UPDATE media SET frame_hash = NULL")
    out = tmp_path / "out"
    params = ShardParams(size=64, samples_per_shard=3)
    first = build_shards(db, out, params, progress=False)
    assert first.prepared == 12
    files = sorted(path for path in out.rglob("*") if path.is_file())
    before = {path: path.stat().st_mtime_ns for path in [out, *files]}

    rerun = build_shards(db, out, params, progress=False)

    assert rerun.prepared == 0 and rerun.shards_reused == rerun.shards == first.shards
    assert rerun.samples == first.samples
    assert {path: path.stat().st_mtime_ns for path in before} == before  # nothing rewritten, no .work made


def test_a_build_from_another_database_into_the_same_out_is_refused(synth_db: Path, tmp_path: Path) -> None:
    first, other = copy_db(synth_db, tmp_path / "a.duckdb"), copy_db(synth_db, tmp_path / "b.duckdb")
    with duckdb.connect(str(other)) as con:
        con.execute("UPDATE videos SET description = 'from b'")
    out = tmp_path / "out"
    assert tkds("shard", "--db", str(first), "--out", str(out), *SMALL).returncode == 0
    shards = json.loads((out / "dataset.json").read_text())["shards"]

    line = one_error_line(tkds("shard", "--db", str(other), "--out", str(out), *SMALL))

    assert "another database" in line and str(first.resolve()) in line
    assert json.loads((out / "dataset.json").read_text())["shards"] == shards
    assert verify_shards(out, progress=False) == []


def test_a_prepared_video_is_reused_only_for_the_same_source_and_recipe(
    synth_db: Path, tmp_path: Path
) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    params = ShardParams(size=64, samples_per_shard=3)
    reference = tmp_path / "reference"
    build_shards(copy_db(db, tmp_path / "ref.duckdb"), reference, params, progress=False)
    expected = all_samples(reference)
    out = tmp_path / "out"
    build_shards(db, out, params, progress=False)
    for stale in [out / "dataset.json", *out.glob("*/*.tar"), *out.glob("*/*_stats.json")]:
        stale.unlink()
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT video_id, path, sha256 FROM media ORDER BY video_id LIMIT 3").fetchall()
    (changed, _, _), (recoded, recoded_path, recoded_sha), (_, other_path, _) = rows
    # left by a killed run: `changed` from a file since re-collected, `recoded` with another recipe
    work = out / ".work"
    prepare(changed, Path(other_path), work, TranscodeParams(size=64), sha256="an-older-file")
    prepare(recoded, Path(recoded_path), work, TranscodeParams(size=64, crf=45), sha256=recoded_sha)

    summary = build_shards(db, out, params, progress=False)

    assert summary.prepared == 12 and not summary.failures
    produced = all_samples(out)
    assert produced[changed]["mp4"] == expected[changed]["mp4"]
    assert produced[recoded]["mp4"] == expected[recoded]["mp4"]


def test_a_shard_is_reused_only_when_its_samples_are_the_same(synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    out = tmp_path / "out"
    params = ShardParams(size=64, samples_per_shard=3)
    first = build_shards(db, out, params, progress=False)
    target = good_ids(db)[0]
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE videos SET description = 'changed since' WHERE id = ?", [target])

    rerun = build_shards(db, out, params, progress=False)

    assert json.loads(all_samples(out)[target]["json"])["description"] == "changed since"
    assert rerun.shards_reused == first.shards - 1
    assert verify_shards(out, progress=False) == []


def test_a_locked_out_folder_is_refused_in_one_line(synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    out = tmp_path / "out"
    with exclusive_folder(out, "--out"):
        line = one_error_line(tkds("shard", "--db", str(db), "--out", str(out), *SMALL))
        assert "in use by another tkds process" in line
        assert sorted(os.listdir(out)) == [".tkds.lock"]
    built = tkds("shard", "--db", str(db), "--out", str(out), *SMALL)  # the lock file is no content
    assert built.returncode == 0, built.stderr
    with exclusive_folder(out, "--out"):
        assert "being built" in one_error_line(tkds("shard", "--out", str(out), "--verify"))
    assert tkds("shard", "--out", str(out), "--verify").returncode == 0


def _table_digest(db: Path) -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return tuple(
            con.execute(f"SELECT count(*), sum(hash(t)) FROM {table} t").fetchone()
            for table in ("videos", "media", "video_hashtags", "authors")
        )


@pytest.mark.parametrize(
    "where",
    [
        "TRUE; DELETE FROM videos",
        "1=1) ; DROP TABLE videos; --",
        "TRUE) ORDER BY v.id; DELETE FROM videos; SELECT 1 WHERE (TRUE",
        "TRUE) UNION ALL SELECT * FROM videos WHERE (TRUE",
        "v.id IN (SELECT id FROM videos); DELETE FROM media",
    ],
)
def test_where_is_one_expression_and_writes_nothing(where: str, synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    before = _table_digest(db)
    with pytest.raises(TkdsError, match="--where"):
        build_shards(db, tmp_path / "out", ShardParams(size=64, where=where), progress=False)
    assert _table_digest(db) == before


def test_where_with_a_subquery_still_selects(synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    first = good_ids(db)[0]
    where = (
        f"v.id IN (SELECT video_id FROM media WHERE video_id <> '{first}') AND v.description NOT LIKE '%;%'"
    )
    summary = build_shards(db, tmp_path / "out", ShardParams(size=64, where=where), progress=False)
    assert summary.selected == 11
    line = one_error_line(
        tkds("shard", "--db", str(db), "--out", str(tmp_path / "b"), "--where", "1; SELECT 2")
    )
    assert line.startswith("tkds: error: --where '1; SELECT 2'")


def test_a_mistyped_where_does_not_claim_the_out_folder(synth_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(TkdsError, match="not valid SQL here"):
        build_shards(synth_db, out, ShardParams(size=64, where="v.no_such_column = 1"), progress=False)
    summary = build_shards(synth_db, out, ShardParams(size=64, where="v.id <> ''"), progress=False)
    assert summary.selected == 12


@pytest.mark.parametrize(
    "option",
    [
        ["--ratios", "nan,0.5,0.5"],
        ["--ratios", "inf,0,0"],
        ["--ratios", "-0.5,1,0.5"],
        ["--ratios", "0.5,0.5"],
        ["--ratios", "0.5,0.5,nan"],
        ["--samples-per-shard", "0"],
        ["--shard-mb", "0"],
        ["--shard-mb", "nan"],
        ["--size", "-1"],
        ["--size", "1000000"],
        ["--fps", "0"],
        ["--fps", "nan"],
        ["--fps", "-inf"],
    ],
)
def test_bad_option_values_are_one_line_errors(option: list[str], synth_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = one_error_line(tkds("shard", "--db", str(synth_db), "--out", str(out), *option))
    assert line.startswith(f"tkds: error: {option[0]} ")
    assert not out.exists()


def test_the_library_checks_its_settings_too(synth_db: Path, tmp_path: Path) -> None:
    for settings in ({"ratios": (float("nan"), 0.5, 0.5)}, {"samples_per_shard": 0}):
        with pytest.raises(TkdsError):
            build_shards(synth_db, tmp_path / "out", ShardParams(**settings), progress=False)
    assert not (tmp_path / "out").exists()


def test_a_mistyped_db_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.duckdb"
    line = one_error_line(tkds("shard", "--db", str(missing), "--out", str(tmp_path / "out")))
    assert "does not exist" in line
    assert not missing.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["labels.csv", "labels.json"])
def test_a_binary_labels_file_is_quoted_short(name: str, synth_db: Path, tmp_path: Path) -> None:
    labels = tmp_path / name
    labels.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2_000_000))
    result = tkds("shard", "--db", str(synth_db), "--out", str(tmp_path / "out"), "--labels", str(labels))
    one_error_line(result)
    assert len(result.stderr) < 1000


def test_a_labels_csv_with_a_huge_field_is_one_line(synth_db: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,category\n" + f"{good_ids(synth_db)[0]},{'x' * 200_000}\n")
    result = tkds("shard", "--db", str(synth_db), "--out", str(tmp_path / "out"), "--labels", str(labels))
    assert "--labels" in one_error_line(result) and len(result.stderr) < 1000


def test_html_and_markdown_from_outside_are_inert_in_the_card(synth_db: Path, tmp_path: Path) -> None:
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    good = good_ids(db)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE video_hashtags SET tag = '<script>alert(1)</script>' WHERE position = 0")
        con.execute("INSERT INTO video_hashtags VALUES (?, 'a|b](javascript:x)', 9)", [good[0]])
    labels = tmp_path / "labels.csv"
    names = ["<img src=x onerror=alert(1)>", "x|y", "**bold** [link](http://e.x)", "L" * 50_000]
    rows = [f"{video_id},{names[number % len(names)]}" for number, video_id in enumerate(good)]
    labels.write_text("id,category\n" + "\n".join([*rows, "../../x,<b>hostile</b>"]) + "\n")
    out = tmp_path / "out"
    summary = build_shards(db, out, ShardParams(size=64, labels=str(labels)), progress=False)
    assert sum(summary.samples.values()) == len(good)

    card = (out / "README.md").read_text()

    assert "<script" not in card and "<img" not in card and "&lt;script&gt;" in card
    assert not re.search(r"(?<!\\)\]\(", card) and "**bold**" not in card  # no live links, no bold
    assert len(card) < 20_000
    table = [line for line in card.splitlines() if line.startswith("| train") or line.startswith("| split")]
    assert all(line.replace("\\|", "").count("|") == 5 for line in table)
    for line in card.splitlines():
        if line.startswith(("Labels:", "Hashtags:", "(")):
            assert line.replace("\\|", "").count("|") == 0, line


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; a full disk cannot be simulated here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _pages(size: int) -> int:
    return -(-size // 4096) * 4096


@pytest.mark.slow
def test_a_full_disk_while_writing_a_shard_is_one_line_and_a_rerun_resumes(
    synth_db: Path, tmp_path: Path
) -> None:
    args = ["--size", "64", "--samples-per-shard", "2", "--ratios", "1,0,0"]
    db = copy_db(synth_db, tmp_path / "tk.duckdb")
    reference = tmp_path / "reference"
    assert tkds("shard", "--db", str(db), "--out", str(reference), *args).returncode == 0
    samples = all_samples(reference)
    # room for the prepared videos (each file rounds up to pages) and about half of the shards
    work = sum(
        _pages(len(data)) for members in samples.values() for ext, data in members.items() if ext != "json"
    )
    shards = sum(path.stat().st_size for path in reference.glob("train/*.tar"))
    room = work + len(samples) * 4096 + shards // 2 + 64 * 1024
    out = tmp_path / "out"
    with tmpfs(out, str(room)):
        line = one_error_line(tkds("shard", "--db", str(db), "--out", str(out), *args))
        assert "No space left on device" in line and "re-run" in line
        assert "train-0000" in line  # names the shard (or its stats) being written
        assert not list(out.rglob("*.partial"))
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        resumed = tkds("shard", "--db", str(db), "--out", str(out), *args)
        assert resumed.returncode == 0, resumed.stderr
        first, second = (json.loads((root / "dataset.json").read_text()) for root in (reference, out))
        assert first["shards"] == second["shards"]
        assert verify_shards(out, progress=False) == []
