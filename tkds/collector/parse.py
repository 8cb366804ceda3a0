"""TikTok web payloads of every era (pages, API responses, saved captures) as record dataclasses.

Everything here is pure except `parse_capture`, which reads one file. Ids stay strings, counts
prefer the exact `statsV2` strings over the rounded `stats`, and every entity keeps its raw dict.

Nothing in a payload is trusted: ids are checked with `tkds.ids` (a record with an invalid id is not
built; its `Refusal` is kept in `Parsed.refused`, and the rest of the payload goes on), a bad username
becomes None, numbers out of their column's range become None, and a capture nested too deeply, too
large or not a regular file is a `CaptureError` of its own kind, so an import goes on to the next file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from tkds import ids
from tkds.collector.hashtags import item_hashtags
from tkds.collector.records import (
    Author,
    AuthorStats,
    Comment,
    Image,
    Music,
    Parsed,
    Refusal,
    Video,
    VideoStats,
    storable,
)

REASONS = {
    "empty": "empty body",
    "challenge": "challenge page",
    "no_data": "no embedded JSON",
    "malformed": "malformed JSON",
    "too_deep": "nested too deeply to be a TikTok capture",
    "too_big": "too large to be a TikTok capture",
    "not_a_file": "not a regular file",
    "unknown": "matches no known import format",
    "no_id_column": "no column holds a video id",
    "bad_table": "unreadable table",
}
MAX_CAPTURE_BYTES = 256 * 2**20  # a saved page or API response is a few MB
INT64 = 2**63
INT32 = 2**31
TAG_LENGTH = 4096  # how far before an id="…" attribute its <script tag may start

VIDEO_STATS = {
    "plays": ("playCount",),
    "likes": ("diggCount",),
    "comments": ("commentCount",),
    "shares": ("shareCount",),
    "collects": ("collectCount",),
}
AUTHOR_STATS = {
    "followers": ("followerCount",),
    "following": ("followingCount",),
    "hearts": ("heartCount", "heart"),
    "videos": ("videoCount",),
}

SIGI_ASSIGNMENT = re.compile(r"""window\[['"]SIGI_STATE['"]\]\s*=\s*""")
CHALLENGE_MARKERS = re.compile(r"""\bid=["']cs["']|<title>\s*Please wait""", re.I)


class CaptureError(Exception):
    """A page or payload that holds no TikTok data; `kind` says why."""

    def __init__(self, kind: str, detail: str = "") -> None:
        if kind not in REASONS:
            raise ValueError(f"unknown capture error kind {kind!r}")
        self.kind = kind
        self.detail = " ".join(detail.split())
        super().__init__(f"{REASONS[kind]}: {self.detail}" if self.detail else REASONS[kind])


def _id(out: Parsed, value: Any, kind: str) -> str | None:
    """A checked id as an exact string (JSON ints are exact in Python, so str() keeps all 19 digits).

    None when absent; None too when invalid, with its `Refusal` in `out`.
    """
    if value is None or value == "":
        return None
    try:
        return ids.check_id(value, kind)
    except ids.InvalidId as error:
        out.refused.append(Refusal(f"{kind} id", str(error)))
        return None


def _username(out: Parsed, value: Any) -> str | None:
    """A TikTok uniqueId, or None; an invalid one is refused (it reaches URLs) and the record kept."""
    if value is None or value == "":
        return None
    if ids.is_valid_username(value):
        return value
    out.refused.append(Refusal("username", f"{ids.preview(value)}: not a TikTok username; stored as NULL"))
    return None


def _int(value: Any, bound: int = INT64) -> int | None:
    """An integer within ±`bound` (its column's range), else None."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -bound <= number < bound else None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _string(value: Any) -> str | None:
    """A str that DuckDB can store (see `storable`), else None."""
    return storable(value) if isinstance(value, str) else None


def _text(value: Any) -> str | None:
    return storable(value) if isinstance(value, str) and value else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _counts(fields: dict[str, tuple[str, ...]], exact: Any, rounded: Any) -> dict[str, int | None]:
    """Each field from the first key present, exact statsV2 before rounded stats."""
    sources = (_dict(exact), _dict(rounded))
    counts: dict[str, int | None] = {}
    for name, keys in fields.items():
        values = (_int(source.get(key)) for source in sources for key in keys)
        counts[name] = next((v for v in values if v is not None), None)
    return counts


def _url(value: Any) -> str | None:
    if isinstance(value, list) and value:
        first = value[0]
        return _text(first.get("src")) if isinstance(first, dict) else _text(first)
    return _text(value)


def _images(item: dict) -> list[Image]:
    """A photo post's images (`imagePost.images[]`), each with its first URL and its size."""
    images = []
    for image in _list(_dict(item.get("imagePost")).get("images")):
        image = _dict(image)
        url = _url(_dict(image.get("imageURL")).get("urlList")) or _url(image.get("url"))
        if url:
            width, height = _int(image.get("imageWidth"), INT32), _int(image.get("imageHeight"), INT32)
            images.append(Image(url, width, height))
    return images


def _author(out: Parsed, user: dict) -> Author | None:
    author_id = _id(out, user.get("id"), "author")
    if author_id is None:
        return None
    return Author(
        id=author_id,
        unique_id=_username(out, user.get("uniqueId")),
        sec_uid=_text(user.get("secUid")),
        nickname=_text(user.get("nickname")),
        verified=_bool(user.get("verified")),
        private=_bool(user.get("privateAccount")),
        signature=_string(user.get("signature")),
        raw=user,
    )


def _add_author(out: Parsed, user: Any, stats: Any = None, stats_v2: Any = None) -> Author | None:
    author = _author(out, _dict(user))
    if author is None:
        return None
    out.authors.append(author)
    if stats or stats_v2:
        out.author_stats.append(AuthorStats(author.id, **_counts(AUTHOR_STATS, stats_v2, stats)))
    return author


def _music(out: Parsed, music: dict) -> Music | None:
    music_id = _id(out, music.get("id"), "music")
    if music_id is None:
        return None
    return Music(
        id=music_id,
        title=_text(music.get("title")),
        author_name=_text(music.get("authorName")),
        original=_bool(music.get("original")),
        duration_s=_float(music.get("duration")),
        play_url=_url(music.get("playUrl")) or _url(_dict(music.get("playUrl")).get("urlList")),
        raw=music,
    )


def parse_item(
    item: dict, users: dict[str, dict] | None = None, user_stats: dict[str, dict] | None = None
) -> Parsed:
    """One itemStruct of any era; a SIGI item's bare-uniqueId author is looked up in `users`/`user_stats`.

    An item with an invalid id yields nothing but its `Refusal`: not its stats, tags, author or sound.
    """
    if not isinstance(item, dict) or item.get("id") is None or item.get("id") == "":
        raise CaptureError("malformed", "item without an id")
    out = Parsed()
    video_id = _id(out, item.get("id"), "video")
    if video_id is None:
        return out
    author_field = item.get("author")
    if isinstance(author_field, str):
        fallback = {
            "id": item.get("authorId"),
            "uniqueId": author_field,
            "secUid": item.get("authorSecId"),
            "nickname": item.get("nickname"),
            "privateAccount": item.get("authorPrivate"),
        }
        user = (users or {}).get(author_field) or {k: v for k, v in fallback.items() if v is not None}
        stats = (user_stats or {}).get(author_field) or item.get("authorStats")
        author = _add_author(out, user, stats, item.get("authorStatsV2"))
    else:
        author = _add_author(out, author_field, item.get("authorStats"), item.get("authorStatsV2"))
    music = _music(out, _dict(item.get("music")))
    if music:
        out.music.append(music)
    video = _dict(item.get("video"))
    images = _images(item)
    out.videos.append(
        Video(
            id=video_id,
            author_id=author.id if author else None,
            music_id=music.id if music else None,
            description=_string(item.get("desc")),
            create_time=_int(item.get("createTime")),
            duration_s=_float(video.get("duration")),
            width=_int(video.get("width"), INT32),
            height=_int(video.get("height"), INT32),
            is_ad=_bool(item.get("isAd")),
            location=_text(item.get("locationCreated")),
            hashtags=item_hashtags(item),
            play_url=_url(video.get("playAddr")),
            download_url=_url(video.get("downloadAddr")),
            kind="photo" if images else "video",
            images=images,
            raw=item,
        )
    )
    if item.get("stats") or item.get("statsV2"):
        out.video_stats.append(
            VideoStats(video_id, **_counts(VIDEO_STATS, item.get("statsV2"), item.get("stats")))
        )
    return out


def _parse_user_info(info: Any) -> Parsed:
    """A `userInfo` object: the user with exact statsV2 counts, and any items it lists."""
    info = _dict(info)
    out = Parsed()
    _add_author(out, info.get("user"), info.get("stats"), info.get("statsV2"))
    for item in _list(info.get("itemList")):
        out.extend(parse_item(item))
    return out


def _parse_music_info(info: Any) -> Parsed:
    info = _dict(info)
    out = Parsed()
    music = _music(out, _dict(info.get("music")))
    if music:
        out.music.append(music)
    _add_author(out, info.get("author"))
    return out


def _add_comment(out: Parsed, comment: Any) -> None:
    """A comment, unless its cid or aweme_id is invalid (then only its `Refusal`)."""
    comment = _dict(comment)
    if any(comment.get(key) is None or comment.get(key) == "" for key in ("cid", "aweme_id")):
        raise CaptureError("malformed", "comment without cid or aweme_id")
    comment_id, video_id = _id(out, comment.get("cid"), "comment"), _id(out, comment.get("aweme_id"), "video")
    if comment_id is None or video_id is None:
        return
    user = _dict(comment.get("user"))
    author = next(
        (a for a in (user.get("unique_id"), comment.get("unique_id"), user.get("uniqueId")) if a), None
    )
    out.comments.append(
        Comment(
            id=comment_id,
            video_id=video_id,
            author=_username(out, author),
            text=_string(comment.get("text")),
            likes=_int(comment.get("digg_count")),
            create_time=_int(comment.get("create_time")),
        )
    )


def _set_status(out: Parsed, holder: dict) -> None:
    """Record the first non-zero status among a page's parts; 0 never hides an error."""
    code = _int(holder.get("statusCode", holder.get("status_code")))
    if code and not out.status:
        out.status = code
        message = holder.get("statusMsg", holder.get("status_msg"))
        out.status_msg = message if isinstance(message, str) else ""


def _set_paging(out: Parsed, holder: dict) -> None:
    cursor = holder.get("cursor")
    if cursor is not None:
        out.cursor = str(cursor)
    more = holder.get("hasMore", holder.get("has_more"))
    if more is not None:
        out.has_more = bool(more)


def _dedupe(out: Parsed) -> Parsed:
    """One record per id, the first seen: item lists repeat authors and sounds, SIGI lists users twice."""
    keys = {
        "videos": "id",
        "video_stats": "video_id",
        "authors": "id",
        "author_stats": "author_id",
        "music": "id",
        "comments": "id",
    }
    for name, key in keys.items():
        first: dict[str, Any] = {}
        for record in getattr(out, name):
            first.setdefault(getattr(record, key), record)
        setattr(out, name, list(first.values()))
    out.refused = list(dict.fromkeys(out.refused))
    return out


def _parse_universal(data: dict) -> Parsed:
    """A `__UNIVERSAL_DATA_FOR_REHYDRATION__` object: the `webapp.*` parts of `__DEFAULT_SCOPE__`."""
    scope = _dict(data.get("__DEFAULT_SCOPE__"))
    out = Parsed()
    video = _dict(scope.get("webapp.video-detail"))
    item = _dict(_dict(video.get("itemInfo")).get("itemStruct"))
    if item:
        out.extend(parse_item(item))
    user = _dict(scope.get("webapp.user-detail"))
    if user.get("userInfo"):
        out.extend(_parse_user_info(user["userInfo"]))
    music = _dict(scope.get("webapp.music-detail"))
    if music.get("musicInfo"):
        out.extend(_parse_music_info(music["musicInfo"]))
    for part in (video, user, music, _dict(scope.get("webapp.challenge-detail"))):
        _set_status(out, part)
    out.shape = "universal"
    return _dedupe(out)


def _parse_sigi(state: dict) -> Parsed:
    """A `SIGI_STATE` object: ItemModule items with their authors from UserModule."""
    users = _dict(_dict(state.get("UserModule")).get("users"))
    user_stats = _dict(_dict(state.get("UserModule")).get("stats"))
    out = Parsed()
    for item in _dict(state.get("ItemModule")).values():
        out.extend(parse_item(item, users, user_stats))
    for unique_id, user in users.items():
        _add_author(out, user, user_stats.get(unique_id))
    _set_paging(out, _dict(_dict(state.get("ItemList")).get("user-post")))
    for page in ("VideoPage", "UserPage"):
        _set_status(out, _dict(state.get(page)))
    out.shape = "sigi"
    return _dedupe(out)


def _parse_next(data: dict) -> Parsed:
    """A `__NEXT_DATA__` object: props.pageProps of a video or (older) profile page."""
    props = _dict(_dict(data.get("props")).get("pageProps"))
    out = Parsed()
    item = _dict(_dict(props.get("itemInfo")).get("itemStruct"))
    if item:
        out.extend(parse_item(item))
    if props.get("userInfo"):
        out.extend(_parse_user_info(props["userInfo"]))
    for listed in _list(props.get("items")):
        out.extend(parse_item(listed))
    _set_status(out, props)
    out.shape = "next"
    return _dedupe(out)


def _script_text(html: str, script_id: str) -> str | None:
    """The text of the first `<script … id="SCRIPT_ID" …>`, found in linear time.

    A regex like `<script[^>]*\\bid=…` backtracks quadratically over hostile HTML (`<script` × 10⁵).
    """
    for marker in (f'id="{script_id}"', f"id='{script_id}'"):
        start = 0
        while (at := html.find(marker, start)) >= 0:
            tag = html.rfind("<", max(0, at - TAG_LENGTH), at)
            opened = html.find(">", at + len(marker))
            if opened < 0:
                break
            if tag >= 0 and html.startswith("<script", tag) and html.find(">", tag, at) < 0:
                closed = html.find("</script>", opened)
                if closed < 0:
                    break
                return html[opened + 1 : closed]
            start = opened + 1
    return None


def _loads(text: str, what: str) -> Any:
    """JSON from a page or file; malformed, too deep or too long a number is a `CaptureError`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise CaptureError("too_deep", what) from None
    except ValueError as error:  # JSONDecodeError, and ints past Python's 4300-digit limit
        raise CaptureError("malformed", f"{what}: {error}" if what else str(error)) from None


def _script_json(html: str, script_id: str) -> Any:
    text = _script_text(html, script_id)
    return None if text is None else _loads(text, script_id)


def _sigi_assignment(html: str) -> Any:
    match = SIGI_ASSIGNMENT.search(html)
    if match is None:
        return None
    try:
        return json.JSONDecoder().raw_decode(html, match.end())[0]
    except RecursionError:
        raise CaptureError("too_deep", "SIGI_STATE") from None
    except ValueError as error:
        raise CaptureError("malformed", f"SIGI_STATE: {error}") from None


def parse_page(html: str) -> Parsed:
    """A TikTok HTML page of any era: today's UNIVERSAL data, SIGI_STATE or __NEXT_DATA__."""
    if not html or not html.strip():
        raise CaptureError("empty")
    universal = _script_json(html, "__UNIVERSAL_DATA_FOR_REHYDRATION__")
    if isinstance(universal, dict):
        return _parse_universal(universal)
    sigi = _script_json(html, "SIGI_STATE")
    if sigi is None:
        sigi = _sigi_assignment(html)
    if isinstance(sigi, dict):
        return _parse_sigi(sigi)
    next_data = _script_json(html, "__NEXT_DATA__")
    if isinstance(next_data, dict):
        return _parse_next(next_data)
    if CHALLENGE_MARKERS.search(html):
        raise CaptureError("challenge")
    raise CaptureError("no_data")


def _parse_list(entries: list) -> Parsed:
    """A bare list of itemStructs (or wrapped {"item": ...}), comments, or userInfo objects."""
    out = Parsed()
    for entry in entries:
        if not isinstance(entry, dict):
            raise CaptureError("malformed", "list entry is not an object")
        if "cid" in entry:
            _add_comment(out, entry)
        elif "user" in entry and "stats" in entry:
            out.extend(_parse_user_info(entry))
        elif isinstance(entry.get("item"), dict):
            out.extend(parse_item(entry["item"]))
        else:
            out.extend(parse_item(entry))
    out.shape = "api"
    return _dedupe(out)


def parse_api(payload: dict | list) -> Parsed:
    """A web API response (item lists, item/user/music detail, comments), or a bare list of its objects."""
    if isinstance(payload, list):
        return _parse_list(payload)
    if not isinstance(payload, dict):
        raise CaptureError("malformed", "not a JSON object or array")
    items = _list(payload.get("itemList")) + _list(payload.get("item_list"))
    items += [_dict(entry)["item"] for entry in _list(payload.get("data")) if _dict(_dict(entry).get("item"))]
    item = _dict(_dict(payload.get("itemInfo")).get("itemStruct"))
    out = _parse_list([*items, item] if item else items)
    if payload.get("userInfo"):
        out.extend(_parse_user_info(payload["userInfo"]))
    for comment in _list(payload.get("comments")):
        _add_comment(out, comment)
    if payload.get("musicInfo"):
        out.extend(_parse_music_info(payload["musicInfo"]))
    _set_status(out, payload)
    _set_paging(out, payload)
    out.shape = "api"
    return _dedupe(out)


def _parse_json(data: Any) -> Parsed:
    if isinstance(data, dict) and "ItemModule" in data:
        return _parse_sigi(data)
    if isinstance(data, dict) and "__DEFAULT_SCOPE__" in data:
        return _parse_universal(data)
    if isinstance(data, dict) and "id" in data and "video" in data:  # one bare item, as SynthTok writes
        return _parse_list([data])
    return parse_api(data)


def open_regular_file(path: Path) -> tuple[int, os.stat_result]:
    """An open descriptor of a regular file, and its stat; a directory, FIFO or device is a
    `CaptureError`, never read (opened non-blocking, a FIFO opens at once and is then refused)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
        raise CaptureError("not_a_file", kind)
    return descriptor, info


def _read_capture(path: Path) -> str:
    """A regular file's text, at most MAX_CAPTURE_BYTES; a FIFO or a device is refused, never read."""
    descriptor, info = open_regular_file(path)
    if info.st_size > MAX_CAPTURE_BYTES:
        os.close(descriptor)
        raise CaptureError("too_big", f"over {MAX_CAPTURE_BYTES // 2**20} MB")
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(MAX_CAPTURE_BYTES + 1)
    if len(data) > MAX_CAPTURE_BYTES:  # it grew since fstat
        raise CaptureError("too_big", f"over {MAX_CAPTURE_BYTES // 2**20} MB")
    return data.decode("utf-8-sig", errors="replace")


def parse_capture(path: str | Path) -> Parsed:
    """A saved page or JSON payload: HTML goes to `parse_page`, JSON to the SIGI, UNIVERSAL or API parser."""
    path = Path(path)
    text = _read_capture(path)
    try:
        if path.suffix.lower() in (".html", ".htm") or text.lstrip().startswith("<"):
            return parse_page(text)
        if not text.strip():
            raise CaptureError("empty")
        return _parse_json(_loads(text, ""))
    except RecursionError:  # the parsers' own recursion, or a deep value's
        raise CaptureError("too_deep") from None
