"""Prepare one video for a shard: one ffmpeg process writes the training copy, its sidecars and hash frames.

Per video, `prepare` takes the streams the collector chose (or probes the file the collector's way when
it recorded none), then runs a single ffmpeg process that decodes the source once and writes: the
H.264/AAC mp4 (short side `size`, never upscaled, a keyframe every second), the 16 kHz mono flac sidecar,
a jpg thumbnail, and 32×32 grey frames at 1 fps on stdout for the perceptual hash. With `size=0` nothing
is decoded: `passthrough` keeps the collected file as it is.
A photo post (`prepare_photo`) becomes the same files from its images and sound: a slideshow in which
each image shows for TikTok's photo-mode default of IMAGE_SECONDS, the images looping to cover the
sound up to PHOTO_MAX_SECONDS, fitted into the first image's frame; its images are kept as they are.
A failure is a value (`Prepared.error`), never an exception, so one bad file never stops a build.
The work folder's paths come from `ids.id_path`, so a video id can never name a folder outside it; a
prepared video is reused only when its facts name the same source sha256 and the same recipe.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from tkds import ids
from tkds.collector.media import choose_streams, duration_of, probe
from tkds.dataset.framehash import frame_hashes

SAMPLE_RATE = 16000
HASH_SIDE = 32
MAX_HASH_FRAMES = 16
SILENCE_DB = -60.0  # max volume below this is digital silence (the fixture's silent track is about -91 dB)
VIDEO_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mp4", ".webm": "webm"}
# Bump when the ffmpeg command below changes what it writes: prepared videos of another version are redone.
TRANSCODE_VERSION = 1
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
# TikTok photo mode shows each image for 3 s by default (see the architecture notes for the sources).
IMAGE_SECONDS = 3.0
PHOTO_MAX_SECONDS = 60.0  # a photo post's sound is covered up to this; one pass of its images always
# Bump when `prepare_photo`'s command changes what it writes; with the cadence, part of the photo recipe.
PHOTO_VERSION = 1
IMAGE_SUFFIXES = ("jpg", "png", "webp")  # what the collector stores; an image's member is imgN.SUFFIX
IMAGE_MEMBER = re.compile(rf"img[0-9]{{1,4}}\.(?:{'|'.join(IMAGE_SUFFIXES)})")
THUMB_CHAIN = "thumbnail=30,format=yuvj420p[thumb]"  # the most representative frame of the first 30
# Each ffmpeg decodes and filters on one thread (x264 already encodes on one): a build scales by its
# --workers alone, with no CPU spent on threads contending for the other workers' cores. Same bytes.
ONE_THREAD = ("-threads", "1")  # before an input: its decoder's
HASH_CHAIN = f"fps=1,scale={HASH_SIDE}:{HASH_SIDE}:flags=area,format=gray[hash]"


@dataclass(frozen=True)
class TranscodeParams:
    size: int = 256  # short side; 0 keeps the source bytes
    fps: float = 15.0
    crf: int = 23
    audio_bitrate: str = "48k"

    def recipe(self) -> str:
        """Everything that decides a prepared video's bytes, besides its source."""
        if not self.size:
            return "passthrough"
        return json.dumps({"transcode_version": TRANSCODE_VERSION, **asdict(self)}, sort_keys=True)

    def photo_recipe(self) -> str:
        """What decides a photo post's prepared bytes, besides its images and sound (size 0 included:
        a slideshow is always encoded, at the first image's own size)."""
        cadence = {"image_seconds": IMAGE_SECONDS, "max_seconds": PHOTO_MAX_SECONDS}
        settings = {"transcode_version": TRANSCODE_VERSION, "photo_version": PHOTO_VERSION, **cadence}
        return json.dumps({**settings, **asdict(self)}, sort_keys=True)


@dataclass(slots=True)  # one per prepared video, 290,000 of them held at once
class Prepared:
    """The files and facts of one prepared video, or its error."""

    video_id: str
    error: str | None = None
    video_ext: str = "mp4"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    has_audio: bool = False
    audio_silent: bool = False
    video_stream: int | None = None
    audio_stream: int | None = None
    source_vcodec: str | None = None
    source_acodec: str | None = None
    frame_hash: str | None = None
    source_path: str | None = None  # set by `passthrough`: the sample is this file, without sidecars
    source_sha256: str | None = None  # what it was prepared from, and how: reuse needs both to match
    recipe: str | None = None
    kind: str = "video"  # or "photo"
    images: list[dict] = field(default_factory=list)  # a photo post's: member, width, height, sha256

    def expected_recipe(self, params: TranscodeParams) -> str:
        return params.photo_recipe() if self.kind == "photo" else params.recipe()

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def _rate(text: str | None) -> float | None:
    numerator, _, denominator = (text or "0/0").partition("/")
    try:
        value = float(numerator) / float(denominator or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return value or None


def output_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Scale so the short side is `size` (never up), keeping the aspect ratio, with even sides for yuv420p."""
    scale = min(1.0, size / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _from_probe(video_id: str, source: Path) -> Prepared:
    try:
        facts = probe(source)
    except (ValueError, OSError) as error:
        return Prepared(video_id, error=f"undecodable: {error}")
    video, audio = choose_streams(facts)
    if video is None or not video.get("width"):
        return Prepared(video_id, error="undecodable: no video stream")
    return Prepared(
        video_id,
        width=video["width"],
        height=video["height"],
        video_stream=video["index"],
        audio_stream=audio["index"] if audio else None,
        has_audio=audio is not None,
        source_vcodec=video.get("codec_name"),
        source_acodec=audio.get("codec_name") if audio else None,
        duration_s=duration_of(facts, video),
    )


def _from_collection(video_id: str, media: dict) -> Prepared | None:
    """The collector's probe of the same file, when it recorded the streams it chose (no second ffprobe)."""
    if media.get("video_stream") is None or not media.get("width") or not media.get("height"):
        return None
    return Prepared(
        video_id,
        width=media["width"],
        height=media["height"],
        video_stream=media["video_stream"],
        audio_stream=media.get("audio_stream"),
        has_audio=media.get("audio_stream") is not None,
        source_vcodec=media.get("vcodec"),
        source_acodec=media.get("acodec"),
        duration_s=media.get("duration_s"),
    )


def prepare(
    video_id: str,
    source: Path,
    work: Path,
    params: TranscodeParams,
    media: dict | None = None,
    sha256: str | None = None,
) -> Prepared:
    """Write WORK/ID/{video.EXT, audio.flac, thumb.jpg, facts.json}; the folder appears only when complete.

    `media` is the collector's record of the file; without its stream choice, ffprobe runs here.
    `sha256` is the source's, recorded in the facts so that a later run reuses them only for the same file.
    """
    done = ids.id_path(work, video_id)
    partial = ids.id_path(work, video_id, ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    prepared = _from_collection(video_id, media or {}) or _from_probe(video_id, source)
    if prepared.error is not None:
        return prepared
    prepared.width, prepared.height = output_size(prepared.width, prepared.height, params.size)
    prepared.fps, prepared.source_sha256, prepared.recipe = params.fps, sha256, params.recipe()

    def write() -> str | None:
        error = _run_ffmpeg(source, partial, prepared, params)
        if error is None and prepared.duration_s is None:
            probed = probe(partial / f"video.{prepared.video_ext}")
            prepared.duration_s = duration_of(probed, {})
        return error

    return _prepare_into(partial, done, prepared, write)


def _prepare_into(partial: Path, done: Path, prepared: Prepared, write: Callable[[], str | None]) -> Prepared:
    """Run `write` (it fills `partial`, returning an error or None), then publish `partial` as `done` with
    its facts; a failure or a full disk removes `partial` and is returned as the reason."""
    try:
        partial.mkdir(parents=True)
        error = write()
        if error is None:
            (partial / "facts.json").write_text(prepared.to_json())
            shutil.rmtree(done, ignore_errors=True)
            os.replace(partial, done)
            return prepared
    except OSError as failure:
        if failure.errno not in FULL_DISK:
            raise
        error = "disk_full: no space left on device"
    shutil.rmtree(partial, ignore_errors=True)
    return Prepared(prepared.video_id, error=error)


def passthrough(video_id: str, source: Path, media: dict, sha256: str | None = None) -> Prepared:
    """`--size 0`: the collected file as the sample, described by the collector's probe; no decoding."""
    return Prepared(
        video_id,
        video_ext=VIDEO_SUFFIXES.get(source.suffix.lower(), "mkv"),
        width=media.get("width"),
        height=media.get("height"),
        fps=media.get("fps"),
        duration_s=media.get("duration_s"),
        has_audio=bool(media.get("has_audio")),
        source_vcodec=media.get("vcodec"),
        source_acodec=media.get("acodec"),
        frame_hash=media.get("frame_hash"),
        source_path=str(source),
        source_sha256=sha256,
        recipe=TranscodeParams(size=0).recipe(),
    )


def load_prepared(
    work: Path, video_id: str, sha256: str, params: TranscodeParams, kind: str = "video"
) -> Prepared | None:
    """The facts of a video (or photo post: `kind`) an earlier, perhaps killed, run prepared from the
    same source the same way.

    None when there are none, when they are unreadable, or when the source sha256 or the recipe differ:
    then the video is prepared again.
    """
    facts = ids.id_path(work, video_id) / "facts.json"
    try:
        prepared = Prepared(**json.loads(facts.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    same = (
        prepared.kind == kind
        and prepared.source_sha256 == sha256
        and prepared.recipe == prepared.expected_recipe(params)
    )
    whole = prepared.error is None and prepared.video_id == video_id and prepared.video_ext == "mp4"
    whole = whole and all(  # the images' member names are read from these facts
        isinstance(image, dict) and IMAGE_MEMBER.fullmatch(str(image.get("member")))
        for image in prepared.images
    )
    return prepared if same and whole else None


def _run_ffmpeg(source: Path, out: Path, prepared: Prepared, params: TranscodeParams) -> str | None:
    graph = (
        f"[0:{prepared.video_stream}]fps={params.fps},scale={prepared.width}:{prepared.height}:"
        f"flags=bicubic,format=yuv420p,split=3[video][t][h];[t]{THUMB_CHAIN};[h]{HASH_CHAIN}"
    )
    return _encode(
        [*ONE_THREAD, "-i", str(source)], graph, f"0:{prepared.audio_stream}", out, prepared, params
    )


def _encode(
    inputs: list[str], video_graph: str, audio: str, out: Path, prepared: Prepared, params: TranscodeParams
) -> str | None:
    """One ffmpeg run from `inputs`: `video_graph` makes [video], [thumb] and [hash]; the audio stream
    `audio` (when `prepared.has_audio`) becomes the mp4's AAC and the flac sidecar."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y"]
    command += ["-filter_complex_threads", "1", *inputs]
    graph = [video_graph]
    keyframe = max(1, round(params.fps))
    outputs = ["-map", "[video]"]
    if prepared.has_audio:
        outputs += ["-map", "[aac]", "-c:a", "aac", "-b:a", params.audio_bitrate]
    outputs += [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(params.crf), "-threads", "1",
        "-g", str(keyframe), "-keyint_min", str(keyframe), "-sc_threshold", "0",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-map_metadata", "-1", "-movflags", "+faststart", str(out / "video.mp4"),
    ]  # fmt: skip
    if prepared.has_audio:
        graph.append(
            f"[{audio}]aresample={SAMPLE_RATE},pan=mono|c0=c0,asplit=2[aac][a];[a]volumedetect[flac]"
        )
        outputs += ["-map", "[flac]", "-c:a", "flac", str(out / "audio.flac")]
    outputs += ["-map", "[thumb]", "-frames:v", "1", "-q:v", "3", str(out / "thumb.jpg")]
    outputs += ["-map", "[hash]", "-frames:v", str(MAX_HASH_FRAMES), "-f", "rawvideo", "pipe:1"]
    command += ["-filter_complex", ";".join(graph), *outputs]
    result = subprocess.run(command, capture_output=True)
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        if "No space left on device" in stderr:
            return "disk_full: no space left on device"
        lines = [line for line in stderr.splitlines() if "rror" in line] or stderr.splitlines() or ["?"]
        return f"undecodable: {lines[-1].strip()}"
    frames = np.frombuffer(result.stdout, dtype=np.uint8)
    if frames.size < HASH_SIDE * HASH_SIDE:
        return "undecodable: no frames decoded"
    prepared.frame_hash = frame_hashes(frames.reshape(-1, HASH_SIDE, HASH_SIDE))
    peak = re.search(r"max_volume: (-?[\d.]+|-inf) dB", stderr)
    prepared.audio_silent = bool(prepared.has_audio and peak and float(peak.group(1)) < SILENCE_DB)
    return None


def photo_duration(images: int, sound_s: float | None) -> float:
    """A slideshow's length: one pass of the images at IMAGE_SECONDS each, or the sound's length (the
    images looping) up to PHOTO_MAX_SECONDS, whichever is longer."""
    return max(images * IMAGE_SECONDS, min(sound_s or 0.0, PHOTO_MAX_SECONDS))


def prepare_photo(
    video_id: str,
    images: list[dict],
    sound: Path | None,
    work: Path,
    params: TranscodeParams,
    media: dict,
    sha256: str,
) -> Prepared:
    """Write WORK/ID/{video.mp4, audio.flac, thumb.jpg, imgN.EXT, facts.json} for a photo post.

    `images` are the collector's (path, sha256, width, height), in slideshow order; `sound` and the
    `media` facts (its audio stream, its duration) are its sound's. Every image is fitted, aspect kept,
    into the first image's frame scaled to the short side `size` (its own size with `size` 0).
    """
    done = ids.id_path(work, video_id)
    partial = ids.id_path(work, video_id, ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    suffixes = [Path(image["path"]).suffix.lower().removeprefix(".") for image in images]
    if not images or any(suffix not in IMAGE_SUFFIXES for suffix in suffixes):
        return Prepared(video_id, error="undecodable: its images are not JPEG, PNG or WebP files")
    width, height = images[0].get("width") or 0, images[0].get("height") or 0
    if width < 1 or height < 1:
        return Prepared(video_id, error="undecodable: its first image has no recorded size")
    has_audio = sound is not None and media.get("audio_stream") is not None
    # A whole number of frames: the slideshow's length, and each image's slot, at `fps`.
    frames = max(
        1, round(photo_duration(len(images), media.get("duration_s") if has_audio else None) * params.fps)
    )
    per_image = max(1, round(IMAGE_SECONDS * params.fps))
    frame_width, frame_height = output_size(width, height, params.size or min(width, height))
    prepared = Prepared(
        video_id,
        width=frame_width,
        height=frame_height,
        fps=params.fps,
        duration_s=frames / params.fps,
        has_audio=has_audio,
        audio_stream=media.get("audio_stream") if has_audio else None,
        source_vcodec=suffixes[0],
        source_acodec=media.get("acodec") if has_audio else None,
        source_sha256=sha256,
        recipe=params.photo_recipe(),
        kind="photo",
        images=[
            {"member": f"img{n}.{suffix}", "width": image.get("width"), "height": image.get("height"),
             "sha256": image.get("sha256")}
            for n, (image, suffix) in enumerate(zip(images, suffixes, strict=True))
        ],
    )  # fmt: skip
    # One input per slot (an image may come round again), a still looped for its frames: never none, as
    # a slot shorter than a frame would give concat an empty input, on which ffmpeg spins.
    slots = [min(per_image, frames - start) for start in range(0, frames, per_image)]
    inputs, chains = [], []
    for slot, count in enumerate(slots):
        inputs += ["-loop", "1", "-framerate", f"{params.fps:g}", "-t", f"{(count + 0.5) / params.fps:.6f}"]
        inputs += [*ONE_THREAD, "-i", str(images[slot % len(images)]["path"])]
        chains.append(
            f"[{slot}:v]trim=end_frame={count},scale={prepared.width}:{prepared.height}:"
            "force_original_aspect_ratio=decrease:flags=bicubic:out_range=tv,"
            f"pad={prepared.width}:{prepared.height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p[s{slot}]"
        )  # JPEGs are full range; H.264 yuv420p is tv range
    if has_audio:
        inputs += ["-t", f"{prepared.duration_s:.6f}", *ONE_THREAD, "-i", str(sound)]
    graph = ";".join(chains) + ";" + "".join(f"[s{slot}]" for slot in range(len(slots)))
    graph += f"concat=n={len(slots)}:v=1:a=0,fps={params.fps},split=3[video][t][h];[t]{THUMB_CHAIN};"
    graph += f"[h]{HASH_CHAIN}"

    def write() -> str | None:
        error = _encode(inputs, graph, f"{len(slots)}:{prepared.audio_stream}", partial, prepared, params)
        if error is None:
            for image, entry in zip(images, prepared.images, strict=True):
                shutil.copyfile(image["path"], partial / entry["member"])
        return error

    return _prepare_into(partial, done, prepared, write)
