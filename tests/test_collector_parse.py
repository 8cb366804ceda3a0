"""The collector's parser on real TikTok captures, and on the twin's pages and API shapes of every era."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tkds.collector.parse import CaptureError, parse_api, parse_capture, parse_item, parse_page
from tkds.collector.records import Parsed
from tkds.twin import pages

# file -> (videos, comments) it holds
CAPTURES = {
    "api_item_list_2021.json": (10, 0),
    "sigi_state_profile_2023.json": (29, 0),
    "next_data_video_page_2020.html": (1, 0),
    "search_items_2026.json": (84, 0),
    "profile_2026.json": (0, 0),
    "comments_2026.json": (0, 20),
}


def load(folder: Path, name: str) -> dict | list:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def caption_tags(item: dict) -> list[str]:
    """The item's type-1 textExtra and contents[].textExtra hashtags, lower-cased, in caption order."""
    extras = list(item.get("textExtra", []))
    for content in item.get("contents", []):
        extras += content.get("textExtra", [])
    return list(dict.fromkeys(e["hashtagName"].lower() for e in extras if e["type"] == 1))


def all_tags(item: dict) -> set[str]:
    return set(caption_tags(item)) | {c["title"].lower() for c in item.get("challenges", [])}


def is_id(value: object) -> bool:
    return isinstance(value, str) and value.isdigit() and len(value) == 19


def summary(parsed: Parsed) -> tuple:
    """What must survive every page era: the video, its counts, hashtags, author and author counts."""
    video, author = parsed.videos[0], parsed.authors[0]
    return (
        (video.id, video.author_id, video.music_id, video.create_time, video.hashtags, video.play_url),
        parsed.video_stats,
        (author.id, author.unique_id, author.sec_uid, author.private),
        parsed.author_stats,
    )


def test_every_capture_parses(tiktok_fixtures: Path) -> None:
    names = sorted(p.name for p in tiktok_fixtures.iterdir() if p.name != "README.md")
    assert names == sorted(CAPTURES)
    for name, (videos, comments) in CAPTURES.items():
        parsed = parse_capture(tiktok_fixtures / name)
        assert (len(parsed.videos), len(parsed.comments)) == (videos, comments), name
        assert len(parsed.video_stats) == videos, name
        assert parsed.status == 0, name
        assert all(is_id(v.id) for v in parsed.videos), name
        assert all(is_id(c.id) and is_id(c.video_id) for c in parsed.comments), name
        assert all(isinstance(a.id, str) and a.id.isdigit() for a in parsed.authors), name


def test_api_item_list(tiktok_fixtures: Path) -> None:
    raw = load(tiktok_fixtures, "api_item_list_2021.json")
    parsed = parse_capture(tiktok_fixtures / "api_item_list_2021.json")
    assert len(parsed.authors) == len({i["author"]["id"] for i in raw}) == len(parsed.author_stats)
    assert [m.id for m in parsed.music] == list(dict.fromkeys(i["music"]["id"] for i in raw))
    for item, video, stats in zip(raw, parsed.videos, parsed.video_stats, strict=True):
        assert (video.id, stats.video_id, video.raw["id"]) == (item["id"], item["id"], item["id"])
        assert isinstance(item["createTime"], int)
        assert video.create_time == item["createTime"]
        assert video.author_id == item["author"]["id"]
        assert video.music_id == item["music"]["id"]
        assert video.duration_s == item["video"]["duration"]
        assert (video.width, video.height) == (item["video"]["width"], item["video"]["height"])
        assert video.play_url == item["video"]["playAddr"]
        assert video.download_url == item["video"]["downloadAddr"]
        assert video.is_ad is item["isAd"]
        assert video.hashtags == caption_tags(item)
        assert set(video.hashtags) == all_tags(item)
        counts = item["stats"]
        assert (stats.plays, stats.likes, stats.comments, stats.shares) == (
            counts["playCount"],
            counts["diggCount"],
            counts["commentCount"],
            counts["shareCount"],
        )
        assert stats.collects is None  # 2021 payloads had no collectCount
    assert all(v.description == i["desc"] for v, i in zip(parsed.videos, raw, strict=True))
    by_author = {s.author_id: s for s in parsed.author_stats}
    for item in raw:
        stats, counts = by_author[item["author"]["id"]], item["authorStats"]
        assert (stats.followers, stats.following, stats.hearts, stats.videos) == (
            counts["followerCount"],
            counts["followingCount"],
            counts["heartCount"],
            counts["videoCount"],
        )


def test_search_items_without_statsv2_use_stats(tiktok_fixtures: Path) -> None:
    raw = load(tiktok_fixtures, "search_items_2026.json")
    parsed = parse_capture(tiktok_fixtures / "search_items_2026.json")
    assert not any("statsV2" in i for i in raw)
    assert len(parsed.authors) == len({i["author"]["id"] for i in raw})
    assert parsed.music == []
    assert any("downloadAddr" not in i["video"] for i in raw)
    for item, video, stats in zip(raw, parsed.videos, parsed.video_stats, strict=True):
        assert video.id == item["id"]
        assert video.create_time == item["createTime"]
        assert video.author_id == item["author"]["id"]
        assert video.music_id is None
        assert video.download_url == (item["video"].get("downloadAddr") or None)
        assert stats.likes == item["stats"]["diggCount"]
        assert stats.collects == item["stats"]["collectCount"]
    verified = {a.id: a.verified for a in parsed.authors}
    assert all(verified[i["author"]["id"]] is i["author"]["verified"] for i in raw)


def test_sigi_state_dump(tiktok_fixtures: Path) -> None:
    raw = load(tiktok_fixtures, "sigi_state_profile_2023.json")
    parsed = parse_capture(tiktok_fixtures / "sigi_state_profile_2023.json")
    users, user_stats = raw["UserModule"]["users"], raw["UserModule"]["stats"]
    posts = raw["ItemList"]["user-post"]
    assert (parsed.cursor, parsed.has_more) == (str(posts["cursor"]), posts["hasMore"])
    assert parsed.status == raw["UserPage"]["statusCode"]
    assert [a.unique_id for a in parsed.authors] == list(users)
    items = list(raw["ItemModule"].values())
    for item, video, stats in zip(items, parsed.videos, parsed.video_stats, strict=True):
        user = users[item["author"]]
        assert isinstance(item["author"], str)
        assert video.id == item["id"]
        assert isinstance(item["createTime"], str)
        assert video.create_time == int(item["createTime"])
        assert video.author_id == user["id"] == item["authorId"]
        assert video.location == item["locationCreated"]
        assert stats.collects == int(item["stats"]["collectCount"])  # a string in this capture
        assert stats.plays == item["stats"]["playCount"]
        # Every item carries the account's 42 challenges; only the caption's tags are the video's.
        assert video.hashtags == caption_tags(item) and len(all_tags(item)) > len(caption_tags(item))
    author = parsed.authors[0]
    user = users[author.unique_id]
    assert (author.id, author.sec_uid) == (user["id"], user["secUid"])
    assert all(a.nickname == user["nickname"] for a in parsed.authors[:1])
    counts = user_stats[author.unique_id]
    stats = parsed.author_stats[0]
    assert (stats.author_id, stats.followers, stats.hearts, stats.videos) == (
        user["id"],
        counts["followerCount"],
        counts["heartCount"],
        counts["videoCount"],
    )


def test_sigi_item_alone_builds_its_author_from_top_level_fields(tiktok_fixtures: Path) -> None:
    item = next(iter(load(tiktok_fixtures, "sigi_state_profile_2023.json")["ItemModule"].values()))
    parsed = parse_item(item)
    author = parsed.authors[0]
    assert (author.id, author.unique_id, author.sec_uid) == (
        item["authorId"],
        item["author"],
        item["authorSecId"],
    )
    assert author.private is item["authorPrivate"]
    assert all(a.nickname == item["nickname"] for a in parsed.authors)
    assert parsed.author_stats == []
    assert parsed.videos[0].author_id == item["authorId"]


def test_sigi_item_with_two_contents_blocks(tiktok_fixtures: Path) -> None:
    items = load(tiktok_fixtures, "sigi_state_profile_2023.json")["ItemModule"].values()
    item = next(i for i in items if len(i["contents"]) > 1)
    tags = parse_item({**item, "textExtra": [], "challenges": []}).videos[0].hashtags
    assert tags and tags == caption_tags({"contents": item["contents"]})


def test_next_data_video_page(tiktok_fixtures: Path) -> None:
    html = (tiktok_fixtures / "next_data_video_page_2020.html").read_text(encoding="utf-8")
    page = json.loads(html.split('id="__NEXT_DATA__"', 1)[1].split(">", 1)[1].split("</script>", 1)[0])
    item = page["props"]["pageProps"]["itemInfo"]["itemStruct"]
    parsed = parse_page(html)
    video, stats = parsed.videos[0], parsed.video_stats[0]
    assert video.id == item["id"]
    assert video.raw["video"]["id"] != item["id"]  # edited in the capture; the item id is the one to trust
    assert video.author_id == item["author"]["id"]
    assert video.create_time == item["createTime"]
    assert video.music_id == item["music"]["id"]
    assert (stats.likes, stats.shares) == (item["stats"]["diggCount"], item["stats"]["shareCount"])
    assert parsed.author_stats[0].followers == item["authorStats"]["followerCount"]
    assert parsed.status == page["props"]["pageProps"]["statusCode"]


def test_profile_prefers_exact_statsv2(tiktok_fixtures: Path) -> None:
    info = load(tiktok_fixtures, "profile_2026.json")[0]
    parsed = parse_capture(tiktok_fixtures / "profile_2026.json")
    author, stats = parsed.authors[0], parsed.author_stats[0]
    user, exact, rounded = info["user"], info["statsV2"], info["stats"]
    assert (author.id, author.unique_id, author.sec_uid) == (user["id"], user["uniqueId"], user["secUid"])
    assert stats.author_id == user["id"]
    assert stats.followers == int(exact["followerCount"]) != rounded["followerCount"]
    assert stats.hearts == int(exact["heartCount"])
    assert (stats.following, stats.videos) == (int(exact["followingCount"]), int(exact["videoCount"]))


def test_comments(tiktok_fixtures: Path) -> None:
    raw = load(tiktok_fixtures, "comments_2026.json")
    parsed = parse_capture(tiktok_fixtures / "comments_2026.json")
    for entry, comment in zip(raw, parsed.comments, strict=True):
        assert (comment.id, comment.video_id) == (entry["cid"], entry["aweme_id"])
        assert comment.author == entry["unique_id"]
        assert comment.likes == entry["digg_count"]
        assert comment.create_time == entry["create_time"]
    assert all(c.text == e["text"] for c, e in zip(parsed.comments, raw, strict=True))


def test_item_field_variants(tiktok_fixtures: Path) -> None:
    item = copy.deepcopy(load(tiktok_fixtures, "api_item_list_2021.json")[1])
    item["createTime"] = str(item["createTime"])
    item["video"]["playAddr"] = [{"src": "https://example.invalid/a"}, {"src": "https://example.invalid/b"}]
    del item["video"]["downloadAddr"]
    item["stats"]["collectCount"] = "12"
    item["statsV2"] = {"diggCount": str(item["stats"]["diggCount"] + 1)}
    item["challenges"] = [{"title": "#Extra"}, *item["challenges"]]
    del item["music"]
    parsed = parse_item(item)
    video, stats = parsed.videos[0], parsed.video_stats[0]
    assert video.create_time == int(item["createTime"])
    assert video.play_url == "https://example.invalid/a"
    assert video.download_url is None
    assert (video.music_id, parsed.music) == (None, [])
    assert stats.likes == item["stats"]["diggCount"] + 1  # statsV2 wins per key
    assert (stats.plays, stats.collects) == (item["stats"]["playCount"], 12)
    assert video.hashtags == caption_tags(item)
    untagged = parse_item({**item, "textExtra": [], "contents": []}).videos[0]
    challenge_titles = {c["title"].lower().lstrip("#") for c in item["challenges"]}
    assert untagged.hashtags[0] == "extra" and set(untagged.hashtags) == challenge_titles
    bare = parse_item({"id": 7000000000000000001})
    assert bare.videos[0].id == "7000000000000000001"
    assert (bare.videos[0].author_id, bare.video_stats, bare.authors) == (None, [], [])
    with pytest.raises(CaptureError) as error:
        parse_item({"desc": "no id"})
    assert error.value.kind == "malformed"


def test_api_envelopes(tiktok_fixtures: Path) -> None:
    items = load(tiktok_fixtures, "api_item_list_2021.json")
    ids = [i["id"] for i in items]
    listing = parse_api(
        {"statusCode": 0, "status_msg": "", "itemList": items[:3], "cursor": "3", "hasMore": True}
    )
    assert ([v.id for v in listing.videos], listing.cursor, listing.has_more) == (ids[:3], "3", True)
    search = parse_api({"status_code": 0, "item_list": items[3:], "cursor": 10, "has_more": 0})
    assert ([v.id for v in search.videos], search.cursor, search.has_more) == (ids[3:], "10", False)
    general = parse_api({"data": [{"type": 1, "item": items[0]}, {"type": 4, "user_list": []}]})
    assert [v.id for v in general.videos] == ids[:1]
    detail = parse_api({"statusCode": 0, "itemInfo": {"itemStruct": items[5]}})
    assert [v.id for v in detail.videos] == [ids[5]]
    music = parse_api({"musicInfo": {"music": items[2]["music"], "author": items[2]["author"], "stats": {}}})
    assert ([m.id for m in music.music], [a.id for a in music.authors]) == (
        [items[2]["music"]["id"]],
        [items[2]["author"]["id"]],
    )
    missing = parse_api({"statusCode": 10204, "statusMsg": "item doesn't exist"})
    assert (missing.status, missing.status_msg, missing.videos) == (10204, "item doesn't exist", [])
    info = load(tiktok_fixtures, "profile_2026.json")[0]
    user = parse_api({"statusCode": 0, "userInfo": info})
    assert user.author_stats[0].followers == int(info["statsV2"]["followerCount"])


def test_api_comment_list(tiktok_fixtures: Path) -> None:
    flat = load(tiktok_fixtures, "comments_2026.json")
    nested = [
        {
            **{k: v for k, v in c.items() if k not in ("unique_id", "nickname")},
            "user": {"unique_id": c["unique_id"]},
        }
        for c in flat
    ]
    parsed = parse_api({"status_code": 0, "comments": nested, "cursor": 20, "has_more": 1, "total": 99})
    assert [c.author for c in parsed.comments] == [c["unique_id"] for c in flat]
    assert [c.id for c in parsed.comments] == [c["cid"] for c in flat]
    assert (parsed.cursor, parsed.has_more) == ("20", True)


@pytest.mark.parametrize("page_format", pages.PAGE_FORMATS)
def test_twin_video_pages_round_trip(tiktok_fixtures: Path, page_format: str) -> None:
    item = copy.deepcopy(load(tiktok_fixtures, "api_item_list_2021.json")[1])
    # The twin's SIGI form writes collectCount as a string, "0" when absent; give every era the same count.
    item["stats"]["collectCount"] = 42
    expected = summary(parse_item(item))
    parsed = parse_page(pages.video_page(item, 0, "", page_format, ""))
    assert summary(parsed) == expected
    assert (parsed.status, len(parsed.videos), parsed.video_stats[0].collects) == (0, 1, 42)
    assert expected[0][4] == caption_tags(item)
    assert all(a.nickname == item["author"]["nickname"] for a in parsed.authors)


@pytest.mark.parametrize("page_format", pages.PAGE_FORMATS)
def test_twin_error_pages(page_format: str) -> None:
    parsed = parse_page(pages.video_page(None, 10216, "private item", page_format, ""))
    assert (parsed.status, parsed.status_msg, parsed.videos) == (10216, "private item", [])


def test_twin_profile_pages(tiktok_fixtures: Path) -> None:
    info = load(tiktok_fixtures, "profile_2026.json")[0]
    parsed = parse_page(pages.profile_page(info, 0, ""))
    assert [a.id for a in parsed.authors] == [info["user"]["id"]]
    assert parsed.author_stats[0].followers == int(info["statsV2"]["followerCount"])
    missing = parse_page(pages.profile_page(None, 10221, ""))
    assert (missing.status, missing.authors) == (10221, [])


def test_sigi_assignment_and_json_dumps(tiktok_fixtures: Path, tmp_path: Path) -> None:
    state = load(tiktok_fixtures, "sigi_state_profile_2023.json")
    html = f"<html><script>window['SIGI_STATE']={json.dumps(state)};</script></html>"
    assert [v.id for v in parse_page(html).videos] == list(state["ItemModule"])
    item = load(tiktok_fixtures, "api_item_list_2021.json")[0]
    scope = {
        "__DEFAULT_SCOPE__": {"webapp.video-detail": {"statusCode": 0, "itemInfo": {"itemStruct": item}}}
    }
    dump = tmp_path / "universal.json"
    dump.write_text(json.dumps(scope), encoding="utf-8")
    assert [v.id for v in parse_capture(dump).videos] == [item["id"]]


@pytest.mark.parametrize(
    ("html", "kind"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("<html></html>", "no_data"),
        (pages.challenge_page({"v": {"a": "", "c": ""}, "s": "x"}, "_wafchallengeid"), "challenge"),
        ('<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__">{"__DEFAULT_SCOPE__": </script>', "malformed"),
        ('<script id="SIGI_STATE" type="application/json">{oops}</script>', "malformed"),
    ],
)
def test_pages_without_data(html: str, kind: str) -> None:
    with pytest.raises(CaptureError) as error:
        parse_page(html)
    assert error.value.kind == kind
    assert "\n" not in str(error.value)


def test_bad_capture_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"itemList": [', encoding="utf-8")
    with pytest.raises(CaptureError) as error:
        parse_capture(broken)
    assert error.value.kind == "malformed"
    assert str(error.value).startswith("malformed JSON: ")
    empty = tmp_path / "empty.html"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(CaptureError) as error:
        parse_capture(empty)
    assert (error.value.kind, str(error.value)) == ("empty", "empty body")
    challenge = tmp_path / "wait.html"
    challenge.write_text(pages.challenge_page({"v": {"a": "", "c": ""}, "s": "x"}, "_wafchallengeid"))
    with pytest.raises(CaptureError) as error:
        parse_capture(challenge)
    assert str(error.value) == "challenge page"
