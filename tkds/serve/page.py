"""The one page of `tkds serve`: the form, then the results or an error. Plain CSS and a little JS."""

from __future__ import annotations

from html import escape
from pathlib import Path

from tkds.serve.predictor import MAX_CAPTION, MAX_FOLLOWERS, Prediction, Predictor

STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,sans-serif;margin:0;color:#1d1d1f;background:#f6f6f8}
header,main,footer{max-width:1080px;margin:0 auto;padding:0 20px}
header{padding-top:18px}h1{margin:0 0 4px;font-size:24px}
.sub{color:#666;font-size:13px;margin:0 0 16px}a{color:#0a58ca}
form{background:#fff;border:1px solid #ddd;border-radius:10px;padding:16px;display:grid;
 grid-template-columns:repeat(auto-fit,minmax(230px,1fr));gap:12px 16px;align-items:end}
label{display:flex;flex-direction:column;gap:4px;font-size:13px;color:#444}
input{font:inherit;padding:7px 8px;border:1px solid #bbb;border-radius:6px;background:#fff}
button{font:inherit;font-weight:600;padding:9px 18px;border:0;border-radius:6px;background:#fe2c55;color:#fff;
 cursor:pointer}button:disabled{background:#999;cursor:wait}
.error{background:#fdecec;border:1px solid #e0a0a0;color:#8a1c1c;border-radius:8px;padding:10px 14px;
 margin:14px 0}
.notes{background:#fff8e1;border:1px solid #e6d18a;border-radius:8px;padding:8px 14px 8px 30px;margin:14px 0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:14px;margin:14px 0}
section{background:#fff;border:1px solid #ddd;border-radius:10px;padding:14px 16px}
h2{font-size:15px;margin:0 0 8px;text-transform:uppercase;letter-spacing:.04em;color:#555}
.value{font-size:34px;font-weight:700;margin:2px 0}.muted{color:#666;font-size:13px}
ol.tags{margin:0;padding:0;list-style:none}ol.tags li{display:grid;grid-template-columns:9em 1fr 3em;
 gap:8px;align-items:center;margin:5px 0}.bar{height:8px;background:#eee;border-radius:4px}
.bar span{display:block;height:100%;background:#25f4ee;border-radius:4px}.tag{font-weight:600}
.mark{font-size:11px;color:#0a7;margin-left:4px}.finding{border-left:3px solid #fe2c55;padding-left:8px}
ul.grid{list-style:none;padding:0;margin:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));
 gap:12px}ul.grid li{font-size:12px}ul.grid img{width:100%;aspect-ratio:9/16;object-fit:cover;
 border-radius:6px;background:#ddd;display:block}.caption{margin:4px 0;max-height:3.6em;overflow:hidden}
footer{color:#888;font-size:12px;padding-bottom:24px}
"""

SCRIPT = """
const form = document.getElementById("predict"), button = form.querySelector("button");
const limit = Number(form.dataset.limit), problem = document.getElementById("client-error");
form.addEventListener("submit", (event) => {
  const file = form.elements.file.files[0];
  let message = "";
  const megabytes = (file ? file.size : 0) / 2 ** 20, most = limit / 2 ** 20;
  if (file && file.size > limit)
    message = `${file.name} is ${megabytes.toFixed(1) > most ? megabytes.toFixed(1) : "over " + most} MB; ` +
      `this server takes at most ${most} MB (tkds serve --max-upload-mb).`;
  else if (file && form.elements.url.value) message = "Give one video: an upload or a TikTok URL, not both.";
  else if (!file && !form.elements.url.value) message = "Choose an mp4 to upload, or paste a TikTok URL.";
  if (message) { event.preventDefault(); problem.textContent = message; problem.hidden = false; return; }
  problem.hidden = true; button.disabled = true; button.textContent = "Predicting…";
});
window.addEventListener("pageshow", () => { button.disabled = false; button.textContent = "Predict"; });
"""


def too_large_text(size: int | None, limit_mb: int) -> str:
    """The 413 message: the upload's size (to 0.1 MB, "over" the limit when it rounds to it) and the limit."""
    shown = "too large" if size is None else f"{size / 2**20:.1f} MB"
    if size is not None and round(size / 2**20, 1) <= limit_mb:
        shown = f"over {limit_mb} MB"
    return f"The upload is {shown}; this server takes at most {limit_mb} MB (tkds serve --max-upload-mb)."


def _number(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _likes(p: Prediction) -> str:
    interval = (
        f"80 % interval {_number(p.interval[0])} – {_number(p.interval[1])}: the ridge's prediction plus "
        "the 10th–90th percentile of its residuals on the test split (the estimate: their median)"
    )
    followers = f"{p.followers:,} followers" + (
        " (the train median; you gave none)" if p.followers_assumed else ""
    )
    # The ridge of a table without author statistics reads the embedding alone ("content ridge of …").
    imputed = (
        ""
        if p.likes_model.startswith("content")
        else ("; author hearts, author videos and the video's age at their train medians")
    )
    return (
        f"<section id='likes'><h2>Likes</h2><p class='value'>{_number(p.likes)}</p>"
        f"<p class='muted'>{escape(interval)}</p><p class='muted'>for {escape(followers)}{imputed}</p>"
        f"<p class='muted' id='likes-model'>likes: {escape(p.likes_model)}</p></section>"
    )


def _hashtags(p: Prediction) -> str:
    items = "".join(
        f"<li><span class='tag'>#{escape(h.tag)}"
        + ("<span class='mark'>in your caption</span>" if h.in_caption else "")
        + f"</span><span class='bar'><span style='width:{100 * h.score:.0f}%'></span></span>"
        f"<span class='score'>{h.score:.2f}</span></li>"
        for h in p.hashtags
    )
    return (
        f"<section id='hashtags'><h2>Hashtags</h2><ol class='tags'>{items}</ol>"
        "<p class='muted'>Score: the similarity-weighted share of the 20 nearest training videos that used "
        "the tag.</p></section>"
    )


def _originality(p: Prediction) -> str:
    return (
        "<section id='originality'><h2>Originality</h2>"
        f"<p class='value'>{_ordinal(round(p.originality))} percentile</p>"
        f"<p class='muted'>More original than {round(p.originality)} % of {escape(p.cohort)}, by the "
        f"IsolationForest score of its embedding.</p><p class='finding'>{escape(p.finding)}</p></section>"
    )


def _similar(p: Prediction) -> str:
    items = []
    for s in p.similar:
        image = f"<img src='{escape(s.thumbnail)}' alt='video {escape(s.id)}'>" if s.thumbnail else ""
        link = (
            f"<a href='{escape(s.url)}' target='_blank' rel='noopener'>{image or 'TikTok'}</a>"
            if s.url
            else image
        )
        items.append(
            f"<li>{link}<p class='caption'>{escape(s.caption)}</p>"
            f"<p class='muted'>♥ {_number(s.likes)} · similarity {s.similarity:.2f}"
            + (f" · <a href='{escape(s.url)}' target='_blank' rel='noopener'>TikTok</a>" if s.url else "")
            + "</p></li>"
        )
    return f"<section id='similar'><h2>Similar videos</h2><ul class='grid'>{''.join(items)}</ul></section>"


def _results(p: Prediction) -> str:
    notes = "".join(f"<li>{escape(note)}</li>" for note in p.notes)
    timings = ", ".join(f"{stage.removesuffix('_ms')} {ms:.0f} ms" for stage, ms in p.timings.items())
    return (
        (f"<ul class='notes' id='notes'>{notes}</ul>" if notes else "")
        + f"<div class='cards'>{_likes(p)}{_hashtags(p)}</div>{_similar(p)}"
        + f"<div class='cards'>{_originality(p)}</div><p class='muted' id='timings'>{escape(timings)}</p>"
    )


def render_page(
    predictor: Predictor,
    max_bytes: int,
    prediction: Prediction | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> str:
    """The whole page; `form` refills the fields a user typed."""
    form = form or {}
    error_box = f"<div class='error' role='alert' id='error'>{escape(error)}</div>" if error else ""
    fields = (
        "<label>Video file (mp4)<input type='file' name='file' accept='video/mp4,video/*'></label>"
        f"<label>or a TikTok video URL<input type='url' name='url' value='{escape(form.get('url', ''))}' "
        "placeholder='https://www.tiktok.com/@user/video/…'></label>"
        "<label>Your followers (optional)<input type='number' name='followers' min='0' "
        f"max='{MAX_FOLLOWERS}' step='1' "
        f"value='{escape(form.get('followers', ''))}'></label>"
        f"<label>Planned caption (optional)<input type='text' name='caption' maxlength='{MAX_CAPTION}' "
        f"value='{escape(form.get('caption', ''))}'></label>"
        "<div><button type='submit'>Predict</button></div>"
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'><title>tkds serve</title>"
        f"<style>{STYLE}</style></head><body><header><h1>How will this video do?</h1>"
        f"<p class='sub'>{escape(predictor.method)} from the run {escape(run_label(predictor.run))}, against "
        f"{len(predictor.keys):,} videos; likes: {escape(predictor.likes_model)}. "
        "JSON API: <code>POST /api/predict</code>, described in "
        "<a href='/openapi.json'>/openapi.json</a>.</p></header><main>"
        f"<form id='predict' method='post' action='/' enctype='multipart/form-data' data-limit='{max_bytes}'>"
        f"{fields}</form><div class='error' role='alert' id='client-error' hidden></div>{error_box}"
        f"{_results(prediction) if prediction else ''}</main>"
        "<footer>tkds serve · predictions from frozen self-supervised embeddings of the video, with your "
        "follower count for likes; the caption only marks the suggested tags you already wrote."
        f"</footer><script>{SCRIPT}</script></body></html>"
    )


def run_label(run: Path) -> str:
    """A run folder as its parent's name and its own (demo/run), never the machine's full path."""
    return "/".join(part for part in (run.resolve().parent.name, run.resolve().name) if part)
