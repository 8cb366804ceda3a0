"""Writes a SynthTok corpus in the collection layout: media/ID.mp4, items/ID.json, then corpus.json.

Photo posts (a share of the posts, `photo_share`) get images/ID/NN.jpeg instead of an mp4, and their
sound's audio as sounds/MUSIC_ID.mp3.

With a media pool (`media_pool` K), only K clips are rendered, to pool/NNNN.mp4, and every media/ID.mp4
is a relative link to one of them; a photo post's images and sound link to pooled stills and sounds
in the same way. Near duplicates (`near_duplicates`) are posts whose frames derive from an earlier
video's (`tkds.synth.duplicates`).

Every file is written under a temporary name and renamed, and `corpus.json` comes last, so a killed
run never looks complete; re-running the same command renders only what is missing.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import tkds
from tkds.console import progress_bar
from tkds.errors import TkdsError
from tkds.files import atomic_text, write_json
from tkds.pools import spawn_pool
from tkds.synth.audio import render_soundtrack
from tkds.synth.duplicates import KINDS, SOURCE_BACKDROPS, Variant, apply_variant, plan_variant
from tkds.synth.encode import DEFAULT_CRF, encode_jpeg, encode_mp3, encode_mp4
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
POOL_NOTE = (
    "byte-identical pooled clips: for the metadata path and media throughput, not for learning or dedupe"
)


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
    variant: Variant | None = None  # a near duplicate: its frames are `visual`'s, changed by this
    crf: int = DEFAULT_CRF  # the mp4's x264 quality (the difficulty's compression)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the mp4's frames."""
        if self.variant and self.variant.size:
            return self.variant.size
        return self.visual.width, self.visual.height

    @property
    def is_photo(self) -> bool:
        return bool(self.images)

    @property
    def encode_crf(self) -> int:
        """The CRF its mp4 is encoded at: a re-encode's own, otherwise the post's."""
        return self.variant.crf if self.variant and self.variant.crf else self.crf

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
class StillJob:
    """A pooled photo image: one still of a photo post's visual spec."""

    spec: VisualSpec
    jpeg: Path


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
    pooled: int = 0  # files in the media pool (clips, stills and sounds) that every post links to
    rendering_s: float = 0.0  # wall time of the rendering step, the rest is planning and writing
    near_duplicates: int = 0

    @property
    def rendered_per_s(self) -> float:
        """Media files rendered a second (with a pool, far fewer than the posts written)."""
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
            if job.variant:
                frames = apply_variant(frames, job.variant)
            rendered = time.perf_counter()
            encode_mp4(frames, audio, job.sample_rate, job.visual.fps, job.mp4, crf=job.encode_crf)
        return VideoResult(name, rendered - start, time.perf_counter() - rendered)
    except TkdsError as error:
        return VideoResult(name, error=str(error))
    except Exception as error:  # reported per post, with its id, by the caller
        return VideoResult(name, error=f"{type(error).__name__}: {error}")


def render_still(job: StillJob) -> VideoResult:
    """A pooled photo image as a JPEG."""
    name = f"pooled image {job.jpeg.parent.name}/{job.jpeg.name}"
    try:
        start = time.perf_counter()
        image = render_frames(job.spec)[0]
        rendered = time.perf_counter()
        encode_jpeg(image, job.jpeg)
        return VideoResult(name, rendered - start, time.perf_counter() - rendered)
    except TkdsError as error:
        return VideoResult(name, error=str(error))
    except Exception as error:
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
class MediaPool:
    """The few files that every post's media links to, and which one each post's media is."""

    clips: list[VideoJob]  # pool/NNNN.mp4, rendered from the first video posts' jobs
    stills: list[StillJob]  # pool/images/WxH/NNNN.jpeg, from the first photo posts' images of that size
    sounds: list[SoundJob]  # pool/sounds/Ns.mp3, one per sound length in seconds
    clip_of: dict[int, int]  # post index -> its clip
    stills_of: dict[int, list[Path]]  # photo post index -> its images' pooled stills, in slideshow order
    sound_of: dict[str, Path]  # music id -> its pooled sound, of the same whole length

    @property
    def files(self) -> list[Path]:
        clips, stills = [job.mp4 for job in self.clips], [job.jpeg for job in self.stills]
        return clips + stills + [job.mp3 for job in self.sounds]


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
    pool: MediaPool | None = None

    @property
    def photos(self) -> int:
        return sum(job.is_photo for job in self.jobs)

    @property
    def near_duplicates(self) -> list[VideoJob]:
        return [job for job in self.jobs if job.variant]

    def media_job(self, index: int) -> VideoJob:
        """The job whose mp4 a video post's media/ID.mp4 is: its own, or its pooled clip's."""
        if self.pool is None or self.jobs[index].is_photo:
            return self.jobs[index]
        return self.pool.clips[self.pool.clip_of[index]]


def plan_corpus(config: SynthConfig, out: Path) -> CorpusPlan:
    world = build_world(config)
    draws = draw_videos(world, config.videos, np.random.default_rng(np.random.SeedSequence([config.seed, 4])))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 5]))
    terms = likes_terms(world, draws)
    log_likes = sum(terms.values())
    # Its own stream, so a post's kind changes no other draw: a video stays byte-identical.
    is_photo = np.random.default_rng(np.random.SeedSequence([config.seed, 10])).random(config.videos)
    is_photo = is_photo < config.photo_share
    nuisance = _plan_nuisance(config)

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
            clutter=int(nuisance["clutter"][i]),
            camera_px=float(nuisance["camera_px"][i]),
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
                crf=int(nuisance["crf"][i]),
            )
        )
        ids.append(video_id)
        sounds.append(sound)
        captions.append(caption)
        tags.append(video_tags)
    if config.near_duplicates:
        _plant_near_duplicates(config, world, draws, jobs)
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
    plan = CorpusPlan(
        world, draws, ids, sounds, captions, tags, counts, terms, jobs, list(sound_jobs.values())
    )
    if config.media_pool:
        plan.pool = _plan_pool(config.media_pool, jobs, plan.sound_jobs, out / "pool")
    return plan


def _plan_nuisance(config: SynthConfig) -> dict[str, np.ndarray]:
    """Each video's clutter (distractor shapes), camera pan (px) and CRF, from the difficulty's ranges.

    Their own seeded stream, so the other draws, and an easy corpus's bytes, do not depend on them.
    """
    level, n = config.nuisance, config.videos
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 15]))
    return {
        "clutter": rng.integers(level.clutter[0], level.clutter[1] + 1, n),
        "camera_px": np.round(level.camera * config.width * rng.uniform(0.5, 1.0, n), 3),
        "crf": rng.integers(level.crf[0], level.crf[1] + 1, n),
    }


def _plant_near_duplicates(
    config: SynthConfig, world: World, draws: VideoDraws, jobs: list[VideoJob]
) -> None:
    """Make about `near_duplicates` of the video posts re-uploads of an earlier video of their category.

    In creation order, a chosen post takes the frames of a random earlier original of its own category
    whose author's backdrop pHash can match (`SOURCE_BACKDROPS`), changed by the next kind in turn
    (so every kind appears early); one with no such original stays an original. Its own draws stay:
    author, caption, sound and soundtrack, counts. Which posts are chosen is its own seeded stream, so
    every other post keeps its bytes.
    """
    chosen = np.random.default_rng(np.random.SeedSequence([config.seed, 12])).random(config.videos)
    chosen = chosen < config.near_duplicates
    pick = np.random.default_rng(np.random.SeedSequence([config.seed, 13]))
    originals: dict[int, list[int]] = {}
    planted = 0
    for i in np.argsort(draws.create_time, kind="stable").tolist():
        job = jobs[i]
        if job.is_photo:
            continue
        earlier = originals.setdefault(int(draws.category[i]), [])
        if not chosen[i] or not earlier:
            if world.authors[draws.author[i]].background in SOURCE_BACKDROPS:
                earlier.append(i)
            continue
        source = jobs[earlier[int(pick.integers(len(earlier)))]]
        variant = plan_variant(
            KINDS[planted % len(KINDS)],
            source.video_id,
            config.width,
            config.height,
            source.crf,
            world.authors[draws.author[source.index]].unique_id,
            np.random.default_rng(_seed_int(config.seed, 14, i)),
        )
        jobs[i] = replace(job, visual=source.visual, seconds=source.seconds, variant=variant, crf=source.crf)
        planted += 1


def _plan_pool(size: int, jobs: list[VideoJob], sound_jobs: list[SoundJob], folder: Path) -> MediaPool:
    """`size` clips from the first video posts, each video post on clip (its rank among them) % size;
    up to `size` stills per image size from the first photo posts, each image on the next still of its
    size in turn; and one sound per whole length in seconds, from the first sound of that length."""
    videos = [job for job in jobs if not job.is_photo]
    clips = [replace(job, mp4=folder / f"{rank:04d}.mp4") for rank, job in enumerate(videos[:size])]
    clip_of = {job.index: rank % len(clips) for rank, job in enumerate(videos)}
    stills: dict[tuple[int, int], list[StillJob]] = {}
    uses: Counter = Counter()
    stills_of: dict[int, list[Path]] = {}
    for job in jobs:
        for spec in job.images:
            key = (spec.width, spec.height)
            pooled = stills.setdefault(key, [])
            if len(pooled) < size:
                name = f"{key[0]}x{key[1]}/{len(pooled):04d}.jpeg"
                pooled.append(StillJob(spec, folder / "images" / name))
            stills_of.setdefault(job.index, []).append(pooled[uses[key] % len(pooled)].jpeg)
            uses[key] += 1
    by_length: dict[int, SoundJob] = {}
    for job in sound_jobs:
        seconds = job.sound.duration_s
        by_length.setdefault(seconds, replace(job, mp3=folder / "sounds" / f"{seconds}s.mp3"))
    sound_of = {job.sound.id: by_length[job.sound.duration_s].mp3 for job in sound_jobs}
    all_stills = [still for group in stills.values() for still in group]
    return MediaPool(clips, all_stills, list(by_length.values()), clip_of, stills_of, sound_of)


def _link_pool(plan: CorpusPlan) -> None:
    """Every pooled post's media as a relative link into pool/: media/ID.mp4, images/ID/NN.jpeg and
    sounds/MUSIC_ID.mp3. A link left by a killed run is kept when it points to the same file."""
    pool = plan.pool
    for job in plan.jobs:
        if job.is_photo:
            for link, target in zip(job.outputs, pool.stills_of[job.index], strict=True):
                _link(link, target)
        else:
            _link(job.mp4, pool.clips[pool.clip_of[job.index]].mp4)
    for job in plan.sound_jobs:
        _link(job.mp3, pool.sound_of[job.sound.id])


def _link(link: Path, target: Path) -> None:
    relative = os.path.relpath(target, link.parent)
    try:
        os.symlink(relative, link)
    except FileExistsError:
        if os.readlink(link) != relative:
            os.unlink(link)
            os.symlink(relative, link)
    except FileNotFoundError:
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(relative, link)
    except OSError as error:
        raise TkdsError(
            f"cannot link {link} ({error.strerror}); free space or fix permissions, then re-run to resume"
        ) from error


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
    partials = ("*/*.partial", "images/*/*.partial", "pool/*/*.partial", "pool/images/*/*.partial")
    for stale in [path for pattern in partials for path in out.glob(pattern)]:
        stale.unlink()  # left by a killed run; the file is rendered again
    wanted = config.record()
    config_path = out / CONFIG_FILE
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous != wanted:
            changed = sorted(k for k in wanted.keys() | previous.keys() if previous.get(k) != wanted.get(k))
            raise TkdsError(
                f"{out} holds a partial corpus made with other arguments ({', '.join(changed)}); "
                "re-run with the same arguments to resume, or delete it"
            )
    else:
        write_json(config_path, wanted)


def _pair(option: str, value: object, kind: type) -> tuple:
    """Two numbers of `kind` (whole ones for int), or a one-line refusal naming `option`."""
    allowed = (int,) if kind is int else (int, float)
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, allowed) for v in value)
    ):
        raise TkdsError(f"{option} must be two numbers, e.g. {'(144, 256)' if kind is int else '(5, 7)'} "
                        f"(got {value!r})")  # fmt: skip
    return kind(value[0]), kind(value[1])


def _fraction(option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TkdsError(f"{option} must be a fraction from 0 to 1 (got {value!r})")
    return float(value)


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
    media_pool: int | None = None,
    near_duplicates: float = 0.0,
    difficulty: str = "easy",
    workers: int | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write a SynthTok corpus of `videos` posts to `out`, about `photo_share` of them photo posts.

    `media_pool` K renders only K clips (and as many stills per image size, and a sound per length)
    that every post's media links to: full metadata for a thesis-sized corpus in minutes. About
    `near_duplicates` of the posts are re-uploads of an earlier video, listed in the corpus card.
    `difficulty` (easy, standard, hard) sets the nuisance factors (`factors.DIFFICULTIES`): trending
    sounds, clutter, camera pan and compression; easy is the corpus of the versions before it.
    A partial corpus left by a killed run with the same arguments is resumed, not redone.
    """
    config = SynthConfig(
        videos=videos,
        seed=seed,
        width=_pair("--size", size, int)[0],
        height=_pair("--size", size, int)[1],
        seconds=_pair("--seconds", seconds, float),
        fps=fps,
        categories=categories,
        photo_share=_fraction("--photo-share", photo_share),
        media_pool=media_pool,
        near_duplicates=_fraction("--near-duplicates", near_duplicates),
        difficulty=difficulty,
    )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise TkdsError(f"--workers must be a whole number of at least 1 (got {workers!r})")
    if not isinstance(out, str | Path):
        raise TkdsError(f"out must be a folder path (got {type(out).__name__})")
    out = Path(out)
    _prepare_out(config, out)
    started = time.perf_counter()
    plan = plan_corpus(config, out)
    if plan.sound_jobs:
        (out / "sounds").mkdir(exist_ok=True)
    if plan.pool:
        for folder in {path.parent for path in plan.pool.files}:
            folder.mkdir(parents=True, exist_ok=True)
        work = [(render_video, job) for job in plan.pool.clips if not job.mp4.exists()]
        work += [(render_still, job) for job in plan.pool.stills if not job.jpeg.exists()]
        work += [(render_sound, job) for job in plan.pool.sounds if not job.mp3.exists()]
        reused = len(plan.pool.files) - len(work)
    else:
        todo = [job for job in plan.jobs if not all(path.exists() for path in job.outputs)]
        work = [(render_video, job) for job in todo]
        work += [(render_sound, job) for job in plan.sound_jobs if not job.mp3.exists()]
        reused = videos - len(todo)
    summary = SynthSummary(
        out=out,
        videos=videos,
        rendered=0,
        reused=reused,
        photos=plan.photos,
        pooled=len(plan.pool.files) if plan.pool else 0,
        near_duplicates=len(plan.near_duplicates),
    )

    errors: dict[str, str] = {}
    rendering_started = time.perf_counter()
    workers = max(1, min(workers or os.cpu_count() or 1, len(work) or 1))
    with (
        progress_bar("synth: rendering", len(work), enabled=progress) as bar,
        spawn_pool(workers) as pool,  # safe from a script without `if __name__ == "__main__":`
    ):
        pending: set[Future] = set()
        try:
            for render, job in work:  # keep the queue short so Ctrl-C stops promptly
                pending.add(pool.submit(render, job))
                if len(pending) >= 4 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _collect(done, summary, errors, bar)
            _collect(wait(pending).done, summary, errors, bar)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    summary.rendering_s = time.perf_counter() - rendering_started
    if errors:
        reasons = Counter(reason.rsplit(": ", 1)[-1] for reason in errors.values())
        first_name, first_reason = next(iter(errors.items()))
        by_reason = ", ".join(f"{n}x {reason}" for reason, n in reasons.items())
        total = len(work) + summary.reused if plan.pool else videos + len(plan.sound_jobs)
        raise TkdsError(
            f"{len(errors)} of {total} files failed ({by_reason}); "
            f"first: {first_name}: {first_reason}; fix the cause and re-run to resume"
        )

    if plan.pool:
        _link_pool(plan)
    _write_items(plan, config, out)
    summary.bayes_r2 = bayes_r2(plan.world, plan.draws)
    _write_card(out / CORPUS_FILE, plan, config, summary.bayes_r2)
    summary.wall_s = time.perf_counter() - started
    return summary


def _collect(done: set[Future], summary: SynthSummary, errors: dict[int, str], bar) -> None:
    for future in done:
        result: VideoResult = future.result()
        if result.error:
            errors[result.name] = result.error
        elif not result.name.startswith(("sound ", "pooled image ")):
            summary.rendered += 1
            summary.render_s += result.render_s
            summary.encode_s += result.encode_s
        bar.advance(0)


def _author_counts(plan: CorpusPlan) -> list[AuthorCounts]:
    """Each author's profile counts; their videos' likes summed in one pass over the videos."""
    rng = np.random.default_rng(np.random.SeedSequence([plan.world.config.seed, 9]))
    authors = len(plan.world.authors)
    posts = np.bincount(plan.draws.author, minlength=authors)
    likes = [0] * authors  # Python ints: exact at any size
    for author_index, counts in zip(plan.draws.author.tolist(), plan.counts, strict=True):
        likes[author_index] += counts.likes
    result = []
    for a, author in enumerate(plan.world.authors):
        result.append(
            AuthorCounts(
                followers=author.followers,
                following=author.following,
                hearts=likes[a] + int(author.followers * rng.uniform(2, 10)),
                videos=int(posts[a]) + int(rng.integers(0, 200)),
                diggs=int(rng.integers(0, 20_000)),
            )
        )
    return result


def _region(author: Author) -> str:
    return REGIONS[int(author.id) % len(REGIONS)]


def _write_items(plan: CorpusPlan, config: SynthConfig, out: Path) -> None:
    author_counts = _author_counts(plan)
    clip_sizes = {clip.mp4: clip.mp4.stat().st_size for clip in plan.pool.clips} if plan.pool else {}
    for i, job in enumerate(plan.jobs):
        author_index = int(plan.draws.author[i])
        author = plan.world.authors[author_index]
        media = plan.media_job(i)
        bitrate = 0
        if not job.is_photo:
            size = clip_sizes.get(media.mp4) or media.mp4.stat().st_size
            bitrate = int(size * 8 / media.seconds)
        width, height = media.frame_size
        item = build_item(
            video_id=job.video_id,
            caption=plan.captions[i],
            tags=plan.tags[i],
            create_time=int(plan.draws.create_time[i]),
            width=width,
            height=height,
            duration_s=media.seconds,
            bitrate=bitrate,
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


def _write_card(path: Path, plan: CorpusPlan, config: SynthConfig, r2: dict) -> None:
    """corpus.json, as `json.dumps(card, indent=1)` would write it, one video row at a time: at 290,000
    videos the rows alone would hold gigabytes as Python objects."""
    head = json.dumps(_card_head(plan, config, r2), ensure_ascii=False, indent=1)
    with atomic_text(path) as card:
        card.write(head[: -len("\n}")] + ',\n "videos": [')
        originality = plan.draws.originality
        for i in range(len(plan.jobs)):
            row = json.dumps(_video_row(plan, i, float(originality[i])), ensure_ascii=False, indent=1)
            card.write(("\n" if i == 0 else ",\n") + "  " + row.replace("\n", "\n  "))
        card.write("\n ]\n}")


def _card_head(plan: CorpusPlan, config: SynthConfig, r2: dict) -> dict:
    """Everything in corpus.json but the video rows, which come last."""
    world = plan.world
    uses = Counter(sound.id for sound in plan.sounds)
    sounds = {sound.id: sound for sound in plan.sounds}
    for sound in world.sounds:
        sounds.setdefault(sound.id, sound)
    head = {
        "format": "synthtok",
        "format_version": 1,
        "tkds_version": tkds.__version__,
        "config": config.record(),
        "layout": {
            "media": "media/{id}.mp4",
            "items": "items/{id}.json",
            "images": "images/{id}/{position:02d}.jpeg",
            "sounds": "sounds/{music_id}.mp3",
        },
        "photos": plan.photos,
    }
    if config.difficulty != "easy":  # an easy card keeps the bytes it had before difficulties
        head["difficulty"] = config.nuisance.record(config.original_sound_prob)
    if plan.pool:
        head["media_pool"] = {
            "clips": len(plan.pool.clips),
            "stills": len(plan.pool.stills),
            "sounds": len(plan.pool.sounds),
            "layout": "pool/NNNN.mp4, pool/images/WxH/NNNN.jpeg, pool/sounds/Ns.mp3; the posts' files "
            "are relative links to them",
            "note": POOL_NOTE,
        }
    if config.near_duplicates:
        head["near_duplicates"] = [
            {"id": job.video_id, "of": job.variant.of, "kind": job.variant.kind, **_variant_facts(job)}
            for job in plan.near_duplicates
        ]
    head |= {
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
    }
    return head


def _variant_facts(job: VideoJob) -> dict:
    variant = job.variant
    if variant.kind == "reencode":
        return {"crf": variant.crf}
    if variant.kind == "rescale":
        return {"size": list(variant.size)}
    if variant.kind == "crop":
        return {"size": list(variant.size), "origin": list(variant.crop_origin)}
    return {"text": variant.text, "top": variant.text_top}


def _video_row(plan: CorpusPlan, i: int, originality: float) -> dict:
    world, draws, job = plan.world, plan.draws, plan.jobs[i]
    media = plan.media_job(i)
    row = {
        "id": job.video_id,
        "author_id": world.authors[draws.author[i]].id,
        "category": int(draws.category[i]),
        "category_name": world.categories[draws.category[i]].name,
        "sound_id": plan.sounds[i].id,
        "original_sound": plan.sounds[i].original,
        "originality": round(originality, 6),
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
        **_media_facts(media),
        "hashtags": plan.tags[i],
        "likes": plan.counts[i].likes,
        "log1p_likes": round(math.log1p(plan.counts[i].likes), 6),
        "likes_terms": {k: round(float(v[i]), 6) for k, v in plan.likes_terms.items()},
    }
    if plan.world.config.difficulty != "easy":
        row["nuisance"] = _nuisance_facts(plan, i)
    if plan.pool and not job.is_photo:
        row["clip"] = media.mp4.relative_to(media.mp4.parent.parent).as_posix()
    return row


def _nuisance_facts(plan: CorpusPlan, i: int) -> dict:
    """What hides post `i`'s category: where its sound comes from, and its media file's nuisances."""
    media = plan.media_job(i)
    sound = "original" if plan.sounds[i].original else "trending" if plan.draws.trending[i] else "category"
    facts = {"sound": sound, "clutter": media.visual.clutter, "camera_px": media.visual.camera_px}
    if not media.is_photo:
        facts["crf"] = media.encode_crf
    return facts
