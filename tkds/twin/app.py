"""The twin's web app: TikTok's pages, APIs, media and image CDNs and monitoring endpoint, told apart
by the Host header.

It sits behind the CONNECT proxy (`proxy.py`), so clients request TikTok's real URLs. Every anti-bot
rule lives here: cookies from page visits, signed API calls, expiring media URLs with Referer and
cookie checks, and the seeded faults.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import random
import secrets
import subprocess
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import imageio_ffmpeg
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import Host, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from tkds.tiktok import (
    IMAGE_CDN_ALT_HOST,
    IMAGE_CDN_HOST,
    MONITOR_HOST,
    MONITOR_PATH,
    MUSIC_CDN_HOST,
    PHOTO_IMAGE_PREFIX,
    PHOTO_IMAGE_SUFFIX,
    STATUS_OK,
    STATUS_PRIVATE_ITEM,
    STATUS_UNAVAILABLE,
    STATUS_USER_NOT_FOUND,
    VIDEO_CDN_HOST,
    image_post,
    media_signature,
    media_urls,
    photo_video,
    signed_music_url,
)
from tkds.twin import pages
from tkds.twin.corpus import TwinCorpus
from tkds.twin.faults import API_FAULTS, MEDIA_FAULTS, PAGE_FAULTS, VIDEO_PAGE_FAULTS, FaultDice
from tkds.twin.living import TwinClock, follower_growth, grown_stats, growth
from tkds.twin.signer import sign, signer_script, unsigned_target

URL_LIFETIME_S = 2 * 3600
CHALLENGE_COOKIE = "_wafchallengeid"
MAX_COUNT = 35
COOKIE_DOMAIN = ".tiktok.com"
TOKEN_LIMIT = 100_000  # issued tokens (and For You positions) remembered


# Fields the user-detail endpoint adds to an item's author, with neutral values.
PROFILE_ONLY_FIELDS = {
    "shortId": "",
    "createTime": 0,
    "bioLink": {"link": "", "risk": 0},
    "commerceUserInfo": {"commerceUser": False},
    "isADVirtual": False,
    "roomId": "",
    "uniqueIdModifyTime": 0,
    "ttSeller": False,
    "downloadSetting": 0,
    "profileTab": {"showMusicTab": False, "showQuestionTab": False, "showPlayListTab": False},
    "followingVisibility": 1,
    "recommendReason": "",
    "nowInvitationCardUrl": "",
    "nickNameModifyTime": 0,
    "isEmbedBanned": False,
    "canExpPlaylist": False,
    "profileEmbedPermission": 1,
    "language": "en",
    "eventList": [],
    "suggestAccountBind": False,
    "isOrganization": 0,
    "UserStoryStatus": 0,
}


class MediaFile(FileResponse):
    chunk_size = 1024 * 1024  # fewer, larger TLS writes than the 64 KB default


class TokenSet:
    """Tokens the twin has issued, oldest forgotten first."""

    def __init__(self, limit: int = TOKEN_LIMIT) -> None:
        self._tokens: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def issue(self, size: int) -> str:
        token = secrets.token_urlsafe(size)[:size]
        self._tokens[token] = None
        while len(self._tokens) > self._limit:
            self._tokens.popitem(last=False)
        return token

    def __contains__(self, token: object) -> bool:
        return token in self._tokens


@dataclass
class TwinState:
    corpus: TwinCorpus
    clock: TwinClock
    dice: FaultDice
    seed: int
    page_format: str = "universal"  # or "mixed": each video page picks one of pages.PAGE_FORMATS
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    ms_tokens: TokenSet = field(default_factory=TokenSet)
    chain_tokens: TokenSet = field(default_factory=TokenSet)
    challenges: TokenSet = field(default_factory=TokenSet)
    # msToken -> how far its For You feed has got; the oldest forgotten first, as tokens are
    recommend_position: OrderedDict[str, int] = field(default_factory=OrderedDict)
    # (monotonic time, host, path) of every request, newest last: what a politeness test inspects.
    requests: deque = field(default_factory=lambda: deque(maxlen=100_000))

    def __post_init__(self) -> None:
        self.signer_js = signer_script(self.secret)
        self._format_random = random.Random(self.seed)
        self._recommend_order = list(self.corpus.newest_first)
        random.Random(self.seed).shuffle(self._recommend_order)

    # --- items as TikTok serves them right now
    def served_item(self, video_id: str) -> dict:
        item = self.corpus.item(video_id)  # a fresh copy, changed below
        now = self.clock.now()
        exact = {k: int(v) for k, v in (item.get("statsV2") or item.get("stats") or {}).items()}
        shown, exact_strings = grown_stats(exact, growth(item["createTime"], self.corpus.observed_at, now))
        item["stats"] = {key: shown[key] for key in item.get("stats") or shown}
        if "statsV2" in item:
            item["statsV2"] = exact_strings
        if "authorStats" in item:
            factor = follower_growth(self.corpus.observed_at, now)
            stats = item["authorStats"]
            stats["followerCount"] = int(stats["followerCount"] * factor)
        expires = int(now) + URL_LIFETIME_S
        music = item.get("music")
        if isinstance(music, dict) and music.get("id"):
            music["playUrl"] = signed_music_url(str(music["id"]), expires, self.secret)
        if video_id in self.corpus.photo_counts:  # a photo post: images and no video to play
            sizes = [(i.get("imageWidth", 0), i.get("imageHeight", 0)) for i in item["imagePost"]["images"]]
            item["imagePost"] = {**item["imagePost"], **image_post(video_id, sizes, expires, self.secret)}
            cover = item["imagePost"]["cover"]["imageURL"]["urlList"][0]
            item["video"] = {**item.get("video", {}), **photo_video(cover)}
            for key in ("playAddr", "downloadAddr", "bitrateInfo"):
                item["video"].pop(key, None)
        else:
            urls = media_urls(video_id, expires, self.secret)
            video = item.setdefault("video", {})
            video.update(playAddr=urls["play"], downloadAddr=urls["download"])
            for key in ("cover", "originCover", "dynamicCover", "reflowCover"):
                video[key] = urls["cover"]
        return self.dice.drop_fields(item)  # the drop_FIELD faults: payload drift on demand

    def user_info(self, unique_id: str) -> dict:
        latest = self.served_item(self.corpus.by_author[unique_id][0])
        stats = dict(latest.get("authorStats") or {})
        stats.setdefault("friendCount", 0)
        exact = {k: int(v) for k, v in stats.items()}
        shown, exact_strings = grown_stats(exact, 1.0)  # as served: rounded stats, exact statsV2
        user = {**PROFILE_ONLY_FIELDS, **latest["author"], "region": latest.get("locationCreated", "US")}
        return {"user": user, "stats": shown, "statsV2": exact_strings}

    def pick_page_format(self) -> str:
        if self.page_format == "mixed":
            return self._format_random.choice(pages.PAGE_FORMATS)
        return self.page_format

    def recommend(self, token: str, count: int) -> tuple[list[str], bool]:
        start = self.recommend_position.pop(token, 0)
        ids = self._recommend_order[start : start + count]
        self.recommend_position[token] = start + len(ids)
        while len(self.recommend_position) > TOKEN_LIMIT:
            self.recommend_position.popitem(last=False)
        return ids, start + len(ids) < len(self._recommend_order)


def _json(payload: dict, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False), status, media_type="application/json; charset=utf-8"
    )


def _envelope(payload: dict, now_s: float, status: int = STATUS_OK, message: str = "") -> dict:
    """An API body as TikTok wraps it: both spellings of the status code, and the request's log ids."""
    log_id = secrets.token_hex(16)
    error = {"statusMsg": message} if status != STATUS_OK else {}  # errors spell it both ways too
    return {
        "statusCode": status,
        "status_code": status,
        "status_msg": message,
        **error,
        **payload,
        "extra": {"fatal_item_ids": [], "logid": log_id, "now": int(now_s * 1000)},
        "log_pb": {"impr_id": log_id},
    }


def _fault_response(fault: str | None, state: TwinState) -> Response | None:
    if fault == "rate429":
        return Response("", 429, headers={"Retry-After": str(state.dice.spec.retry_after_s)})
    if fault == "error5xx":
        return Response("", 503 if state.dice.fired["error5xx"] % 2 else 500)
    if fault == "empty":
        return Response(b"", 200, media_type="application/json")
    return None


def _set_session_cookies(response: Response, request: Request, state: TwinState) -> None:
    if request.cookies.get("msToken") not in state.ms_tokens:
        response.set_cookie(
            "msToken", state.ms_tokens.issue(107), domain=COOKIE_DOMAIN, secure=True, samesite="none"
        )
    if request.cookies.get("tt_chain_token") not in state.chain_tokens:
        token = state.chain_tokens.issue(24)
        response.set_cookie("tt_chain_token", token, domain=COOKIE_DOMAIN, secure=True, httponly=True)
    if "ttwid" not in request.cookies:
        response.set_cookie("ttwid", "1%7C" + secrets.token_urlsafe(32), domain=COOKIE_DOMAIN, secure=True)


def _solved_challenge(request: Request, state: TwinState) -> bool:
    try:
        data = json.loads(base64.b64decode(request.cookies.get(CHALLENGE_COOKIE, "")))
        prefix, digest = base64.b64decode(data["v"]["a"]), base64.b64decode(data["v"]["c"])
        nonce = base64.b64decode(data["d"])
    except (ValueError, KeyError, TypeError):
        return False
    return data.get("s") in state.challenges and hashlib.sha256(prefix + nonce).digest() == digest


def _challenge(state: TwinState) -> Response:
    prefix = secrets.token_bytes(16)
    nonce = str(random.randint(0, 3000)).encode()
    challenge = {
        "v": {
            "a": base64.b64encode(prefix).decode(),
            "c": base64.b64encode(hashlib.sha256(prefix + nonce).digest()).decode(),
        },
        "s": state.challenges.issue(16),
    }
    return HTMLResponse(pages.challenge_page(challenge, CHALLENGE_COOKIE))


async def _roll_fault(state: TwinState, kinds: tuple[str, ...]) -> tuple[Response | None, str | None]:
    """This request's fault: slow ones are delayed here; those with a reply of their own return it."""
    fault = state.dice.roll(kinds)
    if fault == "slow":
        await asyncio.sleep(state.dice.spec.slow_s)
    return _fault_response(fault, state), fault


async def _page_gate(
    request: Request, state: TwinState, kinds: tuple[str, ...]
) -> tuple[Response | None, str | None]:
    """Faults for a page visit; a solved challenge cookie spares the visitor another challenge."""
    if _solved_challenge(request, state):
        kinds = tuple(k for k in kinds if k != "challenge")
    failed, fault = await _roll_fault(state, tuple(k for k in kinds if k != "reset"))
    if fault == "challenge":
        return _challenge(state), fault
    return failed, fault


def _html(body: str, request: Request, state: TwinState) -> HTMLResponse:
    response = HTMLResponse(body)
    _set_session_cookies(response, request, state)
    return response


def build_app(state: TwinState) -> ASGIApp:
    corpus = state.corpus

    def envelope(payload: dict, status: int = STATUS_OK, message: str = "") -> dict:
        return _envelope(payload, state.clock.now(), status, message)

    async def video_page(request: Request) -> Response:
        failed, fault = await _page_gate(request, state, VIDEO_PAGE_FAULTS)
        if failed:
            return failed
        video_id = request.path_params["video_id"]
        page_format = state.pick_page_format()
        if video_id not in corpus.item_paths or fault == "blocked":
            body = pages.video_page(
                None, STATUS_UNAVAILABLE, "item doesn't exist", page_format, state.signer_js
            )
        elif fault == "private":
            body = pages.video_page(None, STATUS_PRIVATE_ITEM, "private item", page_format, state.signer_js)
        else:
            body = pages.video_page(state.served_item(video_id), STATUS_OK, "", page_format, state.signer_js)
        return _html(body, request, state)

    async def profile_page(request: Request) -> Response:
        failed, _ = await _page_gate(request, state, PAGE_FAULTS)
        if failed:
            return failed
        unique_id = request.path_params["unique_id"]
        if unique_id in corpus.by_author:
            body = pages.profile_page(state.user_info(unique_id), STATUS_OK, state.signer_js)
        else:
            body = pages.profile_page(None, STATUS_USER_NOT_FOUND, state.signer_js)
        return _html(body, request, state)

    async def listing(
        request: Request, title: str, api: str, params: dict[str, str], scope: dict
    ) -> Response:
        failed, _ = await _page_gate(request, state, PAGE_FAULTS)
        if failed:
            return failed
        return _html(pages.listing_page(title, api, params, scope, state.signer_js), request, state)

    async def tag_page(request: Request) -> Response:
        tag = request.path_params["tag"].lower()
        challenge_id = corpus.challenge_id(tag)
        info = _challenge_info(tag, challenge_id)
        scope = {"webapp.challenge-detail": {"statusCode": STATUS_OK, "challengeInfo": info}}
        return await listing(
            request, f"#{tag}", "/api/challenge/item_list/", {"challengeID": challenge_id}, scope
        )

    async def music_page(request: Request) -> Response:
        music_id = request.path_params["slug"].rsplit("-", 1)[-1]
        scope = {"webapp.music-detail": {"statusCode": STATUS_OK, "musicInfo": _music_info(music_id) or {}}}
        return await listing(
            request, f"Sound {music_id}", "/api/music/item_list/", {"musicID": music_id}, scope
        )

    async def search_page(request: Request) -> Response:
        query = request.query_params.get("q", "")
        return await listing(request, f"Search: {query}", "/api/search/item/full/", {"keyword": query}, {})

    async def foryou_page(request: Request) -> Response:
        return await listing(request, "For You", "/api/recommend/item_list/", {"from_page": "fyp"}, {})

    def _challenge_info(tag: str, challenge_id: str) -> dict:
        videos = len(corpus.by_tag.get(tag, []))
        return {
            "challenge": {
                "id": challenge_id,
                "title": tag,
                "desc": "",
                "splitTitle": "",
                "isCommerce": False,
            },
            "stats": {"videoCount": videos, "viewCount": videos * 1000},
            "statsV2": {"videoCount": str(videos), "viewCount": str(videos * 1000)},
        }

    def _music_info(music_id: str) -> dict | None:
        ids = corpus.by_music.get(music_id)
        if not ids:
            return None
        item = state.served_item(ids[0])
        music = item["music"]
        info = {"music": music, "stats": {"videoCount": len(ids)}}
        if music.get("original"):
            info["author"] = item["author"]
        return info

    # --- APIs: empty 200 unless the msToken cookie and the page's signature are there, as on TikTok
    def api(handler):
        async def endpoint(request: Request) -> Response:
            token = request.cookies.get("msToken") or request.query_params.get("msToken")
            signed, signature = unsigned_target(request.url.path, request.scope["query_string"].decode())
            if token not in state.ms_tokens or signature is None or signature != sign(signed, state.secret):
                return Response(b"", 200, media_type="application/json")
            failed, _ = await _roll_fault(state, API_FAULTS)
            if failed:
                return failed
            params = request.query_params
            count = max(1, min(MAX_COUNT, int(params.get("count") or 30)))
            return _json(handler(params, count, token))

        return endpoint

    def page_of(ids: list[str], cursor: int, count: int) -> tuple[list[dict], int, bool]:
        chunk = ids[cursor : cursor + count]
        return [state.served_item(i) for i in chunk], cursor + len(chunk), cursor + len(chunk) < len(ids)

    def offset(params) -> int:
        try:
            return max(0, int(params.get("cursor") or params.get("offset") or 0))
        except ValueError:
            return 0

    def item_list(ids: list[str], params, count: int) -> dict:
        items, cursor, has_more = page_of(ids, offset(params), count)
        return envelope({"itemList": items, "cursor": str(cursor), "hasMore": has_more})

    def item_detail(params, count, token) -> dict:
        video_id = params.get("itemId", "")
        if video_id not in corpus.item_paths:
            return envelope({}, STATUS_UNAVAILABLE, "item doesn't exist")
        return envelope({"itemInfo": {"itemStruct": state.served_item(video_id)}})

    def user_detail(params, count, token) -> dict:
        unique_id = params.get("uniqueId") or corpus.sec_uids.get(params.get("secUid", ""), "")
        if unique_id not in corpus.by_author:
            return envelope({}, STATUS_USER_NOT_FOUND, "user doesn't exist")
        return envelope({"userInfo": state.user_info(unique_id)})

    def post_item_list(params, count, token) -> dict:
        ids = corpus.by_author.get(corpus.sec_uids.get(params.get("secUid", ""), ""), [])
        cursor_ms = offset(params)
        # newest first: the posts older than the cursor are a tail, found by bisection
        start = bisect_right(ids, -cursor_ms, key=lambda i: -corpus.create_time[i] * 1000) if cursor_ms else 0
        chunk = ids[start : start + count]
        next_cursor = corpus.create_time[chunk[-1]] * 1000 if chunk else cursor_ms
        items = [state.served_item(i) for i in chunk]
        has_more = len(ids) - start > len(chunk)
        return envelope({"itemList": items, "cursor": str(next_cursor), "hasMore": has_more})

    def challenge_detail(params, count, token) -> dict:
        tag = params.get("challengeName", "").lower().lstrip("#")
        if tag not in corpus.by_tag:
            return envelope({}, STATUS_UNAVAILABLE, "challenge doesn't exist")
        challenge_id = corpus.challenge_id(tag)
        return envelope({"challengeInfo": _challenge_info(tag, challenge_id)})

    def challenge_items(params, count, token) -> dict:
        tag = corpus.challenge_ids.get(params.get("challengeID", ""), "")
        return item_list(corpus.by_tag.get(tag, []), params, count)

    def music_detail(params, count, token) -> dict:
        info = _music_info(params.get("musicId", ""))
        if info is None:
            return envelope({}, STATUS_UNAVAILABLE, "music doesn't exist")
        return envelope({"musicInfo": info})

    def music_items(params, count, token) -> dict:
        return item_list(corpus.by_music.get(params.get("musicID", ""), []), params, count)

    def search_items(params, count, token) -> dict:
        start = offset(params)
        ids, total = corpus.search_page(params.get("keyword", "").lower().split(), start, count)
        items = [state.served_item(i) for i in ids]
        cursor = start + len(ids)
        return envelope({"item_list": items, "cursor": cursor, "has_more": int(cursor < total)})

    def recommend_items(params, count, token) -> dict:
        ids, has_more = state.recommend(token, count)
        return envelope({"itemList": [state.served_item(i) for i in ids], "hasMore": has_more})

    def comment_list(params, count, token) -> dict:
        video_id = params.get("aweme_id", "")
        if video_id not in corpus.item_paths:
            return envelope({"comments": [], "cursor": 0, "has_more": 0, "total": 0})
        comments = comments_of(state, video_id)
        start = offset(params)
        chunk = comments[start : start + count]
        has_more = start + len(chunk) < len(comments)
        page = {
            "comments": chunk,
            "cursor": start + len(chunk),
            "has_more": int(has_more),
            "total": len(comments),
        }
        return envelope(page)

    # --- media: signed, expiring, Referer and tt_chain_token required, Range supported
    async def video_media(request: Request) -> Response:
        video_id = request.path_params["video_id"]
        if video_id not in corpus.media_paths:
            return Response("Not Found", 404)
        if refused := signature_refusal(request, video_id):
            return refused
        if not request.headers.get("referer", "").startswith("https://www.tiktok.com/"):
            return Response("Forbidden: Referer", 403)
        if request.cookies.get("tt_chain_token") not in state.chain_tokens:
            return Response("Forbidden: tt_chain_token", 403)
        failed, fault = await _roll_fault(state, MEDIA_FAULTS)
        if failed:
            return failed
        path = corpus.media_paths[video_id]
        if fault == "truncate":
            return _truncated(path.read_bytes())
        return MediaFile(path, media_type="video/mp4")

    def signature_refusal(request: Request, key: str) -> Response | None:
        """403 unless the URL carries this twin's signature for `key` and has not expired."""
        params = request.query_params
        try:
            expires = int(params.get("x-expires", "0"))
        except ValueError:
            expires = 0
        if params.get("x-signature") != media_signature(state.secret, key, expires):
            return Response("Forbidden: bad signature", 403)
        if state.clock.now() > expires:
            return Response("Forbidden: URL expired", 403)
        return None

    async def signed_file(request: Request, key: str, path, media_type: str) -> Response:
        """A photo's image or a sound: signed and expiring, with the media faults, as video media."""
        if refused := signature_refusal(request, key):
            return refused
        failed, fault = await _roll_fault(state, MEDIA_FAULTS)
        if failed:
            return failed
        if fault == "truncate":
            return _truncated(path.read_bytes(), media_type)
        return MediaFile(path, media_type=media_type)

    async def photo_image(request: Request) -> Response:
        key = request.path_params["name"].removesuffix(PHOTO_IMAGE_SUFFIX)
        if key not in corpus.image_paths:
            return Response("Not Found", 404)
        return await signed_file(request, key, corpus.image_paths[key], "image/jpeg")

    async def image(request: Request) -> Response:
        key = request.path_params["key"]
        video_id = key.split("~")[0]
        if video_id in corpus.media_paths:
            return Response(_cover_jpeg(_real_path(corpus.media_paths[video_id])), media_type="image/jpeg")
        return Response(_placeholder_jpeg(key), media_type="image/jpeg")

    async def music_audio(request: Request) -> Response:
        music_id = request.path_params["music_id"]
        if music_id in corpus.sound_paths:  # a photo post's sound: its own MP3, as TikTok serves sounds
            return await signed_file(request, music_id, corpus.sound_paths[music_id], "audio/mpeg")
        with_media = next((i for i in corpus.by_music.get(music_id, []) if i in corpus.media_paths), None)
        if with_media is None:
            return Response("Not Found", 404)
        if refused := signature_refusal(request, music_id):
            return refused
        return Response(_audio_track(_real_path(corpus.media_paths[with_media])), media_type="audio/mp4")

    def api_route(path: str, handler) -> Route:
        return Route(path, api(handler))

    web = Router(
        [
            Route("/", foryou_page),
            Route("/favicon.ico", lambda request: Response(b"", 204)),
            Route("/foryou", foryou_page),
            Route("/search", search_page),
            Route("/tag/{tag}", tag_page),
            Route("/music/{slug}", music_page),
            Route("/@{unique_id}", profile_page),
            Route("/@{unique_id}/video/{video_id}", video_page),
            Route("/@{unique_id}/photo/{video_id}", video_page),  # TikTok answers both for any post
            api_route("/api/item/detail/", item_detail),
            api_route("/api/user/detail/", user_detail),
            api_route("/api/post/item_list/", post_item_list),
            api_route("/api/challenge/detail/", challenge_detail),
            api_route("/api/challenge/item_list/", challenge_items),
            api_route("/api/music/detail/", music_detail),
            api_route("/api/music/item_list/", music_items),
            api_route("/api/search/item/full/", search_items),
            api_route("/api/recommend/item_list/", recommend_items),
            api_route("/api/comment/list/", comment_list),
        ]
    )
    media = Router([Route("/video/tos/{region}/{bucket}/{video_id}/", video_media, methods=["GET", "HEAD"])])
    images = Router(
        [Route(f"/{PHOTO_IMAGE_PREFIX}/{{name}}", photo_image), Route("/{prefix:path}/{key}", image)]
    )
    music = Router([Route("/obj/ies-music-aiso/{music_id}.mp3", music_audio)])
    # The pages' monitoring beacons: read by nobody, answered 204 as TikTok's collector answers them.
    monitor = Router([Route(MONITOR_PATH, lambda request: Response(b"", 204), methods=["POST"])])

    async def log_requests(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode().split(":")[0]
            state.requests.append((time.monotonic(), host, scope["path"]))
        await app(scope, receive, send)

    app = Starlette(
        routes=[
            Host("www.tiktok.com", web),
            Host("m.tiktok.com", web),
            Host("tiktok.com", web),
            Host(VIDEO_CDN_HOST, media),
            Host(MUSIC_CDN_HOST, music),
            Host(IMAGE_CDN_HOST, images),
            Host(IMAGE_CDN_ALT_HOST, images),
            Host(MONITOR_HOST, monitor),
        ]
    )
    return log_requests


def _real_path(path: Path) -> str:
    """The file a media path names: videos that share a pooled clip share its cached cover and audio."""
    return os.path.realpath(path)


def _truncated(data: bytes, media_type: str = "video/mp4") -> Response:
    async def half():
        yield data[: len(data) // 2]

    return StreamingResponse(half(), media_type=media_type, headers={"Content-Length": str(len(data))})


@lru_cache(maxsize=512)
def _cover_jpeg(mp4: str) -> bytes:
    return subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            mp4,
            "-frames:v",
            "1",
            "-f",
            "mjpeg",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout


@lru_cache(maxsize=256)
def _audio_track(mp4: str) -> bytes:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", mp4, "-vn", "-c:a", "copy"]
    command += ["-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "pipe:1"]
    return subprocess.run(command, capture_output=True, check=True).stdout


@lru_cache(maxsize=1024)
def _placeholder_jpeg(key: str) -> bytes:
    shade = hashlib.sha256(key.encode()).digest()[:3]
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), tuple(shade)).save(buffer, "JPEG")
    return buffer.getvalue()


COMMENT_WORDS = ("love", "this", "so", "good", "wow", "part", "two", "please", "haha", "best", "ever", "fr")


def comments_of(state: TwinState, video_id: str) -> list[dict]:
    """The comments the twin serves for a video: seeded, so every client and test sees the same."""
    item = state.corpus.item(video_id)
    total = min(60, int((item.get("statsV2") or item.get("stats") or {}).get("commentCount", 0)))
    rng = random.Random(f"{state.seed}:{video_id}")
    authors = state.corpus.authors
    comments = []
    for index in range(total):
        unique_id = rng.choice(authors)
        user = state.corpus.latest_author(unique_id)
        comments.append(
            {
                "cid": str(int(video_id) + index + 1),
                "aweme_id": video_id,
                "text": " ".join(rng.choice(COMMENT_WORDS) for _ in range(rng.randint(1, 6))),
                "create_time": item["createTime"] + rng.randint(60, 30 * 86400),
                "digg_count": int(rng.paretovariate(1.2)) - 1,
                "reply_comment_total": rng.randint(0, 3),
                "comment_language": "en",
                "author_pin": False,
                "status": 1,
                "user": {
                    "uid": user["id"],
                    "unique_id": user["uniqueId"],
                    "sec_uid": user["secUid"],
                    "nickname": user["nickname"],
                    "avatar_thumb": {"url_list": [user.get("avatarThumb", "")]},
                },
            }
        )
    return comments
