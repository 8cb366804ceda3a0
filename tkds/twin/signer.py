"""The twin's request signature: what TikTok's `webmssdk` computes as X-Bogus, in Python and in JS.

Pages ship the JS as `window.byted_acrawler.frontierSign(url)`, the name TikTok's own SDK uses, so a
client signs API URLs the way TikTok-Api does: by calling the page's own signer.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SIGNATURE_PARAM = "X-Bogus"


def _fnv1a(text: str, seed: int) -> int:
    value = seed
    for char in text:
        value ^= ord(char)
        value = (value * 16777619) & 0xFFFFFFFF
    return value


def sign(path_and_query: str, salt: str) -> str:
    """The signature of `/path?query` (the query without the signature parameter)."""
    text = salt + path_and_query
    return "".join(f"{_fnv1a(text, seed):08x}" for seed in (2166136261, 16777619, 33554467))


def unsigned_target(raw_path: str, raw_query: str) -> tuple[str, str | None]:
    """Split a request's raw query into the signed part and the signature it carries."""
    kept, signature = [], None
    for part in raw_query.split("&") if raw_query else []:
        if part.startswith(SIGNATURE_PARAM + "="):
            signature = part[len(SIGNATURE_PARAM) + 1 :]
        else:
            kept.append(part)
    return raw_path + ("?" + "&".join(kept) if kept else ""), signature


def signer_script(salt: str) -> str:
    """The JS look-alike of TikTok's SDK that every twin page carries."""
    return f"""
window.byted_acrawler = (function () {{
  var salt = {salt!r};
  function fnv(text, seed) {{
    var h = seed >>> 0;
    for (var i = 0; i < text.length; i++) {{ h ^= text.charCodeAt(i); h = Math.imul(h, 16777619) >>> 0; }}
    return ("00000000" + h.toString(16)).slice(-8);
  }}
  return {{
    init: function () {{}},
    frontierSign: function (url) {{
      var u = new URL(url, location.origin);
      var query = u.search.replace(/^\\?/, "").split("&").filter(function (p) {{
        return p && p.indexOf("{SIGNATURE_PARAM}=") !== 0;
      }}).join("&");
      var text = salt + u.pathname + (query ? "?" + query : "");
      return {{"{SIGNATURE_PARAM}": fnv(text, 2166136261) + fnv(text, 16777619) + fnv(text, 33554467)}};
    }}
  }};
}})();
"""


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
