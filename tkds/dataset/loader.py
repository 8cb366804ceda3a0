"""WebDataset shards → clips, log-mel spectrograms and metadata for torch.

One pipeline of small generators, which `load_shards` (training) and `load_eval_clips` (embedding)
configure with two `ClipSpec`s:

    read_index → epoch_order → split_by_rank_and_worker → locate → read_samples → make_example

Every sample is seen exactly once per epoch: the positions of one permutation, drawn from (seed,
epoch), are dealt to the ranks × workers by striding, which also works with fewer shards than
consumers. A worker reads only its own samples, by offset, from a header scan of the tars it needs.
"""

from __future__ import annotations

import functools
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info
from torchaudio.functional import melscale_fbanks
from torchcodec.decoders import AudioDecoder, VideoDecoder

from tkds.dataset.augment import ViewAugment, center_square_box, draw_view_augment, view_clip
from tkds.dataset.split import SPLITS, is_number, is_whole
from tkds.errors import TkdsError
from tkds.ids import preview

MANIFEST = "dataset.json"
N_FFT = 400
HOP = 160
LOG_FLOOR = 1e-6
REBUILD = "check the shards with `tkds shard --verify --out DIR`, rebuild with `tkds shard --db DB --out DIR`"

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv")  # mp4 when transcoded; the source file's own with `--size 0`

Members = dict[str, tuple[int, int]]  # extension → (data offset, size) in the tar
TAR_BLOCK = 512
END_OF_TAR = bytes(TAR_BLOCK)  # a zero block ends the archive
SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # names root/SPLIT.json: no separator, no dot
MAX_SEED = 2**63 - 1  # numpy's SeedSequence takes non-negative seeds


@dataclass(frozen=True)
class ClipSpec:
    """What one example holds; `train` draws random windows, frame jitter and augmentation."""

    frames: int
    size: int
    audio_seconds: float
    sample_rate: int
    n_mels: int
    views: int
    train: bool

    def __post_init__(self) -> None:
        for name in ("frames", "size", "sample_rate", "n_mels", "views"):
            value = getattr(self, name)
            if not is_whole(value) or value < 1:
                shown = "clips" if name == "views" and not self.train else name
                raise TkdsError(f"{shown} {preview(value)}: give a whole number, 1 or more")
        if not (is_number(self.audio_seconds) and self.audio_seconds > 0):
            raise TkdsError(f"audio_seconds {preview(self.audio_seconds)}: give a number of seconds above 0")

    @property
    def audio_samples(self) -> int:
        return int(self.audio_seconds * self.sample_rate)

    @property
    def mel_frames(self) -> int:
        return self.audio_samples // HOP + 1


@dataclass(frozen=True)
class Shard:
    path: Path
    nsamples: int
    filesize: int | None


@dataclass(frozen=True)
class RawSample:
    key: str
    shard: Path
    video: bytes
    flac: bytes | None
    json: bytes


def _read_json(path: Path, what: str) -> dict:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as error:
        raise TkdsError(f"cannot read the {what} {path} ({error.strerror}); {REBUILD}") from error
    except orjson.JSONDecodeError as error:
        raise TkdsError(f"the {what} {path} is not valid JSON ({error}); {REBUILD}") from error


def read_index(root: Path, split: str) -> list[Shard]:
    """The shards of `split` from its wids-style index, `root/split.json`."""
    if not isinstance(split, str) or not SPLIT_NAME.fullmatch(split):
        raise TkdsError(f"split {preview(split)}: give a split's name, such as train, val or test")
    path = root / f"{split}.json"
    if not path.is_file():
        splits = sorted(p.stem for p in root.glob("*.json") if p.name != MANIFEST)
        raise TkdsError(
            f"no split {split!r} in {root}: {path.name} is missing (available splits: "
            f"{', '.join(splits) or 'none'}); build shards with `tkds shard --db PATH --out {root}`"
        )
    index = _read_json(path, "shard index")
    try:
        return [
            Shard(root / entry["url"], int(entry["nsamples"]), entry.get("filesize"))
            for entry in index["shardlist"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise TkdsError(f"the shard index {path} lacks url/nsamples ({error!r}); {REBUILD}") from error


def read_labels(root: Path) -> tuple[str | None, list[str]]:
    """The label column and its sorted class names, from the manifest."""
    manifest = _read_json(root / MANIFEST, "manifest")
    return manifest.get("label_column"), list(manifest.get("label_names") or [])


def distributed_rank() -> tuple[int, int]:
    """(rank, world size): torch.distributed when initialised, else env RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def epoch_order(total: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """All sample numbers in this epoch's order: a permutation drawn from (seed, epoch)."""
    if not shuffle:
        return np.arange(total)
    return np.random.default_rng((seed, epoch)).permutation(total)


def split_by_rank_and_worker(
    order: np.ndarray, rank: int, world_size: int, worker: int, workers: int
) -> np.ndarray:
    """This consumer's share: the rank's every world_size-th sample, then the worker's every workers-th.

    Striding by rank first keeps the ranks' counts within one of each other whatever the worker count.
    """
    return order[rank::world_size][worker::workers]


def locate(samples: Iterable[int], shards: list[Shard]) -> Iterator[tuple[int, int, int]]:
    """(sample number, shard number, index within the shard), numbering samples across shards in order."""
    ends = np.cumsum([shard.nsamples for shard in shards])
    for sample in samples:
        shard = int(np.searchsorted(ends, sample, side="right"))
        yield int(sample), shard, int(sample - ends[shard] + shards[shard].nsamples)


def _plain_tar_members(path: Path) -> list[tuple[str, int, int]] | None:
    """tar_members of a tar of plain ustar headers (what the builder writes), one pread per header;
    None at anything else (pax or GNU headers, a bad checksum, a short read), for tarfile to read."""
    members = []
    with open(path, "rb") as file:
        descriptor, offset = file.fileno(), 0
        while True:
            header = os.pread(descriptor, TAR_BLOCK, offset)
            if header == END_OF_TAR:
                return members
            if (
                len(header) < TAR_BLOCK
                or header[156:157] not in (b"0", b"\0", b"5")
                or header[345] != 0  # a ustar prefix to join with the name
                or sum(header) - sum(header[148:156]) + 8 * 32 != _octal(header[148:156])
            ):
                return None
            size = _octal(header[124:136])
            if size < 0:  # base-256 or damaged
                return None
            name = header[:100].partition(b"\0")[0].decode(errors="surrogateescape")
            if header[156:157] == b"0" or (header[156:157] == b"\0" and not name.endswith("/")):
                members.append((name, offset + TAR_BLOCK, size))
            offset += TAR_BLOCK + -(-size // TAR_BLOCK) * TAR_BLOCK


def _octal(field: bytes) -> int:
    """A tar header's octal number (tarfile's nti); −1 when it is not one."""
    try:
        return int(field.partition(b"\0")[0].strip() or b"0", 8)
    except ValueError:
        return -1


def tar_members(path: Path) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of each file in an uncompressed tar; reads headers only.

    A worker pays this for each shard it starts, and at first every sample comes from a new shard: plain
    headers are read directly (14 ms for a shard of 256 samples, against 118 ms through Python's tarfile),
    anything else by tarfile.
    """
    plain = _plain_tar_members(path)
    if plain is not None:
        yield from plain
        return
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if info.isfile():
                yield info.name, info.offset_data, info.size


def group_samples(members: Iterable[tuple[str, int, int]]) -> Iterator[tuple[str, Members]]:
    """Contiguous members sharing a key (the name up to its basename's first dot) → one sample."""
    key, group = None, {}
    for name, offset, size in members:
        folder, _, base = name.rpartition("/")
        stem, _, ext = base.partition(".")
        name_key = f"{folder}/{stem}" if folder else stem
        if name_key != key and group:
            yield key, group
            group = {}
        key = name_key
        group[ext] = (offset, size)
    if group:
        yield key, group


def _damaged(shard: Shard, detail: str) -> TkdsError:
    return TkdsError(f"shard {shard.path}: {detail}; {REBUILD}")


def shard_table(shard: Shard) -> list[tuple[str, Members]]:
    """The samples of one shard, checked against its index entry."""
    try:
        size = shard.path.stat().st_size
    except OSError as error:
        raise _damaged(shard, f"cannot read it ({error.strerror})") from error
    if shard.filesize is not None and size != shard.filesize:
        raise _damaged(shard, f"truncated or changed: {size} bytes where the index says {shard.filesize}")
    try:
        table = list(group_samples(tar_members(shard.path)))
    except (OSError, tarfile.TarError) as error:
        raise _damaged(shard, f"not a readable tar ({error})") from error
    if any(offset + length > size for _, members in table for offset, length in members.values()):
        raise _damaged(shard, "truncated: a member ends past the end of the file")
    if len(table) != shard.nsamples:
        raise _damaged(shard, f"{len(table)} samples where the index says {shard.nsamples}")
    return table


def read_metas(root: Path, split: str) -> Iterator[tuple[Shard, str, Members, dict]]:
    """(shard, key, members, json) of every sample of `split`, in index order; decodes nothing."""
    for shard in read_index(root, split):
        table = shard_table(shard)
        with open(shard.path, "rb") as file:
            for key, members in table:
                if "json" in members:
                    offset, size = members["json"]
                    file.seek(offset)
                    yield shard, key, members, orjson.loads(file.read(size))


def hf_features(path: str | Path) -> Any:
    """`datasets.Features` covering every member and json field of the dataset's samples, in all splits.

    For `datasets.load_dataset("webdataset", data_files=..., features=hf_features(path))`. Without it,
    datasets infers the features from the first 5 samples of the first shard, and refuses shards whose
    samples differ in their members: a photo post's images (`img0.jpg`, …), a video without audio (no
    `flac`). Reads every sample's json, nothing else. Needs `pip install datasets`.
    """
    import datasets
    import pyarrow as pa

    root = Path(path)
    splits = [split for split in SPLITS if (root / f"{split}.json").is_file()]
    members: dict[str, None] = {}  # in order of first appearance, as datasets would list them
    metas = []
    for split in splits or ["train"]:  # no index at all: read_index says so
        for _, _, sample_members, meta in read_metas(root, split):
            members.update(dict.fromkeys(sample_members))
            metas.append(meta)
    if not metas:
        raise TkdsError(f"{root} holds no samples in any split; {REBUILD}")
    json_type = datasets.Features.from_arrow_schema(pa.schema([("json", pa.array(metas).type)]))["json"]
    features: dict[str, Any] = {}
    for extension in members:
        if extension == "json":
            features[extension] = json_type
        elif extension in VIDEO_EXTENSIONS:
            features[extension] = datasets.Video()
        elif extension == "flac":
            features[extension] = datasets.Audio()
        elif extension.endswith("jpg"):
            features[extension] = datasets.Image()
    return datasets.Features(
        {**features, "__key__": datasets.Value("string"), "__url__": datasets.Value("string")}
    )


def read_samples(
    located: Iterable[tuple[int, int, int]], shards: list[Shard], tables: dict[int, list]
) -> Iterator[tuple[int, RawSample]]:
    """Read each located sample's video, flac and json by offset; `tables` caches shard scans."""
    for sample, shard_number, index in located:
        shard = shards[shard_number]
        if shard_number not in tables:
            tables[shard_number] = shard_table(shard)
        key, members = tables[shard_number][index]
        video = next((ext for ext in VIDEO_EXTENSIONS if ext in members), None)
        if video is None or "json" not in members:
            raise _damaged(shard, f"sample {key} lacks a video or its json (it has {', '.join(members)})")
        data = {}
        with open(shard.path, "rb") as file:
            for ext in (video, "flac", "json"):
                if ext in members:
                    offset, size = members[ext]
                    file.seek(offset)
                    data[ext] = file.read(size)
        yield sample, RawSample(key, shard.path, data[video], data.get("flac"), data["json"])


def view_starts(duration: float, window: float, views: int, rng: np.random.Generator | None) -> np.ndarray:
    """Start times of the views' windows: uniform at random, or evenly spaced without `rng`."""
    room = max(duration - window, 0.0)
    if rng is None:
        return room * (np.arange(views) + 0.5) / views
    return rng.uniform(0.0, room, views)


def frame_times(
    starts: np.ndarray, window: float, frames: int, rng: np.random.Generator | None
) -> np.ndarray:
    """(views, frames) times: one per equal segment of each window, jittered within it by `rng`."""
    offsets = rng.random((len(starts), frames)) if rng is not None else np.full((len(starts), frames), 0.5)
    return starts[:, None] + (np.arange(frames) + offsets) * (window / frames)


def decode_video(
    sample: RawSample, spec: ClipSpec, rng: np.random.Generator | None, transforms: list | None = None
) -> tuple[torch.Tensor, np.ndarray, float]:
    """Every view's frames from one decoder and one request: ((views, T, 3, H, W) uint8, starts, window).

    Each view covers max(audio_seconds, frames/fps) of video, the same window its audio crop is
    centred on, so audio and video of a view are in sync.
    """
    try:
        # No decoder-native Resize by default: it made decoding slower than resizing the crops in uint8
        # afterwards (benchmarks/loader.py), and one decoder cannot give two views two crops. `transforms`
        # are for eval uploads whose full-size frames would not fit in memory.
        decoder = VideoDecoder(
            sample.video, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC",
            transforms=transforms,
        )  # fmt: skip
        count, fps = len(decoder), decoder.metadata.average_fps
        if not count or not fps:
            raise ValueError("its header gives no frame count or rate")
        window = min(max(spec.audio_seconds, spec.frames / fps), count / fps)
        starts = view_starts(count / fps, window, spec.views, rng)
        times = frame_times(starts, window, spec.frames, rng)
        indices = np.clip((times * fps).astype(np.int64), 0, count - 1)
        batch = decoder.get_frames_at(indices.ravel().tolist()).data
    except (RuntimeError, ValueError) as error:
        raise TkdsError(
            f"video {sample.key} in shard {sample.shard}: cannot decode its video ({error}); {REBUILD}"
        ) from error
    # NHWC decoded, NCHW viewed: channels-last memory, which the uint8 resize is fastest on.
    frames = batch.permute(0, 3, 1, 2).unflatten(0, (spec.views, spec.frames))
    return frames, starts, window


def decode_audio(sample: RawSample, starts: np.ndarray, window: float, spec: ClipSpec) -> torch.Tensor:
    """(views, samples) mono waveforms, each centred on its view's video window, zero-padded.

    From the flac sidecar; a `--size 0` sample has none, and its audio comes from the video file itself.
    """
    seconds, length = spec.audio_seconds, spec.audio_samples
    source = sample.flac if sample.flac is not None else sample.video
    try:
        decoder = AudioDecoder(source, sample_rate=spec.sample_rate, num_channels=1)
        last_begin = max((decoder.metadata.duration_seconds or 0.0) - seconds, 0.0)
        begins = np.clip(starts + (window - seconds) / 2, 0.0, last_begin)
        first, last = float(begins.min()), float(begins.max())
        # flac decodes at a cost per second: windows that overlap are decoded once, as one span.
        if last - first < seconds * (len(begins) - 1):
            span = decoder.get_samples_played_in_range(first, last + seconds).data[0]
            pieces = [span[round((begin - first) * spec.sample_rate) :] for begin in begins]
        else:
            pieces = [decoder.get_samples_played_in_range(b, b + seconds).data[0] for b in begins.tolist()]
    except (RuntimeError, ValueError) as error:
        raise TkdsError(
            f"video {sample.key} in shard {sample.shard}: cannot decode its audio ({error}); {REBUILD}"
        ) from error
    waves = torch.zeros(len(begins), length)
    for wave, piece in zip(waves, pieces, strict=True):
        wave[: min(len(piece), length)] = piece[:length]
    return waves


@functools.cache
def _mel_basis(sample_rate: int, n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchaudio MelSpectrogram's Hann window and (n_mels, frequencies) HTK filter bank."""
    bank = melscale_fbanks(N_FFT // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate)
    return torch.hann_window(N_FFT), bank.T.contiguous()


def log_mel(waves: torch.Tensor, spec: ClipSpec) -> torch.Tensor:
    """(views, samples) → (views, 1, n_mels, audio_samples // 160 + 1) log-mel, as MelSpectrogram computes.

    Written out because MelSpectrogram's abs() on the strided STFT took over half its time.
    """
    window, bank = _mel_basis(spec.sample_rate, spec.n_mels)
    stft = torch.stft(waves, N_FFT, HOP, window=window, return_complex=True)
    power = stft.real.square() + stft.imag.square()
    return torch.log(bank @ power + LOG_FLOOR).unsqueeze(1)


def label_of(meta: dict, column: str | None, classes: dict[str, int]) -> int:
    """The class number of the sample's label in `column`, or -1 when it has none."""
    value = (meta.get("labels") or {}).get(column) if column else None
    return -1 if value is None else classes.get(str(value), -1)  # the manifest lists str(value)


def make_example(
    sample: RawSample,
    spec: ClipSpec,
    column: str | None,
    classes: dict[str, int],
    rng: np.random.Generator | None,
    transforms: list | None = None,
) -> dict[str, Any]:
    """Decode, crop and augment one sample into the loader's dict; `transforms` apply in the decoder."""
    frames, starts, window = decode_video(sample, spec, rng, transforms)
    height, width = frames.shape[-2:]
    if spec.train:
        views = [draw_view_augment(rng, height, width) for _ in starts]
    else:
        views = [ViewAugment(center_square_box(height, width)) for _ in starts]
    video = torch.empty(spec.views, 3, spec.frames, spec.size, spec.size)
    for clip, view, out in zip(frames, views, video, strict=True):
        view_clip(clip, view, spec.size, out=out)
    meta = orjson.loads(sample.json)
    meta.setdefault("kind", "video")  # shards from before photo posts hold only videos
    has_audio = sample.flac is not None or meta.get("has_audio") is True
    if has_audio:
        audio = log_mel(decode_audio(sample, starts, window, spec), spec)
    else:
        audio = torch.zeros(spec.views, 1, spec.n_mels, spec.mel_frames)
    meta["has_audio"] = has_audio
    return {
        "video": video,
        "audio": audio,
        "has_audio": has_audio,
        "label": label_of(meta, column, classes),
        "meta": meta,
        "key": sample.key,
    }


def example_from_video(
    video: bytes, spec: ClipSpec, key: str = "upload", transforms: list | None = None
) -> dict[str, Any]:
    """One video file's bytes (not a shard sample) as an example; audio when the file has an audio stream.

    `transforms` (torchcodec decoder transforms, e.g. Resize) bound the size of the frames it decodes.
    """
    try:
        AudioDecoder(video)
        has_audio = True
    except (RuntimeError, ValueError):  # torchcodec's "no audio stream", or not a media file at all
        has_audio = False
    sample = RawSample(key, Path(key), video, None, orjson.dumps({"id": key, "has_audio": has_audio}))
    try:
        return make_example(sample, spec, None, {}, None, transforms)
    except TkdsError as error:
        # FFmpeg's own words come last in torchcodec's message, after its source location.
        reason = str(error.__cause__ or error).rsplit(": ", 1)[-1].strip().rstrip(".")
        raise TkdsError(f"{key} cannot be decoded as a video ({reason}); upload a whole mp4 file") from error


class ShardDataset(IterableDataset):
    """One split of a shard directory as an iterable of example dicts; build it with `load_shards`.

    `num_samples` is the split's total, from its index. Rank r of world size W yields
    len(range(r, num_samples, W)) examples per epoch, which is `len()`: the counts of ranks differ by at
    most one. The DataLoader workers of a rank share its examples, so `len()` counts examples (each with
    all its views or clips), not clips, ranks × workers, or batches.
    """

    def __init__(self, path: str | Path, split: str, spec: ClipSpec, shuffle: bool, seed: int) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TkdsError(f"path {preview(path)}: give the folder that tkds shard wrote")
        if not isinstance(shuffle, bool):
            raise TkdsError(f"shuffle {preview(shuffle)}: give True or False")
        _check_count("seed", seed, 0, MAX_SEED)
        root = Path(path)
        self.shards = read_index(root, split)
        self.label_column, self.label_names = read_labels(root)
        self.spec, self.shuffle, self.seed = spec, shuffle, seed
        self.num_samples = sum(shard.nsamples for shard in self.shards)
        self.rank, self.world_size = distributed_rank()
        if not 0 <= self.rank < self.world_size:
            raise TkdsError(
                f"rank {self.rank} is outside world size {self.world_size}; check RANK and WORLD_SIZE"
            )
        # Shared memory, so set_epoch also reaches persistent DataLoader workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._tables: dict[int, list] = {}

    def __len__(self) -> int:
        """The examples this rank yields per epoch, across all its DataLoader workers."""
        return len(range(self.rank, self.num_samples, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation and augmentation draws of `epoch`; call before iterating."""
        _check_count("epoch", epoch, 0, MAX_SEED)
        self._epoch.fill_(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = int(self._epoch)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        order = epoch_order(self.num_samples, self.seed, epoch, self.shuffle)
        mine = split_by_rank_and_worker(order, self.rank, self.world_size, worker, workers)
        classes = {name: number for number, name in enumerate(self.label_names)}
        for sample, raw in read_samples(locate(mine, self.shards), self.shards, self._tables):
            # Draws depend on the sample, not on who decodes it: the same under any worker layout.
            rng = np.random.default_rng((self.seed, epoch, sample)) if self.spec.train else None
            yield make_example(raw, self.spec, self.label_column, classes, rng)


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if not is_whole(value) or not low <= value <= high:
        raise TkdsError(f"{name} {preview(value)}: give a whole number from {low} to {high}")


def load_shards(
    path: str | Path,
    split: str = "train",
    frames: int = 16,
    size: int = 112,
    audio_seconds: float = 2.0,
    sample_rate: int = 16000,
    n_mels: int = 64,
    views: int = 2,
    shuffle: bool = True,
    seed: int = 0,
) -> ShardDataset:
    """Training examples: `views` independently augmented clips and audio crops per sample.

    Each example is a dict: video float32 (views, 3, frames, size, size), Kinetics-normalised;
    audio float32 (views, 1, n_mels, audio_seconds*sample_rate//160 + 1) log-mel, zeros without
    audio; has_audio bool; label int (-1 when unlabelled); meta dict; key str. Batch with `collate`.
    Deterministic for (seed, epoch): call `set_epoch` each epoch. Under DDP and DataLoader workers,
    every sample is seen once per epoch; rank r yields len(range(r, num_samples, world_size)), which
    `len(dataset)` gives (examples, whatever `views` and the worker count). The rank is read here: from
    torch.distributed if initialised, else from RANK and WORLD_SIZE.
    """
    spec = ClipSpec(frames, size, audio_seconds, sample_rate, n_mels, views, train=True)
    return ShardDataset(path, split, spec, shuffle, seed)


def load_eval_clips(
    path: str | Path,
    split: str,
    clips: int = 4,
    frames: int = 16,
    size: int = 112,
    audio_seconds: float = 2.0,
    sample_rate: int = 16000,
    n_mels: int = 64,
) -> ShardDataset:
    """Evaluation examples in index order: `clips` evenly spaced, centre-cropped clips and audio windows.

    The same dict as `load_shards`, with `clips` in place of views and no augmentation.
    """
    spec = ClipSpec(frames, size, audio_seconds, sample_rate, n_mels, clips, train=False)
    return ShardDataset(path, split, spec, shuffle=False, seed=0)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch examples for a DataLoader: tensors stacked, meta and key kept as lists."""
    # default_collate stacks into shared memory inside a worker, which saves a copy on the way out.
    return {
        "video": default_collate([s["video"] for s in samples]),
        "audio": default_collate([s["audio"] for s in samples]),
        "has_audio": torch.tensor([s["has_audio"] for s in samples], dtype=torch.bool),
        "label": torch.tensor([s["label"] for s in samples], dtype=torch.long),
        "meta": [s["meta"] for s in samples],
        "key": [s["key"] for s in samples],
    }
