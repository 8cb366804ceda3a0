"""The twin at thesis scale: its index cache, and lookups that answer as a scan of every item would."""

from __future__ import annotations

import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import tkds.twin.corpus as corpus_module
from tkds.errors import TkdsError
from tkds.twin import load_corpus, serve

from .test_twin import REFERER, client, signed_get, video_detail

INDEXES = ("create_time", "newest_first", "by_tag", "by_music", "by_author", "author_of", "sec_uids")


@pytest.fixture
def corpus(twin_corpus: Path, tmp_path: Path) -> Path:
    """A writable copy of the twin corpus whose media are relative symlinks into a pool of two clips."""
    root = tmp_path / "corpus"
    shutil.copytree(twin_corpus / "items", root / "items")
    shutil.copy(twin_corpus / "corpus.json", root / "corpus.json")
    clips = sorted((twin_corpus / "media").glob("*.mp4"))[:2]
    (root / "pool").mkdir()
    (root / "media").mkdir()
    for clip in clips:
        shutil.copy(clip, root / "pool" / clip.name)
    for n, item in enumerate(sorted((root / "items").glob("*.json"))):
        os.symlink(f"../pool/{clips[n % 2].name}", root / "media" / f"{item.stem}.mp4")
    return root


def newest(item: dict) -> tuple[int, str]:
    return -item["createTime"], item["id"]


def items_of(root: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((root / "items").glob("*.json"))]


def indexes(root: Path) -> dict:
    loaded = load_corpus(root)
    return {name: getattr(loaded, name) for name in INDEXES} | {"challenge_ids": loaded.challenge_ids}


def rewrite(path: Path, item: dict) -> None:
    """Replace an item file the way tkds writes files: a new file renamed over the old one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(item))
    os.replace(partial, path)


def test_the_index_is_reused_until_an_item_changes(corpus: Path) -> None:
    first = load_corpus(corpus)
    assert first.parsed == 80 and (corpus / ".twin-index").is_file()
    again = load_corpus(corpus)
    assert again.parsed == 0
    assert {name: getattr(again, name) for name in INDEXES} == {
        name: getattr(first, name) for name in INDEXES
    }

    path = sorted((corpus / "items").glob("*.json"))[5]
    item = json.loads(path.read_text())
    item["desc"] += " #zebraquux"
    item["challenges"].append({"id": "99", "title": "ZebraQuux"})
    rewrite(path, item)
    changed = load_corpus(corpus)
    assert changed.parsed == 1
    assert changed.search(["zebraqu"]) == [item["id"]] and changed.by_tag["zebraquux"] == [item["id"]]
    assert changed.challenge_id("zebraquux") == "99"

    # Changed in place, same size: the new mtime alone makes the twin read it again.
    item["desc"] = item["desc"].replace("zebraquux", "yakquuxxx")
    item["challenges"][-1]["title"] = "YakQuuxxx"
    size = path.stat().st_size
    path.write_text(json.dumps(item))
    stat = path.stat()
    assert stat.st_size == size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    edited = load_corpus(corpus)
    assert edited.parsed == 1 and edited.search(["yakquux"]) == [item["id"]] and not edited.search(["zebra"])

    path.unlink()
    removed = load_corpus(corpus)
    assert removed.parsed == 0 and item["id"] not in removed.item_paths
    assert item["id"] not in removed.newest_first and removed.search(["yakquux"]) == []
    assert load_corpus(corpus).parsed == 0  # the index was rewritten without the removed file


@pytest.mark.parametrize(
    "damage",
    [b"{", b'{"version": 1, "items": {"x.json": [1, 2]}}', b"[]", b'{"version": 999, "items": {}}'],
)
def test_a_damaged_or_foreign_index_is_rebuilt(corpus: Path, damage: bytes) -> None:
    expected = indexes(corpus)
    (corpus / ".twin-index").write_bytes(damage)
    assert load_corpus(corpus).parsed == 80 and indexes(corpus) == expected


def test_a_tampered_row_cannot_point_outside_the_items_folder(corpus: Path) -> None:
    load_corpus(corpus)
    saved = json.loads((corpus / ".twin-index").read_text())
    name = sorted(saved["items"])[0]
    saved["items"][name][2] = "../../elsewhere"
    saved["items"][sorted(saved["items"])[1]][7] = [["not", "a", "tag"]]
    saved["items"][sorted(saved["items"])[2]][8] = ["an id without its title"]
    (corpus / ".twin-index").write_text(json.dumps(saved))
    loaded = load_corpus(corpus)
    assert loaded.parsed == 3 and name.removesuffix(".json") in loaded.item_paths


def test_an_index_that_cannot_be_written_only_costs_a_parse(corpus: Path) -> None:
    (corpus / ".twin-index").mkdir()  # as unwritable as a read-only corpus, even for root
    assert load_corpus(corpus).parsed == 80 and load_corpus(corpus).parsed == 80
    assert indexes(corpus)["newest_first"] == [i["id"] for i in sorted(items_of(corpus), key=newest)]
    assert [p.name for p in corpus.iterdir() if p.name.endswith(".partial")] == []


class CountingPool(ProcessPoolExecutor):
    started = 0

    def __init__(self, *args, **kwargs) -> None:
        CountingPool.started += 1
        super().__init__(*args, **kwargs)


def test_a_parallel_parse_indexes_as_one_process_does(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = indexes(corpus)
    (corpus / ".twin-index").unlink()
    CountingPool.started = 0
    monkeypatch.setattr(corpus_module, "PARALLEL_PARSE_MIN", 1)
    monkeypatch.setattr(corpus_module, "PARSE_CHUNK", 7)
    monkeypatch.setattr(corpus_module, "ProcessPoolExecutor", CountingPool)
    monkeypatch.setattr(corpus_module, "_may_fork", lambda: True)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert load_corpus(corpus).parsed == 80 and CountingPool.started == 1
    assert indexes(corpus) == expected

    bad = sorted((corpus / "items").glob("*.json"))
    for path in (bad[40], bad[70]):
        path.write_text("{")
    (corpus / ".twin-index").unlink()
    with pytest.raises(TkdsError, match=bad[40].name):  # the first bad file by name, as one process says
        load_corpus(corpus)


def test_lookups_answer_as_a_scan_of_every_item(corpus: Path) -> None:
    items = items_of(corpus)
    loaded = load_corpus(corpus)
    in_order = sorted(items, key=newest)
    tags_of = {i["id"]: [c["title"].lower() for c in i["challenges"]] for i in items}
    texts = {
        i["id"]: " ".join(
            [i["desc"], i["author"]["uniqueId"], i["author"]["nickname"], *tags_of[i["id"]]]
        ).lower()
        for i in items
    }
    words = sorted({w for text in texts.values() for w in text.split()})
    rng = random.Random(3)
    queries = [["fyp"], ["a"], ["e", "o"], ["nothing-like-it"], ["#fyp"], ["fyp", "#fyp"]]
    for _ in range(60):
        picked = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        queries.append([w[rng.randint(0, len(w) - 1) :][: rng.randint(1, 5)] for w in picked])
    for query in queries:
        expected = [i["id"] for i in in_order if all(w in texts[i["id"]] for w in query)]
        assert loaded.search(query) == expected, query
    assert loaded.search([]) == []

    first_challenge: dict[str, str] = {}
    for item in items:
        for challenge in item["challenges"]:
            first_challenge.setdefault(challenge["title"].lower(), str(challenge["id"]))
    assert {tag: loaded.challenge_id(tag) for tag in first_challenge} == first_challenge
    assert loaded.challenge_id("no-such-tag") == "0"


def test_the_twin_pages_posts_and_search_and_serves_pooled_media(corpus: Path) -> None:
    with serve(corpus, seed=1) as twin:
        loaded = twin.state.corpus
        session = client(twin)
        user = max(loaded.by_author, key=lambda name: len(loaded.by_author[name]))
        video_id = loaded.by_author[user][0]
        page = session.get(f"https://www.tiktok.com/@{user}/video/{video_id}")
        sec_uid = loaded.item(video_id)["author"]["secUid"]
        seen, cursor, has_more = [], 0, True
        while has_more:  # the user's posts, two at a time, each page older than the cursor
            posts = signed_get(
                session, twin, "/api/post/item_list/", {"secUid": sec_uid, "count": 2, "cursor": cursor}
            ).json()
            seen += [i["id"] for i in posts["itemList"]]
            cursor, has_more = int(posts["cursor"]), posts["hasMore"]
        assert seen == loaded.by_author[user] and len(seen) > 2

        word = loaded.item(video_id)["desc"].split()[0].lower()
        found, offset = [], 0
        while True:
            result = signed_get(
                session, twin, "/api/search/item/full/", {"keyword": word, "count": 7, "cursor": offset}
            ).json()
            found += [i["id"] for i in result["item_list"]]
            offset = result["cursor"]
            if not result["has_more"]:
                break
        assert found == loaded.search([word]) and video_id in found

        served = video_detail(page.text)["itemInfo"]["itemStruct"]
        play = served["video"]["playAddr"]
        clip = (corpus / "media" / f"{video_id}.mp4").resolve()
        assert session.get(play, headers=REFERER).content == clip.read_bytes()
        cover = session.get(f"https://p16-sign-va.tiktokcdn.com/obj/tos/{video_id}")
        assert cover.status_code == 200 and cover.content[:2] == b"\xff\xd8"
        sound = session.get(served["music"]["playUrl"])
        assert sound.status_code == 200 and sound.content[4:8] == b"ftyp"

        clip.unlink()  # a pooled clip gone: every video that shared it has no media now
        assert video_id not in loaded.media_paths
        assert session.get(play, headers=REFERER).status_code == 404
