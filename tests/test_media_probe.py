"""The collector's in-process probe (PyAV) against real ffprobe: the same facts on every real media edge
case, the same refusal (or a stricter one) of cut-off files, and hostile files refused in one line."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imageio_ffmpeg
import pytest

from tkds.collector.media import (
    MAX_STREAMS,
    SOUND_SUFFIXES,
    choose_streams,
    duration_of,
    inspect,
    probe,
)

from .conftest import SHARED_FIXTURES

MEDIA_FIXTURES = SHARED_FIXTURES / "media"
FIXTURES = (
    sorted(p.name for p in MEDIA_FIXTURES.glob("*") if p.suffix != ".md") if MEDIA_FIXTURES.is_dir() else []
)
STREAM_FIELDS = ("index", "codec_type", "codec_name", "width", "height", "channels", "sample_rate")
SECONDS = 0.1  # FFmpeg 5.1 (the system ffprobe) and 8.x (PyAV's) trim mp3 and AAC priming differently
VIDEO_ID = "7300000000000000001"


def ffprobe(path: Path) -> dict | None:
    """The system ffprobe's facts as the collector used to take them; None when it refuses the file."""
    command = ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json"]
    result = subprocess.run([*command, str(path)], capture_output=True, text=True)
    if result.returncode != 0 or result.stderr.strip():
        return None
    return json.loads(result.stdout)


def refused(path: Path) -> str | None:
    try:
        probe(path)
    except ValueError as error:
        return str(error)
    return None


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def fixture(name: str) -> Path:
    if not MEDIA_FIXTURES.is_dir():
        pytest.skip(f"media fixtures not found at {MEDIA_FIXTURES}")
    return MEDIA_FIXTURES / name


def container_seconds(facts: dict) -> float | None:
    """ffprobe 5.1's container duration as FFmpeg 8 and 9 give it: a subtitle stream that outlasts
    every audio and video stream ("outlier non primary stream") no longer lengthens the file."""
    duration = facts["format"].get("duration")
    primary = [
        float(s["duration"])
        for s in facts["streams"]
        if "duration" in s and s["codec_type"] in ("audio", "video")
    ]
    if duration is None or not primary or float(duration) <= max(primary) + SECONDS:
        return None if duration is None else float(duration)
    return max(primary)


@pytest.mark.parametrize("name", FIXTURES)
def test_every_real_edge_case_probes_as_ffprobe_sees_it(name: str) -> None:
    path = fixture(name)
    expected, facts = ffprobe(path), probe(path)
    assert expected is not None, f"ffprobe refuses {name}"
    assert facts["format"]["format_name"] == expected["format"]["format_name"]
    assert len(facts["streams"]) == len(expected["streams"]) == facts["format"]["nb_streams"]
    for ours, theirs in zip(facts["streams"], expected["streams"], strict=True):
        assert {k: ours.get(k) for k in STREAM_FIELDS} == {k: theirs.get(k) for k in STREAM_FIELDS}, name
        assert ours["disposition"]["default"] == theirs["disposition"]["default"]
        assert ours["nb_read_packets"] == theirs["nb_read_packets"]  # every packet read, none decoded
        assert ours["avg_frame_rate"] == theirs["avg_frame_rate"]
        assert ("duration" in ours) == ("duration" in theirs)
        if "duration" in theirs:
            assert float(ours["duration"]) == pytest.approx(float(theirs["duration"]), abs=SECONDS)
    seconds = container_seconds(expected)
    assert ("duration" in facts["format"]) == (seconds is not None)
    if seconds is not None:
        assert float(facts["format"]["duration"]) == pytest.approx(seconds, abs=SECONDS)
    # What the collector and the shard builder take from the facts: the same streams, the same length.
    chosen, wanted = choose_streams(facts), choose_streams(expected)
    assert [s and s["index"] for s in chosen] == [s and s["index"] for s in wanted]
    if chosen[0] is not None:
        ours, theirs = duration_of(facts, chosen[0]), duration_of(expected, wanted[0])
        assert (ours is None) == (theirs is None)
        if theirs is not None:
            assert ours == pytest.approx(container_seconds(expected) or theirs, abs=SECONDS)


@pytest.mark.parametrize("name", FIXTURES)
def test_a_cut_off_file_is_refused_wherever_ffprobe_refused_it(name: str, tmp_path: Path) -> None:
    whole = fixture(name).read_bytes()
    cut = tmp_path / f"cut{Path(name).suffix}"
    for keep in (len(whole) // 8, len(whole) // 2, len(whole) * 7 // 8, len(whole) - 100, len(whole) - 1):
        cut.write_bytes(whole[:keep])
        reason = refused(cut)
        if ffprobe(cut) is None:
            assert reason is not None, f"{name} cut to {keep} bytes: ffprobe refuses it, the probe does not"
        # Stricter than ffprobe, which let some files through without their last bytes.
        if reason is None:
            assert choose_streams(probe(cut))[0] is None, f"{name} cut to {keep} bytes passes as a video"
        else:
            assert "\n" not in reason and str(tmp_path) not in reason and len(reason) <= 200


@pytest.fixture(scope="module")
def synth_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small files of each kind tkds meets: TikTok's mp4 (moov first), an mp4 with its index at the end,
    a photo post's sounds (mp3, m4a), WebM and Matroska."""
    folder = tmp_path_factory.mktemp("probe-synth")
    video = ["-f", "lavfi", "-i", "testsrc2=s=144x256:r=15:d=2", "-f", "lavfi", "-i", "sine=f=440:d=2"]
    files = {
        "faststart.mp4": [*video, "-c:v", "libx264", "-c:a", "aac", "-movflags", "+faststart"],
        "moov_last.mp4": [*video, "-c:v", "libx264", "-c:a", "aac"],
        "sound.mp3": ["-f", "lavfi", "-i", "sine=f=440:d=3", "-c:a", "libmp3lame"],
        "sound.m4a": ["-f", "lavfi", "-i", "sine=f=440:d=3", "-c:a", "aac"],
        "clip.webm": [*video, "-c:v", "libvpx-vp9", "-c:a", "libopus"],
        "clip.mkv": [*video, "-c:v", "libx264", "-c:a", "aac"],
    }
    for name, args in files.items():
        ffmpeg(*args, str(folder / name))
    return {name: folder / name for name in files}


@pytest.mark.parametrize(
    "name, suffix, video",
    [("faststart.mp4", None, True), ("moov_last.mp4", None, True), ("sound.mp3", "mp3", False),
     ("sound.m4a", "m4a", False), ("clip.webm", "mka", True), ("clip.mkv", "mka", True)],
)  # fmt: skip
def test_each_container_probes_and_a_cut_one_is_refused(
    synth_files: dict[str, Path], name: str, suffix: str | None, video: bool, tmp_path: Path
) -> None:
    path = synth_files[name]
    facts, expected = probe(path), ffprobe(path)
    video_stream, audio_stream = choose_streams(facts)
    assert (video_stream is not None) == video and audio_stream is not None
    fields = ("index", "codec_name", "sample_rate", "channels")
    assert {k: audio_stream[k] for k in fields} == {k: choose_streams(expected)[1][k] for k in fields}
    assert duration_of(facts, audio_stream) == pytest.approx(duration_of(expected, audio_stream), abs=SECONDS)
    if not video:  # a photo post's sound: named by its content, never a video suffix
        assert SOUND_SUFFIXES[facts["format"]["format_name"]] == suffix
    whole = path.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    if name != "sound.mp3":  # mp3 is a run of frames: a shorter one is still a whole file, for both
        assert refused(cut) is not None
    else:
        assert refused(cut) is None and ffprobe(cut) is not None


def test_inspect_refuses_a_cut_off_download_and_removes_it(
    synth_files: dict[str, Path], tmp_path: Path
) -> None:
    media = tmp_path / "media"
    (media / ".partial").mkdir(parents=True)
    partial = media / ".partial" / f"{VIDEO_ID}.direct.mp4"
    whole = synth_files["faststart.mp4"].read_bytes()
    partial.write_bytes(whole[: len(whole) // 2])
    result = inspect(VIDEO_ID, partial, media / f"{VIDEO_ID}.mp4")
    assert result.status == "failed" and result.error.startswith("undecodable: ")
    assert "partial file" in result.error
    assert not partial.exists() and not (media / f"{VIDEO_ID}.mp4").exists()
    partial.write_bytes(whole)  # the whole file: probed, hashed and moved into place
    result = inspect(VIDEO_ID, partial, media / f"{VIDEO_ID}.mp4")
    assert result.status == "ok" and (result.width, result.height, result.fps) == (144, 256, 15.0)
    assert (result.vcodec, result.acodec, result.video_stream, result.audio_stream) == ("h264", "aac", 0, 1)
    assert result.duration_s == pytest.approx(2.0, abs=SECONDS) and (media / f"{VIDEO_ID}.mp4").exists()


def many_streams(path: Path, count: int) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=d=0.1", *["-map", "0:a"] * count, "-c:a", "pcm_s16le", str(path))
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "Invalid data found when processing input"),
        (
            lambda p: p.write_text("<html>not a video</html>\n" * 40),
            "Invalid data found when processing input",
        ),
        (lambda p: p.write_bytes(bytes(range(256)) * 64), "Invalid data found when processing input"),
        (lambda p: p.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(22)), "moov atom not found"),
        (
            lambda p: many_streams(p.with_suffix(".mkv"), MAX_STREAMS + 36).rename(p),
            f"more than {MAX_STREAMS}",
        ),
        (
            lambda p: many_streams(p.with_suffix(".mkv"), MAX_STREAMS + 1).rename(p),
            f"more than {MAX_STREAMS}",
        ),
    ],
    ids=["zero bytes", "a web page", "random bytes", "an ftyp and nothing else", "100 streams", "65 streams"],
)
def test_hostile_files_are_refused_in_one_line(make, reason: str, tmp_path: Path, capfd) -> None:
    partial = tmp_path / f"{VIDEO_ID}.direct.mp4"
    make(partial)
    result = inspect(VIDEO_ID, partial, tmp_path / f"{VIDEO_ID}.mp4")
    assert result.status == "failed" and result.error.startswith("undecodable: ") and reason in result.error
    assert "\n" not in result.error and str(tmp_path) not in result.error and not partial.exists()
    assert capfd.readouterr() == ("", "")  # FFmpeg's own messages stay off the user's terminal


def test_concurrent_probes_each_see_only_their_own_files_faults(
    synth_files: dict[str, Path], tmp_path: Path
) -> None:
    """FFmpeg's errors are captured per thread: a cut-off file beside whole ones, eight at a time."""
    files = []
    for kind in ("clip.mkv", "faststart.mp4"):
        whole = synth_files[kind].read_bytes()
        for number in range(12):
            path = tmp_path / f"{number}-{kind}"
            path.write_bytes(whole if number % 2 else whole[: len(whole) // 2])
            files.append((path, number % 2 == 1))
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda f: refused(f[0]) is None, [*files, *files]))
    assert verdicts == [whole for _, whole in [*files, *files]]
