"""A corpus in the collection layout (items/ID.json, media/ID.mp4), indexed the way TikTok serves it.

Photo posts have images/ID/NN.jpeg instead of an mp4, and their sounds are sounds/MUSIC_ID.mp3.

Only indexes stay in memory; item JSON is read from disk on demand (with a bounded cache) and media is
streamed from its file (a symlink, e.g. into a media pool, is followed). Each lookup a request makes
is a dict or list access, so its cost does not grow with the corpus.

Start-up parses each item file once: the fields the indexes need are kept in `CORPUS/.twin-index`,
keyed by each file's name, size and mtime, so a later start parses only the files that changed.
A large first parse runs on every core.
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import orjson

from tkds.errors import TkdsError
from tkds.tiktok import photo_image_key

INDEX_NAME = ".twin-index"
INDEX_VERSION = 1
PARALLEL_PARSE_MIN = 5_000  # fewer files to parse than this: one process beats starting a pool
PARSE_CHUNK = 2_000
ITEM_CACHE = 16_384  # item files kept in memory, as bytes (about 5 KB each)
SEARCH_CACHE = 64  # keyword sets whose matches stay in memory
AUTHOR_CACHE = 65_536  # users whose author block stays in memory (about 1 KB each)

# What the indexes need from one item, in this order (a row of .twin-index, after size and mtime).
Record = tuple[str, int, str, str, str, list[str], list[str], str, int]
RECORD_TYPES = (str, int, str, str, str, list, list, str, int)  # id, createTime, uniqueId, secUid,
# search text, tags, challenges as [id, title, id, title, ...], music id, photo post's image count
ROW_TYPES = (int, int, *RECORD_TYPES)


class CorpusFiles(Mapping[str, Path]):
    """A corpus's files by key, their paths made when asked: no memory or start-up per file.

    With `on_disk`, a key is present only while its file exists (a symlink counts if its target does).
    """

    def __init__(self, keys: Collection[str], path_of: Callable[[str], Path], on_disk: bool) -> None:
        self._keys, self._path_of, self._on_disk = keys, path_of, on_disk

    def __contains__(self, key: object) -> bool:
        if key not in self._keys:
            return False
        return not self._on_disk or self._path_of(key).is_file()

    def __getitem__(self, key: str) -> Path:
        if key not in self:
            raise KeyError(key)
        return self._path_of(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._keys if key in self)

    def __len__(self) -> int:
        return len(self._keys) if not self._on_disk else sum(1 for _ in self)


class SearchIndex:
    """Which items' search text contains every query word, without reading every text.

    A query word has no whitespace, so it can only occur inside one whitespace-separated token of a
    text: the words are looked up in the distinct tokens (one string, scanned by `str.find`), and the
    matching tokens' posting lists (ranks, newest first) are merged. A query's ranks are cached, and a
    page maps only its own ranks to ids.
    """

    def __init__(self, postings: dict[str, list[int]], newest_first: list[str]) -> None:
        self._postings = list(postings.values())  # each in ascending rank
        tokens = list(postings)
        self._joined = "\n".join(tokens)
        self._starts = [0]
        for token in tokens:
            self._starts.append(self._starts[-1] + len(token) + 1)
        self.newest_first = newest_first
        self._cache: OrderedDict[tuple[str, ...], list[int]] = OrderedDict()

    def _ranks(self, word: str) -> list[int]:
        """Ranks, ascending, of the items with a token containing `word`."""
        found, position = [], 0
        while (hit := self._joined.find(word, position)) != -1:
            token = bisect_right(self._starts, hit) - 1
            found.append(self._postings[token])
            position = self._starts[token + 1]
        return found[0] if len(found) == 1 else sorted(set().union(*found))

    def ranks(self, words: list[str]) -> list[int]:
        """Ranks, ascending (newest first), of the items whose text contains each of `words`."""
        key = tuple(sorted(set(words)))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ranks = self._ranks(key[0])
        for word in key[1:]:
            if not ranks:
                break
            ranks = sorted(set(ranks).intersection(self._ranks(word)))
        self._cache[key] = ranks
        while len(self._cache) > SEARCH_CACHE:
            self._cache.popitem(last=False)
        return ranks


@dataclass
class TwinCorpus:
    root: Path
    create_time: dict[str, int]  # video id -> createTime, in item file-name order
    newest_first: list[str]
    by_tag: dict[str, list[str]] = field(default_factory=dict)
    by_music: dict[str, list[str]] = field(default_factory=dict)
    by_author: dict[str, list[str]] = field(default_factory=dict)  # uniqueId -> ids, newest first
    author_of: dict[str, str] = field(default_factory=dict)  # video id -> uniqueId
    sec_uids: dict[str, str] = field(default_factory=dict)  # secUid -> uniqueId
    challenge_ids: dict[str, str] = field(default_factory=dict)  # challenge id -> tag
    photo_counts: dict[str, int] = field(default_factory=dict)  # photo post id -> its number of images
    sound_paths: dict[str, Path] = field(default_factory=dict)  # music id -> MP3
    search_index: SearchIndex | None = None
    observed_at: int = 0
    parsed: int = 0  # item files parsed at start-up; the others came from .twin-index

    def __post_init__(self) -> None:
        self._item_bytes = lru_cache(maxsize=ITEM_CACHE)(self._read_item_bytes)
        # a user's author block as their newest post has it (read-only): what comments carry
        self.latest_author = lru_cache(maxsize=AUTHOR_CACHE)(self._latest_author)
        self.item_paths = CorpusFiles(self.create_time, self._item_path, on_disk=False)
        self.media_paths = CorpusFiles(self.create_time, self._media_path, on_disk=True)
        images = {
            photo_image_key(video_id, position): (video_id, position)
            for video_id, count in self.photo_counts.items()
            for position in range(count)
        }
        self.image_paths = CorpusFiles(images, lambda key: self._image_path(*images[key]), on_disk=True)
        self.authors = list(self.by_author)  # in first-seen order, for seeded picks
        self._challenge_of_tag: dict[str, str] = {}
        for challenge_id, tag in self.challenge_ids.items():
            self._challenge_of_tag.setdefault(tag, challenge_id)

    def _item_path(self, video_id: str) -> Path:
        return self.root / "items" / f"{video_id}.json"

    def _media_path(self, video_id: str) -> Path:
        return self.root / "media" / f"{video_id}.mp4"

    def _image_path(self, video_id: str, position: int) -> Path:
        return self.root / "images" / video_id / f"{position:02d}.jpeg"

    def _read_item_bytes(self, video_id: str) -> bytes:
        return self.item_paths[video_id].read_bytes()

    def item(self, video_id: str) -> dict:
        """The item as its file holds it: a new dict each call (parsing is faster than a deep copy)."""
        return orjson.loads(self._item_bytes(video_id))

    def challenge_id(self, tag: str) -> str:
        """The id TikTok gives a hashtag's challenge; "0" for a tag no item carries."""
        return self._challenge_of_tag.get(tag, "0")

    def search(self, words: list[str]) -> list[str]:
        """Ids, newest first, whose desc, author or tags contain every word; none for no words."""
        return self.search_page(words, 0, len(self.newest_first))[0]

    def search_page(self, words: list[str], start: int, count: int) -> tuple[list[str], int]:
        """The ids `start` to `start + count` of `search(words)`, and how many there are in all."""
        if not words or self.search_index is None:
            return [], 0
        ranks = self.search_index.ranks(words)
        return [self.newest_first[rank] for rank in ranks[start : start + count]], len(ranks)

    def _latest_author(self, unique_id: str) -> dict:
        return self.item(self.by_author[unique_id][0])["author"]


def _tags(item: dict) -> list[str]:
    tags = [c.get("title", "") for c in item.get("challenges") or []]
    tags += [t.get("hashtagName", "") for t in item.get("textExtra") or [] if t.get("type") == 1]
    return list(dict.fromkeys(t.lower() for t in tags if t))


def _record(item: dict) -> Record:
    """The fields the indexes need from one item; raises on a payload that is not an item."""
    video_id = str(item["id"])
    author = item["author"]
    unique_id = author["uniqueId"]
    created = int(item["createTime"])
    if not isinstance(unique_id, str):
        raise TypeError(f"author.uniqueId is {type(unique_id).__name__}, not a string")
    post = item.get("imagePost")
    images = post.get("images") if isinstance(post, dict) else None
    is_photo_post = isinstance(images, list) and images and all(isinstance(i, dict) for i in images)
    photos = len(images) if is_photo_post else 0
    tags = _tags(item)
    challenges = []
    for challenge in item.get("challenges") or []:
        if challenge.get("id") and challenge.get("title"):
            challenges += [str(challenge["id"]), challenge["title"].lower()]
    music_id = str((item.get("music") or {}).get("id") or "")
    search_text = " ".join([item.get("desc", ""), unique_id, author.get("nickname", ""), *tags]).lower()
    sec_uid = author.get("secUid", "")
    sec_uid = sec_uid if isinstance(sec_uid, str) else ""
    return video_id, created, unique_id, sec_uid, search_text, tags, challenges, music_id, photos


def _parse_items(items_dir: str, names: list[str]) -> list[Record | str]:
    """Each named item file's record, or the one-line reason it is not a TikTok item."""
    parsed: list[Record | str] = []
    for name in names:
        path = Path(items_dir) / name
        try:
            record = _record(orjson.loads(path.read_bytes()))
        except OSError as error:
            parsed.append(f"cannot read {path} ({error.strerror}); fix its permissions or remove it")
            continue
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            parsed.append(f"{path} is not a TikTok item ({type(error).__name__}: {error}); fix or remove it")
            continue
        if record[0] + ".json" != name:
            parsed.append(f"{path} holds item {record[0]}; item files must be named by their id")
            continue
        parsed.append(record)
    return parsed


def _may_fork() -> bool:
    return threading.active_count() == 1


def _parse_all(items_dir: Path, names: list[str]) -> list[Record]:
    """Parse item files, on every core when there are many; the first bad file (by name) is refused."""
    workers = min(os.cpu_count() or 1, 8)
    # Forked workers need no import of the caller's main module; forking is safe only while this
    # process runs one thread (as `tkds twin` does when it starts), so a threaded caller parses here.
    if len(names) < PARALLEL_PARSE_MIN or workers < 2 or not _may_fork():
        parsed = _parse_items(str(items_dir), names)
    else:
        chunks = [names[i : i + PARSE_CHUNK] for i in range(0, len(names), PARSE_CHUNK)]
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            parts = pool.map(_parse_items, [str(items_dir)] * len(chunks), chunks)
            parsed = [result for part in parts for result in part]
    for result in parsed:
        if isinstance(result, str):
            raise TkdsError(result)
    return parsed  # type: ignore[return-value]


def _valid_row(row: object) -> bool:
    """A well-typed index row (size, mtime, then a `Record`), so a damaged index cannot mislead."""
    if type(row) is not list or tuple(map(type, row)) != ROW_TYPES or len(row[8]) % 2:
        return False
    try:  # str.join refuses any element that is not a string, at C speed
        "".join(row[7])
        "".join(row[8])
    except TypeError:
        return False
    return True


def _cached_rows(index: Path) -> dict[str, list]:
    """The rows of a previous start's index by file name; an unreadable or foreign index counts as none."""
    try:
        saved = orjson.loads(index.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("version") != INDEX_VERSION:
        return {}
    rows = saved.get("items")
    return rows if isinstance(rows, dict) else {}


def _save_index(index: Path, rows: dict[str, list]) -> None:
    """Write the index whole or not at all; a read-only corpus just starts slower next time."""
    try:
        handle, partial = tempfile.mkstemp(prefix=index.name + ".", suffix=".partial", dir=index.parent)
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(orjson.dumps({"version": INDEX_VERSION, "items": rows}))
        os.chmod(partial, 0o644)  # as the corpus's other files, not mkstemp's 0600
        os.replace(partial, index)
    except OSError:
        Path(partial).unlink(missing_ok=True)


def _item_rows(root: Path) -> tuple[list[list], int]:
    """Every item's index row, in file-name order, and how many files had to be parsed."""
    items_dir = root / "items"
    try:
        entries = sorted(
            (e.name, e)
            for e in os.scandir(items_dir)
            if e.name.endswith(".json") and not e.name.startswith(".")
        )
    except OSError:
        entries = []
    if not entries:
        raise TkdsError(f"{root} has no items/*.json: it is not a corpus in the collection layout")
    index = root / INDEX_NAME
    cached = _cached_rows(index)
    rows: dict[str, list] = {}
    stale = []
    for name, entry in entries:
        try:
            stat = entry.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # e.g. a broken symlink: parsing it says what is wrong
            size = mtime = -1
        row = cached.get(name)
        if _valid_row(row) and row[0] == size and row[1] == mtime and row[2] + ".json" == name:
            rows[name] = row
        else:
            rows[name] = [size, mtime]
            stale.append(name)
    if stale:
        for name, record in zip(stale, _parse_all(items_dir, stale), strict=True):
            rows[name].extend(record)
    if stale or len(cached) != len(rows):
        _save_index(index, rows)
    return list(rows.values()), len(stale)


def load_corpus(root: str | Path) -> TwinCorpus:
    """Index a corpus folder; a missing or malformed one is refused with a one-line reason."""
    root = Path(root)
    if not root.is_dir():
        raise TkdsError(f"corpus folder {root} does not exist; make one with `tkds synth {root}`")
    collecting = gc.isenabled()
    gc.disable()  # millions of new objects and no garbage: collections would only rescan them (-35 %)
    try:
        return _index(root)
    finally:
        if collecting:
            gc.enable()


def _index(root: Path) -> TwinCorpus:
    rows, parsed = _item_rows(root)
    create_time: dict[str, int] = {}
    author_of, sec_uids, challenge_ids, photo_counts = {}, {}, {}, {}
    by_tag: dict[str, list[str]] = {}
    by_music: dict[str, list[str]] = {}
    by_author: dict[str, list[str]] = {}
    # File-name order: the order of every dict's keys, which seeded picks over them depend on.
    for _, _, video_id, created, unique_id, sec_uid, _, tags, challenges, music_id, photos in rows:
        create_time[video_id] = created
        author_of[video_id] = unique_id
        sec_uids[sec_uid] = unique_id
        for position in range(0, len(challenges), 2):
            challenge_ids[challenges[position]] = challenges[position + 1]
        if photos:
            photo_counts[video_id] = photos
        for tag in tags:
            if tag not in by_tag:
                by_tag[tag] = []
        if music_id and music_id not in by_music:
            by_music[music_id] = []
        if unique_id not in by_author:
            by_author[unique_id] = []
    # Newest first: the order of every list.
    rows.sort(key=lambda row: (-row[3], row[2]))
    newest_first = [row[2] for row in rows]
    postings: defaultdict[str, list[int]] = defaultdict(list)
    for rank, (_, _, video_id, _, unique_id, _, search_text, tags, _, music_id, _) in enumerate(rows):
        for tag in tags:
            by_tag[tag].append(video_id)
        if music_id:
            by_music[music_id].append(video_id)
        by_author[unique_id].append(video_id)
        for token in set(search_text.split()):
            postings[token].append(rank)
    del rows

    observed_at = max(create_time.values())
    card = root / "corpus.json"
    if card.exists():
        try:
            observed_at = int(orjson.loads(card.read_bytes())["config"]["observed_at"])
        except (ValueError, KeyError, TypeError) as error:
            raise TkdsError(
                f"{card} is malformed ({type(error).__name__}: {error}); regenerate the corpus"
            ) from None
    return TwinCorpus(
        root=root,
        create_time=create_time,
        newest_first=newest_first,
        by_tag=by_tag,
        by_music=by_music,
        by_author=by_author,
        author_of=author_of,
        sec_uids=sec_uids,
        challenge_ids=challenge_ids,
        photo_counts=photo_counts,
        sound_paths={path.stem: path for path in sorted((root / "sounds").glob("*.mp3"))},
        search_index=SearchIndex(postings, newest_first),
        observed_at=observed_at,
        parsed=parsed,
    )
