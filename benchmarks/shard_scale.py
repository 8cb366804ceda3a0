"""The shard builder at thesis scale, against the issue's limits, both measured in this run:

plan        `build_shards` at `--size 0` (what `tkds shard --size 0` runs: select, fingerprint, prepare
            (the files as collected, nothing decoded), exact and near dedupe on the stored frame hashes,
            split, tar, dataset_samples, manifest, card) on a synthetic store of N videos, in a child
            process of its own (its peak RSS is the build's); per-step seconds, and the sum without the
            tar writing next to the issue's 5 minutes for 290,000 videos scaled linearly to N, and at
            N/10 in the same run: the ratio of videos/s (1.0 = linear)
transcode   `build_shards` at `--size 72` on M distinct SynthTok clips (72x128, 2-3 s) with 1 worker,
            then 2, back to back, `--repeat` times: the speed-up of the transcode step, next to 1.8

The store is made with SQL through `Store.open` (the real schema): videos with a 2 KB raw JSON each, about
N/10 authors, N/20 sounds, 3 hashtags, two stats snapshots per video, media with status ok pointing at one
small pooled file, distinct sha256s except 0.5% exact copies, and 16 frame hashes per video with planted
near duplicates (benchmarks/dedupe.py's). The last line is one JSON object with the figures.

  python benchmarks/shard_scale.py [--videos 29000] [--transcode-videos 200] [--repeat 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.dedupe import planted_hashes  # one planted world: the dedupe benchmark's

LIMIT_S, LIMIT_VIDEOS = 300.0, 290_000  # the issue: select, dedupe, split, manifest of 290,000 in 5 min
SPEEDUP_AIM = 1.8
EXACT_SHARE = 0.005
SEEN = "TIMESTAMP '2024-03-10 12:00:00'"  # every first_seen, observed_at and fetched_at: a fixed store
PLANNING = ("select", "fingerprint", "prepare", "dedupe", "split", "record", "manifest")  # not "write"


def synthetic_store(db: Path, videos: int, seed: int, clip: Path) -> dict[str, int]:
    """A collection of `videos` rows with SQL; returns the planted counts."""
    from tkds.collector.store import Store

    ids, hashes, near = planted_hashes(videos, seed)
    exact = max(1, int(videos * EXACT_SHARE))  # the last ones copy the first ones byte for byte
    shas = [hashlib.sha256(video_id.encode()).hexdigest() for video_id in ids]
    for i in range(exact):
        shas[-1 - i], hashes[-1 - i] = shas[i], hashes[i]
    authors = max(2, videos // 10)
    sounds = max(1, videos // 20)
    with Store.open(db) as store:
        sql = store.db.execute
        sql("CREATE TEMP TABLE n AS SELECT unnest(?::VARCHAR[]) AS id, unnest(?::VARCHAR[]) AS sha, "
            "unnest(?::VARCHAR[]) AS hash, generate_subscripts(?::VARCHAR[], 1) AS i",
            [ids, shas, hashes, ids])  # fmt: skip
        sql(f"""INSERT INTO authors (id, unique_id, sec_uid, nickname, verified, private, signature, raw)
                SELECT (2 * 10^15 + a)::BIGINT::VARCHAR, 'user_' || a, 'sec' || a, 'Nick ' || a,
                a % 50 = 0, false, 'bio ' || repeat('y', 80), '{{}}'
                FROM range({authors}) t(a)""")  # fmt: skip
        sql(f"""INSERT INTO music (id, title, author_name, original, duration_s, raw)
                SELECT (3 * 10^15 + m)::BIGINT::VARCHAR, 'sound ' || m, 'artist', m % 3 = 0, 30.0, '{{}}'
                FROM range({sounds}) t(m)""")  # fmt: skip
        # every 97th author unknown, an invalid video id refused, every 211th taken down, every 101st
        # media failed: what a real collection holds besides
        sql(f"""INSERT INTO videos (id, author_id, music_id, description, create_time, duration_s, width,
                height, is_ad, location, source, first_seen, last_seen, raw, kind)
                SELECT id, CASE WHEN i % 97 = 0 THEN NULL
                                ELSE (2 * 10^15 + (i * 7919) % {authors})::BIGINT::VARCHAR END,
                (3 * 10^15 + (i * 104729) % {sounds})::BIGINT::VARCHAR,
                'caption of ' || id || ' #a #b', make_timestamp(1700000000000000 + i * 60000000),
                12.5, 720, 1280, false, 'US', 'trending', {SEEN}, {SEEN},
                json_object('id', id, 'desc', 'caption of ' || id, 'pad', repeat('x', 2000)), 'video'
                FROM n UNION ALL SELECT '../1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                'trending', {SEEN}, {SEEN}, '{{}}', 'video'""")  # fmt: skip
        sql(f"""INSERT INTO takedown (video_id, reason, added_at)
                SELECT id, 'request', {SEEN} FROM n WHERE i % 211 = 0""")  # fmt: skip
        sql("""INSERT INTO video_hashtags (video_id, tag, position)
               SELECT id, 'tag' || ((i * 31 + p) % 5000), p FROM n, range(3) t(p)""")  # fmt: skip
        sql("""INSERT INTO video_stats (video_id, observed_at, plays, likes, comments, shares, collects,
               rounded) SELECT id, make_timestamp(1710000000000000 + d * 86400000000),
               i * 10 + d, i + d, i % 100, i % 10, i % 7, false FROM n, range(2) t(d)""")  # fmt: skip
        sql(f"""INSERT INTO author_stats (author_id, observed_at, followers, following, hearts, videos,
                rounded) SELECT (2 * 10^15 + a)::BIGINT::VARCHAR, {SEEN}, a * 3, a, a * 30, 10, false
                FROM range({authors}) t(a)""")  # fmt: skip
        sql(f"""INSERT INTO media (video_id, path, sha256, bytes, width, height, fps, duration_s, has_audio,
                vcodec, acodec, frame_hash, status, fetched_at, video_stream, audio_stream)
                SELECT id, '{clip}', sha, {clip.stat().st_size}, 72, 128, 15.0, 2.5, true, 'h264', 'aac',
                hash, CASE WHEN i % 101 = 0 THEN 'failed' ELSE 'ok' END, {SEEN}, 0, 1 FROM n
                UNION ALL SELECT '../1', '{clip}', 'bad', 1, 72, 128, 15.0, 2.5, true, 'h264', 'aac', NULL,
                'ok', {SEEN}, 0, 1""")  # fmt: skip
    return {"near_duplicates": len(near), "exact_copies": exact, "authors": authors}


def plan_child(db: str, out: str) -> None:
    """In a process of its own: `build_shards --size 0`, printing its steps and this process's peak RSS."""
    from tkds.dataset.build import ShardParams, build_shards

    summary = build_shards(Path(db), Path(out), ShardParams(size=0), workers=None, progress=False)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    figures = {"steps": summary.steps, "steps_cpu": summary.steps_cpu, "wall_s": summary.wall_s,
               "duplicates": summary.duplicates, "samples": summary.samples, "shards": summary.shards,
               "peak_rss_mb": rss}  # fmt: skip
    print(json.dumps(figures))


def measure_plan(root: Path, videos: int, seed: int, clip: Path) -> dict:
    db = root / f"store-{videos}.duckdb"
    started = time.perf_counter()
    planted = synthetic_store(db, videos, seed, clip)
    store_s = time.perf_counter() - started
    child = subprocess.run(
        [sys.executable, __file__, "--plan-child", str(db), str(root / f"shards-{videos}")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        raise SystemExit(f"the build of {videos} videos failed:\n{child.stderr[-3000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures["planning_s"] = sum(figures["steps"].get(step, 0.0) for step in PLANNING)
    figures["planning_cpu_s"] = sum(figures["steps_cpu"].get(step, 0.0) for step in PLANNING)
    figures.update(videos=videos, store_s=store_s, db_mb=db.stat().st_size / 1e6, **planted)
    return figures


def transcode_speedup(root: Path, videos: int, repeat: int, clips: Path | None) -> dict:
    """Seconds of the transcode step with 1 and 2 workers, alternated, on distinct small clips; and the
    CPU seconds per video of the ffmpeg children and of the builder itself (its serial share)."""
    from tkds.collector.importer import import_captures
    from tkds.dataset.build import ShardParams, build_shards
    from tkds.synth import generate

    corpus = clips or root / "clips"
    started = time.perf_counter()
    if clips is None:
        generate(corpus, videos, seed=3, size=(72, 128), seconds=(2.0, 3.0), progress=False)
    render_s = time.perf_counter() - started
    db = root / "clips.duckdb"
    items = sorted((corpus / "items").glob("*.json"))[:videos]
    import_captures(db, items, corpus / "media", progress=False)
    runs: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for attempt in range(repeat):
        for workers in (1, 2) if attempt % 2 == 0 else (2, 1):  # alternated: a drifting load cancels
            out = root / f"clips-{workers}-{attempt}"
            children, own = _children_cpu(), time.process_time()
            summary = build_shards(db, out, ShardParams(size=72), workers=workers, progress=False)
            cpu[workers].append((_children_cpu() - children, time.process_time() - own))
            runs[workers].append(summary.prepare_s)
            subprocess.run(["rm", "-rf", str(out)], check=True)
    ratios = sorted(one / two for one, two in zip(runs[1], runs[2], strict=True))
    per_video = {
        workers: sum(map(sum, cpu[workers])) / len(cpu[workers]) / summary.prepared for workers in cpu
    }
    return {"videos": summary.prepared, "render_s": render_s if clips is None else None, "runs_s": runs,
            "speedup": ratios[len(ratios) // 2], "speedups": ratios, "cpu_s": cpu,
            "ffmpeg_cpu_per_video_s": min(children for children, _ in cpu[1]) / summary.prepared,
            "builder_cpu_per_video_s": min(own for _, own in cpu[1]) / summary.prepared,
            "cpu_per_video_2_over_1": per_video[2] / per_video[1]}  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=29_000, help="0 skips the planning")
    parser.add_argument("--transcode-videos", type=int, default=200, help="0 skips the transcode")
    parser.add_argument("--repeat", type=int, default=2, help="1 -> 2 worker rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clips", type=Path, default=None, help="a rendered SynthTok corpus of distinct clips to reuse"
    )
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the stores (default: temp)")
    parser.add_argument("--plan-child", nargs=2, metavar=("DB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_child:
        plan_child(*args.plan_child)
        return
    with tempfile.TemporaryDirectory(dir=args.scratch) as folder:
        root = Path(folder)
        clip = root / "pooled.mp4"
        clip.write_bytes(os.urandom(4096))  # --size 0 only copies it into the tars
        sizes = (max(100, args.videos // 10), args.videos) if args.videos else ()
        plans = [measure_plan(root, n, args.seed, clip) for n in sizes]
        transcode = {}
        if args.transcode_videos:
            transcode = transcode_speedup(root, args.transcode_videos, args.repeat, args.clips)
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; seconds as wall (CPU)")  # fmt: skip
    figures = {"transcode": transcode, "load": load}
    if plans:
        figures.update(plan_small=plans[0], plan=plans[1], **_print_plans(*plans))
    if transcode:
        _print_transcode(transcode, args.repeat)
    print(json.dumps(figures))


def _print_plans(small: dict, big: dict) -> dict:
    steps = list(big["steps"])
    print(f"{'videos':>8} " + " ".join(f"{step:>15}" for step in steps) + "    planning   peak RSS")
    for plan in (small, big):
        cells = " ".join(f"{plan['steps'][s]:6.1f} ({plan['steps_cpu'][s]:5.1f})" for s in steps)
        print(f"{plan['videos']:>8} {cells} {plan['planning_s']:9.1f}s {plan['peak_rss_mb']:7.0f} MB")
    limit_s = LIMIT_S * big["videos"] / LIMIT_VIDEOS
    linear = (big["videos"] / big["planning_s"]) / (small["videos"] / small["planning_s"])
    ratio = big["planning_s"] / limit_s
    print(f"planning   {big['planning_s']:.1f} s ({big['planning_cpu_s']:.1f} s CPU) for {big['videos']} "
          f"videos | limit {limit_s:.0f} s (300 s at 290,000, scaled) | ratio {ratio:.2f} (aim <= 1.0) | "
          f"videos/s at N vs N/10 {linear:.2f} (1.0 = linear)")  # fmt: skip
    print(f"           duplicates removed {big['duplicates']} ({big['near_duplicates']} near and "
          f"{big['exact_copies']} exact planted); store {big['db_mb']:.0f} MB made in "
          f"{big['store_s']:.0f} s; peak RSS {big['peak_rss_mb'] / big['videos'] * 1e5:.0f} MB "
          "per 100k videos")  # fmt: skip
    return {"limit_s": limit_s, "ratio": ratio, "linear": linear}


def _print_transcode(transcode: dict, repeat: int) -> None:
    runs = transcode["runs_s"]
    per_video = transcode["ffmpeg_cpu_per_video_s"] + transcode["builder_cpu_per_video_s"]
    print(f"transcode  {transcode['videos']} clips, {repeat} rounds of 1 and 2 workers: "
          f"1 worker {' '.join(f'{s:.1f}' for s in runs[1])} s, 2 workers "
          f"{' '.join(f'{s:.1f}' for s in runs[2])} s | speed-up {transcode['speedup']:.2f} (median of "
          f"{' '.join(f'{r:.2f}' for r in transcode['speedups'])}) | ratio "
          f"{transcode['speedup'] / SPEEDUP_AIM:.2f} to {SPEEDUP_AIM} (aim >= 1.0)")  # fmt: skip
    print(f"           CPU per video: ffmpeg {transcode['ffmpeg_cpu_per_video_s'] * 1000:.0f} ms, builder "
          f"{transcode['builder_cpu_per_video_s'] * 1000:.1f} ms (its serial share at most "
          f"{transcode['builder_cpu_per_video_s'] / per_video:.1%}); with 2 workers "
          f"{transcode['cpu_per_video_2_over_1']:.2f}x the CPU per video of 1; 290,000 in a day need "
          f"{per_video * LIMIT_VIDEOS / 86400:.2f} cores at this clip size")  # fmt: skip


if __name__ == "__main__":
    main()
