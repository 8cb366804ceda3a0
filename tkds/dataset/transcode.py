"""Prepare one video for a shard: one ffmpeg process writes the training copy, its sidecars and hash frames.

Per video, `prepare` takes the streams the collector chose (or probes the file the collector's way when
it recorded none), then runs a single ffmpeg process that decodes the source once and writes: the
H.264/AAC mp4 (short side `size`, never upscaled, a keyframe every second), the 16 kHz mono flac sidecar,
a jpg thumbnail, and 32×32 grey frames at 1 fps on stdout for the perceptual hash. With `size=0` nothing
is decoded: `passthrough` keeps the collected file as it is.
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
from dataclasses import asdict, dataclass
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


@dataclass
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
    try:
        partial.mkdir(parents=True)
        error = _run_ffmpeg(source, partial, prepared, params)
        if error is None and prepared.duration_s is None:
            probed = probe(partial / f"video.{prepared.video_ext}")
            prepared.duration_s = duration_of(probed, {})
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
    return Prepared(video_id, error=error)


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


def load_prepared(work: Path, video_id: str, sha256: str, params: TranscodeParams) -> Prepared | None:
    """The facts of a video an earlier (perhaps killed) run prepared from the same source the same way.

    None when there are none, when they are unreadable, or when the source sha256 or the recipe differ:
    then the video is prepared again.
    """
    facts = ids.id_path(work, video_id) / "facts.json"
    try:
        prepared = Prepared(**json.loads(facts.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    same = prepared.source_sha256 == sha256 and prepared.recipe == params.recipe()
    whole = prepared.error is None and prepared.video_id == video_id and prepared.video_ext == "mp4"
    return prepared if same and whole else None


def _run_ffmpeg(source: Path, out: Path, prepared: Prepared, params: TranscodeParams) -> str | None:
    v, a = f"0:{prepared.video_stream}", f"0:{prepared.audio_stream}"
    hash_chain = f"fps=1,scale={HASH_SIDE}:{HASH_SIDE}:flags=area,format=gray[hash]"
    thumb_chain = "thumbnail=30,format=yuvj420p[thumb]"  # the most representative frame of the first 30
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-y",
        "-i",
        str(source),
    ]
    graph = [
        f"[{v}]fps={params.fps},scale={prepared.width}:{prepared.height}:flags=bicubic,"
        f"format=yuv420p,split=3[video][t][h];[t]{thumb_chain};[h]{hash_chain}"
    ]
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
        graph.append(f"[{a}]aresample={SAMPLE_RATE},pan=mono|c0=c0,asplit=2[aac][a];[a]volumedetect[flac]")
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
