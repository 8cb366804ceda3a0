"""Headless Chromium through Playwright: opens target pages, captures their item-list XHRs, and calls
the signed API from inside the page with the page's own signer, as TikTok-Api does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import Browser, BrowserContext, Page, Response, Route, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tkds.collector.outcome import RequestCount, request_kind
from tkds.collector.parse import CaptureError, parse_page
from tkds.collector.politeness import RateLimiter
from tkds.errors import TkdsError
from tkds.tiktok import is_tiktok_host

CHROMIUM = os.environ.get("TKDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Parameters the page adds to every call; the rest identify the list (challengeID, secUid, ...).
SESSION_PARAMS = {"cursor", "msToken", "X-Bogus", "count", "aid", "app_name", "device_platform"}

SIGNED_FETCH = """
async ([path, params]) => {
  const query = new URLSearchParams(params);
  const token = (document.cookie.match(/(?:^|; )msToken=([^;]*)/) || [])[1];
  if (token) query.set("msToken", decodeURIComponent(token));
  let url = location.origin + path + "?" + query.toString();
  url += "&X-Bogus=" + encodeURIComponent(window.byted_acrawler.frontierSign(url)["X-Bogus"]);
  try {
    const response = await fetch(url, {credentials: "include"});
    const retryAfter = response.headers.get("retry-after");
    return {status: response.status, text: await response.text(), retryAfter: retryAfter};
  } catch (error) {  // a reset or cut-off connection: status 0, as XHRs report it
    return {status: 0, text: "", retryAfter: null};
  }
}
"""


UNNEEDED_RESOURCES = frozenset({"image", "media", "font"})  # a page's pictures, video and fonts
# In-page calls before the page is replaced by a fresh one. Playwright keeps every request, route and
# response of a page until the page is closed: about 16 kB a call in Python and 200 kB in its driver
# and Chromium, ~700 MB per 100,000 listed videos; a fresh page costs one page load per 500 calls.
PAGE_CALLS = 500
CHALLENGE_TITLE = "Please wait..."
NET_ERROR = re.compile(r"net::(ERR_[A-Z_]+)")


class BrowserError(Exception):
    """A navigation or in-page call that failed; `reason` is the collector's failure reason."""

    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def failure_reason(error: PlaywrightError) -> str:
    """A short, stable reason for a Playwright error: its net:: code, a timeout, or a closed browser."""
    if isinstance(error, PlaywrightTimeout):
        return "timeout"
    found = NET_ERROR.search(str(error))
    if found:
        return f"connection: {found.group(1)}"
    return "browser: " + (str(error).splitlines() or ["error"])[0][:60]


class Listing:
    """The item-list responses a page made, in order, as (status, body) pairs."""

    def __init__(self, api_path: str) -> None:
        self.api_path = api_path
        self.responses: list[tuple[int, str]] = []
        self.cursors: list[str | None] = []  # the cursor each of `responses` asked for
        self.params: dict[str, str] | None = None
        self.page_status = 0  # the statusCode in the page's own JSON (10221: no such user, ...)
        self.arrived = asyncio.Event()

    async def on_response(self, response: Response) -> None:
        url = urlsplit(response.url)
        if url.path != self.api_path:
            return
        try:
            body = await response.text()
        except Exception:  # the page navigated away mid-body
            return
        query = dict(parse_qsl(url.query))
        if self.params is None:
            self.params = {k: v for k, v in query.items() if k not in SESSION_PARAMS}
        self.responses.append((response.status, body))
        self.cursors.append(query.get("cursor"))
        self.arrived.set()


class BrowserSession:
    """One Chromium, one context (cookies shared by every page it opens), one page.

    The page does one thing at a time (a navigation, or a call from inside it): concurrent detail
    tasks that meet a challenge would otherwise abort each other's navigations.
    """

    def __init__(
        self,
        proxy: str | None,
        trust_proxy_ca: bool,
        limiter: RateLimiter,
        cookies: list[dict] | None = None,
        requests: RequestCount | None = None,
    ) -> None:
        self.proxy, self.trust_proxy_ca, self.initial_cookies = proxy, trust_proxy_ca, cookies or []
        self.limiter = limiter
        self.requests = requests or RequestCount()
        self.browser: Browser | None = None
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self._playwright = None
        self._busy = asyncio.Lock()
        self._cookies: list[dict] = list(self.initial_cookies)
        self._opened: tuple[str, str] | None = None  # the last target page opened, and its API path
        self._calls = 0  # in-page calls on this page
        self._answer: tuple[str | None, int, str] | None = (
            None  # a renewed page's own call: cursor, status, body
        )

    async def __aenter__(self) -> BrowserSession:
        if not Path(CHROMIUM).exists():
            raise TkdsError(f"Chromium not found at {CHROMIUM}; run scripts/setup.sh or set TKDS_CHROMIUM")
        try:
            self._playwright = await async_playwright().start()
            self.browser = await self._playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                proxy={"server": self.proxy} if self.proxy else None,
            )
            # Chromium cannot read a PEM file; with --ca-cert (a TLS-terminating proxy such as the twin)
            # the proxy's certificates are accepted instead.
            self.context = await self.browser.new_context(ignore_https_errors=self.trust_proxy_ca)
            if self.initial_cookies:
                await self.context.add_cookies(self.initial_cookies)
            # Everything the pages load from TikTok, their own XHRs included, waits for the host's rate.
            await self.context.route("**/*", self._throttle)
            self.page = await self.context.new_page()
        except PlaywrightError as error:
            await self.__aexit__()
            first = (str(error).splitlines() or ["error"])[0][:120]
            raise TkdsError(
                f"cannot start Chromium at {CHROMIUM} ({first}); check --proxy and TKDS_CHROMIUM"
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(PlaywrightError):  # a crashed browser has nothing left to close
            if self.browser:
                await self.browser.close()
        with contextlib.suppress(PlaywrightError):
            if self._playwright:
                await self._playwright.stop()

    async def _throttle(self, route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        kind = request_kind(route.request.url)
        if kind == "other" or (kind and route.request.resource_type in UNNEEDED_RESOURCES):
            # Monitoring beacons and what only a viewer needs cost requests that TikTok meters and the
            # collector never reads; they are not sent.
            with contextlib.suppress(PlaywrightError):
                await route.abort("blockedbyclient")
            return
        if is_tiktok_host(host):
            await self.limiter.wait(host)
            self.requests.count(route.request.url)
        with contextlib.suppress(PlaywrightError):  # the page navigated away meanwhile
            await route.continue_()

    async def open(self, url: str, api_path: str, wait_s: float = 15.0) -> Listing:
        """Load a target page and wait for its first item-list response.

        A page answered with 429, 5xx or an empty body, or one that cannot be reached, raises
        `BrowserError` with the reason, so that the caller can back off and try again.
        """
        listing = Listing(api_path)
        async with self._busy:
            self._opened = (url, api_path)
            self.page.on("response", listing.on_response)
            try:
                document = await self._goto(url)
                await _check_document(document)
                try:
                    listing.page_status = parse_page(await self.page.content()).status
                except CaptureError:
                    listing.page_status = 0  # no embedded JSON to judge by: wait for the API instead
                if listing.page_status:
                    return listing
                deadline = asyncio.get_running_loop().time() + wait_s
                while not any(status == 200 and body for status, body in listing.responses):
                    listing.arrived.clear()
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(listing.arrived.wait(), remaining)
                    except TimeoutError:
                        break
            except PlaywrightError as error:
                raise BrowserError(failure_reason(error)) from None
            finally:
                self.page.remove_listener("response", listing.on_response)
        return listing

    @property
    def visited_any(self) -> bool:
        """Whether the page has loaded anything yet (it starts on about:blank, with no session cookies)."""
        return self.page.url != "about:blank"

    async def goto(self, url: str) -> None:
        """Visit `url` for its cookies (a solved challenge's among them), whatever the page answers."""
        async with self._busy:
            try:
                await self._goto(url)
            except PlaywrightError as error:
                raise BrowserError(failure_reason(error)) from None

    async def _goto(self, url: str, challenge_wait_s: float = 30.0) -> Response | None:
        """Navigate; a 'Please wait...' challenge is left to the page's own script, which reloads.

        Returns the last document response of the main frame (the reload's, after a challenge).
        """
        documents: list[Response] = []

        def on_response(response: Response) -> None:
            if response.request.is_navigation_request() and response.frame == self.page.main_frame:
                documents.append(response)

        self.page.on("response", on_response)
        try:
            await self.page.goto(url, wait_until="domcontentloaded")
            deadline = asyncio.get_running_loop().time() + challenge_wait_s
            while await self._title() == CHALLENGE_TITLE:
                if asyncio.get_running_loop().time() > deadline:
                    raise BrowserError(
                        f"challenge not solved in {challenge_wait_s:.0f} s (export a browser's --cookies)"
                    )
                await self.page.wait_for_timeout(250)
            with contextlib.suppress(PlaywrightTimeout):  # a page that keeps polling still has its content
                await self.page.wait_for_load_state("networkidle", timeout=10_000)
        finally:
            self.page.remove_listener("response", on_response)
        return documents[-1] if documents else None

    async def _title(self) -> str:
        """The page's title; during the challenge's reload there is none yet, which counts as waiting."""
        try:
            return await self.page.title()
        except PlaywrightError:
            with contextlib.suppress(PlaywrightError):
                await self.page.wait_for_load_state("domcontentloaded")
            return CHALLENGE_TITLE

    async def scroll(self) -> None:
        await self.page.mouse.wheel(0, 20_000)

    async def signed_fetch(self, path: str, params: dict[str, str]) -> tuple[int, str, str | None]:
        """Call an API from inside the page, signed by the page's own `frontierSign`.

        A call that the page cannot make (a reset connection, a page mid-navigation) raises `BrowserError`.
        """
        async with self._busy:
            if self._calls >= PAGE_CALLS:
                await self._renew_page()
            answer, self._answer = self._answer, None
            if answer is not None and answer[0] == params.get("cursor") and path == self._opened[1]:
                return answer[1], answer[2], None  # the renewed page asked for just this itself
            self._calls += 1
            try:
                result = await self.page.evaluate(SIGNED_FETCH, [path, params])
            except PlaywrightError as error:
                raise BrowserError(failure_reason(error)) from None
        return result["status"], result["text"], result["retryAfter"]

    async def _renew_page(self, wait_s: float = 15.0) -> None:
        """Replace the page by a fresh one on the last target page (the context keeps the cookies),
        so that Playwright lets go of what it held for the old one. The new page's own item-list call
        is kept: it answers the next call that asks for the same cursor (the For You feed's next
        items), so a renewal costs the page load and no call. If the new page does not load, the
        old one stays."""
        self._calls = 0
        if self._opened is None:
            return
        url, api_path = self._opened
        listing, old, fresh = Listing(api_path), self.page, None
        try:
            fresh = self.page = await self.context.new_page()
            fresh.on("response", listing.on_response)
            await self._goto(url)
            deadline = asyncio.get_running_loop().time() + wait_s
            while not listing.responses and (remaining := deadline - asyncio.get_running_loop().time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listing.arrived.wait(), remaining)
            fresh.remove_listener("response", listing.on_response)
        except (PlaywrightError, BrowserError):
            if fresh is not None:
                with contextlib.suppress(PlaywrightError):
                    await fresh.close()
            self.page = old
            return
        if listing.responses and listing.responses[0][0] == 200 and listing.responses[0][1]:
            self._answer = (listing.cursors[0], *listing.responses[0])
        with contextlib.suppress(PlaywrightError):
            await old.close()

    async def cookies(self) -> list[dict]:
        """The context's cookies; the last ones read if the browser no longer answers."""
        with contextlib.suppress(PlaywrightError):
            self._cookies = await self.context.cookies()
        return self._cookies


async def _check_document(document: Response | None) -> None:
    """Raise `BrowserError` for a page that TikTok answered with a fault rather than content."""
    if document is None:
        raise BrowserError("no response")
    if document.status == 429 or document.status >= 500:
        raise BrowserError(f"http {document.status}", document.headers.get("retry-after"))
    if document.status == 200:
        with contextlib.suppress(PlaywrightError):
            if not (await document.body()).strip():
                raise BrowserError("empty")
