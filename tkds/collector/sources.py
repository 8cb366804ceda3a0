"""Discovery sources, one small class each: where a target's page is, and which API it pages through."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from tkds.errors import TkdsError
from tkds.tiktok import WEB_HOST

VIDEO_URL = re.compile(r"https?://(?:www\.|m\.)?tiktok\.com/@(?P<user>[^/?#]+)/video/(?P<id>\d{1,20})")


@dataclass(frozen=True)
class Source:
    """A kind of target: the page a browser opens for it, and the item-list API that page calls."""

    kind: str
    page: str  # the page URL, with {key}
    api_path: str

    def page_url(self, key: str) -> str:
        key = key.strip().lstrip("#@")
        return self.page.format(key=quote(key.lower() if self.kind == "hashtag" else key))


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


def parse_video_url(url: str) -> tuple[str, str]:
    """(uniqueId, video id) of a TikTok video URL."""
    match = VIDEO_URL.match(url.strip())
    if not match:
        raise TkdsError(f"{url!r} is not a TikTok video URL like https://www.tiktok.com/@user/video/ID")
    return match["user"], match["id"]
