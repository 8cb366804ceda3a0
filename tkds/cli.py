"""The `tkds` command line: parses arguments and calls the library. Errors are one line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import click
from rich.table import Table

import tkds
from tkds.console import console
from tkds.errors import TkdsError


def _size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise TkdsError(f"--size {value!r} is not WIDTHxHEIGHT, e.g. 144x256") from None
    return width, height


def _seconds(value: str) -> tuple[float, float]:
    try:
        parts = [float(part) for part in value.split("-")]
    except ValueError:
        raise TkdsError(f"--seconds {value!r} is not A-B or A, e.g. 5-7") from None
    if len(parts) not in (1, 2):
        raise TkdsError(f"--seconds {value!r} is not A-B or A, e.g. 5-7")
    return parts[0], parts[-1]


class _RegistryChoice(click.Choice):
    """A click.Choice over a registry's names, read when first needed: the registries import torch,
    which `tkds --help` and the other commands should not wait for."""

    def __init__(self, names: Callable[[], Iterable[str]]) -> None:
        self._names = names
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._names())


def _preset_names() -> Iterable[str]:
    from tkds.models.presets import PRESETS

    return PRESETS


def _difficulty_names() -> Iterable[str]:
    from tkds.synth.factors import DIFFICULTIES

    return DIFFICULTIES


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(tkds.__version__, prog_name="tkds")
def cli() -> None:
    """tkds: TikTok as a research-grade video dataset and benchmark."""


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--videos", default=200, show_default=True, help="Number of videos.")
@click.option(
    "--seed", default=0, show_default=True, help="Seed of everything drawn; same seed, same corpus."
)
@click.option("--size", "size", default="144x256", show_default=True, help="WIDTHxHEIGHT of the mp4s.")
@click.option("--seconds", default="5-7", show_default=True, help="Duration range A-B in seconds.")
@click.option("--fps", default=15, show_default=True, help="Frames per second of the mp4s.")
@click.option("--categories", default=8, show_default=True, help="Number of content categories (the labels).")
@click.option(
    "--photo-share", default=0.1, show_default=True, help="Share of posts that are photo posts (0..1)."
)
@click.option(
    "--media-pool",
    type=int,
    default=None,
    help="Render only K clips that every video links to: full metadata, shared media (not for learning).",
)
@click.option(
    "--near-duplicates",
    type=float,
    default=None,
    help="Share of posts that re-upload an earlier video (0..0.5); default 0.02, 0 with --media-pool.",
)
@click.option(
    "--difficulty",
    type=_RegistryChoice(_difficulty_names),
    default="easy",
    show_default=True,
    help="Nuisance factors: trending sounds, clutter, camera pan, compression (docs/synthtok.md).",
)
@click.option("--workers", default=None, type=int, help="Processes; default: all cores.")
def synth(
    out: Path,
    videos: int,
    seed: int,
    size: str,
    seconds: str,
    fps: int,
    categories: int,
    photo_share: float,
    media_pool: int | None,
    near_duplicates: float | None,
    difficulty: str,
    workers: int | None,
) -> None:
    """Write a SynthTok corpus (mp4 + TikTok item JSON + corpus.json) to OUT."""
    from tkds.synth import generate

    summary = generate(
        out,
        videos,
        seed=seed,
        size=_size(size),
        seconds=_seconds(seconds),
        fps=fps,
        categories=categories,
        photo_share=photo_share,
        media_pool=media_pool,
        near_duplicates=(0.0 if media_pool else 0.02) if near_duplicates is None else near_duplicates,
        difficulty=difficulty,
        workers=workers,
    )
    _print_synth_summary(summary)


def _print_synth_summary(summary) -> None:
    busy = summary.render_s + summary.encode_s
    table = Table(title=f"SynthTok corpus in {summary.out}", show_header=False)
    table.add_row("videos", f"{summary.videos} ({summary.rendered} rendered, {summary.reused} already there)")
    table.add_row("photo posts", f"{summary.photos} of the {summary.videos} (images and a sound, no mp4)")
    if summary.pooled:
        table.add_row("media pool", f"{summary.pooled} files in pool/, every post's media links to one")
    if summary.near_duplicates:
        table.add_row("near duplicates", f"{summary.near_duplicates} (listed in corpus.json)")
    table.add_row("failures", "0")
    table.add_row("wall time", f"{summary.wall_s:.1f} s ({summary.rendered_per_s:.2f} files rendered/s)")
    if busy:
        table.add_row("encode share of worker time", f"{summary.encode_s / busy:.0%}")
    for scope, values in summary.bayes_r2.items():
        table.add_row(f"Bayes R² likes ({scope})", ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    console.print(table)


@cli.command()
@click.option(
    "--corpus", type=click.Path(path_type=Path), required=True, help="A corpus in the collection layout."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="The proxy's port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--ca-out",
    type=click.Path(path_type=Path),
    default=Path("twin-ca.pem"),
    show_default=True,
    help="Where to write the twin's CA certificate, for clients' --ca-cert/--cacert.",
)
@click.option(
    "--faults",
    default="",
    help="Seeded fault rates, e.g. 'rate429=0.05,empty=0.02,reset=0.01'; drop_FIELD=RATE serves items "
    "without stats, author, music, hashtags or media (payload drift).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seed of the fault draws, the feed order and --page-format mixed.",
)
@click.option(
    "--page-format",
    type=click.Choice(["universal", "sigi", "next", "mixed"]),
    default="universal",
    show_default=True,
    help="Which era of embedded page JSON video pages carry; mixed picks one per request.",
)
def twin(corpus: Path, port: int, ca_out: Path, faults: str, seed: int, page_format: str) -> None:
    """Serve a corpus as TikTok: an HTTPS proxy for TikTok's hosts, until Ctrl-C."""
    from tkds.twin import run_forever
    from tkds.twin.corpus import INDEX_NAME

    def ready(twin) -> None:
        videos = len(twin.state.corpus.item_paths)
        console.print(f"[bold]twin:[/] serving {videos} videos from {corpus} as TikTok")
        parsed = twin.state.corpus.parsed
        console.print(f"  index   {parsed} item files parsed, {videos - parsed} read from {INDEX_NAME}")
        console.print(f"  proxy   {twin.proxy_url}")
        console.print(f"  CA      {twin.ca_path}")
        console.print(
            f"  try     curl --proxy {twin.proxy_url} --cacert {twin.ca_path} https://www.tiktok.com/foryou"
        )
        console.print("  Ctrl-C stops it")

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the twin stops
        run_forever(
            corpus,
            port=port,
            ca_out=ca_out,
            faults=faults,
            seed=seed,
            page_format=page_format,
            on_ready=ready,
        )
    console.print("twin: stopped")


@cli.command()
@click.option("--db", type=click.Path(path_type=Path), required=True, help="The DuckDB file to write.")
@click.option("--media", type=click.Path(path_type=Path), default=None, help="Folder for the mp4 files.")
@click.option("--hashtag", multiple=True, help="A hashtag's videos (the # is optional); repeatable.")
@click.option("--user", multiple=True, help="A user's videos, by handle (the @ is optional); repeatable.")
@click.option("--music", multiple=True, help="A sound's id.")
@click.option("--search", multiple=True, help="The videos a search query finds; repeatable.")
@click.option("--trending", is_flag=True, help="The For You feed.")
@click.option(
    "--urls",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="A text file of video URLs, one a line.",
)
@click.option("--limit", default=100, show_default=True, help="Videos per target.")
@click.option(
    "--rate", default=5.0, show_default=True, help="Requests per second per host, shared by all --workers."
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    help="Video pages and media downloads in flight at once, per worker.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Collector processes filling --db together; each of N gets --rate/N and its own Chromium.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where the --workers parts run: this machine, or Ray tasks (pip install 'tkds[ray]').",
)
@click.option("--ray-address", default=None, help="With --engine ray: the cluster to join, e.g. auto.")
@click.option("--proxy", multiple=True, help="A proxy URL, or a file of them to rotate.")
@click.option("--ca-cert", type=click.Path(path_type=Path), default=None, help="The proxy's CA (the twin's).")
@click.option("--cookies", type=click.Path(path_type=Path), default=None, help="A Netscape cookies.txt.")
@click.option("--comments", default=0, show_default=True, help="Comments per video.")
@click.option("--no-media", is_flag=True, help="Metadata only.")
@click.option("--refresh-stats", is_flag=True, help="Re-visit known videos for new stats snapshots.")
@click.option(
    "--detail",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Fetch each video's page: only when its listing item lacks a field (auto), always, or never.",
)
def collect(
    db: Path,
    media: Path | None,
    hashtag: tuple[str, ...],
    user: tuple[str, ...],
    music: tuple[str, ...],
    search: tuple[str, ...],
    trending: bool,
    urls: Path | None,
    limit: int,
    rate: float,
    concurrency: int,
    workers: int,
    engine: str,
    ray_address: str | None,
    proxy: tuple[str, ...],
    ca_cert: Path | None,
    cookies: Path | None,
    comments: int,
    no_media: bool,
    refresh_stats: bool,
    detail: str,
) -> None:
    """Collect TikTok videos, audio and metadata into DuckDB, from TikTok's real URLs."""
    from tkds.collector.collect import collect as run_collect
    from tkds.collector.sources import read_video_urls

    if media is None and not no_media:
        raise TkdsError("pass --media DIR for the mp4 files, or --no-media for metadata only")
    video_urls = read_video_urls(urls) if urls else []
    summary = run_collect(
        db,
        hashtags=list(hashtag),
        users=list(user),
        music=list(music),
        searches=list(search),
        trending=trending,
        urls=video_urls,
        limit=limit,
        media_dir=None if no_media else media,
        rate=rate,
        concurrency=concurrency,
        proxies=list(proxy),
        ca_cert=ca_cert,
        cookies=cookies,
        comments=comments,
        refresh_stats=refresh_stats,
        detail=detail,
        workers=workers,
        engine=engine,
        ray_address=ray_address,
    )
    _print_collect_summary(summary, db, comments)


def _print_collect_summary(summary, db: Path, comments: int) -> None:
    table = Table(title=f"Collected into {db}", show_header=False)
    from tkds.collector.collect import owed_text

    targets = f"{summary.targets_done} done, {len(summary.targets_failed)} failed"
    table.add_row("targets", f"{targets}; owed: {owed_text(summary.targets_owed)}")
    table.add_row("videos", f"{summary.videos_new} new, {summary.videos_updated} updated")
    failures = ", ".join(f"{n} {r}" for r, n in summary.detail_failures.items()) or "none"
    owed = owed_text(summary.videos_owed)
    skipped = f"; {summary.details_skipped} not needed" if summary.details_skipped else ""
    table.add_row("video pages", f"{summary.details_ok} ok; failed: {failures}; owed: {owed}{skipped}")
    media_failures = ", ".join(f"{n} {r}" for r, n in summary.media_failures.items()) or "none"
    photos = (
        f", {summary.photo_posts_ok} of them photo posts ({summary.photo_images} images)"
        if summary.photo_posts_ok
        else ""
    )
    media = f"{summary.media_ok} ok ({summary.media_bytes / 1e6:.1f} MB{photos}); failed: {media_failures}"
    table.add_row("media", f"{media}; owed: {owed_text(summary.media_owed)}")
    table.add_row("yt-dlp fallbacks", f"{summary.media_fallbacks} (play URLs refused or expired)")
    if summary.photo_refetches:
        table.add_row("photo pages re-fetched", f"{summary.photo_refetches} (image or sound URLs expired)")
    by_kind = ", ".join(f"{n} {kind}" for kind, n in summary.requests.by_kind.most_common()) or "none"
    per_video = summary.requests_per_video
    per_video_text = "no videos" if per_video is None else f"{per_video:.3f} per video"
    table.add_row("requests to TikTok", f"{summary.requests.total} ({by_kind}); {per_video_text}")
    if comments:
        table.add_row("comments", str(summary.comments))
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in summary.stage_s.items())
    table.add_row("wall time", f"{summary.wall_s:.1f} s ({stages})")
    detail_s, media_s = summary.stage_s.get("detail", 0), summary.stage_s.get("media", 0)
    throughput = (
        f"{summary.details_ok / detail_s:.1f} video pages/s" if summary.details_ok else "no video pages"
    )
    if media_s:
        throughput += f", {summary.media_bytes / 1e6 / media_s:.1f} MB/s of media"
    table.add_row("throughput", throughput)
    console.print(table)
    _print_warnings(summary.warnings)


def _print_warnings(warnings: list[str]) -> None:
    """Payload drift, one unwrapped yellow line each."""
    from rich.markup import escape

    for line in warnings:
        console.print(f"[yellow]warning[/] {escape(line)}", soft_wrap=True)


@cli.command("import")
@click.option("--db", type=click.Path(path_type=Path), required=True, help="The DuckDB file to write.")
@click.option(
    "--media",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A folder of ID.mp4 files downloaded elsewhere: probed, hashed and recorded for those videos.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A CSV, TSV or Parquet table of TikTok metadata, read as a table whatever its content.",
)
@click.option(
    "--map",
    "mapping",
    default=None,
    help="Table columns as tkds fields, e.g. 'vid_id=video_id,vid_nlike=likes'; "
    "common names are recognised without it.",
)
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
def import_(
    db: Path, media: Path | None, tables: tuple[Path, ...], mapping: str | None, files: tuple[Path, ...]
) -> None:
    """Ingest saved TikTok captures (FILES), other tools' exports and data tables into DuckDB.

    Each file's format is detected from its content: TikTok pages and API JSON, tiktok-scraper,
    Apify, pyktok and Research API exports, and CSV, TSV or Parquet tables.
    """
    from rich.markup import escape

    from tkds.collector.formats.flat import parse_mapping
    from tkds.collector.importer import import_captures

    if not files and not tables:
        raise TkdsError("nothing to import: name capture files, or tables with --table")
    summary = import_captures(
        db, list(files), media=media, tables=list(tables), mapping=parse_mapping(mapping)
    )
    table = Table(title=f"Imported into {db}", show_header=False)
    table.add_row("files", f"{summary.imported} of {summary.files} imported")
    table.add_row("videos", f"{summary.videos_new} new, {summary.videos_updated} updated")
    table.add_row("authors, comments", f"{summary.authors}, {summary.comments}")
    if media is not None:
        table.add_row("media", f"{summary.media_ok} ok, {summary.media_failed} failed")
    table.add_row(
        "failures by reason", ", ".join(f"{n} {r}" for r, n in summary.failures_by_reason.items()) or "0"
    )
    table.add_row(
        "refused (invalid ids)", ", ".join(f"{n} {r}" for r, n in summary.refused.most_common()) or "0"
    )
    table.add_row(
        "wall time", f"{summary.wall_s:.2f} s ({summary.files / max(summary.wall_s, 1e-9):.0f} files/s)"
    )
    console.print(table)
    # One unwrapped line per file, so a path or a column name is never cut.
    for file, report in summary.reports.items():
        held = [f"{n} {what}" for n, what in ((report.videos, "videos"), (report.authors, "authors"),
                                               (report.comments, "comments")) if n]  # fmt: skip
        if report.format and (held or file not in summary.failures):
            notes = "; ".join([", ".join(held) or "nothing", *report.notes])
            console.print(f"{escape(file)}: {escape(report.title)}: {escape(notes)}", soft_wrap=True)
    for file, reason in summary.failures.items():
        console.print(f"[yellow]skipped[/] {escape(file)}: {escape(reason)}", soft_wrap=True)
    for file, refusal in summary.refusals.items():
        if file not in summary.failures:
            console.print(f"[yellow]refused[/] in {escape(file)}: {escape(refusal)}", soft_wrap=True)
    _print_warnings(summary.warnings)
    if summary.files and not summary.imported:
        raise TkdsError(f"none of the {summary.files} files could be imported; see the reasons above")


@cli.command()
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="The collector's DuckDB file.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The dataset folder: one subfolder of shards per split, dataset.json and the dataset card.",
)
@click.option(
    "--split-by",
    type=click.Choice(["author", "time", "random"]),
    default="author",
    show_default=True,
    help="Keep each author in one split, split by posting time, or by a hash of the video id.",
)
@click.option("--ratios", default="0.8,0.1,0.1", show_default=True, help="train,val,test; they sum to 1.")
@click.option("--cut-date", default=None, help="With --split-by time: train is what was posted before it.")
@click.option("--samples-per-shard", default=256, show_default=True, help="Videos per tar file.")
@click.option("--shard-mb", type=float, default=None, help="Fill shards to about this size instead.")
@click.option("--size", default=256, show_default=True, help="Short side in px; 0 keeps the source files.")
@click.option("--fps", default=15.0, show_default=True, help="Frame rate of the transcoded videos.")
@click.option("--seed", default=0, show_default=True, help="Salt of the split hash.")
@click.option(
    "--where", default=None, help='A SQL condition on the videos, as `v`, e.g. "v.duration_s < 60".'
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Per-video labels: a SynthTok corpus.json, or a CSV with an id column.",
)
@click.option(
    "--kind",
    type=click.Choice(["video", "photo", "all"]),
    default="all",
    show_default=True,
    help="What to package: videos, photo posts (as slideshows) or both.",
)
@click.option("--workers", default=None, type=int, help="Parallel ffmpeg processes; default: all cores.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where transcodes run: this machine, or Ray tasks (pip install 'tkds[ray]').",
)
@click.option("--ray-address", default=None, help="With --engine ray: the cluster to join, e.g. auto.")
@click.option("--verify", is_flag=True, help="Only re-hash the shards in --out against their manifest.")
def shard(
    db: Path | None,
    out: Path,
    split_by: str,
    ratios: str,
    cut_date: str | None,
    samples_per_shard: int,
    shard_mb: float | None,
    size: int,
    fps: float,
    seed: int,
    where: str | None,
    labels: Path | None,
    kind: str,
    workers: int | None,
    engine: str,
    ray_address: str | None,
    verify: bool,
) -> None:
    """Package collected videos as WebDataset shards with leak-free splits, an index and a dataset card."""
    from tkds.dataset.build import ShardParams, build_shards, verify_shards
    from tkds.dataset.split import parse_ratios

    if verify:
        problems = verify_shards(out)
        for problem in problems:
            console.print(f"[red]bad[/] {problem}")
        if problems:
            raise TkdsError(
                f"{len(problems)} shard(s) in {out} do not match dataset.json; rebuild them with tkds shard"
            )
        console.print(f"all shards in {out} match dataset.json")
        return
    if db is None:
        raise click.UsageError("--db is required unless --verify")
    params = ShardParams(
        split_by=split_by, ratios=parse_ratios(ratios), cut_date=cut_date, seed=seed,
        samples_per_shard=samples_per_shard, shard_mb=shard_mb, size=size, fps=fps, where=where,
        labels=str(labels.resolve()) if labels else None, kind=kind,
    )  # fmt: skip
    summary = build_shards(db, out, params, workers=workers, engine=engine, ray_address=ray_address)
    _print_shard_summary(summary, out)


def _print_shard_summary(summary, out: Path) -> None:
    from rich.markup import escape

    table = Table(title=f"Shards in {out}", show_header=False)
    table.add_row("selected", str(summary.selected))
    table.add_row("duplicates removed", str(summary.duplicates))
    table.add_row(
        "failures by reason", ", ".join(f"{n} {r}" for r, n in summary.failures_by_reason.items()) or "0"
    )
    table.add_row("samples", ", ".join(f"{split} {n}" for split, n in summary.samples.items()))
    table.add_row(
        "shards", f"{summary.shards} ({summary.shards_reused} reused), {summary.bytes / 1e6:.1f} MB"
    )
    rate = summary.prepared / summary.prepare_s if summary.prepare_s else 0
    table.add_row("wall time", f"{summary.wall_s:.1f} s (prepare {rate:.1f} videos/s)")
    console.print(table)
    for video_id, reason in sorted(summary.failures.items()):
        console.print(f"[yellow]skipped[/] video {video_id}: {escape(reason)}")
    for reason in summary.refused:
        console.print(f"[yellow]refused[/] {escape(reason)}")


@cli.command()
@click.option(
    "--shards",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="A dataset folder written by tkds shard.",
)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="The run folder."
)
@click.option(
    "--methods",
    default="random,simclr,av-simclr,metadata-only,sound-id",
    show_default=True,
    help="Comma-separated: random, simclr, av-simclr, moco, vicreg, supervised, metadata-only, sound-id, "
    "or a plug-in: package.module:Class or a tkds.methods entry point (docs/plugins.md).",
)
@click.option(
    "--preset",
    type=_RegistryChoice(_preset_names),
    default="cpu-tiny",
    show_default=True,
    help="The training recipe: backbones, clip, batch and epochs (see tkds.models).",
)
@click.option(
    "--seeds", default=3, show_default=True, help="Seeds per method (1 to 100); rows show mean ± std."
)
@click.option(
    "--tasks",
    default=None,
    help="Comma-separated: classification, retrieval, originality, likes, hashtags, or a plug-in "
    "(package.module:Name, a tkds.tasks entry point; docs/plugins.md); default: the five built-ins.",
)
@click.option("--label", default=None, help="The label column; default: the dataset's (category or target).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N; default: cuda when there is one.")
@click.option(
    "--embeddings",
    multiple=True,
    metavar="NAME=PATH",
    help="Embeddings computed elsewhere, scored on every task as the row NAME: a parquet (key or id, "
    "video and/or audio list columns, as tkds embed writes) or an npz (id, video and/or audio 2-D "
    "arrays) with one row per video of every split. Repeatable.",
)
def bench(
    shards: Path, out: Path, methods: str, preset: str, seeds: int, tasks: str | None, label: str | None,
    device: str | None, embeddings: tuple[str, ...],
) -> None:  # fmt: skip
    """Train the methods on the shards, score them and any --embeddings on the tasks, then rank them."""
    from tkds.benchmarks.run import bench as run_bench

    summary = run_bench(
        shards, out, tuple(m.strip() for m in methods.split(",") if m.strip()), preset, seeds,
        tuple(t.strip() for t in tasks.split(",")) if tasks else None, label, device, embeddings=embeddings,
    )  # fmt: skip
    _print_bench_summary(summary, out)


def _print_bench_summary(summary, out: Path) -> None:
    table = Table(title=f"Bench run in {out}", show_header=False)
    table.add_row("done", f"{len(summary.done)} new, {len(summary.reused)} reused")
    table.add_row("failed", ", ".join(f"{cell}: {reason}" for cell, reason in summary.failed.items()) or "0")
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in summary.stage_s.items())
    table.add_row("wall time", f"{summary.wall_s:.0f} s ({stages or 'all reused'})")
    if summary.warnings:
        table.add_row("library warnings", f"{summary.warnings}, in {out}/METHOD/seedK/warnings.log")
    table.add_row("leaderboard", f"{out / 'leaderboard.html'} (open it in a browser), .md, .json")
    console.print(table)
    _print_headline(out)


def _print_headline(out: Path) -> None:
    """The headline metric of each task per row, from the run's leaderboard.json."""
    from tkds.benchmarks.leaderboard import summary_table

    board = json.loads((out / "leaderboard.json").read_text())
    header, body = summary_table(board["rows"])
    seeds = max((row.get("seeds", 0) for row in board["rows"]), default=0)
    table = Table(
        title=f"Headline metrics (test split, mean over {seeds} seeds ± std, or [95 % interval] where "
        "cells saved per-video outputs), ranked by normalised score: (score − floor) / (ceiling − floor), "
        "averaged over the tasks where it is defined"
    )
    table.add_column(header[0])
    for name in header[1:]:
        table.add_column(name.replace(": ", "\n"), justify="right")
    for cells in body:
        table.add_row(*cells)
    console.print(table)


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="The folder for every stage's output; a re-run reuses what is there.",
)
@click.option("--tiny", is_flag=True, help="A minutes-scale version (96 two-second videos), as CI runs it.")
def demo(out: Path, tiny: bool) -> None:
    """The embedded default: SynthTok → the twin → collect → shard → bench cpu-tiny → leaderboard."""
    from tkds.benchmarks.demo import FULL, TINY, run_demo
    from tkds.collector.store import Store

    def report(stage: str, summary) -> None:
        if stage == "synth":
            _print_synth_summary(summary)
        elif stage == "collect":
            _print_collect_summary(summary, out / "tk.duckdb", 0)
        elif stage == "shard":
            _print_shard_summary(summary, out / "shards")
        else:
            _print_bench_summary(summary, out / "run")

    result = run_demo(out, TINY if tiny else FULL, report)
    with Store.open(out / "tk.duckdb") as store:
        rows = store.likes_per_follower_by_tag(limit=5)
    answer = Table(title="Likes per follower by hashtag (SQL on the DuckDB file)")
    for column in ("hashtag", "videos", "likes per follower"):
        answer.add_column(column)
    for tag, count, ratio in rows:
        answer.add_row(f"#{tag}", str(count), f"{ratio:.3f}")
    console.print(answer)
    stages = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.stage_s.items())
    console.print(f"Stages: {stages}")
    console.print(
        f"Files: {out / 'tk.duckdb'} (DuckDB), {out / 'shards'} (WebDataset), "
        f"{out / 'run' / 'leaderboard.html'} (open it in a browser), {result.results} (the headline "
        f"figures). Serve it: tkds serve --run {out / 'run'}"
    )


@cli.command()
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="A bench run folder.")
@click.option("--method", default=None, help="The method to serve; default: the run's best learned one.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="The port to listen on."
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="The address to listen on; 0.0.0.0 for all."
)
@click.option("--max-upload-mb", default=200, show_default=True, help="Larger uploads are refused (413).")
@click.option("--proxy", default=None, help="A proxy URL for fetching TikTok video URLs (e.g. the twin's).")
@click.option("--ca-cert", type=click.Path(path_type=Path), default=None, help="The proxy's CA (the twin's).")
def serve(
    run_dir: Path, method: str | None, port: int, host: str, max_upload_mb: int, proxy: str | None,
    ca_cert: Path | None,
) -> None:  # fmt: skip
    """Serve a page and a JSON API that predict likes, hashtags, similar videos and originality of a video."""
    import socket

    import uvicorn

    from tkds.serve.app import create_app
    from tkds.serve.predictor import Predictor

    if ca_cert is not None and not ca_cert.is_file():
        raise TkdsError(f"--ca-cert {ca_cert} does not exist; the twin writes it with --ca-out")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise TkdsError(
                f"cannot listen on {host}:{port} ({error.strerror}); choose another --port"
            ) from None
    predictor = Predictor.load(run_dir, method)
    console.print(
        f"[bold]serve:[/] {predictor.method} from {run_dir}, {len(predictor.keys)} corpus videos, "
        f"loaded in {predictor.load_s:.1f} s"
    )
    console.print(f"  page    http://{host}:{port}/")
    console.print(f"  API     POST http://{host}:{port}/api/predict, described at /openapi.json")
    console.print("  Ctrl-C stops it")
    app = create_app(predictor, max_upload_mb, proxy, ca_cert)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    console.print("serve: stopped")


@cli.command()
@click.option(
    "--shards",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="A dataset folder written by tkds shard; its train split is read.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The run folder: checkpoint.pt and train.jsonl; a re-run resumes it, or reuses it once finished.",
)
@click.option(
    "--method",
    required=True,
    help="The method: random, simclr, av-simclr, moco, vicreg, supervised, or a plug-in "
    "(package.module:Class, a tkds.methods entry point; docs/plugins.md).",
)
@click.option(
    "--preset",
    type=_RegistryChoice(_preset_names),
    default="cpu-tiny",
    show_default=True,
    help="The training recipe: backbones, clip, batch and epochs (see tkds.models).",
)
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the initialisation, order and augmentations."
)
@click.option("--device", default=None, help="cpu, cuda or cuda:N; default: cuda when there is one.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in all; resume later.")
def train(
    shards: Path, out: Path, method: str, preset: str, seed: int, device: str | None, max_steps: int | None
) -> None:
    """Train one method on the shards, as a tkds bench cell does; also under torchrun --no-python."""
    import time

    from tkds.models.train import train as run_train

    started = time.perf_counter()
    result = run_train(shards, out, method, preset, seed=seed, device=device, max_steps=max_steps)
    if int(os.environ.get("RANK", "0")):
        return  # under torchrun, rank 0 reports
    state = "finished" if result.finished else f"stopped at step {result.step}; re-run to resume"
    how = "reused (it had finished)" if result.reused else ("resumed" if result.resumed else "new")
    table = Table(title=f"Trained {result.method} in {out}", show_header=False)
    table.add_row("method", f"{result.method} ({result.preset} preset, config {result.config_hash[:12]})")
    table.add_row("seed", str(result.seed))
    table.add_row("steps", f"{result.step} of {result.total_steps}, {state}")
    table.add_row("run", how)
    loss = "none" if result.last_loss is None else f"{result.last_loss:.4f}"
    table.add_row("last loss", loss)
    table.add_row("checkpoint", str(result.checkpoint))
    wall = time.perf_counter() - started
    trained = f"{result.train_seconds:.1f} s training in all, on {result.device}"
    table.add_row("wall time", f"{wall:.1f} s ({trained})")
    console.print(table)


@cli.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="A checkpoint.pt written by tkds train or tkds bench.",
)
@click.option(
    "--shards", type=click.Path(path_type=Path, file_okay=False), required=True, help="A tkds shard folder."
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default="test",
    show_default=True,
    help="The split whose videos are embedded.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The parquet file to write; an existing one is refused.",
)
@click.option("--clips", default=4, show_default=True, help="Evenly spaced clips averaged per video.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N; default: cuda when there is one.")
def embed(checkpoint: Path, shards: Path, split: str, out: Path, clips: int, device: str | None) -> None:
    """Write one row per video of a split (id, metadata, video and audio embeddings) to a parquet file."""
    from tkds.models.embed import write_embeddings

    summary = write_embeddings(checkpoint, shards, split, out, clips=clips, device=device)
    widths = f"video {summary.video_dim}" + (f", audio {summary.audio_dim}" if summary.audio_dim else "")
    table = Table(title=f"Embeddings in {out}", show_header=False)
    table.add_row("method", summary.method)
    table.add_row("rows", f"{summary.rows} videos of the {split} split")
    table.add_row("widths", widths)
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="tkds", standalone_mode=False)
    except TkdsError as error:
        click.echo(f"tkds: error: {error}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("tkds: interrupted; re-run the same command to resume", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"tkds: error: {error.format_message()} (see --help)", err=True)
        sys.exit(error.exit_code)
    except OSError as error:
        # A disk that fills or a folder that vanishes in a stage that did not name it more precisely.
        where = f" ({error.filename})" if error.filename else ""
        click.echo(f"tkds: error: {error.strerror or error}{where}; fix it, then re-run to resume", err=True)
        sys.exit(1)
    except RecursionError:
        click.echo("tkds: error: an input is nested too deeply to read; remove it and re-run", err=True)
        sys.exit(1)
    except Exception as error:  # the last guard: a user never sees a traceback
        log = "nowhere (the temp folder is not writable)"
        with contextlib.suppress(OSError):  # a new 0600 file: never through another user's link
            handle, log = tempfile.mkstemp(prefix="tkds-crash-", suffix=".log")
            with os.fdopen(handle, "w") as file:
                file.write(traceback.format_exc())
        click.echo(
            f"tkds: internal error: {type(error).__name__}; details in {log}; please report it", err=True
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
