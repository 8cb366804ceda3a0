"""A corpus in the collection layout (items/ID.json, media/ID.mp4), indexed the way TikTok serves it.

Photo posts have images/ID/NN.jpeg instead of an mp4, and their sounds are sounds/MUSIC_ID.mp3.

Only indexes stay in memory; item JSON is read from disk on demand (with a small cache) and media is
streamed from its file, so a 10,000-video corpus starts in about a second.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import orjson

from tkds.errors import TkdsError
from tkds.tiktok import photo_image_key


@dataclass
class TwinCorpus:
    root: Path
    item_paths: dict[str, Path]
    media_paths: dict[str, Path]
    create_time: dict[str, int]
    newest_first: list[str]
    by_tag: dict[str, list[str]] = field(default_factory=dict)
    by_music: dict[str, list[str]] = field(default_factory=dict)
    by_author: dict[str, list[str]] = field(default_factory=dict)  # uniqueId -> ids, newest first
    author_of: dict[str, str] = field(default_factory=dict)  # video id -> uniqueId
    sec_uids: dict[str, str] = field(default_factory=dict)  # secUid -> uniqueId
    search_text: dict[str, str] = field(default_factory=dict)
    challenge_ids: dict[str, str] = field(default_factory=dict)  # challenge id -> tag
    photo_counts: dict[str, int] = field(default_factory=dict)  # photo post id -> its number of images
    image_paths: dict[str, Path] = field(default_factory=dict)  # photo image key -> JPEG
    sound_paths: dict[str, Path] = field(default_factory=dict)  # music id -> MP3
    observed_at: int = 0

    def __post_init__(self) -> None:
        self.item = lru_cache(maxsize=4096)(self._read_item)

    def _read_item(self, video_id: str) -> dict:
        return orjson.loads(self.item_paths[video_id].read_bytes())

    def challenge_id(self, tag: str) -> str:
        """The id TikTok gives a hashtag's challenge; "0" for a tag no item carries."""
        return next((cid for cid, name in self.challenge_ids.items() if name == tag), "0")

    def latest_item_of(self, unique_id: str) -> dict:
        return self.item(self.by_author[unique_id][0])


def _tags(item: dict) -> list[str]:
    tags = [c.get("title", "") for c in item.get("challenges") or []]
    tags += [t.get("hashtagName", "") for t in item.get("textExtra") or [] if t.get("type") == 1]
    return list(dict.fromkeys(t.lower() for t in tags if t))


def load_corpus(root: str | Path) -> TwinCorpus:
    """Index a corpus folder; a missing or malformed one is refused with a one-line reason."""
    root = Path(root)
    if not root.is_dir():
        raise TkdsError(f"corpus folder {root} does not exist; make one with `tkds synth {root}`")
    item_files = sorted((root / "items").glob("*.json"))
    if not item_files:
        raise TkdsError(f"{root} has no items/*.json: it is not a corpus in the collection layout")
    item_paths, media_paths, create_time = {}, {}, {}
    by_tag, by_music, by_author = defaultdict(list), defaultdict(list), defaultdict(list)
    author_of, sec_uids, search_text, challenge_ids = {}, {}, {}, {}
    photo_counts, image_paths = {}, {}
    for path in item_files:
        try:
            item = orjson.loads(path.read_bytes())  # parsing is most of the start-up time
            video_id = str(item["id"])
            author = item["author"]
            unique_id = author["uniqueId"]
            created = int(item["createTime"])
        except (ValueError, KeyError, TypeError) as error:
            raise TkdsError(
                f"{path} is not a TikTok item ({type(error).__name__}: {error}); fix or remove it"
            ) from None
        if video_id != path.stem:
            raise TkdsError(f"{path} holds item {video_id}; item files must be named by their id")
        item_paths[video_id] = path
        mp4 = root / "media" / f"{video_id}.mp4"
        if mp4.exists():
            media_paths[video_id] = mp4
        create_time[video_id] = created
        post = item.get("imagePost")
        images = post.get("images") if isinstance(post, dict) else None
        if isinstance(images, list) and images and all(isinstance(i, dict) for i in images):
            photo_counts[video_id] = len(images)
            for position in range(len(images)):
                jpeg = root / "images" / video_id / f"{position:02d}.jpeg"
                if jpeg.exists():
                    image_paths[photo_image_key(video_id, position)] = jpeg
        tags = _tags(item)
        for challenge in item.get("challenges") or []:
            if challenge.get("id") and challenge.get("title"):
                challenge_ids[str(challenge["id"])] = challenge["title"].lower()
        for tag in tags:
            by_tag[tag].append(video_id)
        music_id = str((item.get("music") or {}).get("id") or "")
        if music_id:
            by_music[music_id].append(video_id)
        by_author[unique_id].append(video_id)
        author_of[video_id] = unique_id
        sec_uids[author.get("secUid", "")] = unique_id
        search_text[video_id] = " ".join(
            [item.get("desc", ""), unique_id, author.get("nickname", ""), *tags]
        ).lower()

    def newest(ids: list[str]) -> list[str]:
        return sorted(ids, key=lambda i: (-create_time[i], i))

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
        item_paths=item_paths,
        media_paths=media_paths,
        create_time=create_time,
        newest_first=newest(list(item_paths)),
        by_tag={k: newest(v) for k, v in by_tag.items()},
        by_music={k: newest(v) for k, v in by_music.items()},
        by_author={k: newest(v) for k, v in by_author.items()},
        author_of=author_of,
        sec_uids=sec_uids,
        search_text=search_text,
        challenge_ids=challenge_ids,
        photo_counts=photo_counts,
        image_paths=image_paths,
        sound_paths={path.stem: path for path in sorted((root / "sounds").glob("*.mp3"))},
        observed_at=observed_at,
    )
