"""HTML pages in TikTok's three embedded-JSON eras, listing pages that page through the APIs as the
user scrolls, and the WAF's "Please wait..." challenge."""

from __future__ import annotations

import base64
import copy
import html
import json

from tkds.tiktok import MONITOR_HOST, MONITOR_PATH, STATUS_OK

PAGE_FORMATS = ("universal", "sigi", "next")

APP_CONTEXT = {
    "webapp.app-context": {
        "language": "en",
        "region": "US",
        "appId": 1233,
        "appType": "m",
        "wid": "7400000000000000000",
        "odinId": "7400000000000000001",
        "abTestVersion": {"versionName": "twin"},
        "botType": "others",
    },
    "webapp.biz-context": {"isBizAccount": False},
    "seo.abtest": {"canonical": "https://www.tiktok.com/"},
}


def _script_json(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


# TikTok's pages keep talking after load: a performance report shortly after the load event, then
# a heartbeat batch every few seconds. Clients such as TikTok-Api rely on that traffic (they copy the
# headers of the first request after load); a dozen a minute keep crawlers' request budgets intact.
MONITOR_TEMPLATE = """
(function () {
  var endpoint = "https://%(host)s%(path)s?biz_id=tiktok_web&aid=1988", sequence = 0;
  function report(kind) {
    var event = {ev_type: kind, seq: sequence++, url: location.href, ts: Date.now()};
    var options = {method: "POST", mode: "no-cors", credentials: "include"};
    options.body = JSON.stringify({list: [event]});
    fetch(endpoint, options).catch(function () {});
  }
  window.addEventListener("load", function () {
    setTimeout(function () { report("performance"); }, %(first_ms)d);
    setInterval(function () { report("heartbeat"); }, %(every_ms)d);
  });
})();
"""
MONITOR_SCRIPT = MONITOR_TEMPLATE % {
    "host": MONITOR_HOST,
    "path": MONITOR_PATH,
    "first_ms": 250,
    "every_ms": 5000,
}


def _document(title: str, body: str, signer: str, head: str = "") -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{html.escape(title)}</title>'
        f"<script>{signer}</script><script>{MONITOR_SCRIPT}</script>{head}"
        "<style>body{font-family:sans-serif;margin:0}.item{height:320px;border-bottom:1px solid #ddd;"
        "padding:8px}</style></head>"
        f"<body>{body}</body></html>"
    )


def universal_script(scope: dict) -> str:
    payload = {"__DEFAULT_SCOPE__": {**APP_CONTEXT, **scope}}
    tag = '<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">'
    return f"{tag}{_script_json(payload)}</script>"


# Fields SIGI-era items carried that today's itemStruct may lack, with their empty values.
SIGI_ONLY_FIELDS = {
    "capcutAnchors": [],
    "capcutAnchorsOriginal": [],
    "channelTags": [],
    "collected": False,
    "comments": [],
    "downloadSetting": 0,
    "effectStickers": [],
    "indexEnabled": True,
    "scheduleTime": 0,
    "stickersOnItem": [],
    "takeDown": 0,
    "warnInfo": [],
}


def sigi_item(item: dict) -> dict:
    """An itemStruct as SIGI_STATE's ItemModule held it: a bare uniqueId as author, some counts as strings."""
    legacy = copy.deepcopy(item)
    author = legacy.pop("author")
    legacy.update(
        author=author["uniqueId"],
        authorId=author["id"],
        authorSecId=author["secUid"],
        nickname=author["nickname"],
        avatarThumb=author.get("avatarThumb", ""),
        authorPrivate=author.get("privateAccount", False),
        createTime=str(item["createTime"]),
    )
    legacy["stats"] = {**legacy["stats"], "collectCount": str(legacy["stats"].get("collectCount", 0))}
    legacy.pop("authorStats", None)
    legacy.setdefault("contents", [{"desc": item.get("desc", ""), "textExtra": item.get("textExtra", [])}])
    for key, empty in SIGI_ONLY_FIELDS.items():
        legacy.setdefault(key, copy.deepcopy(empty))
    return legacy


def _post_media(item: dict) -> str:
    """What the page shows of the post: its video, or a photo post's images (it has no video)."""
    images = (item.get("imagePost") or {}).get("images") or []
    if images:
        slides = "".join(
            f'<img src="{html.escape(image["imageURL"]["urlList"][0])}" width="{image["imageWidth"]}" '
            f'height="{image["imageHeight"]}">'
            for image in images
        )
        return f'<div class="photo-slides">{slides}</div>'
    video = item.get("video") or {}
    return (
        f'<video poster="{html.escape(video.get("cover", ""))}" '
        f'src="{html.escape(video.get("playAddr", ""))}"></video>'
    )


def video_page(item: dict | None, status: int, status_msg: str, page_format: str, signer: str) -> str:
    title = (item or {}).get("desc") or "TikTok"
    visible = ""
    if item:
        visible = f'<div id="app">{_post_media(item)}<h1>{html.escape(item["desc"])}</h1></div>'
    if page_format == "sigi":
        unique_id = item["author"]["uniqueId"] if item else ""
        state = {
            "AppContext": {"appContext": APP_CONTEXT["webapp.app-context"]},
            "ItemModule": {item["id"]: sigi_item(item)} if item else {},
            "UserModule": {
                "users": {unique_id: item["author"]} if item else {},
                "stats": {unique_id: item["authorStats"]} if item else {},
            },
            "ItemList": {"video": {"list": [item["id"]] if item else [], "statusCode": status}},
            "VideoPage": {"statusCode": status, "statusMsg": status_msg},
        }
        data = f'<script id="SIGI_STATE" type="application/json">{_script_json(state)}</script>'
    elif page_format == "next":
        page_props = {
            "key": (item or {}).get("id", ""),
            "serverCode": 200,
            "statusCode": status,
            "statusMsg": status_msg,
            "predictedLanguage": "en",
            "metaParams": {"title": title},
            "videoObjectPageProps": {},
            "feedConfig": {},
            "pageOptions": {},
        }
        if item:
            page_props["itemInfo"] = {"itemStruct": item, "shareMeta": {"title": title, "desc": item["desc"]}}
        route = "/@[uniqueId]/video/[id]"
        state = {
            "props": {"initialProps": {}, "pageProps": page_props, "pathname": route, "loadInit": True},
            "page": route,
            "query": {"id": (item or {}).get("id", "")},
            "buildId": "twin",
            "assetPrefix": "",
            "isFallback": False,
            "dynamicIds": [],
            "customServer": True,
            "gip": True,
            "appGip": True,
        }
        data = (
            '<script id="__NEXT_DATA__" type="application/json" crossorigin="anonymous">'
            f"{_script_json(state)}</script>"
        )
    else:
        detail: dict = {"statusCode": status, "statusMsg": status_msg}
        if item:
            detail["itemInfo"] = {"itemStruct": item}
            detail["shareMeta"] = {"title": title, "desc": item["desc"]}
        data = universal_script({"webapp.video-detail": detail})
    return _document(f"{title} | TikTok", visible + data, signer)


def profile_page(user_info: dict | None, status: int, signer: str) -> str:
    """A profile: its user-detail JSON and, for a known user, the post list that pages as it scrolls."""
    detail: dict = {"statusCode": status, "statusMsg": "" if status == STATUS_OK else "user doesn't exist"}
    if not user_info:
        return _document("TikTok", universal_script({"webapp.user-detail": detail}), signer)
    detail["userInfo"] = {**user_info, "itemList": []}
    user = user_info["user"]
    scope = {"webapp.user-detail": detail}
    return listing_page(user["uniqueId"], "/api/post/item_list/", {"secUid": user["secUid"]}, scope, signer)


LISTING_SCRIPT = """
(function () {
  var api = %(api)s, fixed = %(params)s, count = %(count)d;
  var cursor = "0", hasMore = true, loading = false, list = document.getElementById("items");
  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  function show(items) {
    items.forEach(function (it) {
      var div = document.createElement("div");
      div.className = "item"; div.dataset.id = it.id;
      div.textContent = (it.author && it.author.uniqueId || it.author) + ": " + it.desc;
      list.appendChild(div);
    });
  }
  async function more() {
    if (loading || !hasMore) return;
    loading = true;
    var params = new URLSearchParams(Object.assign({aid: "1988", app_name: "tiktok_web",
      device_platform: "web_pc", count: String(count), cursor: cursor}, fixed));
    params.set("msToken", cookie("msToken"));
    var url = location.origin + api + "?" + params.toString();
    url += "&X-Bogus=" + encodeURIComponent(window.byted_acrawler.frontierSign(url)["X-Bogus"]);
    try {
      var text = await (await fetch(url, {credentials: "include"})).text();
      if (!text) { setTimeout(function () { loading = false; more(); }, 1000); return; }
      var data = JSON.parse(text);
      show(data.itemList || data.item_list || []);
      cursor = String(data.cursor);
      hasMore = Boolean(data.hasMore !== undefined ? data.hasMore : data.has_more);
      document.body.dataset.hasMore = String(hasMore);
    } catch (error) {
      setTimeout(function () { loading = false; more(); }, 1000); return;
    }
    loading = false;
  }
  window.addEventListener("scroll", function () {
    if (window.innerHeight + window.scrollY >= document.body.scrollHeight - 400) more();
  });
  more();
})();
"""


def listing_page(
    title: str, api: str, params: dict[str, str], scope: dict, signer: str, count: int = 30
) -> str:
    script = LISTING_SCRIPT % {"api": json.dumps(api), "params": json.dumps(params), "count": count}
    body = f'<h1>{html.escape(title)}</h1><div id="items"></div>{universal_script(scope)}'
    body += f"<script>{script}</script>"
    return _document(f"{title} | TikTok", body, signer)


CHALLENGE_SCRIPT = """
(async function () {
  var data = JSON.parse(atob(document.getElementById("cs").className));
  var prefix = Uint8Array.from(atob(data.v.a), function (c) { return c.charCodeAt(0); });
  var want = atob(data.v.c);
  for (var i = 0; i <= 1000000; i++) {
    var nonce = new TextEncoder().encode(String(i));
    var buffer = new Uint8Array(prefix.length + nonce.length);
    buffer.set(prefix); buffer.set(nonce, prefix.length);
    var digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
    if (String.fromCharCode.apply(null, digest) === want) {
      data.d = btoa(String(i));
      var name = document.getElementById("wci").className;
      document.cookie = name + "=" + btoa(JSON.stringify(data)) + "; domain=.tiktok.com; path=/; max-age=120";
      location.reload();
      return;
    }
  }
})();
"""


def challenge_page(challenge: dict, cookie_name: str) -> str:
    encoded = base64.b64encode(json.dumps(challenge, separators=(",", ":")).encode()).decode()
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Please wait...</title></head><body>'
        f'<p>Please wait...</p><p id="cs" class="{encoded}"></p><p id="wci" class="{cookie_name}"></p>'
        f"<script>{CHALLENGE_SCRIPT}</script></body></html>"
    )
