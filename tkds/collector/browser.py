"""Headless Chromium through Playwright: opens target pages, captures their item-list XHRs, and calls
the signed API from inside the page with the page's own signer, as TikTok-Api does."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from playwright.async_api import Browser, BrowserContext, Page, Response, Route, async_playwright

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
  const response = await fetch(url, {credentials: "include"});
  const retryAfter = response.headers.get("retry-after");
  return {status: response.status, text: await response.text(), retryAfter: retryAfter};
}
"""


class Listing:
    """The item-list responses a page made, in order, as (status, body) pairs."""

    def __init__(self, api_path: str) -> None:
        self.api_path = api_path
        self.responses: list[tuple[int, str]] = []
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
        if self.params is None:
            self.params = {k: v for k, v in parse_qsl(url.query) if k not in SESSION_PARAMS}
        self.responses.append((response.status, body))
        self.arrived.set()


class BrowserSession:
    """One Chromium, one context (cookies shared by every page it opens), one page."""

    def __init__(
        self, proxy: str | None, trust_proxy_ca: bool, limiter: RateLimiter, cookies: list[dict] | None = None
    ) -> None:
        self.proxy, self.trust_proxy_ca, self.initial_cookies = proxy, trust_proxy_ca, cookies or []
        self.limiter = limiter
        self.browser: Browser | None = None
        self.context: BrowserContext | None = None
        self.page: Page | None = None

    async def __aenter__(self) -> BrowserSession:
        if not Path(CHROMIUM).exists():
            raise TkdsError(f"Chromium not found at {CHROMIUM}; run scripts/setup.sh or set TKDS_CHROMIUM")
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
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.browser:
            await self.browser.close()
        await self._playwright.stop()

    async def _throttle(self, route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if is_tiktok_host(host):
            await self.limiter.wait(host)
        await route.continue_()

    async def open(self, url: str, api_path: str, wait_s: float = 15.0) -> Listing:
        """Load a target page and wait for its first item-list response."""
        listing = Listing(api_path)
        self.page.on("response", listing.on_response)
        try:
            await self.goto(url)
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
        finally:
            self.page.remove_listener("response", listing.on_response)
        return listing

    async def goto(self, url: str, challenge_wait_s: float = 30.0) -> None:
        """Navigate; a 'Please wait...' challenge is left to the page's own script, which reloads."""
        await self.page.goto(url, wait_until="domcontentloaded")
        deadline = asyncio.get_running_loop().time() + challenge_wait_s
        while await self.page.title() == "Please wait...":
            if asyncio.get_running_loop().time() > deadline:
                raise TkdsError(
                    f"{url} shows a challenge the browser did not solve in {challenge_wait_s:.0f} s; "
                    "open it in a desktop browser, export its cookies (Netscape format) and pass --cookies"
                )
            await self.page.wait_for_timeout(250)
        await self.page.wait_for_load_state("networkidle")

    async def scroll(self) -> None:
        await self.page.mouse.wheel(0, 20_000)

    async def signed_fetch(self, path: str, params: dict[str, str]) -> tuple[int, str, str | None]:
        """Call an API from inside the page, signed by the page's own `frontierSign`."""
        result = await self.page.evaluate(SIGNED_FETCH, [path, params])
        return result["status"], result["text"], result["retryAfter"]

    async def cookies(self) -> list[dict]:
        return await self.context.cookies()
