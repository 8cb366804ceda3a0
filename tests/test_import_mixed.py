"""One `tkds import` of a tool's export, a research table and saved pages, as a new user runs it."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from tkds.collector.values import video_id_from_url

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
TKDS = [sys.executable, "-m", "tkds"]
README = Path(__file__).parents[1] / "README.md"


def readme_sql() -> str:
    """The README's SQL example, as written there."""
    return README.read_text().split("```sql\n", 1)[1].split("```", 1)[0]


def test_an_export_a_table_and_saved_pages_in_one_command(tiktok_fixtures: Path, tmp_path: Path) -> None:
    pages = tmp_path / "saved_pages"
    pages.mkdir()
    for capture in tiktok_fixtures.glob("*.html"):
        shutil.copy(capture, pages / capture.name)
    export = tmp_path / "export.json"  # names say nothing: formats are told apart by their content
    shutil.copy(FIXTURES / "tiktok_scraper.json", export)
    table = tmp_path / "table.csv"
    shutil.copy(FIXTURES / "table_research.csv", table)
    db = tmp_path / "tk.duckdb"

    result = subprocess.run(
        [*TKDS, "import", "--db", str(db), str(export), str(table), *map(str, sorted(pages.glob("*.html")))],
        capture_output=True,
        text=True,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
    )
    out = result.stderr + result.stdout
    assert result.returncode == 0, out
    assert f"{export}: tiktok-scraper JSON export" in out
    assert f"{table}: CSV, TSV or Parquet table" in out and "vid_nlike→likes" in out
    assert "__NEXT_DATA__ page" in out and "Traceback" not in out

    with duckdb.connect(str(db), read_only=True) as con:
        sources = dict(
            con.execute("SELECT split_part(source, ':', 2), count(*) FROM videos GROUP BY 1").fetchall()
        )
        items = json.loads(export.read_text())  # a float-written id is taken from the item's URL
        scraper_ids = {
            str(i["id"]) if str(i["id"]).isdigit() else video_id_from_url(i.get("webVideoUrl")) for i in items
        }
        scraper_ids.discard(None)  # a float-written id without a URL is refused, never guessed
        with table.open(newline="") as handle:
            table_ids = {row["vid_id"] for row in csv.DictReader(handle)}
        assert sources["tiktok-scraper-json"] == len(scraper_ids) and sources["tiktok-web"] >= 1
        stored = {row[0] for row in con.execute("SELECT id FROM videos").fetchall()}
        assert scraper_ids <= stored and {i for i in table_ids if i.isdigit()} <= stored
        rows = con.execute(readme_sql()).fetchall()
        tags = {row[0] for row in rows}
        scraper_tags = {
            tag["name"].lower() for item in json.loads(export.read_text()) for tag in item.get("hashtags", [])
        }
        assert rows and scraper_tags & tags
        rounded = con.execute("SELECT count(*) FROM video_stats WHERE rounded").fetchone()[0]
        assert rounded > 0
