"""TikTok-Api 7.3.3, installed from the package index and unmodified, as a second oracle for the twin.

It drives Debian's Chromium through the twin's proxy and reads a hashtag, a user, the For You feed,
one video's page, its bytes and its comments; each read must return what the corpus holds. The
twin's clock is frozen so that the counts it serves are the corpus's own.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from TikTokApi import TikTokApi

from tkds.collector.browser import CHROMIUM
from tkds.twin import serve
from tkds.twin.app import comments_of

pytestmark = pytest.mark.slow

TAG = "fyp"  # the twin corpus's biggest tag: two pages of its item list


class ErrorLog(logging.Handler):
    """What TikTok-Api logs as errors (an unexpected status code, a failed fetch)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def gather(found) -> list:
    return [each async for each in found]


async def video_info(video) -> tuple:
    return video, await video.info()


async def read_everything(twin) -> dict:
    """One TikTok-Api session, each read stored (or the exception it raised) for the tests below."""
    corpus = twin.state.corpus
    user = max(corpus.by_author, key=lambda name: len(corpus.by_author[name]))
    commented = max(corpus.newest_first, key=lambda video_id: len(comments_of(twin.state, video_id)))
    detailed = corpus.newest_first[3]
    errors = ErrorLog()
    reads: dict = {"username": user, "commented": commented, "detailed": detailed, "errors": errors.messages}
    async with TikTokApi() as api:
        api.logger.addHandler(errors)
        await api.create_sessions(
            num_sessions=1,
            executable_path=CHROMIUM,
            override_browser_args=["--headless=new", "--no-sandbox", "--disable-gpu"],
            proxies=[{"server": twin.proxy_url}],
            context_options={"ignore_https_errors": True},  # Chromium reads no CA file
        )
        video_url = f"https://www.tiktok.com/@{corpus.author_of[detailed]}/video/{detailed}"
        reads_in_order = {
            "hashtag": lambda: gather(api.hashtag(name=TAG).videos(count=len(corpus.newest_first))),
            "user": lambda: gather(api.user(username=user).videos(count=len(corpus.newest_first))),
            "trending": lambda: gather(api.trending.videos(count=len(corpus.newest_first))),
            "comments": lambda: gather(api.video(id=commented).comments(count=100)),
            "info": lambda: video_info(api.video(url=video_url)),
            # Last: bytes() adds a Range header to the session's headers for good.
            "bytes": lambda: api.video(data=reads["info"][1]).bytes(),
        }
        for name, start in reads_in_order.items():
            try:
                reads[name] = await start()
            except Exception as error:  # the test of that read re-raises it
                reads[name] = error
    return reads


@pytest.fixture(scope="module")
def reads(twin_corpus: Path):
    with serve(twin_corpus, seed=5, speed=0.0) as twin, pytest.MonkeyPatch.context() as env:
        # Video.info() fetches the page with `requests`, handing it Playwright's proxy dict, which
        # requests ignores; the standard variables route it through the twin and trust its CA.
        env.setenv("HTTPS_PROXY", twin.proxy_url)
        env.setenv("REQUESTS_CA_BUNDLE", str(twin.ca_path))
        yield twin, asyncio.run(read_everything(twin))


def read(reads, name: str):
    twin, results = reads
    if isinstance(results[name], Exception):
        raise results[name]
    return twin, results[name]


def truth(twin, video_id: str) -> dict:
    return twin.state.corpus.item(video_id)


def assert_videos_match_the_corpus(twin, videos: list) -> None:
    for video in videos:
        expected = truth(twin, video.id)
        assert video.author.username == expected["author"]["uniqueId"]
        assert video.stats == expected["statsV2"]
        assert video.create_time.timestamp() == expected["createTime"]
        assert [tag.name for tag in video.hashtags] == [c["title"] for c in expected.get("challenges", [])]


def test_hashtag_videos_are_the_tags_items_in_order(reads) -> None:
    twin, videos = read(reads, "hashtag")
    assert [video.id for video in videos] == twin.state.corpus.by_tag[TAG]
    assert len(videos) > 30  # it paged through the cursor
    assert_videos_match_the_corpus(twin, videos)


def test_user_videos_are_every_post_of_the_user(reads) -> None:
    twin, videos = read(reads, "user")
    user = reads[1]["username"]
    assert [video.id for video in videos] == twin.state.corpus.by_author[user]
    assert_videos_match_the_corpus(twin, videos)


def test_for_you_feed_continues_the_start_pages_feed_without_repeats(reads) -> None:
    twin, videos = read(reads, "trending")
    ids = [video.id for video in videos]
    # The session's start page (For You) showed the feed's first 30 itself; the API goes on from there.
    assert len(ids) == len(set(ids)) == len(twin.state.corpus.newest_first) - 30
    assert set(ids) <= set(twin.state.corpus.newest_first)
    assert_videos_match_the_corpus(twin, videos)


def test_video_info_reads_the_page_as_the_corpus_holds_it(reads) -> None:
    twin, (video, info) = read(reads, "info")
    expected = truth(twin, reads[1]["detailed"])
    assert info["id"] == video.id == expected["id"]
    assert video.author.username == expected["author"]["uniqueId"]
    assert video.stats == expected["statsV2"]
    assert info["music"]["title"] == expected["music"]["title"]
    assert info["desc"] == expected["desc"]


def test_video_bytes_are_the_corpus_file(reads) -> None:
    twin, data = read(reads, "bytes")
    assert data == twin.state.corpus.media_paths[reads[1]["detailed"]].read_bytes()


def test_comments_are_the_videos_whole_thread(reads) -> None:
    twin, comments = read(reads, "comments")
    served = comments_of(twin.state, reads[1]["commented"])
    assert len(served) > 20  # more than one page of 20
    assert [comment.id for comment in comments] == [c["cid"] for c in served]
    assert [comment.author.username for comment in comments] == [c["user"]["unique_id"] for c in served]
    assert [comment.likes_count for comment in comments] == [c["digg_count"] for c in served]


def test_tiktokapi_logs_no_errors_against_the_twin(reads) -> None:
    # It logs every response whose status_code is not 0, and every fetch the page refuses.
    assert reads[1]["errors"] == []
