"""`tkds import` of a large tiktok-scraper JSON export: speed, and memory that does not grow with the file.

Writes a synthetic export of N items (about 3.3 KB each, most of it signed media URLs as in real ones) to a
temporary folder, then, each in its own child process so that each peak is its own:

parse        the format's reader alone (chunked streaming, flat_record, batches): items/s, peak RSS
import       the same file through `tkds.collector.importer.import_captures` into a new DuckDB:
             items/s, peak RSS

Peak RSS is each child's own ru_maxrss. The limit it is held to is fixed, not a share of the file: a
bounded reader uses the same memory for 20 MB and for 1 GB (the store caps DuckDB's own cache at
`tkds.collector.store.MEMORY_LIMIT`).
The temporary folder is deleted after.

  python benchmarks/import_formats.py [--items 5000] [--limit-mb 600] [--keep-dir DIR [--reuse]]
                                      [--phases parse,import]
  python benchmarks/import_formats.py --items 320000   # about 1 GB
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CDN = "https://p16-sign-va.tiktokcdn.com"
# Signed media URLs as long as real ones: most of a real item is its URLs.
SIGNATURE = (
    "x-expires=1700000000&x-signature="
    + "A" * 27
    + "%3D&t=4d5b0474&ps=13740610&shp=81f88b70&shcp=9b759fb9&idc=no1a"
)
QUERY = "?a=1988&br=1270&bt=635&cd=0%7C0%7C1&cr=0&cs=0&cv=1&dr=0&ds=3&er=&expire=1700000000&l=" + "2" * 34
QUERY += "&lr=tiktok_m&mime_type=video_mp4&policy=2&qs=0&rc=" + "Q" * 160 + "&signature=" + "f" * 32


def item(n: int) -> dict:
    """One tiktok-scraper item in its documented shape, synthetic values."""
    video_id, author = str(7_300_000_000_000_000_000 + n), n // 50
    user = f"synth.user_{author}"
    cover = f"{CDN}/obj/tos-maliva-p-0068/{n:032x}?{SIGNATURE}"
    return {
        "id": video_id,
        "secretID": video_id,
        "text": f"synthetic clip {n} #tag{n % 97} #fyp @friend_{n % 13}",
        "createTime": 1_600_000_000 + n,
        "authorMeta": {
            "id": str(6_800_000_000_000_000_000 + author),
            "secUid": f"MS4wLjABAAAA{author:064x}",
            "name": user,
            "nickName": f"Synth User {author}",
            "verified": False,
            "signature": "a synthetic bio\nwith two lines",
            "avatar": f"{CDN}/tos-maliva-avt-0068/{author:032x}~c5_1080x1080.jpeg?{SIGNATURE}",
            "following": 425,
            "fans": 398_700 + author,
            "heart": 20_400_000,
            "video": 263,
            "digg": 21_400,
        },
        "musicMeta": {
            "musicId": str(6_900_000_000_000_000_000 + n),
            "musicName": "original sound",
            "musicAuthor": f"Synth User {author}",
            "musicOriginal": True,
            "musicAlbum": "",
            "playUrl": f"https://sf16-sign-va.tiktokcdn.com/musically-maliva-obj/{n}.mp3?{SIGNATURE}",
            "coverThumb": f"{CDN}/music/{n:032x}~c5_100x100.jpeg?{SIGNATURE}",
            "coverMedium": f"{CDN}/music/{n:032x}~c5_720x720.jpeg?{SIGNATURE}",
            "coverLarge": f"{CDN}/music/{n:032x}~c5_1080x1080.jpeg?{SIGNATURE}",
            "duration": 17,
        },
        "covers": {"default": cover, "origin": cover + "&o=1", "dynamic": cover + "&d=1"},
        "webVideoUrl": f"https://www.tiktok.com/@{user}/video/{video_id}",
        "videoUrl": f"https://v16-web.tiktok.com/video/tos/useast2a/{n:032x}/{QUERY}",
        "videoUrlNoWaterMark": "",
        "videoApiUrlNoWaterMark": "",
        "videoMeta": {"height": 1024, "width": 576, "duration": 17},
        "diggCount": 4165 + n,
        "shareCount": 117,
        "playCount": 18_800 + n,
        "commentCount": 58,
        "downloaded": False,
        "mentions": [f"@friend_{n % 13}"],
        "hashtags": [
            {"id": str(229_207 + n % 97), "name": f"tag{n % 97}", "title": "", "cover": ""},
            {"id": "229207", "name": "fyp", "title": "", "cover": ""},
        ],
    }


def write_export(path: Path, count: int) -> int:
    """A bare JSON array, as tiktok-scraper's CLI writes it, written item by item."""
    with path.open("w", encoding="utf-8") as file:
        file.write("[")
        for n in range(count):
            file.write(("," if n else "") + json.dumps(item(n), separators=(",", ":")))
        file.write("]")
    return path.stat().st_size


def child(phase: str, export: Path, db: Path) -> None:
    """One phase, run in a child process; prints its item count, wall time and peak RSS as JSON."""
    from tkds.collector import formats
    from tkds.collector.formats import FileReport, ImportOptions
    from tkds.collector.importer import import_captures

    started = time.perf_counter()
    if phase == "parse":
        report = FileReport()
        videos = sum(
            len(batch.videos) for batch in formats.detect(export).read(export, ImportOptions(), report)
        )
        items = report.rows
    else:
        summary = import_captures(db, [export], progress=False)
        videos = summary.videos_new
        items = summary.reports[str(export)].rows
    wall_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KB
    print(json.dumps({"items": items, "videos": videos, "wall_s": wall_s, "peak_mb": peak_mb}))


def run_phase(phase: str, export: Path, db: Path) -> dict:
    command = [sys.executable, __file__, "--child", phase, str(export), str(db)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=5000, help="items in the export (320000 is about 1 GB)")
    parser.add_argument("--limit-mb", type=float, default=600.0, help="peak RSS allowed for any file size")
    parser.add_argument("--keep-dir", type=Path, default=None, help="write there and keep the files")
    parser.add_argument("--reuse", action="store_true", help="with --keep-dir: read the export already there")
    parser.add_argument("--phases", default="parse,import", help="which phases to run")
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "EXPORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        phase, export, db = args.child
        child(phase, Path(export), Path(db))
        return
    folder = args.keep_dir or Path(tempfile.mkdtemp(prefix="tkds-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        export, db = folder / "tiktok_scraper_export.json", folder / "bench.duckdb"
        db.unlink(missing_ok=True)
        Path(f"{db}.wal").unlink(missing_ok=True)
        if args.reuse and args.keep_dir and export.exists():
            size = export.stat().st_size
            print(f"export: {export}, {size / 2**20:.0f} MB, reused")
        else:
            started = time.perf_counter()
            size = write_export(export, args.items)
            written_s = time.perf_counter() - started
            print(f"export: {args.items} items, {size / 2**20:.0f} MB, written in {written_s:.1f} s")
        print(f"limit: peak RSS <= {args.limit_mb:.0f} MB whatever the file size")
        for phase in args.phases.split(","):
            measured = run_phase(phase, export, db)
            rate = measured["items"] / measured["wall_s"]
            ratio = measured["peak_mb"] / args.limit_mb
            print(
                f"{phase:7s} {measured['items']} items ({measured['videos']} videos)"
                f" in {measured['wall_s']:.1f} s:"
                f" {rate:,.0f} items/s, {size / 2**20 / measured['wall_s']:.1f} MB/s;"
                f" peak RSS {measured['peak_mb']:.0f} MB = {ratio:.2f} x limit"
                f" ({measured['peak_mb'] / (size / 2**20):.2f} x the file)"
            )
    finally:
        if args.keep_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
