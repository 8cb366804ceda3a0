"""TikTok-shaped item JSON (the web `itemStruct`) for a SynthTok video.

Field names and types follow real captures (see shared/fixtures/tiktok): ids are 19-digit strings,
`stats` counts are rounded the way TikTok rounds them, and `statsV2` holds the exact counts as strings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tkds.synth.factors import Author, Sound
from tkds.tiktok import IMAGE_CDN_HOST, image_post, media_urls, music_url, photo_video, rounded_count

URL_LIFETIME_S = 6 * 3600
URL_SECRET = "synthtok"  # the twin re-signs every URL with its own secret when it serves an item


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
    key = hashlib.sha256(author.id.encode()).hexdigest()[:32]
    return f"https://{IMAGE_CDN_HOST}/tos-useast2a-avt-0068-aiso/{key}~c5_{size}x{size}.jpeg"


def _music_cover(sound: Sound, author: Author, size: int) -> str:
    if sound.original:  # an original sound shows its creator's avatar
        return _avatar(author, size)
    return f"https://{IMAGE_CDN_HOST}/tos-useast2a-v-2774/{sound.id}~c5_{size}x{size}.jpeg"


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
    image_sizes: list[tuple[int, int]] | None = None,
) -> dict:
    """The itemStruct of a video, or of a photo post when `image_sizes` lists its images (W, H)."""
    desc = " ".join([caption, *(f"#{tag}" for tag in tags)])
    urls = media_urls(video_id, observed_at + URL_LIFETIME_S, URL_SECRET)
    stats = {
        "diggCount": counts.likes,
        "shareCount": counts.shares,
        "commentCount": counts.comments,
        "playCount": counts.plays,
        "collectCount": counts.collects,
    }
    short_side = min(width, height)
    item = {
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
            "playUrl": music_url(sound.id),
            "coverThumb": _music_cover(sound, author, 100),
            "coverMedium": _music_cover(sound, author, 720),
            "coverLarge": _music_cover(sound, author, 1080),
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
    if image_sizes:
        expires = observed_at + URL_LIFETIME_S
        item["imagePost"] = image_post(video_id, image_sizes, expires, URL_SECRET)
        item["video"] = photo_video(item["imagePost"]["cover"]["imageURL"]["urlList"][0])
    return item
