"""Facts about TikTok's web surface that more than one stage needs: hosts, URL shapes, status codes."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

WEB_HOST = "www.tiktok.com"
VIDEO_CDN_HOST = "v16-webapp-prime.tiktok.com"
IMAGE_CDN_HOST = "p16-sign-va.tiktokcdn.com"
IMAGE_CDN_ALT_HOST = "p19-sign-va.tiktokcdn.com"  # the second CDN alternate in a photo's urlList
# Photo-mode images: /<bucket>/<32-hex key>~tplv-photomode-image.jpeg on the image CDN hosts.
PHOTO_IMAGE_PREFIX = "tos-maliva-i-photomode-us"
PHOTO_IMAGE_SUFFIX = "~tplv-photomode-image.jpeg"
MUSIC_CDN_HOST = "sf16-ies-music-va.tiktokcdn.com"
# Where TikTok's pages post their monitoring beacons (the Slardar SDK's batch endpoint).
MONITOR_HOST = "mon.tiktokv.com"
MONITOR_PATH = "/monitor_browser/collect/batch/"
# Registrable domains whose hosts belong to TikTok (pages, APIs, media and image CDNs).
TIKTOK_DOMAINS = ("tiktok.com", "tiktokcdn.com", "tiktokcdn-us.com", "tiktokv.com")

STATUS_OK = 0
STATUS_UNAVAILABLE = 10204  # "item doesn't exist" and "your IP address is blocked"
STATUS_PRIVATE_ITEM = 10216
STATUS_USER_NOT_FOUND = 10221
STATUS_PRIVATE_ACCOUNT = 10222


def is_tiktok_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in TIKTOK_DOMAINS)


def is_tiktok_url(url: object) -> bool:
    """Whether `url` is an https URL on a TikTok host: the only media URLs the collector fetches."""
    return (
        isinstance(url, str) and url.startswith("https://") and is_tiktok_host(urlsplit(url).hostname or "")
    )


def rounded_count(value: int) -> int:
    """TikTok's display rounding of `stats`: exact below 10k, to hundreds below 1M, then to 100k."""
    if value < 10_000:
        return value
    step = 100 if value < 1_000_000 else 100_000
    return round(value / step) * step


def media_signature(secret: str, video_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{video_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def media_urls(video_id: str, expires: int, secret: str) -> dict[str, str]:
    """Signed, expiring play, download and cover URLs, shaped like TikTok's CDN URLs."""
    query = f"x-expires={expires}&x-signature={media_signature(secret, video_id, expires)}"
    play = (
        f"https://{VIDEO_CDN_HOST}/video/tos/useast2a/tos-useast2a-ve-0068c001/{video_id}/"
        f"?a=1988&mime_type=video_mp4&policy=2&{query}"
    )
    return {
        "play": play,
        "download": play + "&watermark=1",
        "cover": f"https://{IMAGE_CDN_HOST}/obj/tos-useast2a-p-0037-aiso/{video_id}?{query}",
    }


def music_url(music_id: str) -> str:
    return f"https://{MUSIC_CDN_HOST}/obj/ies-music-aiso/{music_id}.mp3"


def signed_music_url(music_id: str, expires: int, secret: str) -> str:
    """The sound's URL as served: signed and expiring like media URLs (the key is the music id)."""
    signature = media_signature(secret, music_id, expires)
    return f"{music_url(music_id)}?x-expires={expires}&x-signature={signature}"


def photo_image_key(video_id: str, position: int) -> str:
    """The 32-hex object key of a photo post's image at `position` (0-based)."""
    return hashlib.sha256(f"photo:{video_id}:{position}".encode()).hexdigest()[:32]


def photo_image_urls(video_id: str, position: int, expires: int, secret: str) -> list[str]:
    """A photo's signed, expiring URL on each image CDN alternate, as in `imageURL.urlList`."""
    key = photo_image_key(video_id, position)
    query = f"lk3s=81f88b70&x-expires={expires}&x-signature={media_signature(secret, key, expires)}"
    path = f"/{PHOTO_IMAGE_PREFIX}/{key}{PHOTO_IMAGE_SUFFIX}?{query}&shp=81f88b70&shcp=-"
    return [f"https://{host}{path}" for host in (IMAGE_CDN_HOST, IMAGE_CDN_ALT_HOST)]


def image_post(video_id: str, sizes: list[tuple[int, int]], expires: int, secret: str) -> dict:
    """A photo post's `imagePost`: each image's CDN alternates and size, the first as cover."""
    images = [
        {
            "imageURL": {"urlList": photo_image_urls(video_id, position, expires, secret)},
            "imageWidth": width,
            "imageHeight": height,
        }
        for position, (width, height) in enumerate(sizes)
    ]
    return {"images": images, "cover": images[0], "shareCover": images[0], "title": ""}


def photo_video(cover: str) -> dict:
    """What `video` holds on a photo post: no size, no duration and no play or download address."""
    return {
        "id": "",
        "height": 0,
        "width": 0,
        "duration": 0,
        "ratio": "",
        "format": "",
        "cover": cover,
        "originCover": cover,
        "dynamicCover": "",
        "reflowCover": "",
        "shareCover": [""],
    }


def video_page_url(unique_id: str, video_id: str) -> str:
    return f"https://{WEB_HOST}/@{unique_id}/video/{video_id}"


def photo_page_url(unique_id: str, video_id: str) -> str:
    """A photo post's canonical page; its /video/ URL serves the same page."""
    return f"https://{WEB_HOST}/@{unique_id}/photo/{video_id}"
