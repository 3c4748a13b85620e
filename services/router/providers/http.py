"""POSTs to one OpenAI-compatible base URL, and transport failures as ProviderErrors.

Upstream calls go through one shared `aiohttp.ClientSession` (built in `server.py`).
Measured against the bench mock upstream on one machine, aiohttp's client costs
0.20 ms CPU per unary request and 0.28 ms per stream, httpx 0.90 ms and 1.20 ms: the
router's whole per-request budget is about 1 ms, so httpx alone would spend it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from services.common.context import REQUEST_ID_HEADER
from services.common.gateway_config import ChannelEntry
from services.router.errors import ProviderError, UpstreamTimeout, UpstreamUnavailable
from services.router.health import Headroom
from services.router.providers.base import error_for_status

DEFAULT_CONNECT_TIMEOUT_S = 10.0
# OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


def cooldown_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """How long a 429's headers ask to wait: `retry-after-ms`, `retry-after` (seconds or
    an HTTP date; `now` is the epoch time for a date), else the longest
    `x-ratelimit-reset-*`; None when none parses (the caller's default then)."""
    if (millis := _number(headers.get("retry-after-ms", ""))) is not None:
        return millis / 1000
    retry_after = headers.get("retry-after", "").strip()
    if (seconds := _number(retry_after)) is not None:
        return seconds
    if retry_after and now is not None:
        try:
            return max(parsedate_to_datetime(retry_after).timestamp() - now, 0.0)
        except (TypeError, ValueError):
            pass
    resets = [d for h in RESET_HEADERS if (d := _duration(headers.get(h, ""))) is not None]
    return max(resets) if resets else None


def headroom_of(headers: Mapping[str, str]) -> Headroom | None:
    """The lowest `x-ratelimit-remaining-*` / `x-ratelimit-limit-*` fraction (requests,
    tokens) of an answer and its limit's reset; None when the upstream sends neither."""
    lowest: Headroom | None = None
    for kind in ("requests", "tokens"):
        remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}", ""))
        limit = _number(headers.get(f"x-ratelimit-limit-{kind}", ""))
        if remaining is None or not limit:
            continue
        fraction = min(remaining / limit, 1.0)
        if lowest is None or fraction < lowest.fraction:
            lowest = Headroom(fraction, _duration(headers.get(f"x-ratelimit-reset-{kind}", "")))
    return lowest


def with_cooldown(error: ProviderError, headers: Mapping[str, str]) -> ProviderError:
    """`error` with the cooldown a 429's headers ask for (other errors unchanged)."""
    if error.kind == "rate_limited":
        error.retry_after_s = cooldown_s(headers, time.time())
    return error


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _duration(text: str) -> float | None:
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return _number(text)
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


@contextmanager
def transport_errors(unreachable: str) -> Iterator[None]:
    """Turn a timeout into UpstreamTimeout and a client error into UpstreamUnavailable."""
    try:
        yield
    except TimeoutError as exc:
        raise UpstreamTimeout(0, "the upstream timed out") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(0, unreachable) from exc


def attempt_timeout(timeout_s: float, connect_timeout_s: float) -> aiohttp.ClientTimeout:
    """One attempt's timeouts, for every provider: each wait (pool, connect, every read)
    gets the attempt's time, the TCP connect at most `connect_timeout_s`; no cap on a
    whole stream."""
    return aiohttp.ClientTimeout(
        total=None, connect=timeout_s,
        sock_connect=min(connect_timeout_s, timeout_s), sock_read=timeout_s)


def auth_headers(style: str, api_key: str) -> dict[str, str]:
    """The headers carrying `api_key` in a channel's auth style (bearer when unset)."""
    if not api_key or style == "none":
        return {}
    if style == "api-key":
        return {"api-key": api_key}
    return {"authorization": f"Bearer {api_key}"}


async def post(
    session: aiohttp.ClientSession, url: URL, body: bytes, headers: dict[str, str],
    request_id: str, timeout: aiohttp.ClientTimeout, params: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """POST `body` to `url` with `headers` (plus the request id when set), never following
    a redirect; every provider's calls go through here. The caller releases the answer."""
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return await session.post(url, data=body, headers=headers, params=params,
                              timeout=timeout, allow_redirects=False)


async def read_released(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of `response`, which is released back to the pool either way."""
    try:
        return await response.read()
    finally:
        response.release()


class UpstreamHTTP:
    """One channel's base URL and key over the shared session; never follows redirects."""

    def __init__(
        self,
        channel: ChannelEntry,
        session: aiohttp.ClientSession,
        api_key: str,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        query: Mapping[str, str] | None = None,
    ) -> None:
        self._base_url = channel.base_url
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._auth = auth_headers(channel.auth, api_key)
        # Query parameters every call carries (Azure's api-version).
        self._query = dict(query) if query else None
        # Strings that must never reach a client, even inside a passed-through message.
        self.redact = (api_key, channel.base_url)
        # The key's quota left, from its newest answer (the router's health reads it).
        self.headroom: Headroom | None = None

    async def post(
        self, path: str, body: bytes, request_id: str, timeout_s: float, *,
        content_type: str = "application/json", accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        """POST `body` to base URL + `path`; the caller reads and releases the response."""
        return await post(
            self._session, URL(self._base_url + path), body,
            {"content-type": content_type, "accept": accept, **self._auth}, request_id,
            attempt_timeout(timeout_s, self._connect_timeout_s), self._query)

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body of a successful answer; the upstream's error for any other."""
        body = await read_released(response)
        self.headroom = headroom_of(response.headers) or self.headroom
        if not 200 <= response.status < 300:
            raise with_cooldown(error_for_status(response.status, body, self.redact),
                                response.headers)
        return body

    async def check(self, response: aiohttp.ClientResponse) -> None:
        """Raise the upstream's error unless the (streamed) answer is a success."""
        self.headroom = headroom_of(response.headers) or self.headroom
        if not 200 <= response.status < 300:
            raise with_cooldown(
                error_for_status(response.status, await response.read(), self.redact),
                response.headers)

