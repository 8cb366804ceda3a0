"""TikTok-shaped item JSON (the web `itemStruct`) for a SynthTok video.

Field names and types follow real captures (see shared/fixtures/tiktok): ids are 19-digit strings,
`stats` counts are rounded the way TikTok rounds them, and `statsV2` holds the exact counts as strings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tkds.synth.factors import Author, Sound

VIDEO_CDN = "https://v16-webapp-prime.tiktok.com"
IMAGE_CDN = "https://p16-sign-va.tiktokcdn.com"
MUSIC_CDN = "https://sf16-ies-music-va.tiktokcdn.com"
URL_LIFETIME_S = 6 * 3600


def rounded_count(value: int) -> int:
    """TikTok's display rounding of `stats`: exact below 10k, to hundreds below 1M, then to 100k."""
    if value < 10_000:
        return value
    step = 100 if value < 1_000_000 else 100_000
    return int(round(value / step) * step)


def _signature(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def video_urls(video_id: str, expires: int) -> dict[str, str]:
    """The media and cover URLs, signed and expiring as on TikTok's CDNs."""
    sig = _signature(video_id, expires)
    play = (
        f"{VIDEO_CDN}/video/tos/useast2a/tos-useast2a-ve-0068c001/{video_id}/"
        f"?a=1988&mime_type=video_mp4&expire={expires}&policy=2&signature={sig}"
    )
    cover = f"{IMAGE_CDN}/obj/tos-useast2a-p-0037-aiso/{video_id}?x-expires={expires}&x-signature={sig}"
    return {"play": play, "download": play + "&watermark=1", "cover": cover}


@dataclass(frozen=True)
class Counts:
    likes: int
    plays: int
    comments: int
    shares: int
    collects: int
    reposts: int


@dataclass(frozen=True)
class AuthorCounts:
    followers: int
    following: int
    hearts: int
    videos: int
    diggs: int


def _hashtag_entities(desc: str, tags: list[str]) -> list[dict]:
    entities, cursor = [], 0
    for tag in tags:
        start = desc.index(f"#{tag}", cursor)
        cursor = start + len(tag) + 1
        entities.append(
            {
                "awemeId": "",
                "start": start,
                "end": cursor,
                "hashtagName": tag,
                "hashtagId": _tag_id(tag),
                "type": 1,
                "subType": 0,
                "userId": "",
                "isCommerce": False,
                "userUniqueId": "",
                "secUid": "",
            }
        )
    return entities


def _tag_id(tag: str) -> str:
    return str(int(hashlib.sha256(tag.encode()).hexdigest()[:12], 16))


def _avatar(author: Author, size: int) -> str:
    return f"{IMAGE_CDN}/tos-useast2a-avt-0068-aiso/{_signature(author.id)}~c5_{size}x{size}.jpeg"


def build_item(
    *,
    video_id: str,
    caption: str,
    tags: list[str],
    create_time: int,
    width: int,
    height: int,
    duration_s: float,
    bitrate: int,
    author: Author,
    author_counts: AuthorCounts,
    sound: Sound,
    counts: Counts,
    region: str,
    observed_at: int,
) -> dict:
    desc = " ".join([caption, *(f"#{tag}" for tag in tags)])
    urls = video_urls(video_id, observed_at + URL_LIFETIME_S)
    stats = {
        "diggCount": counts.likes,
        "shareCount": counts.shares,
        "commentCount": counts.comments,
        "playCount": counts.plays,
        "collectCount": counts.collects,
    }
    short_side = min(width, height)
    return {
        "id": video_id,
        "desc": desc,
        "createTime": create_time,
        "video": {
            "id": video_id,
            "height": height,
            "width": width,
            "duration": round(duration_s),
            "ratio": f"{short_side}p",
            "cover": urls["cover"],
            "originCover": urls["cover"],
            "dynamicCover": urls["cover"],
            "playAddr": urls["play"],
            "downloadAddr": urls["download"],
            "shareCover": ["", urls["cover"]],
            "reflowCover": urls["cover"],
            "bitrate": bitrate,
            "encodedType": "normal",
            "format": "mp4",
            "videoQuality": "normal",
            "encodeUserTag": "",
            "codecType": "h264",
            "definition": f"{short_side}p",
        },
        "author": {
            "id": author.id,
            "uniqueId": author.unique_id,
            "nickname": author.nickname,
            "avatarThumb": _avatar(author, 100),
            "avatarMedium": _avatar(author, 720),
            "avatarLarger": _avatar(author, 1080),
            "signature": "",
            "verified": author.verified,
            "secUid": author.sec_uid,
            "secret": False,
            "ftc": False,
            "relation": 0,
            "openFavorite": False,
            "commentSetting": 0,
            "duetSetting": 0,
            "stitchSetting": 0,
            "privateAccount": False,
        },
        "music": {
            "id": sound.id,
            "title": sound.title,
            "playUrl": f"{MUSIC_CDN}/obj/ies-music-aiso/{sound.id}.mp3",
            "coverThumb": _avatar(author, 100) if sound.original else f"{IMAGE_CDN}/music/{sound.id}.jpeg",
            "coverMedium": _avatar(author, 720) if sound.original else f"{IMAGE_CDN}/music/{sound.id}.jpeg",
            "coverLarge": _avatar(author, 1080) if sound.original else f"{IMAGE_CDN}/music/{sound.id}.jpeg",
            "authorName": sound.author_name,
            "original": sound.original,
            "duration": sound.duration_s,
            "album": "",
        },
        "challenges": [
            {
                "id": _tag_id(tag),
                "title": tag,
                "desc": "",
                "profileThumb": "",
                "profileMedium": "",
                "profileLarger": "",
                "coverThumb": "",
                "coverMedium": "",
                "coverLarger": "",
                "isCommerce": False,
            }
            for tag in tags
        ],
        "stats": {key: rounded_count(value) for key, value in stats.items()},
        "statsV2": {
            **{key: str(value) for key, value in stats.items()},
            "repostCount": str(counts.reposts),
        },
        "duetInfo": {"duetFromId": "0"},
        "originalItem": False,
        "officalItem": False,
        "textExtra": _hashtag_entities(desc, tags),
        "secret": False,
        "forFriend": False,
        "digged": False,
        "itemCommentStatus": 0,
        "showNotPass": False,
        "vl1": False,
        "itemMute": False,
        "authorStats": {
            "followingCount": author_counts.following,
            "followerCount": rounded_count(author_counts.followers),
            "heartCount": rounded_count(author_counts.hearts),
            "videoCount": author_counts.videos,
            "diggCount": author_counts.diggs,
            "heart": rounded_count(author_counts.hearts),
        },
        "privateItem": False,
        "duetEnabled": True,
        "stitchEnabled": True,
        "shareEnabled": True,
        "isAd": False,
        "duetDisplay": 0,
        "stitchDisplay": 0,
        "locationCreated": region,
    }
