"""`tkds serve`'s web app: the page at /, the JSON API at /api/predict (OpenAPI at /openapi.json), the
corpus thumbnails, and a health check.

Uploads over the limit get 413 from their Content-Length alone, or once the counted bytes pass it,
before the rest is read; a video whose streams declare more than the predictor's `UploadLimits` (frame
size, duration, frame count) gets 413 from its probe, before any frame is decoded. Form fields are
bounded (followers 0 to 10¹⁰, caption and URL lengths). Bad input is a 4xx with one clear sentence: JSON
`{"error": …}` under /api/, the page with the message elsewhere. Predictions run one at a time in a
worker thread, so the server keeps answering while one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tkds
from tkds.errors import TkdsError
from tkds.serve.fetch import fetch_video
from tkds.serve.page import render_page, run_label, too_large_text
from tkds.serve.predictor import MAX_CAPTION, MAX_FOLLOWERS, PredictError, Prediction, Predictor

JSON_PATHS = ("/api/", "/thumbs/", "/healthz")

# The form fields of the page and the API, at module level where FastAPI resolves annotations.
VideoFile = Annotated[UploadFile | None, File(description="The video: an mp4 (or mov, webm, mkv).")]
VideoUrl = Annotated[
    str | None,
    Form(max_length=2048, description="Instead of a file: a TikTok video URL, fetched by the server."),
]
Followers = Annotated[
    int | None,
    Form(ge=0, le=MAX_FOLLOWERS, description="The creator's follower count; default: the corpus median."),
]
Caption = Annotated[
    str | None,
    Form(max_length=MAX_CAPTION, description="The planned caption; only marks suggested tags already in it."),
]


@dataclass(frozen=True)
class ApiError:
    error: str


class UploadLimit:
    """Refuses a request body over `max_bytes`: at once by its Content-Length, else as its bytes arrive.

    The counted case raises 413 from inside the form parsing, which the app's handler answers.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, too_large: Callable[[Request], Response]) -> None:
        self.app, self.max_bytes, self.too_large = app, max_bytes, too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self.too_large(request)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413)
            return message

        await self.app(scope, counted, send)


def create_app(
    predictor: Predictor, max_upload_mb: int = 200, proxy: str | None = None, ca_cert: Path | None = None
) -> FastAPI:
    """The app around a loaded predictor; `proxy` and `ca_cert` are for fetching TikTok URLs only."""
    max_bytes = max_upload_mb * 2**20
    app = FastAPI(
        title="tkds serve",
        version=tkds.__version__,
        description=(
            f"Predictions for one video from {predictor.method} of the bench run {run_label(predictor.run)}: "
            "likes with an interval, hashtags, similar videos of the corpus, and originality in its cohort."
        ),
        redoc_url=None,
    )

    def refuse(request: Request, message: str, status: int, form: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith(JSON_PATHS):
            return JSONResponse({"error": message}, status_code=status)
        return HTMLResponse(render_page(predictor, max_bytes, error=message, form=form), status_code=status)

    def too_large(request: Request) -> Response:
        length = request.headers.get("content-length", "")
        return refuse(request, too_large_text(int(length) if length.isdigit() else None, max_upload_mb), 413)

    app.add_middleware(UploadLimit, max_bytes=max_bytes, too_large=too_large)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 413:
            return too_large(request)
        message = f"Nothing at {request.url.path}." if error.status_code == 404 else str(error.detail)
        return refuse(request, message, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        message = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in error.errors())
        return refuse(request, f"Invalid input: {message}.", 422)

    async def predict(
        file: UploadFile | None, url: str | None, followers: int | None, caption: str | None
    ) -> Prediction:
        if file is not None and file.filename and url:
            raise PredictError("give one video: an upload (file) or a TikTok URL (url), not both", 400)
        if file is not None and file.filename:
            video, name = await file.read(), file.filename
            if not video:
                raise PredictError(f"{name} is empty; choose the mp4 again", 400)
        elif url:
            video, name = await run_in_threadpool(fetch_video, url, proxy, ca_cert, max_bytes), url
        else:
            raise PredictError("no video given: upload an mp4 (file), or give a TikTok video URL (url)", 400)
        return await run_in_threadpool(predictor.predict, video, followers, caption, name)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return render_page(predictor, max_bytes)

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def submit(
        request: Request,
        file: VideoFile = None,
        url: VideoUrl = None,
        followers: Followers = None,
        caption: Caption = None,
    ) -> Response:
        form = {
            "url": url or "",
            "followers": "" if followers is None else str(followers),
            "caption": caption or "",
        }
        try:
            prediction = await predict(file, url, followers, caption)
        except TkdsError as error:
            return refuse(request, str(error), getattr(error, "status", 422), form)
        return HTMLResponse(render_page(predictor, max_bytes, prediction=prediction, form=form))

    errors = {
        400: "no video, or a bad URL",
        413: "over the upload limit, or the video's frame size, duration or frame count over the server's",
        415: "not a video file",
        422: "an undecodable video, or invalid fields",
        502: "the TikTok URL could not be fetched",
    }

    @app.post(
        "/api/predict",
        response_model=Prediction,
        responses={status: {"model": ApiError, "description": what} for status, what in errors.items()},
        summary="Likes, hashtags, similar videos and originality for one video",
    )
    async def api_predict(
        file: VideoFile = None, url: VideoUrl = None, followers: Followers = None, caption: Caption = None
    ) -> Prediction | JSONResponse:
        """Multipart form: `file` (an mp4) or `url` (a TikTok video URL), and optionally `followers` and
        `caption`. Timings split the server's work into decode, embed and predict."""
        try:
            return await predict(file, url, followers, caption)
        except TkdsError as error:
            return JSONResponse({"error": str(error)}, status_code=getattr(error, "status", 422))

    @app.get("/thumbs/{video_id}.jpg", include_in_schema=False)
    def thumbnail(video_id: str) -> Response:
        data = predictor.thumbnail(video_id)
        if data is None:
            return JSONResponse({"error": f"no thumbnail for video {video_id}"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz", summary="Whether the server is up, and what it serves")
    def healthz() -> dict:
        return {"status": "ok", "method": predictor.method, "videos": len(predictor.keys)}

    return app
