"""Discovery sources, one small class each: where a target's page is, and which API it pages through."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tkds import ids
from tkds.errors import TkdsError
from tkds.tiktok import WEB_HOST

# The whole id up to the end, a query or a fragment ([0-9]: `\d` would take Arabic-Indic digits too).
VIDEO_URL = re.compile(
    r"https?://(?:www\.|m\.)?tiktok\.com/@(?P<user>[^/?#]+)/video/(?P<id>[^/?#]+)/?(?:[?#].*)?"
)


@dataclass(frozen=True)
class Source:
    """A kind of target: the page a browser opens for it, and the item-list API that page calls."""

    kind: str
    page: str  # the page URL, with {key}
    api_path: str

    def page_url(self, key: str) -> str:
        key = key.strip().lstrip("#@")
        return self.page.format(key=quote(key.lower() if self.kind == "hashtag" else key, safe=""))


SOURCES: dict[str, Source] = {
    source.kind: source
    for source in (
        Source("hashtag", f"https://{WEB_HOST}/tag/{{key}}", "/api/challenge/item_list/"),
        Source("user", f"https://{WEB_HOST}/@{{key}}", "/api/post/item_list/"),
        Source("music", f"https://{WEB_HOST}/music/sound-{{key}}", "/api/music/item_list/"),
        Source("search", f"https://{WEB_HOST}/search?q={{key}}", "/api/search/item/full/"),
        Source("trending", f"https://{WEB_HOST}/foryou", "/api/recommend/item_list/"),
    )
}


HASHTAG = re.compile(r"[\w-]{1,100}")  # letters (any script), digits, '_' and '-'
MAX_SEARCH = 200


def check_target(kind: str, key: str) -> str:
    """A target's key as the run stores and requests it, or a one-line `TkdsError` naming the option."""
    if kind == "hashtag":
        tag = key.strip().lstrip("#").lower()
        if not HASHTAG.fullmatch(tag):
            raise TkdsError(f"--hashtag {ids.preview(key)}: a tag is 1 to 100 letters, digits, '_' or '-'")
        return tag
    try:
        if kind == "user":
            return ids.check_username(key.strip().lstrip("@"))
        if kind == "music":
            return ids.check_id(key.strip(), "music")
    except ids.InvalidId as error:
        raise TkdsError(f"--{kind} {error}") from None
    if kind == "search":
        query = " ".join(key.split())
        if not query or len(query) > MAX_SEARCH or not query.isprintable():
            raise TkdsError(f"--search {ids.preview(key)}: give 1 to {MAX_SEARCH} printable characters")
        return query
    return key


def parse_video_url(url: str) -> tuple[str, str]:
    """(uniqueId, video id) of a TikTok video URL, both checked with `tkds.ids`."""
    match = VIDEO_URL.fullmatch(url.strip())
    if not match:
        raise TkdsError(
            f"{ids.preview(url)} is not a TikTok video URL like https://www.tiktok.com/@user/video/ID"
        )
    try:
        return ids.check_username(match["user"]), ids.check_id(match["id"])
    except ids.InvalidId as error:
        raise TkdsError(f"{ids.preview(url)}: {error}") from None


def read_video_urls(path: Path) -> list[str]:
    """The video URLs of a `--urls` file, one a line (blank lines skipped), each checked."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise TkdsError(f"cannot read --urls {path} ({error.strerror or error})") from None
    urls = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                parse_video_url(line)
            except TkdsError as error:
                raise TkdsError(f"--urls {path} line {number}: {error}") from None
            urls.append(line.strip())
    return urls
