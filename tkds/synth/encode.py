"""H.264 + AAC (videos), JPEG and MP3 (photo posts) encoding, byte-for-byte reproducible.

The CLI rather than in-process PyAV: x264 inside a long-lived process gave different bytes for the
same frames from the second video on, while one ffmpeg process per video is exactly reproducible.
The binary is imageio-ffmpeg's static build: it starts in ~15 ms, the system one in ~115 ms.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

from tkds.errors import TkdsError

DEFAULT_CRF = 23  # x264's default quality; a re-encoded near duplicate uses another


def encode_mp4(
    frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: int, out: Path, crf: int = DEFAULT_CRF
) -> None:
    """Encode RGB frames (T, H, W, 3) and mono float32 audio to `out`, written under a temporary name.

    Raw frames go through stdin and the audio through a second pipe, so nothing touches the disk
    but the mp4. One encoder thread and the bitexact flags make the bytes a function of the input.
    """
    _, height, width, _ = frames.shape
    partial = out.with_name(out.name + ".partial")
    read_fd, write_fd = os.pipe()
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0",
        "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", f"pipe:{read_fd}",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-threads", "1",
        "-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
        "-movflags", "+faststart", "-f", "mp4", str(partial),
    ]  # fmt: skip
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(read_fd,)
        )
    except OSError as error:
        os.close(write_fd)
        raise TkdsError(f"cannot start ffmpeg ({error}); reinstall with scripts/setup.sh") from error
    finally:
        os.close(read_fd)

    def feed_audio() -> None:
        try:
            with open(write_fd, "wb") as pipe:
                pipe.write(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped early; its stderr says why

    feeder = threading.Thread(target=feed_audio, daemon=True)
    feeder.start()
    try:
        process.stdin.write(np.ascontiguousarray(frames).tobytes())
        process.stdin.close()
    except BrokenPipeError:
        pass
    stderr = process.stderr.read().decode(errors="replace").strip()
    process.wait()
    feeder.join()
    if process.returncode != 0:
        partial.unlink(missing_ok=True)
        last = stderr.splitlines()[-1] if stderr else f"exit code {process.returncode}"
        last = re.sub(r"^\[[^]]*\] ", "", last)  # ffmpeg's "[out#0/mp4 @ 0x...] " context prefix
        raise TkdsError(f"ffmpeg failed writing {out.name}: {last}")
    os.replace(partial, out)


def encode_jpeg(frame: np.ndarray, out: Path) -> None:
    """One RGB frame (H, W, 3) as a baseline JPEG under a temporary name; Pillow's bytes are stable."""
    partial = out.with_name(out.name + ".partial")
    try:
        Image.fromarray(frame).save(partial, "JPEG", quality=90)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise TkdsError(f"cannot write {out.name}: {error.strerror or error}") from error
    os.replace(partial, out)


def encode_mp3(audio: np.ndarray, sample_rate: int, out: Path) -> None:
    """Mono float32 audio as a 64 kbit/s MP3 (TikTok's sound format), written under a temporary name."""
    partial = out.with_name(out.name + ".partial")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", "pipe:0",
        "-c:a", "libmp3lame", "-b:a", "64k", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        "-map_metadata", "-1", "-f", "mp3", str(partial),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, input=np.ascontiguousarray(audio, dtype=np.float32).tobytes(), capture_output=True
        )
    except OSError as error:
        raise TkdsError(f"cannot start ffmpeg ({error}); reinstall with scripts/setup.sh") from error
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        last = re.sub(r"^\[[^]]*\] ", "", lines[-1]) if lines else f"exit code {result.returncode}"
        raise TkdsError(f"ffmpeg failed writing {out.name}: {last}")
    os.replace(partial, out)
