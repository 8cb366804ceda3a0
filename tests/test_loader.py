"""The shard loader: example fields, exactly-once partitioning, determinism, errors, augmentation."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader
from torchcodec.decoders import AudioDecoder

import tkds
from tkds.dataset import augment as aug
from tkds.dataset import loader
from tkds.errors import TkdsError

LABELS = ["animals", "comedy", "dance"]
MUTE = 6  # the train sample written without audio
UNLABELLED = 9  # the train sample with no label
MEAN = torch.tensor(aug.KINETICS_MEAN).view(3, 1, 1, 1)
STD = torch.tensor(aug.KINETICS_STD).view(3, 1, 1, 1)


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def _make_clips(folder: Path) -> dict[str, tuple[bytes, bytes | None]]:
    """Three 2 s vertical 144x256 clips: two with AAC and a flac sidecar, one still and without audio."""
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "15", "-threads", "1"]
    clips = {}
    for name, pattern, tone in (("a", "testsrc2", 440), ("b", "rgbtestsrc", 880)):
        mp4, flac = folder / f"{name}.mp4", folder / f"{name}.flac"
        _ffmpeg(
            "-f", "lavfi", "-i", f"{pattern}=size=144x256:rate=15:duration=2",
            "-f", "lavfi", "-i", f"sine=frequency={tone}:sample_rate=16000:duration=2",
            *h264, "-c:a", "aac", "-ac", "1", "-ar", "16000", "-shortest", str(mp4),
            "-map", "1:a", "-c:a", "flac", "-ac", "1", "-ar", "16000", str(flac),
        )  # fmt: skip
        clips[name] = (mp4.read_bytes(), flac.read_bytes())
    still = folder / "still.mp4"
    _ffmpeg("-f", "lavfi", "-i", "smptebars=size=144x256:rate=15:duration=2", *h264, "-an", str(still))
    clips["still"] = (still.read_bytes(), None)
    return clips


def _jpg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (144, 256), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _meta(key: str, split: str, has_audio: bool, category: str | None) -> dict:
    return {
        "id": key, "description": f"video {key}", "hashtags": ["fyp"], "music_id": "1", "music_title": "tone",
        "author_id": "42", "create_time": 1700000000,
        "stats": {"plays": 10, "likes": 1, "comments": 0, "shares": 0, "collects": 0},
        "author_stats": {"followers": 5, "following": 1, "hearts": 3, "videos": 2},
        "duration_s": 2.0, "width": 144, "height": 256, "fps": 15.0, "has_audio": has_audio,
        "audio_silent": False, "split": split,
        "labels": {"category": category, "originality": 0.5} if category else {},
    }  # fmt: skip


def _write_split(
    root: Path, split: str, samples: list[tuple[str, bytes, bytes | None, dict]], sizes: list[int]
):
    """Write `samples` in shards of `sizes` samples with webdataset.TarWriter, and the split's index."""
    (root / split).mkdir(parents=True, exist_ok=True)
    shardlist, start = [], 0
    for number, count in enumerate(sizes):
        url = f"{split}/{split}-{number:06d}.tar"
        with wds.TarWriter(str(root / url)) as writer:
            for key, mp4, flac, meta in samples[start : start + count]:
                sample = {"__key__": key, "mp4": mp4, "json": json.dumps(meta).encode(), "jpg": _jpg()}
                if flac is not None:
                    sample["flac"] = flac
                writer.write(sample)
        start += count
        shardlist.append(
            {"url": url, "nsamples": count, "filesize": (root / url).stat().st_size, "sha256": ""}
        )
    index = {"wids_version": 1, "name": f"tkds-{split}", "shardlist": shardlist}
    (root / f"{split}.json").write_text(json.dumps(index))


def _write_manifest(root: Path) -> None:
    manifest = {"label_column": "category", "label_names": LABELS,
                "params": {"size": 256, "fps": 15, "sample_rate": 16000}}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(manifest))


def _write_test_shards(tmp: Path) -> Path:
    """10 train samples in 3 shards and 3 val samples in 2, in the builder's format."""
    # Hand-written in the documented format, so each test controls its samples (a still clip, a mute one,
    # an unlabelled one); the tests at the end read what the real builder writes.
    clips = _make_clips(tmp)
    root = tmp / "shards"
    for split, count, sizes in (("train", 10, [4, 3, 3]), ("val", 3, [2, 1])):
        samples = []
        for i in range(count):
            key = f"{7_000_000_000_000_000_000 + 100 * (split == 'val') + i}"
            mp4, flac = clips["still"] if (split, i) == ("train", MUTE) else clips["ab"[i % 2]]
            category = None if (split, i) == ("train", UNLABELLED) else LABELS[i % 3]
            samples.append((key, mp4, flac, _meta(key, split, flac is not None, category)))
        _write_split(root, split, samples, sizes)
    _write_manifest(root)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_test_shards(tmp_path_factory.mktemp("loader"))


@pytest.fixture(autouse=True)
def _one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No rank from the environment, and one torch thread, as in a DataLoader worker."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _keys(ds, **loader_args) -> list[str]:
    return [
        key
        for batch in DataLoader(ds, batch_size=2, collate_fn=loader.collate, **loader_args)
        for key in batch["key"]
    ]


def _key(i: int) -> str:
    return f"{7_000_000_000_000_000_000 + i}"


def _check_video(video: torch.Tensor, views: int) -> None:
    assert video.dtype == torch.float32
    assert video.shape == (views, 3, 16, 112, 112)
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert bool(((video >= low - 1e-4) & (video <= high + 1e-4)).all()), "outside normalised [0, 1]"
    assert video.std() > 0.1


def _check_audio(audio: torch.Tensor, views: int, has_audio: bool) -> None:
    assert audio.dtype == torch.float32
    assert audio.shape == (views, 1, 64, int(2.0 * 16000 / 160) + 1)
    if has_audio:
        assert torch.isfinite(audio).all()
        assert audio.min() >= np.log(1e-6) - 1e-3
        assert audio.max() > 0, "a full-scale tone has mel energy above 1"
    else:
        assert bool((audio == 0).all())


def test_load_shards_gives_every_field_with_its_shape_and_range(shards: Path) -> None:
    ds = tkds.load_shards(shards)
    assert ds.num_samples == 10
    examples = {example["key"]: example for example in ds}
    assert sorted(examples) == [_key(i) for i in range(10)]
    for i, (key, example) in enumerate(sorted(examples.items())):
        _check_video(example["video"], views=2)
        assert not torch.equal(example["video"][0], example["video"][1]), "the two views are augmented apart"
        assert example["has_audio"] is (i != MUTE)
        _check_audio(example["audio"], 2, example["has_audio"])
        assert example["meta"]["id"] == key and example["meta"]["has_audio"] is example["has_audio"]
        assert example["label"] == (-1 if i == UNLABELLED else i % 3)


def test_a_sample_without_audio_gets_a_zero_spectrogram_and_the_flag(shards: Path) -> None:
    example = next(e for e in loader.load_eval_clips(shards, "train") if e["key"] == _key(MUTE))
    assert example["has_audio"] is False and example["meta"]["has_audio"] is False
    assert bool((example["audio"] == 0).all())


def test_views_of_a_still_video_keep_one_crop_and_colour_on_every_frame(shards: Path) -> None:
    example = next(e for e in tkds.load_shards(shards, seed=3) if e["key"] == _key(MUTE))
    for view in example["video"]:
        frame_change = (view - view[:, :1]).abs().amax()
        assert frame_change < 0.15, f"frames of one view differ by {frame_change:.3f}"
    assert (example["video"][0] - example["video"][1]).abs().amax() > 0.5


def test_eval_clips_are_centre_cropped_evenly_spaced_and_repeatable(shards: Path) -> None:
    ds = loader.load_eval_clips(shards, "val")
    first, second = list(ds), list(ds)
    assert [e["key"] for e in first] == [_key(100 + i) for i in range(3)], "index order"
    for a, b in zip(first, second, strict=True):
        _check_video(a["video"], views=4)
        _check_audio(a["audio"], 4, has_audio=True)
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
        assert a["label"] == LABELS.index(a["meta"]["labels"]["category"])
    still = next(e for e in loader.load_eval_clips(shards, "train", clips=3) if e["key"] == _key(MUTE))
    assert still["video"].shape == (3, 3, 16, 112, 112)
    assert (still["video"] - still["video"][:1]).abs().amax() < 0.15, "the same centre crop in every clip"


def test_collate_batches_tensors_and_keeps_meta_as_lists(shards: Path) -> None:
    batch = next(
        iter(
            DataLoader(loader.load_eval_clips(shards, "val", clips=2), batch_size=3, collate_fn=tkds.collate)
        )
    )
    assert batch["video"].shape == (3, 2, 3, 16, 112, 112)
    assert batch["audio"].shape == (3, 2, 1, 64, 201)
    assert batch["label"].dtype == torch.long and batch["has_audio"].dtype == torch.bool
    assert [m["id"] for m in batch["meta"]] == batch["key"]


def test_the_epoch_partition_deals_each_sample_to_exactly_one_consumer() -> None:
    for total, world, workers in ((10, 2, 2), (7, 3, 4), (100, 4, 3), (2, 2, 2)):
        order = loader.epoch_order(total, seed=5, epoch=1, shuffle=True)
        shares = [
            loader.split_by_rank_and_worker(order, rank, world, worker, workers)
            for rank in range(world)
            for worker in range(workers)
        ]
        assert sorted(np.concatenate(shares).tolist()) == list(range(total))


def test_two_ranks_of_two_workers_see_each_sample_exactly_once(shards: Path, monkeypatch) -> None:
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        ds = tkds.load_shards(shards, seed=1)
        ds.set_epoch(3)
        keys = _keys(ds, num_workers=2)
        assert len(keys) == len(range(rank, 10, 2))
        seen += keys
    assert sorted(seen) == [_key(i) for i in range(10)]


def test_order_and_draws_repeat_for_a_seed_and_epoch_and_change_with_the_epoch(shards: Path) -> None:
    def run(epoch: int, seed: int = 0) -> list[dict]:
        ds = tkds.load_shards(shards, seed=seed)
        ds.set_epoch(epoch)
        return list(ds)

    first, again, later = run(0), run(0), run(1)
    assert [e["key"] for e in first] == [e["key"] for e in again]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(first, again, strict=True))
    assert all(torch.equal(a["audio"], b["audio"]) for a, b in zip(first, again, strict=True))
    assert [e["key"] for e in first] != [e["key"] for e in later]
    assert sorted(e["key"] for e in first) == sorted(e["key"] for e in later)
    assert [e["key"] for e in first] != [e["key"] for e in run(0, seed=1)]


def test_set_epoch_reaches_persistent_workers(shards: Path) -> None:
    ds = tkds.load_shards(shards)
    data = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True, collate_fn=loader.collate)
    epoch0 = [key for batch in data for key in batch["key"]]
    ds.set_epoch(1)
    epoch1 = [key for batch in data for key in batch["key"]]
    fresh = tkds.load_shards(shards)
    fresh.set_epoch(1)
    assert epoch1 == _keys(fresh, num_workers=2)
    assert epoch0 != epoch1


def test_the_decoder_is_opened_once_per_sample_for_both_views(shards: Path, monkeypatch) -> None:
    opened, requests = [], []

    class CountingDecoder(loader.VideoDecoder):
        def __init__(self, *args, **kwargs) -> None:
            opened.append(kwargs)
            super().__init__(*args, **kwargs)

        def get_frames_at(self, indices):
            requests.append(len(indices))
            return super().get_frames_at(indices)

    monkeypatch.setattr(loader, "VideoDecoder", CountingDecoder)
    assert len(list(tkds.load_shards(shards, split="val", views=3, frames=8))) == 3
    assert requests == [3 * 8] * 3
    assert len(opened) == 3
    assert all(k["seek_mode"] == "approximate" and k["num_ffmpeg_threads"] == 1 for k in opened)


@pytest.mark.parametrize("index_has_filesize", [True, False])
def test_a_truncated_shard_names_itself_and_the_fix(
    shards: Path, tmp_path: Path, index_has_filesize: bool
) -> None:
    root = tmp_path / "shards"
    shutil.copytree(shards, root)
    damaged = root / "train" / "train-000001.tar"
    os.truncate(damaged, damaged.stat().st_size // 2)
    if not index_has_filesize:
        index = json.loads((root / "train.json").read_text())
        for entry in index["shardlist"]:
            del entry["filesize"]
        (root / "train.json").write_text(json.dumps(index))
    with pytest.raises(TkdsError, match=r"train-000001\.tar") as caught:
        list(tkds.load_shards(root, shuffle=False))
    assert "--verify" in str(caught.value)


def test_an_undecodable_video_names_its_key_and_shard(tmp_path: Path) -> None:
    _write_split(
        tmp_path, "train", [("123", b"\x00not an mp4" * 64, None, _meta("123", "train", False, "dance"))], [1]
    )
    _write_manifest(tmp_path)
    with pytest.raises(TkdsError, match=r"video 123 in shard .*train-000000\.tar: cannot decode its video"):
        list(tkds.load_shards(tmp_path))


def test_import_tkds_stays_light_and_exports_the_loader_lazily() -> None:
    code = "import sys, tkds, tkds.dataset; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert tkds.load_shards is loader.load_shards and tkds.dataset.load_eval_clips is loader.load_eval_clips
    assert tkds.collate is loader.collate


def test_a_missing_split_lists_the_available_ones(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(TkdsError, match=r"no split 'test'.*available splits: train, val"):
        tkds.load_shards(shards, split="test")
    with pytest.raises(TkdsError, match="available splits: none"):
        tkds.load_shards(tmp_path / "nowhere")


def test_view_windows_are_random_in_training_and_evenly_spaced_in_evaluation() -> None:
    rng = np.random.default_rng(0)
    starts = loader.view_starts(30.0, 2.0, 2, rng)
    assert starts[0] != starts[1] and ((starts >= 0) & (starts <= 28)).all()
    assert loader.view_starts(10.0, 2.0, 4, None).tolist() == [1.0, 3.0, 5.0, 7.0]
    times = loader.frame_times(np.array([4.0]), 2.0, 16, rng)
    assert ((times >= 4.0) & (times < 6.0)).all() and (np.diff(times) > 0).all()


def test_log_mel_equals_torchaudio_mel_spectrogram() -> None:
    from torchaudio.transforms import MelSpectrogram

    spec = loader.ClipSpec(16, 112, audio_seconds=1.0, sample_rate=16000, n_mels=40, views=2, train=False)
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    expected = torch.log(MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=40)(waves) + 1e-6)
    assert torch.allclose(loader.log_mel(waves, spec), expected.unsqueeze(1), atol=1e-4)


def test_audio_crops_equal_a_direct_decode_of_their_windows(shards: Path) -> None:
    index = loader.read_index(shards, "val")
    [(_, raw)] = loader.read_samples(loader.locate([0], index), index, {})
    spec = loader.ClipSpec(16, 112, audio_seconds=0.5, sample_rate=16000, n_mels=64, views=3, train=False)
    direct = AudioDecoder(raw.flac, sample_rate=16000, num_channels=1)
    for starts in ([0.1, 0.3, 0.2], [0.0, 0.9, 1.4]):  # overlapping windows, decoded as one span; apart
        waves = loader.decode_audio(raw, np.array(starts), 0.5, spec)
        for wave, start in zip(waves, starts, strict=True):
            expected = direct.get_samples_played_in_range(start, start + 0.5).data[0]
            assert torch.allclose(wave, expected[:8000], atol=1e-4)
    late = loader.decode_audio(raw, np.array([1.9]), 0.5, spec)  # clamped to the last full window
    assert torch.allclose(late[0], direct.get_samples_played_in_range(1.5, 2.0).data[0][:8000], atol=1e-4)


def _unnormalise(clip: torch.Tensor) -> torch.Tensor:
    return clip * STD + MEAN


def test_augmentation_applies_one_draw_to_every_frame_of_a_view() -> None:
    image = torch.randint(
        0, 256, (1, 3, 40, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    still = image.expand(8, 3, 40, 30)  # every frame the same image
    rng = np.random.default_rng(1)
    views = [aug.draw_view_augment(rng, 40, 30, p_jitter=1.0) for _ in range(4)]
    clips = [aug.view_clip(still, view, 16) for view in views]
    for clip in clips:
        assert clip.shape == (3, 8, 16, 16)
        assert torch.equal(clip, clip[:, :1].expand_as(clip)), "frames of a view diverged"
    assert not torch.allclose(clips[0], clips[1])


def test_a_grayscale_view_has_equal_channels_on_every_frame_and_a_flip_mirrors() -> None:
    frames = torch.randint(
        0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    whole = (0, 0, 32, 32)
    plain = _unnormalise(aug.view_clip(frames, aug.ViewAugment(whole), 32))
    assert torch.allclose(plain, frames.permute(1, 0, 2, 3) / 255, atol=1e-5), "no draws, no change"
    grey = _unnormalise(aug.view_clip(frames, aug.ViewAugment(whole, saturation=1.5, grayscale=True), 32))
    assert torch.allclose(grey[0], grey[1], atol=1e-5) and torch.allclose(grey[1], grey[2], atol=1e-5)
    flipped = _unnormalise(aug.view_clip(frames, aug.ViewAugment(whole, flip=True), 32))
    assert torch.allclose(flipped, plain.flip(-1), atol=1e-5)


def test_the_colour_matrix_equals_jitter_applied_step_by_step() -> None:
    rgb = torch.rand(500, 3) * 0.4 + 0.3  # mid-range: no step would clamp
    luma = torch.tensor(aug.LUMA)
    for grayscale in (False, True):
        view = aug.ViewAugment(
            (0, 0, 1, 1), brightness=1.2, contrast=0.7, saturation=1.3, grayscale=grayscale
        )
        x = rgb * view.brightness
        x = x * view.contrast + (x @ luma).mean() * (1 - view.contrast)
        x = x * view.saturation + (x @ luma)[:, None] * (1 - view.saturation)
        if grayscale:
            x = (x @ luma)[:, None].expand(-1, 3)
        matrix, offset = aug.colour_transform(view, rgb.mean(0).numpy())
        assert np.allclose(rgb.numpy() @ matrix.T + offset, x.numpy(), atol=1e-5)


def test_random_resized_boxes_stay_inside_a_vertical_frame() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        top, left, h, w = aug.random_resized_box(rng, 256, 144)
        assert (
            top >= 0
            and top + h <= 256
            and left >= 0
            and left + w <= 144
            and 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
        )
    assert aug.random_resized_box(rng, 100, 10, scale=(1.0, 1.0)) == (43, 0, 13, 10), "fallback: the centre"
    assert aug.center_square_box(256, 144) == (56, 0, 144, 144)


def test_the_real_builders_shards_load_through_two_workers(built_shards: Path) -> None:
    index = json.loads((built_shards / "train.json").read_text())
    expected = sum(entry["nsamples"] for entry in index["shardlist"])
    ds = tkds.load_shards(built_shards, split="train", frames=8, size=64, views=2)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=loader.collate, num_workers=2))
    keys = [key for batch in batches for key in batch["key"]]
    assert len(keys) == len(set(keys)) == expected == ds.num_samples
    for batch in batches:
        assert batch["video"].shape[1:] == (2, 3, 8, 64, 64)
        assert bool(batch["has_audio"].all()) and bool((batch["label"] >= 0).all())
        assert torch.isfinite(batch["audio"]).all() and batch["audio"].abs().sum() > 0


def test_pass_through_shards_take_their_audio_from_the_video(synth_db: Path, tmp_path: Path) -> None:
    from tkds.dataset.build import ShardParams, build_shards

    out, db = tmp_path / "size0", tmp_path / "tk.duckdb"
    shutil.copy(synth_db, db)
    build_shards(db, out, ShardParams(size=0, ratios=(1.0, 0.0, 0.0)), progress=False)
    examples = list(tkds.load_eval_clips(out, "train", clips=2, frames=4, size=32))
    assert len(examples) == 12
    for example in examples:
        assert example["has_audio"] and example["audio"].std() > 0.1


def _tarfile_listing(path: Path) -> list[tuple[str, int, int]]:
    with tarfile.open(path, "r:") as tar:
        return [(info.name, info.offset_data, info.size) for info in tar if info.isfile()]


def _write_tar(path: Path, members: list[tuple[str, bytes]], tar_format: int = tarfile.USTAR_FORMAT) -> None:
    """A tar as the builder writes one (ustar headers, fixed mode and time), a folder entry first."""
    with tarfile.open(path, "w", format=tar_format) as tar:
        folder = tarfile.TarInfo("train")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o444, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


def test_plain_tar_headers_are_read_directly_and_list_what_tarfile_lists(
    shards: Path, tmp_path: Path
) -> None:
    # Sizes on both sides of a 512-byte block, and an empty member.
    members = [(f"train/{key}.{ext}", bytes([key]) * size) for key, size in enumerate((0, 1, 511, 512, 513))
               for ext in ("mp4", "json")]  # fmt: skip
    plain = tmp_path / "plain.tar"
    _write_tar(plain, members)
    assert loader._plain_tar_members(plain) == _tarfile_listing(plain)
    assert len(_tarfile_listing(plain)) == 10
    # What the fast path leaves to tarfile: pax headers (webdataset's TarWriter), a GNU long name, and a
    # damaged header, after which tarfile stops as it always did (the sample count check then fails).
    long_name = tmp_path / "long.tar"
    _write_tar(long_name, [("x" * 120 + ".mp4", b"data")], tarfile.GNU_FORMAT)
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(plain.read_bytes())
    with open(damaged, "r+b") as file:
        file.seek(512 * 3 + 10)  # the third file's header: folder, two empty files, then it
        file.write(b"#")
    for other in (shards / "train" / "train-000000.tar", long_name, damaged):
        assert loader._plain_tar_members(other) is None
        assert list(loader.tar_members(other)) == _tarfile_listing(other)
    assert len(_tarfile_listing(damaged)) == 2


def _big_split(shards: Path, root: Path, samples: int, per_shard: int) -> None:
    """A train split of `samples` samples behind one wids index: hard links to one tar that holds
    `per_shard` of the fixture's real samples under keys 0, 1, …"""
    real = [(shard.path, members) for shard in loader.read_index(shards, "train")
            for _, members in loader.shard_table(shard)]  # fmt: skip
    contents = []
    for number in range(per_shard):
        path, members = real[number % len(real)]
        with open(path, "rb") as file:
            for ext, (offset, size) in members.items():
                file.seek(offset)
                contents.append((f"{number:019d}.{ext}", file.read(size)))
    (root / "train").mkdir(parents=True)
    template = root / "template.tar"
    _write_tar(template, contents)
    shardlist = []
    for number in range(samples // per_shard):
        url = f"train/train-{number:06d}.tar"
        os.link(template, root / url)
        shardlist.append({"url": url, "nsamples": per_shard, "filesize": template.stat().st_size})
    (root / "train.json").write_text(json.dumps({"wids_version": 1, "shardlist": shardlist}, indent=1))
    shutil.copy(shards / "dataset.json", root / "dataset.json")


def test_a_290000_sample_index_starts_after_scanning_one_shard(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/loader.py --index-samples times this start-up; here: nothing is scanned eagerly, and the
    epoch's order still deals every one of 290,000 samples to exactly one of 2 ranks × 3 workers."""
    root = tmp_path / "big"
    _big_split(shards, root, 290_000, 10)
    scanned = []
    scan = loader.shard_table
    monkeypatch.setattr(loader, "shard_table", lambda shard: scanned.append(shard.path) or scan(shard))
    ds = tkds.load_shards(root, frames=4, size=32, seed=3)
    ds.set_epoch(2)
    assert (ds.num_samples, len(ds.shards)) == (290_000, 29_000)
    example = next(iter(ds))
    order = loader.epoch_order(290_000, seed=3, epoch=2, shuffle=True)
    shard, index = divmod(int(order[0]), 10)
    assert scanned == [root / f"train/train-{shard:06d}.tar"]
    assert example["key"] == f"{index:019d}"
    located = [
        (shard, index)
        for rank in range(2)
        for worker in range(3)
        for _, shard, index in loader.locate(
            loader.split_by_rank_and_worker(order, rank, 2, worker, 3), ds.shards
        )
    ]
    assert sorted(located) == [(shard, index) for shard in range(29_000) for index in range(10)]
