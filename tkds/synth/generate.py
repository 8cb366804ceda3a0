"""Writes a SynthTok corpus in the collection layout: media/ID.mp4, items/ID.json, then corpus.json.

Photo posts (a share of the posts, `photo_share`) get images/ID/NN.jpeg instead of an mp4, and their
sound's audio as sounds/MUSIC_ID.mp3.

Every file is written under a temporary name and renamed, and `corpus.json` comes last, so a killed
run never looks complete; re-running the same command renders only what is missing.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

import tkds
from tkds.console import progress_bar
from tkds.errors import TkdsError
from tkds.files import write_json
from tkds.synth.audio import render_soundtrack
from tkds.synth.encode import encode_jpeg, encode_mp3, encode_mp4
from tkds.synth.factors import (
    CAPTION_WORDS,
    FORMULA,
    GENERIC_TAGS,
    LIKES_MODEL,
    VISUAL_PARAMS,
    VISUAL_SCATTER,
    Author,
    Sound,
    SynthConfig,
    VideoDraws,
    World,
    bayes_r2,
    build_world,
    draw_videos,
    likes_terms,
    make_sound,
)
from tkds.synth.items import AuthorCounts, Counts, build_item
from tkds.synth.visuals import VisualSpec, render_frames

CORPUS_FILE = "corpus.json"
CONFIG_FILE = ".synthtok-config.json"
REGIONS = ("US", "GB", "DE", "BR", "ID", "TH", "VN", "FR")
PHOTO_IMAGES = (2, 6)  # images per photo post, both ends included
# Photo aspect ratios (height / width): TikTok's photo mode is mostly 3:4 and 9:16 portraits.
PHOTO_ASPECTS = (4 / 3, 16 / 9)
PHOTO_MIXED_ASPECT_PROB = 0.2  # an image of a post in the post's other aspect, as real posts mix


@dataclass(frozen=True)
class VideoJob:
    """Everything a worker needs to render and encode one post: a pure function of this.

    A video post has an mp4; a photo post has `images` (one single-frame spec per image) instead.
    """

    index: int
    video_id: str
    mp4: Path
    visual: VisualSpec
    sound: Sound
    seconds: float
    sample_rate: int
    offset_s: float
    snr_db: float
    audio_seed: int
    images: tuple[VisualSpec, ...] = ()

    @property
    def is_photo(self) -> bool:
        return bool(self.images)

    @property
    def outputs(self) -> list[Path]:
        if not self.is_photo:
            return [self.mp4]
        folder = self.mp4.parent.parent / "images" / self.video_id
        return [folder / f"{position:02d}.jpeg" for position in range(len(self.images))]


@dataclass(frozen=True)
class SoundJob:
    """A sound's own audio, for the photo posts that use it: its whole length, as an MP3."""

    sound: Sound
    mp3: Path
    sample_rate: int
    snr_db: float
    audio_seed: int


@dataclass(frozen=True)
class VideoResult:
    name: str  # "video <id>", "photo post <id>" or "sound <id>"
    render_s: float = 0.0
    encode_s: float = 0.0
    error: str | None = None


@dataclass
class SynthSummary:
    out: Path
    videos: int
    rendered: int
    reused: int
    wall_s: float = 0.0
    render_s: float = 0.0
    encode_s: float = 0.0
    bayes_r2: dict = field(default_factory=dict)
    photos: int = 0  # of `videos`, how many are photo posts

    @property
    def videos_per_s(self) -> float:
        return self.rendered / self.wall_s if self.wall_s else 0.0


def render_media(job: VideoJob) -> tuple[np.ndarray, np.ndarray]:
    """The frames (T, H, W, 3) uint8 and the mono float32 soundtrack of one video."""
    audio_rng = np.random.default_rng(job.audio_seed)
    soundtrack = render_soundtrack(
        job.sound, job.seconds, job.sample_rate, job.offset_s, job.snr_db, audio_rng
    )
    return render_frames(job.visual), soundtrack


def render_photos(job: VideoJob) -> list[np.ndarray]:
    """The still images (H, W, 3) uint8 of one photo post, in slideshow order."""
    return [render_frames(spec)[0] for spec in job.images]


def render_video(job: VideoJob) -> VideoResult:
    """Render frames and soundtrack (or a photo post's images), then encode; failures are returned."""
    name = f"photo post {job.video_id}" if job.is_photo else f"video {job.video_id}"
    try:
        start = time.perf_counter()
        if job.is_photo:
            images = render_photos(job)
            rendered = time.perf_counter()
            job.outputs[0].parent.mkdir(parents=True, exist_ok=True)
            for image, path in zip(images, job.outputs, strict=True):
                encode_jpeg(image, path)
        else:
            frames, audio = render_media(job)
            rendered = time.perf_counter()
            encode_mp4(frames, audio, job.sample_rate, job.visual.fps, job.mp4)
        return VideoResult(name, rendered - start, time.perf_counter() - rendered)
    except TkdsError as error:
        return VideoResult(name, error=str(error))
    except Exception as error:  # reported per post, with its id, by the caller
        return VideoResult(name, error=f"{type(error).__name__}: {error}")


def render_sound(job: SoundJob) -> VideoResult:
    """A sound's MP3: its melody over voice, rendered as a video's soundtrack is, from second 0."""
    name = f"sound {job.sound.id}"
    try:
        start = time.perf_counter()
        rng = np.random.default_rng(job.audio_seed)
        audio = render_soundtrack(job.sound, job.sound.duration_s, job.sample_rate, 0.0, job.snr_db, rng)
        rendered = time.perf_counter()
        encode_mp3(audio, job.sample_rate, job.mp3)
        return VideoResult(name, rendered - start, time.perf_counter() - rendered)
    except TkdsError as error:
        return VideoResult(name, error=str(error))
    except Exception as error:
        return VideoResult(name, error=f"{type(error).__name__}: {error}")


def _seed_int(*key: int) -> int:
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


@dataclass
class CorpusPlan:
    """The corpus decided in full before any pixel is drawn."""

    world: World
    draws: VideoDraws
    ids: list[str]
    sounds: list[Sound]  # per video, original sounds included
    captions: list[str]
    tags: list[list[str]]
    counts: list[Counts]
    likes_terms: dict[str, np.ndarray]
    jobs: list[VideoJob]
    sound_jobs: list[SoundJob] = field(default_factory=list)

    @property
    def photos(self) -> int:
        return sum(job.is_photo for job in self.jobs)


def plan_corpus(config: SynthConfig, out: Path) -> CorpusPlan:
    world = build_world(config)
    draws = draw_videos(world, config.videos, np.random.default_rng(np.random.SeedSequence([config.seed, 4])))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 5]))
    terms = likes_terms(world, draws)
    log_likes = sum(terms.values())
    # Its own stream, so a post's kind changes no other draw: a video stays byte-identical.
    is_photo = np.random.default_rng(np.random.SeedSequence([config.seed, 10])).random(config.videos)
    is_photo = is_photo < config.photo_share

    ids, sounds, captions, tags, counts, jobs = [], [], [], [], [], []
    used_ids: set[str] = set()
    original_weight = min(s.weight for s in world.sounds)  # once: the catalogue grows with the corpus
    for i in range(config.videos):
        category = world.categories[draws.category[i]]
        author = world.authors[draws.author[i]]
        created = int(draws.create_time[i])
        while True:  # ids embed the creation second; redraw the low bits on a collision
            video_id = str((created << 32) | int(rng.integers(0, 2**32)))
            if video_id not in used_ids:
                used_ids.add(video_id)
                break
        if draws.sound[i] >= 0:
            sound = world.sounds[draws.sound[i]]
        else:
            sound = make_sound(
                np.random.default_rng(_seed_int(config.seed, 8, i)),
                config,
                category.index,
                original_weight,
                original=True,
                artist=author.unique_id,
                created=created,
            )
        caption = " ".join(rng.choice(CAPTION_WORDS, int(rng.integers(2, 7))))
        video_tags = list(
            rng.choice(category.tags, int(rng.integers(1, 4)), replace=False, p=_zipf(category.tags))
        )
        if not sound.original and rng.random() < 0.4:
            video_tags.append(sound.challenge_tag)
        video_tags += [tag for tag, p in GENERIC_TAGS if rng.random() < p]
        if rng.random() < 0.1:
            video_tags.append(f"{category.name}{rng.choice(CAPTION_WORDS)}{int(rng.integers(0, 100))}")
        video_tags = list(dict.fromkeys(video_tags))

        likes = max(0, round(math.expm1(log_likes[i])))
        shares = int(likes * math.exp(rng.normal(-3.5, 0.7)))
        counts.append(
            Counts(
                likes=likes,
                plays=int(likes * math.exp(rng.normal(2.3, 0.4))) + int(rng.integers(50, 500)),
                comments=int(likes * math.exp(rng.normal(-4.0, 0.6))),
                shares=shares,
                collects=int(likes * math.exp(rng.normal(-3.0, 0.6))),
                reposts=int(shares * math.exp(rng.normal(-2.0, 0.5))),
            )
        )
        deviation = draws.deviation[i] * VISUAL_SCATTER
        hue, saturation, size, speed, count = category.prototype
        frames = int(draws.frames[i])
        visual = VisualSpec(
            width=config.width,
            height=config.height,
            fps=config.fps,
            frames=frames,
            shape=category.shape,
            motion=category.motion,
            hue=hue + author.style_hue + deviation[0],
            saturation=float(np.clip(saturation + deviation[1], 0.2, 1.0)),
            size=float(np.clip(size * (1 + deviation[2]), 0.04, 0.45)),
            speed=float(np.clip(speed * (1 + deviation[3]), 0.05, 2.0)),
            count=int(np.clip(round(count + deviation[4]), 1, 8)),
            background=author.background,
            background_hues=author.background_hues,
            overlay_text=" ".join(caption.split()[:3]),
            overlay_top=author.overlay_top,
            noise_level=author.noise_level,
            seed=_seed_int(config.seed, 6, i),
        )
        jobs.append(
            VideoJob(
                index=i,
                video_id=video_id,
                mp4=out / "media" / f"{video_id}.mp4",
                visual=visual,
                sound=sound,
                seconds=frames / config.fps,
                sample_rate=config.sample_rate,
                offset_s=float(rng.uniform(0, 30)),
                snr_db=float(rng.uniform(-5, 5) if sound.original else rng.uniform(0, 20)),
                audio_seed=_seed_int(config.seed, 7, i),
                images=_photo_specs(visual, config, i) if is_photo[i] else (),
            )
        )
        ids.append(video_id)
        sounds.append(sound)
        captions.append(caption)
        tags.append(video_tags)
    sound_jobs: dict[str, SoundJob] = {}
    for job in jobs:  # the first photo post on a sound decides its voice level
        if job.is_photo and job.sound.id not in sound_jobs:
            sound_jobs[job.sound.id] = SoundJob(
                sound=job.sound,
                mp3=out / "sounds" / f"{job.sound.id}.mp3",
                sample_rate=config.sample_rate,
                snr_db=job.snr_db,
                audio_seed=job.audio_seed,
            )
    return CorpusPlan(
        world, draws, ids, sounds, captions, tags, counts, terms, jobs, list(sound_jobs.values())
    )


def _photo_specs(visual: VisualSpec, config: SynthConfig, index: int) -> tuple[VisualSpec, ...]:
    """A photo post's images: stills of the post's own visual grammar, portrait, each its own layout."""
    rng = np.random.default_rng(_seed_int(config.seed, 10, index))
    count = int(rng.integers(PHOTO_IMAGES[0], PHOTO_IMAGES[1] + 1))
    aspect = int(rng.integers(0, len(PHOTO_ASPECTS)))
    specs = []
    for position in range(count):
        this = aspect if rng.random() >= PHOTO_MIXED_ASPECT_PROB else 1 - aspect
        height = 2 * round(config.width * PHOTO_ASPECTS[this] / 2)  # even, like TikTok's sizes
        specs.append(
            replace(
                visual,
                height=height,
                frames=1,
                overlay_text=visual.overlay_text if position == 0 else "",
                seed=_seed_int(config.seed, 11, index, position),
            )
        )
    return tuple(specs)


def _zipf(values: tuple[str, ...]) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(values) + 1)
    return weights / weights.sum()


def _prepare_out(config: SynthConfig, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TkdsError(f"{out} is a file, not a directory; choose another OUT")
    if (out / CORPUS_FILE).exists():
        raise TkdsError(f"{out} already holds a complete SynthTok corpus; choose another OUT or delete it")
    try:
        (out / "media").mkdir(parents=True, exist_ok=True)
        (out / "items").mkdir(exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TkdsError(f"cannot write to {out} ({error.strerror}); choose a writable OUT") from error
    for stale in [*out.glob("*/*.partial"), *out.glob("images/*/*.partial")]:
        stale.unlink()  # left by a killed run; the file is rendered again
    wanted = asdict(config)
    wanted["seconds"] = list(config.seconds)
    config_path = out / CONFIG_FILE
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != wanted:
            changed = sorted(k for k in wanted if previous.get(k) != wanted[k])
            raise TkdsError(
                f"{out} holds a partial corpus made with other arguments ({', '.join(changed)}); "
                "re-run with the same arguments to resume, or delete it"
            )
    else:
        write_json(config_path, wanted)


def generate(
    out: str | Path,
    videos: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (144, 256),
    seconds: tuple[float, float] = (5.0, 7.0),
    fps: int = 15,
    categories: int = 8,
    photo_share: float = 0.0,
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write a SynthTok corpus of `videos` posts to `out`, about `photo_share` of them photo posts.

    A partial corpus left by a killed run with the same arguments is resumed, not redone.
    """
    config = SynthConfig(
        videos=videos,
        seed=seed,
        width=size[0],
        height=size[1],
        seconds=(float(seconds[0]), float(seconds[1])),
        fps=fps,
        categories=categories,
        photo_share=float(photo_share),
    )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise TkdsError(f"--workers must be a whole number of at least 1 (got {workers!r})")
    out = Path(out)
    _prepare_out(config, out)
    started = time.perf_counter()
    plan = plan_corpus(config, out)
    todo = [job for job in plan.jobs if not all(path.exists() for path in job.outputs)]
    if plan.sound_jobs:
        (out / "sounds").mkdir(exist_ok=True)
    sounds_todo = [job for job in plan.sound_jobs if not job.mp3.exists()]
    summary = SynthSummary(out=out, videos=videos, rendered=0, reused=videos - len(todo), photos=plan.photos)

    errors: dict[str, str] = {}
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    with (
        progress_bar("synth: rendering", len(todo) + len(sounds_todo), enabled=progress) as bar,
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        pending: set[Future] = set()
        try:
            work = [(render_video, job) for job in todo] + [(render_sound, job) for job in sounds_todo]
            for render, job in work:  # keep the queue short so Ctrl-C stops promptly
                pending.add(pool.submit(render, job))
                if len(pending) >= 4 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _collect(done, summary, errors, bar)
            _collect(wait(pending).done, summary, errors, bar)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    if errors:
        reasons = Counter(reason.rsplit(": ", 1)[-1] for reason in errors.values())
        first_name, first_reason = next(iter(errors.items()))
        by_reason = ", ".join(f"{n}x {reason}" for reason, n in reasons.items())
        total = videos + len(plan.sound_jobs)
        raise TkdsError(
            f"{len(errors)} of {total} files failed ({by_reason}); "
            f"first: {first_name}: {first_reason}; fix the cause and re-run to resume"
        )

    _write_items(plan, config, out)
    summary.bayes_r2 = bayes_r2(plan.world, plan.draws)
    write_json(out / CORPUS_FILE, _corpus_card(plan, config, summary.bayes_r2), indent=1)
    summary.wall_s = time.perf_counter() - started
    return summary


def _collect(done: set[Future], summary: SynthSummary, errors: dict[int, str], bar) -> None:
    for future in done:
        result: VideoResult = future.result()
        if result.error:
            errors[result.name] = result.error
        elif not result.name.startswith("sound "):
            summary.rendered += 1
            summary.render_s += result.render_s
            summary.encode_s += result.encode_s
        bar.advance(0)


def _author_counts(plan: CorpusPlan) -> dict[int, AuthorCounts]:
    rng = np.random.default_rng(np.random.SeedSequence([plan.world.config.seed, 9]))
    result = {}
    for a, author in enumerate(plan.world.authors):
        mine = np.flatnonzero(plan.draws.author == a)
        result[a] = AuthorCounts(
            followers=author.followers,
            following=author.following,
            hearts=sum(plan.counts[i].likes for i in mine) + int(author.followers * rng.uniform(2, 10)),
            videos=len(mine) + int(rng.integers(0, 200)),
            diggs=int(rng.integers(0, 20_000)),
        )
    return result


def _region(author: Author) -> str:
    return REGIONS[int(author.id) % len(REGIONS)]


def _write_items(plan: CorpusPlan, config: SynthConfig, out: Path) -> None:
    author_counts = _author_counts(plan)
    for i, job in enumerate(plan.jobs):
        author_index = int(plan.draws.author[i])
        author = plan.world.authors[author_index]
        item = build_item(
            video_id=job.video_id,
            caption=plan.captions[i],
            tags=plan.tags[i],
            create_time=int(plan.draws.create_time[i]),
            width=config.width,
            height=config.height,
            duration_s=job.seconds,
            bitrate=0 if job.is_photo else int(job.mp4.stat().st_size * 8 / job.seconds),
            author=author,
            author_counts=author_counts[author_index],
            sound=plan.sounds[i],
            counts=plan.counts[i],
            region=_region(author),
            observed_at=config.observed_at,
            image_sizes=[(spec.width, spec.height) for spec in job.images] or None,
        )
        write_json(out / "items" / f"{job.video_id}.json", item)


def _media_facts(job: VideoJob) -> dict:
    if job.is_photo:  # no frames: its length is the slideshow's, which the viewer decides
        return {"frames": 0, "duration_s": 0.0, "images": [[s.width, s.height] for s in job.images]}
    return {"frames": job.visual.frames, "duration_s": round(job.seconds, 6)}


def _corpus_card(plan: CorpusPlan, config: SynthConfig, r2: dict) -> dict:
    world, draws = plan.world, plan.draws
    originality = draws.originality
    uses = Counter(sound.id for sound in plan.sounds)
    sounds = {sound.id: sound for sound in plan.sounds}
    for sound in world.sounds:
        sounds.setdefault(sound.id, sound)
    return {
        "format": "synthtok",
        "format_version": 1,
        "tkds_version": tkds.__version__,
        "config": {**asdict(config), "seconds": list(config.seconds)},
        "layout": {
            "media": "media/{id}.mp4",
            "items": "items/{id}.json",
            "images": "images/{id}/{position:02d}.jpeg",
            "sounds": "sounds/{music_id}.mp3",
        },
        "photos": plan.photos,
        "likes_model": {"formula": FORMULA, **LIKES_MODEL},
        "bayes_r2": r2,
        "categories": [
            {
                "index": c.index,
                "name": c.name,
                "visual_pair": c.pair,
                "shape": c.shape,
                "motion": c.motion,
                "prototype": dict(zip(VISUAL_PARAMS, c.prototype, strict=True)),
                "timbre_family": c.timbre,
                "tags": list(c.tags),
                "likes_effect": round(c.likes_effect, 6),
            }
            for c in world.categories
        ],
        "authors": [
            {
                "id": a.id,
                "unique_id": a.unique_id,
                "followers": a.followers,
                "skill": round(a.skill, 6),
                "preferences": [round(p, 6) for p in a.preferences],
                "style_hue": round(a.style_hue, 4),
                "background": a.background,
                "region": _region(a),
            }
            for a in world.authors
        ],
        "sounds": [
            {
                "id": s.id,
                "title": s.title,
                "home_category": s.home_category,
                "original": s.original,
                "popularity_weight": s.weight,
                "tempo_bpm": round(s.tempo_bpm, 3),
                "root_midi": s.root_midi,
                "uses": uses.get(s.id, 0),
            }
            for s in sounds.values()
        ],
        "videos": [
            {
                "id": job.video_id,
                "author_id": world.authors[draws.author[i]].id,
                "category": int(draws.category[i]),
                "category_name": world.categories[draws.category[i]].name,
                "sound_id": plan.sounds[i].id,
                "original_sound": plan.sounds[i].original,
                "originality": round(float(originality[i]), 6),
                "is_outlier": bool(draws.outlier[i]),
                "visual": {
                    "hue": round(job.visual.hue % 360, 4),
                    "saturation": round(job.visual.saturation, 4),
                    "size": round(job.visual.size, 4),
                    "speed": round(job.visual.speed, 4),
                    "count": job.visual.count,
                },
                "snr_db": round(job.snr_db, 3),
                "create_time": int(draws.create_time[i]),
                "kind": "photo" if job.is_photo else "video",
                **_media_facts(job),
                "hashtags": plan.tags[i],
                "likes": plan.counts[i].likes,
                "log1p_likes": round(math.log1p(plan.counts[i].likes), 6),
                "likes_terms": {k: round(float(v[i]), 6) for k, v in plan.likes_terms.items()},
            }
            for i, job in enumerate(plan.jobs)
        ],
    }
