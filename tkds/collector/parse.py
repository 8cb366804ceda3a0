"""TikTok web payloads of every era (pages, API responses, saved captures) as record dataclasses.

Everything here is pure except `parse_capture`, which reads one file. Ids stay strings, counts
prefer the exact `statsV2` strings over the rounded `stats`, and every entity keeps its raw dict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tkds.collector.records import Author, AuthorStats, Comment, Music, Parsed, Video, VideoStats

REASONS = {
    "empty": "empty body",
    "challenge": "challenge page",
    "no_data": "no embedded JSON",
    "malformed": "malformed JSON",
}

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

SCRIPT = r'<script[^>]*\bid=["\']{}["\'][^>]*>(.*?)</script>'
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


def _id(value: Any) -> str | None:
    """Ids as exact strings: JSON ints are exact in Python, so str() keeps all 19 digits."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


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


def _hashtags(item: dict) -> list[str]:
    extras = list(_list(item.get("textExtra")))
    for content in _list(item.get("contents")):
        extras += _list(_dict(content).get("textExtra"))
    names = [e.get("hashtagName") for e in extras if isinstance(e, dict) and e.get("type") == 1]
    if not names:
        # Challenges only when the caption names no tag: SIGI-era items carry the account's whole list.
        names = [_dict(c).get("title") for c in _list(item.get("challenges"))]
    tags = (n.strip().lstrip("#").lower() for n in names if isinstance(n, str))
    return list(dict.fromkeys(t for t in tags if t))


def _author(user: dict) -> Author | None:
    author_id = _id(user.get("id"))
    if author_id is None:
        return None
    return Author(
        id=author_id,
        unique_id=_text(user.get("uniqueId")),
        sec_uid=_text(user.get("secUid")),
        nickname=_text(user.get("nickname")),
        verified=_bool(user.get("verified")),
        private=_bool(user.get("privateAccount")),
        signature=user.get("signature") if isinstance(user.get("signature"), str) else None,
        raw=user,
    )


def _add_author(out: Parsed, user: Any, stats: Any = None, stats_v2: Any = None) -> Author | None:
    author = _author(_dict(user))
    if author is None:
        return None
    out.authors.append(author)
    if stats or stats_v2:
        out.author_stats.append(AuthorStats(author.id, **_counts(AUTHOR_STATS, stats_v2, stats)))
    return author


def _music(music: dict) -> Music | None:
    music_id = _id(music.get("id"))
    if music_id is None:
        return None
    return Music(
        id=music_id,
        title=_text(music.get("title")),
        author_name=_text(music.get("authorName")),
        original=_bool(music.get("original")),
        duration_s=_float(music.get("duration")),
        raw=music,
    )


def parse_item(
    item: dict, users: dict[str, dict] | None = None, user_stats: dict[str, dict] | None = None
) -> Parsed:
    """One itemStruct of any era; a SIGI item's bare-uniqueId author is looked up in `users`/`user_stats`."""
    video_id = _id(item.get("id")) if isinstance(item, dict) else None
    if video_id is None:
        raise CaptureError("malformed", "item without an id")
    out = Parsed()
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
    music = _music(_dict(item.get("music")))
    if music:
        out.music.append(music)
    video = _dict(item.get("video"))
    out.videos.append(
        Video(
            id=video_id,
            author_id=author.id if author else None,
            music_id=music.id if music else None,
            description=item.get("desc") if isinstance(item.get("desc"), str) else None,
            create_time=_int(item.get("createTime")),
            duration_s=_float(video.get("duration")),
            width=_int(video.get("width")),
            height=_int(video.get("height")),
            is_ad=_bool(item.get("isAd")),
            location=_text(item.get("locationCreated")),
            hashtags=_hashtags(item),
            play_url=_url(video.get("playAddr")),
            download_url=_url(video.get("downloadAddr")),
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
    music = _music(_dict(info.get("music")))
    if music:
        out.music.append(music)
    _add_author(out, info.get("author"))
    return out


def _comment(comment: Any) -> Comment:
    comment = _dict(comment)
    comment_id, video_id = _id(comment.get("cid")), _id(comment.get("aweme_id"))
    if comment_id is None or video_id is None:
        raise CaptureError("malformed", "comment without cid or aweme_id")
    user = _dict(comment.get("user"))
    return Comment(
        id=comment_id,
        video_id=video_id,
        author=_text(user.get("unique_id")) or _text(comment.get("unique_id")) or _text(user.get("uniqueId")),
        text=comment.get("text") if isinstance(comment.get("text"), str) else None,
        likes=_int(comment.get("digg_count")),
        create_time=_int(comment.get("create_time")),
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
    return _dedupe(out)


def _script_json(html: str, script_id: str) -> Any:
    match = re.search(SCRIPT.format(script_id), html, re.S)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except json.JSONDecodeError as error:
        raise CaptureError("malformed", f"{script_id}: {error}") from error


def _sigi_assignment(html: str) -> Any:
    match = SIGI_ASSIGNMENT.search(html)
    if match is None:
        return None
    try:
        return json.JSONDecoder().raw_decode(html, match.end())[0]
    except json.JSONDecodeError as error:
        raise CaptureError("malformed", f"SIGI_STATE: {error}") from error


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
            out.comments.append(_comment(entry))
        elif "user" in entry and "stats" in entry:
            out.extend(_parse_user_info(entry))
        elif isinstance(entry.get("item"), dict):
            out.extend(parse_item(entry["item"]))
        else:
            out.extend(parse_item(entry))
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
    out.comments += [_comment(comment) for comment in _list(payload.get("comments"))]
    if payload.get("musicInfo"):
        out.extend(_parse_music_info(payload["musicInfo"]))
    _set_status(out, payload)
    _set_paging(out, payload)
    return _dedupe(out)


def _parse_json(data: Any) -> Parsed:
    if isinstance(data, dict) and "ItemModule" in data:
        return _parse_sigi(data)
    if isinstance(data, dict) and "__DEFAULT_SCOPE__" in data:
        return _parse_universal(data)
    if isinstance(data, dict) and "id" in data and "video" in data:  # one bare item, as SynthTok writes
        return _parse_list([data])
    return parse_api(data)


def parse_capture(path: str | Path) -> Parsed:
    """A saved page or JSON payload: HTML goes to `parse_page`, JSON to the SIGI, UNIVERSAL or API parser."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if path.suffix.lower() in (".html", ".htm") or text.lstrip().startswith("<"):
        return parse_page(text)
    if not text.strip():
        raise CaptureError("empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaptureError("malformed", str(error)) from error
    return _parse_json(data)
