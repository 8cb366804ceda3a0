"""Other readers of the shards that tkds builds: Hugging Face `datasets`, wids, and `len(load_shards(...))`.

Every test reads the real `build_shards` output of the small SynthTok corpus (tests/conftest.py): 12 videos
with audio in splits of 4, 3 and 5, in shards of 3, at short side 128, labelled with their categories.
"""

from __future__ import annotations

import glob
import json
import math
from functools import partial
from pathlib import Path

import pytest
from torch.utils.data import DataLoader
from torchcodec.decoders import AudioDecoder, VideoDecoder

import tkds
from tests.test_photo_posts import PHOTOS, photo_db  # noqa: F401 (the fixture)
from tkds.dataset.loader import hf_features, read_metas
from tkds.dataset.split import SPLITS

SIZE = 128  # the fixture's short side


def index_of(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}.json").read_text())


def total(root: Path, split: str) -> int:
    return sum(entry["nsamples"] for entry in index_of(root, split)["shardlist"])


def keys_of(root: Path, split: str) -> list[str]:
    """The split's video ids in index order, as tkds's own reader lists them."""
    return [key for _, key, _, _ in read_metas(root, split)]


def test_the_wids_index_has_what_wids_needs(built_shards: Path) -> None:
    for split in SPLITS:
        index = index_of(built_shards, split)
        assert index["wids_version"] == 1 and index["name"] == f"tkds-{split}"
        for entry in index["shardlist"]:
            # relative to the index's own folder, where wids resolves it
            shard = built_shards / entry["url"]
            assert shard.is_file() and not entry["url"].startswith("/")
            assert entry["nsamples"] >= 1 and entry["filesize"] == shard.stat().st_size


@pytest.mark.parametrize("split", SPLITS)
def test_wids_reads_each_split_from_its_index(
    built_shards: Path, split: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wids
    from wids.wids_decode import default_decoder

    monkeypatch.chdir(tmp_path)  # relative urls must resolve against the index, not the working folder
    dataset = wids.ShardListDataset(
        str(built_shards / f"{split}.json"),
        cache_dir=str(tmp_path / "wids-cache"),
        transformations=partial(default_decoder, format="PIL"),
    )
    expected = keys_of(built_shards, split)
    assert len(dataset) == len(expected) == total(built_shards, split)
    samples = [dataset[i] for i in range(len(dataset))]
    assert [sample["__key__"] for sample in samples] == expected
    for sample in samples:
        assert {".mp4", ".flac", ".json", ".jpg"} <= set(sample)
        meta = sample[".json"]  # decoded by wids
        assert meta["id"] == sample["__key__"] and meta["split"] == split and meta["labels"]["category"]
        video = VideoDecoder(sample[".mp4"].getvalue())
        assert min(video[0].shape[1:]) == SIZE and video.metadata.codec == "h264"
        audio = AudioDecoder(sample[".flac"].getvalue()).get_all_samples()
        assert audio.sample_rate == 16000 and audio.data.abs().max() > 0
        assert min(sample[".jpg"].size) == SIZE
    dataset.close()


@pytest.fixture()
def hf_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`datasets`, offline (nothing here may reach the Hub), caching under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    datasets.disable_progress_bars()
    return datasets


def test_hugging_face_datasets_loads_every_split(built_shards: Path, hf_datasets, tmp_path: Path) -> None:
    files = {split: sorted(glob.glob(str(built_shards / split / "*.tar"))) for split in SPLITS}
    loaded = hf_datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == set(SPLITS)
    for split in SPLITS:
        table = loaded[split]
        assert {"mp4", "flac", "json", "jpg", "__key__", "__url__"} == set(table.column_names)
        assert table["__key__"] == keys_of(built_shards, split)
        assert table.num_rows == json.loads((built_shards / "dataset.json").read_text())["counts"][split]
        for row in table:
            assert row["json"]["id"] == row["__key__"] and row["json"]["split"] == split
            assert row["json"]["labels"]["category"]
            frames = row["mp4"].get_frames_at([0, 1]).data  # datasets' Video feature: a torchcodec decoder
            assert frames.shape[0] == 2 and min(frames.shape[2:]) == SIZE
            audio = row["flac"].get_all_samples()  # its Audio feature, torchcodec too
            assert audio.sample_rate == 16000 and audio.data.abs().max() > 0
            assert min(row["jpg"].size) == SIZE


def test_hugging_face_datasets_streams_the_shards(built_shards: Path, hf_datasets) -> None:
    files = sorted(glob.glob(str(built_shards / "train" / "*.tar")))
    stream = hf_datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", streaming=True
    )
    rows = list(stream)
    assert [row["__key__"] for row in rows] == keys_of(built_shards, "train")
    for row in rows:
        assert row["json"]["id"] == row["__key__"] and min(row["mp4"][0].shape[1:]) == SIZE


def test_load_shards_has_the_length_of_the_split_per_rank(
    built_shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for split in SPLITS:
        ds = tkds.load_shards(built_shards, split=split)
        assert len(ds) == ds.num_samples == total(built_shards, split)  # examples, whatever the views
        assert len(tkds.dataset.load_eval_clips(built_shards, split, clips=3)) == ds.num_samples
    # Under DDP, each rank's share: rank 1 of 2 gets every second sample, across its workers.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds = tkds.load_shards(built_shards, split="test", frames=2, size=32, audio_seconds=0.2, n_mels=8)
    assert len(ds) == len(range(1, total(built_shards, "test"), 2)) == 2
    batches = list(DataLoader(ds, batch_size=1, num_workers=2, collate_fn=tkds.collate))
    assert len(batches) == len(ds) == len(DataLoader(ds, batch_size=1))
    assert len(DataLoader(ds, batch_size=3)) == math.ceil(len(ds) / 3)


def test_hf_features_load_photo_posts_beside_videos(photo_db: Path, hf_datasets, tmp_path: Path) -> None:  # noqa: F811
    from tkds.dataset.build import ShardParams, build_shards

    out = tmp_path / "shards"
    build_shards(photo_db, out, ShardParams(size=64, fps=5, ratios=(1.0, 0.0, 0.0)), progress=False)
    files = {"train": sorted(glob.glob(str(out / "train" / "*.tar")))}
    features = hf_features(out)  # datasets' own inference refuses samples with different members
    most = max(len(sizes) for sizes, _ in PHOTOS.values())
    assert [name for name in features if name.startswith("img")] == [f"img{n}.jpg" for n in range(most)]
    table = hf_datasets.load_dataset(
        "webdataset", data_files=files, split="train", features=features, cache_dir=str(tmp_path / "hf")
    )
    assert table["__key__"] == keys_of(out, "train") and table.num_rows == len(PHOTOS) + 1
    for row in table:
        sizes = PHOTOS[row["__key__"]][0] if row["__key__"] in PHOTOS else []
        images = [row[f"img{n}.jpg"] for n in range(most)]
        assert [image.size for image in images if image is not None] == sizes  # None past its last image
        assert row["json"]["kind"] == ("photo" if sizes else "video") and len(row["json"]["images"]) == len(
            sizes
        )
        assert min(row["mp4"][0].shape[1:]) == 64 and row["flac"].get_all_samples().data.abs().max() > 0
