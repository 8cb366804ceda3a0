"""Peers' real clients against the twin: yt-dlp's own TikTok extractor, and Chromium through Playwright."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yt_dlp
from playwright.sync_api import sync_playwright
from torchcodec.decoders import VideoDecoder

from tkds.collector.browser import CHROMIUM, CHROMIUM_ARGS
from tkds.twin import serve


def corpus_truth(corpus: Path, video_id: str) -> dict:
    return json.loads((corpus / "items" / f"{video_id}.json").read_text())


def extract_with_yt_dlp(twin, corpus: Path, tmp_path: Path) -> tuple[dict, dict]:
    video_id = twin.state.corpus.newest_first[3]
    user = twin.state.corpus.author_of[video_id]
    options = {
        "proxy": twin.proxy_url,
        "nocheckcertificate": True,
        "outtmpl": str(tmp_path / "%(id)s.%(ext)s"),
        "quiet": True,
        "no_warnings": True,
        "format": "play",
    }
    with yt_dlp.YoutubeDL(options) as ydl:
        info = ydl.extract_info(f"https://www.tiktok.com/@{user}/video/{video_id}", download=True)
    return info, corpus_truth(corpus, video_id)


def test_yt_dlp_extracts_and_downloads_through_the_twin(twin_corpus: Path, tmp_path: Path) -> None:
    with serve(twin_corpus, seed=2) as twin:
        info, truth = extract_with_yt_dlp(twin, twin_corpus, tmp_path)
    assert info["id"] == truth["id"]
    assert info["uploader"] == truth["author"]["uniqueId"]
    assert info["like_count"] == int(truth["statsV2"]["diggCount"])
    assert info["track"] == truth["music"]["title"]
    assert {f["format_id"] for f in info["formats"]} >= {"play", "download", "audio"}
    downloaded = Path(info["requested_downloads"][0]["filepath"])
    decoder = VideoDecoder(str(downloaded))
    assert len(decoder) > 0 and decoder.metadata.width == truth["video"]["width"]


def test_yt_dlp_solves_the_please_wait_challenge_natively(twin_corpus: Path, tmp_path: Path) -> None:
    with serve(twin_corpus, faults={"challenge": 1.0}, seed=3) as twin:
        info, truth = extract_with_yt_dlp(twin, twin_corpus, tmp_path)
        assert twin.state.dice.fired["challenge"] >= 1
    assert info["id"] == truth["id"]


def browse_tag(twin, tag: str) -> tuple[list, list[str], object]:
    """Open a tag page in Chromium, scroll until the page has no more, and return the item-list XHRs."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(proxy={"server": twin.proxy_url}, ignore_https_errors=True)
        page = context.new_page()
        responses = []
        page.on("response", lambda r: responses.append(r) if "/api/challenge/item_list/" in r.url else None)
        page.goto(f"https://www.tiktok.com/tag/{tag}", wait_until="networkidle")
        for _ in range(30):
            if page.evaluate("document.body.dataset.hasMore") == "false":
                break
            page.mouse.wheel(0, 20_000)
            page.wait_for_timeout(300)
        payloads = [r.json() for r in responses if r.status == 200 and r.body()]
        shown = page.eval_on_selector_all(".item", "nodes => nodes.map(n => n.dataset.id)")
        cookies = {c["name"] for c in context.cookies()}
        browser.close()
    return payloads, shown, cookies


@pytest.mark.slow
def test_chromium_scrolls_a_tag_page_and_collects_every_item(twin_corpus: Path) -> None:
    with serve(twin_corpus, seed=4) as twin:
        payloads, shown, cookies = browse_tag(twin, "fyp")
        expected = twin.state.corpus.by_tag["fyp"]
    assert len(payloads) >= 2, "the page should page through the API as it scrolls"
    assert [item["id"] for p in payloads for item in p["itemList"]] == expected
    assert shown == expected
    assert {"msToken", "ttwid", "tt_chain_token"} <= cookies


@pytest.mark.slow
def test_chromium_solves_the_challenge_then_browses(twin_corpus: Path) -> None:
    with serve(twin_corpus, faults={"challenge": 1.0}, seed=5) as twin:
        payloads, shown, cookies = browse_tag(twin, "foryou")
        assert twin.state.dice.fired["challenge"] >= 1
        expected = twin.state.corpus.by_tag["foryou"]
    assert "_wafchallengeid" in cookies
    assert shown == expected and len(payloads) >= 1


def test_mixed_page_formats_serve_all_three_eras(twin_corpus: Path) -> None:
    with serve(twin_corpus, page_format="mixed", seed=6) as twin:
        video_id = twin.state.corpus.newest_first[0]
        url = f"https://www.tiktok.com/@{twin.state.corpus.author_of[video_id]}/video/{video_id}"
        with httpx.Client(
            proxy=twin.proxy_url, verify=ssl.create_default_context(cafile=twin.ca_path)
        ) as session:
            pages = [session.get(url).text for _ in range(20)]
    seen = {
        name
        for name in ("__UNIVERSAL_DATA_FOR_REHYDRATION__", "SIGI_STATE", "__NEXT_DATA__")
        if any(f'id="{name}"' in page for page in pages)
    }
    assert len(seen) == 3


def test_cli_twin_serves_until_ctrl_c(twin_corpus: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tkds",
            "twin",
            "--corpus",
            str(twin_corpus),
            "--port",
            "0",
            "--ca-out",
            str(ca),
        ],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    while not any("proxy" in line for line in lines):
        line = process.stderr.readline()
        assert line, f"twin exited early: {''.join(lines)}"
        lines.append(line)
    proxy = re.search(r"http://127\.0\.0\.1:\d+", "".join(lines)).group(0)
    with httpx.Client(proxy=proxy, verify=ssl.create_default_context(cafile=ca)) as session:
        assert session.get("https://www.tiktok.com/foryou").status_code == 200
    os.killpg(process.pid, signal.SIGINT)
    rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0 and "twin: stopped" in rest


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: root.mkdir(), "has no items/*.json"),
        (
            lambda root: (root / "items").mkdir(parents=True) or (root / "items" / "1.json").write_text("{"),
            "1.json",
        ),
    ],
)
def test_a_missing_or_malformed_corpus_is_refused_in_one_line(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "corpus"
    make(root)
    result = subprocess.run(
        [sys.executable, "-m", "tkds", "twin", "--corpus", str(root), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
