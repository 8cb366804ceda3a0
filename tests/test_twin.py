"""The TikTok twin through its real proxy, over TLS, with real clients: httpx, yt-dlp and Chromium."""

from __future__ import annotations

import functools
import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tkds.tiktok import MONITOR_HOST, MONITOR_PATH, STATUS_USER_NOT_FOUND
from tkds.twin import serve
from tkds.twin.app import URL_LIFETIME_S
from tkds.twin.signer import path_and_query, sign

from .conftest import common_keys

REFERER = {"Referer": "https://www.tiktok.com/"}
SCRIPT = r'<script id="{}"[^>]*>(.*?)</script>'


def embedded(html: str, script_id: str) -> dict:
    match = re.search(SCRIPT.format(script_id), html, re.S)
    assert match, f"no {script_id} script in the page"
    return json.loads(match.group(1))


def video_detail(html: str) -> dict:
    return embedded(html, "__UNIVERSAL_DATA_FOR_REHYDRATION__")["__DEFAULT_SCOPE__"]["webapp.video-detail"]


@pytest.fixture(scope="module")
def twin(twin_corpus: Path):
    with serve(twin_corpus, seed=1) as running:
        yield running


@functools.cache
def _trust(ca_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_path))


def client(twin) -> httpx.Client:
    return httpx.Client(proxy=twin.proxy_url, verify=_trust(twin.ca_path), timeout=30)


def a_video(twin) -> tuple[str, str]:
    corpus = twin.state.corpus
    video_id = corpus.newest_first[0]
    return corpus.author_of[video_id], video_id


def signed_get(session: httpx.Client, twin, path: str, params: dict) -> httpx.Response:
    """An API call as the page's script makes it: msToken from the cookie, then the page's signature."""
    url = httpx.URL(f"https://www.tiktok.com{path}", params={**params, "msToken": session.cookies["msToken"]})
    signature = sign(path_and_query(str(url)), twin.state.secret)
    return session.get(url.copy_add_param("X-Bogus", signature))


# --- payload shapes against the real captures


def test_video_page_item_has_the_fields_of_real_items(twin, tiktok_fixtures: Path) -> None:
    real = json.loads((tiktok_fixtures / "api_item_list_2021.json").read_text())
    user, video_id = a_video(twin)
    detail = video_detail(client(twin).get(f"https://www.tiktok.com/@{user}/video/{video_id}").text)
    assert detail["statusCode"] == 0
    item = detail["itemInfo"]["itemStruct"]
    assert common_keys(real) <= set(item)
    for block in ("video", "author", "music", "stats", "authorStats"):
        assert common_keys([r[block] for r in real]) <= set(item[block]), block


def test_legacy_page_formats_match_their_captures(twin_corpus: Path, tiktok_fixtures: Path) -> None:
    sigi = json.loads((tiktok_fixtures / "sigi_state_profile_2023.json").read_text())
    next_page = (tiktok_fixtures / "next_data_video_page_2020.html").read_text()
    real_next = embedded(next_page, "__NEXT_DATA__")
    for page_format in ("sigi", "next"):
        with serve(twin_corpus, page_format=page_format) as legacy:
            user, video_id = a_video(legacy)
            html = client(legacy).get(f"https://www.tiktok.com/@{user}/video/{video_id}").text
            if page_format == "sigi":
                state = embedded(html, "SIGI_STATE")
                item = state["ItemModule"][video_id]
                assert common_keys(list(sigi["ItemModule"].values())) <= set(item)
                assert item["author"] == user and isinstance(item["createTime"], str)
                assert set(sigi["UserModule"]) <= set(state["UserModule"])
                assert set(state["UserModule"]["users"][user]) >= {"id", "uniqueId", "secUid", "nickname"}
            else:
                state = embedded(html, "__NEXT_DATA__")
                assert set(real_next) <= set(state)
                assert set(real_next["props"]["pageProps"]) <= set(state["props"]["pageProps"])
                assert state["props"]["pageProps"]["itemInfo"]["itemStruct"]["id"] == video_id


def test_profile_page_matches_the_2026_capture(twin, tiktok_fixtures: Path) -> None:
    real = json.loads((tiktok_fixtures / "profile_2026.json").read_text())[0]
    user, _ = a_video(twin)
    html = client(twin).get(f"https://www.tiktok.com/@{user}").text
    detail = embedded(html, "__UNIVERSAL_DATA_FOR_REHYDRATION__")["__DEFAULT_SCOPE__"]["webapp.user-detail"]
    info = detail["userInfo"]
    assert set(real) <= set(info)
    for block in ("user", "stats", "statsV2"):
        assert set(real[block]) <= set(info[block]), block
    assert all(isinstance(v, str) for v in info["statsV2"].values())
    assert all(isinstance(v, int) for v in info["stats"].values())


def test_apis_match_captures_and_page_through_cursors(twin, tiktok_fixtures: Path) -> None:
    session = client(twin)
    user, video_id = a_video(twin)
    session.get(f"https://www.tiktok.com/@{user}/video/{video_id}")  # sets msToken, as a visit does

    comments = signed_get(session, twin, "/api/comment/list/", {"aweme_id": video_id, "count": 5}).json()
    real_comment = json.loads((tiktok_fixtures / "comments_2026.json").read_text())[0]
    # The capture flattened user.nickname and user.unique_id; the API nests them under user.
    assert set(real_comment) - {"nickname", "unique_id"} <= set(comments["comments"][0])
    assert {"nickname", "unique_id"} <= set(comments["comments"][0]["user"])
    assert comments["has_more"] in (0, 1) and isinstance(comments["cursor"], int)

    search = signed_get(session, twin, "/api/search/item/full/", {"keyword": "fyp", "count": 10}).json()
    real_result = json.loads((tiktok_fixtures / "search_items_2026.json").read_text())[0]
    # `type` belongs to search/general's wrapper around each item, not to the item.
    assert set(real_result) - {"type"} <= set(search["item_list"][0])
    assert search["has_more"] == 1 and search["cursor"] == 10

    tag_id = next(cid for cid, tag in twin.state.corpus.challenge_ids.items() if tag == "fyp")
    expected = twin.state.corpus.by_tag["fyp"]
    seen, cursor, has_more = [], "0", True
    while has_more:
        page = signed_get(
            session, twin, "/api/challenge/item_list/", {"challengeID": tag_id, "count": 30, "cursor": cursor}
        ).json()
        seen += [item["id"] for item in page["itemList"]]
        cursor, has_more = page["cursor"], page["hasMore"]
    assert seen == expected and len(expected) > 30

    sec_uid = twin.state.served_item(video_id)["author"]["secUid"]
    posts = signed_get(
        session, twin, "/api/post/item_list/", {"secUid": sec_uid, "count": 2, "cursor": 0}
    ).json()
    assert [i["id"] for i in posts["itemList"]] == twin.state.corpus.by_author[user][:2]
    assert posts["cursor"] == str(posts["itemList"][-1]["createTime"] * 1000)

    music_id = twin.state.served_item(video_id)["music"]["id"]
    music = signed_get(session, twin, "/api/music/detail/", {"musicId": music_id}).json()
    assert music["musicInfo"]["music"]["id"] == music_id
    assert music["musicInfo"]["stats"]["videoCount"] == len(twin.state.corpus.by_music[music_id])
    detail = signed_get(session, twin, "/api/user/detail/", {"uniqueId": user}).json()
    assert detail["userInfo"]["user"]["uniqueId"] == user

    # For You has no cursor: each call continues this msToken's feed until it runs out.
    feed, has_more = [], True
    while has_more:
        page = signed_get(
            session, twin, "/api/recommend/item_list/", {"count": 30, "from_page": "fyp"}
        ).json()
        feed += [item["id"] for item in page["itemList"]]
        has_more = page["hasMore"]
    assert sorted(feed) == sorted(twin.state.corpus.newest_first) and len(feed) == len(set(feed))


def test_unknown_ids_get_tiktoks_status_codes_not_errors(twin) -> None:
    session = client(twin)
    page = session.get("https://www.tiktok.com/@nobody/video/7000000000000000000")
    assert page.status_code == 200 and video_detail(page.text)["statusCode"] == 10204
    profile = session.get("https://www.tiktok.com/@no.such.user.here")
    detail = embedded(profile.text, "__UNIVERSAL_DATA_FOR_REHYDRATION__")["__DEFAULT_SCOPE__"][
        "webapp.user-detail"
    ]
    assert detail["statusCode"] == 10221 and "userInfo" not in detail
    unknown = signed_get(session, twin, "/api/item/detail/", {"itemId": "7000000000000000000"}).json()
    assert unknown["statusCode"] == 10204


def test_api_bodies_carry_both_status_spellings_as_tiktoks_do(twin) -> None:
    session = client(twin)
    user, video_id = a_video(twin)
    session.get(f"https://www.tiktok.com/@{user}/video/{video_id}")
    bodies = {
        0: signed_get(session, twin, "/api/item/detail/", {"itemId": video_id}).json(),
        STATUS_USER_NOT_FOUND: signed_get(session, twin, "/api/user/detail/", {"uniqueId": "no.one"}).json(),
    }
    comments = signed_get(session, twin, "/api/comment/list/", {"aweme_id": video_id}).json()
    for status, body in [*bodies.items(), (0, comments)]:
        # TikTok-Api reads status_code, tkds and yt-dlp statusCode: real bodies carry both.
        assert body["statusCode"] == body["status_code"] == status
        assert isinstance(body["status_msg"], str)
        assert body["extra"]["logid"] == body["log_pb"]["impr_id"]
        assert abs(body["extra"]["now"] / 1000 - twin.clock.now()) < 60


@pytest.mark.slow
def test_pages_keep_reporting_to_tiktoks_monitor_after_load(twin) -> None:
    user, video_id = a_video(twin)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(proxy={"server": twin.proxy_url}, ignore_https_errors=True)
        page = context.new_page()
        page.goto(f"https://www.tiktok.com/@{user}/video/{video_id}", wait_until="load")
        reports = []
        for _ in range(2):  # the report after load, then the first heartbeat
            with page.expect_request(lambda r: MONITOR_HOST in r.url, timeout=10_000) as request:
                pass
            reports.append(json.loads(request.value.post_data)["list"][0])
            assert request.value.response().status == 204
        browser.close()
    assert [r["ev_type"] for r in reports] == ["performance", "heartbeat"]
    assert (MONITOR_HOST, MONITOR_PATH) in {(host, path) for _, host, path in twin.state.requests}


# --- anti-bot behaviour


def test_api_calls_need_the_cookie_and_the_page_signature(twin) -> None:
    user, video_id = a_video(twin)
    bare = client(twin)
    plain = bare.get("https://www.tiktok.com/api/item/detail/", params={"itemId": video_id})
    assert plain.status_code == 200 and plain.content == b""

    visited = client(twin)
    visited.get(f"https://www.tiktok.com/@{user}/video/{video_id}")
    assert {"msToken", "ttwid", "tt_chain_token"} <= set(visited.cookies)
    unsigned = visited.get("https://www.tiktok.com/api/item/detail/", params={"itemId": video_id})
    assert unsigned.content == b""
    forged = visited.get(
        "https://www.tiktok.com/api/item/detail/", params={"itemId": video_id, "X-Bogus": "0" * 24}
    )
    assert forged.content == b""
    signed = signed_get(visited, twin, "/api/item/detail/", {"itemId": video_id})
    assert signed.json()["itemInfo"]["itemStruct"]["id"] == video_id
    # The signature covers the query: changing a parameter afterwards breaks it.
    url = str(signed.request.url).replace(video_id, twin.state.corpus.newest_first[1])
    assert visited.get(url).content == b""


def test_media_urls_need_referer_and_cookie_support_range_and_expire(twin) -> None:
    user, video_id = a_video(twin)
    session = client(twin)
    item = video_detail(session.get(f"https://www.tiktok.com/@{user}/video/{video_id}").text)["itemInfo"][
        "itemStruct"
    ]
    play = item["video"]["playAddr"]
    assert "x-expires=" in play and "x-signature=" in play and ".tiktok.com/" in play
    size = twin.state.corpus.media_paths[video_id].stat().st_size

    assert client(twin).get(play, headers=REFERER).status_code == 403, "no tt_chain_token cookie"
    assert session.get(play).status_code == 403, "no Referer"
    assert session.get(play.replace("x-signature=", "x-signature=0")).status_code == 403
    full = session.get(play, headers=REFERER)
    assert full.status_code == 200 and len(full.content) == size
    part = session.get(play, headers={**REFERER, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}"

    twin.clock.advance(URL_LIFETIME_S + 60)
    try:
        assert session.get(play, headers=REFERER).status_code == 403, "expired URL"
        fresh = video_detail(session.get(f"https://www.tiktok.com/@{user}/video/{video_id}").text)
        assert (
            session.get(fresh["itemInfo"]["itemStruct"]["video"]["playAddr"], headers=REFERER).status_code
            == 200
        )
    finally:
        twin.clock.advance(-(URL_LIFETIME_S + 60))


def test_other_hosts_are_refused_and_nothing_leaves_the_machine(twin) -> None:
    with pytest.raises(httpx.ProxyError, match="403"):
        client(twin).get("https://example.com/")
    plain = httpx.get(twin.proxy_url + "/", timeout=10)
    assert plain.status_code == 405


def test_counts_keep_growing_with_the_twin_clock(twin) -> None:
    user, video_id = a_video(twin)
    session = client(twin)
    url = f"https://www.tiktok.com/@{user}/video/{video_id}"
    before = video_detail(session.get(url).text)["itemInfo"]["itemStruct"]
    twin.clock.advance(14 * 86400)
    try:
        after = video_detail(session.get(url).text)["itemInfo"]["itemStruct"]
    finally:
        twin.clock.advance(-14 * 86400)
    likes_before, likes_after = int(before["statsV2"]["diggCount"]), int(after["statsV2"]["diggCount"])
    assert likes_after > likes_before
    assert int(after["statsV2"]["playCount"]) > int(before["statsV2"]["playCount"])
    assert after["authorStats"]["followerCount"] > before["authorStats"]["followerCount"]
    again = video_detail(session.get(url).text)["itemInfo"]["itemStruct"]
    assert int(again["statsV2"]["diggCount"]) - likes_before < likes_after - likes_before


# --- seeded faults


def _symptom(kind: str, twin, session: httpx.Client) -> bool:
    """One request of the kind a fault applies to; True when that fault showed."""
    user, video_id = a_video(twin)
    page_url = f"https://www.tiktok.com/@{user}/video/{video_id}"
    if kind == "reset":
        try:
            client(twin).get(page_url)
        except (httpx.ConnectError, httpx.ProxyError, httpx.RemoteProtocolError, httpx.ReadError):
            return True
        return False
    if kind == "truncate":
        play = twin.state.served_item(video_id)["video"]["playAddr"]
        session.cookies.set("tt_chain_token", twin.state.chain_tokens.issue(24), domain=".tiktok.com")
        try:
            return (
                len(session.get(play, headers=REFERER).content)
                < twin.state.corpus.media_paths[video_id].stat().st_size
            )
        except httpx.RemoteProtocolError:
            return True
    started = time.monotonic()
    response = session.get(page_url)
    if kind == "slow":
        return time.monotonic() - started >= twin.state.dice.spec.slow_s
    if kind == "rate429":
        return response.status_code == 429 and response.headers["retry-after"] == "1"
    if kind == "error5xx":
        return response.status_code in (500, 503)
    if kind == "empty":
        return response.status_code == 200 and response.content == b""
    if kind == "challenge":
        return "Please wait..." in response.text and 'id="cs"' in response.text
    status = video_detail(response.text)["statusCode"]
    return status == {"blocked": 10204, "private": 10216}[kind]


@pytest.mark.parametrize(
    ("kind", "requests"),
    [
        ("rate429", 120),
        ("error5xx", 120),
        ("empty", 120),
        ("blocked", 120),
        ("private", 120),
        ("challenge", 120),
        ("slow", 40),
        ("truncate", 80),
        ("reset", 80),
    ],
)
def test_each_fault_fires_at_its_rate_for_a_seed(twin_corpus: Path, kind: str, requests: int) -> None:
    rate = 0.25
    runs = []
    for _ in range(2):
        with serve(twin_corpus, faults={kind: rate, "slow_s": 0.2}, seed=42) as faulty:
            session = client(faulty)
            runs.append([_symptom(kind, faulty, session) for _ in range(requests)])
            assert sum(runs[-1]) == faulty.state.dice.fired[kind]
    hits = sum(runs[0])
    expected, spread = rate * requests, (rate * (1 - rate) * requests) ** 0.5
    assert abs(hits - expected) < 3.3 * spread, f"{kind}: {hits} of {requests}"
    assert runs[0] == runs[1], "the same seed must give the same faults"


def test_bad_fault_specs_are_refused(twin_corpus: Path) -> None:
    for spec, message in (
        ("rate429", "NAME=RATE"),
        ("bogus=0.1", "unknown fault"),
        ("empty=2", "within 0..1"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tkds", "twin", "--corpus", str(twin_corpus), "--faults", spec],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
