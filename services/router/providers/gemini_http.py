"""POSTs to the Gemini API (Google Generative Language) with one channel's key.

The key goes in `x-goog-api-key`, as Google's SDKs send it (never in the URL, where it
would reach access logs). The base URL is the channel's, else Google's; the API version
`v1beta` is added unless the base URL already names one.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from services.common.gateway_config import ChannelEntry
from services.router.providers.gemini_errors import gemini_error
from services.router.providers.http import attempt_timeout, post, read_released

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "/v1beta"
_VERSIONS = ("/v1beta", "/v1", "/v1alpha")


def model_path(model: str) -> str:
    """The resource name of a model: `models/<id>` unless the id is one already."""
    return model if model.startswith(("models/", "tunedModels/")) else "models/" + model


class GeminiHTTP:
    """One channel's base URL and key over the shared session; never follows redirects."""

    def __init__(
        self, channel: ChannelEntry, session: aiohttp.ClientSession, api_key: str,
        connect_timeout_s: float,
    ) -> None:
        base = (channel.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._base_url = base if base.endswith(_VERSIONS) else base + API_VERSION
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._auth = {"x-goog-api-key": api_key} if api_key else {}
        # Strings that must never reach a client, even inside a passed-through message.
        self.redact = (api_key, channel.base_url, self._base_url)

    async def post(
        self, model: str, method: str, body: bytes, request_id: str, timeout_s: float, *,
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """POST `body` to `<base>/models/<model>:<method>`; the caller releases the answer."""
        url = f"{self._base_url}/{model_path(model)}:{method}"
        headers = {"content-type": "application/json",
                   "accept": "text/event-stream" if stream else "application/json",
                   **self._auth}
        return await post(
            self._session, URL(url + "?alt=sse" if stream else url), body, headers, request_id,
            attempt_timeout(timeout_s, self._connect_timeout_s))

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body of a successful answer; the upstream's error for any other."""
        body = await read_released(response)
        if not 200 <= response.status < 300:
            raise gemini_error(response.status, body, self.redact, response.headers)
        return body

    async def check(self, response: aiohttp.ClientResponse) -> None:
        """Raise the upstream's error unless the (streamed) answer is a success."""
        if not 200 <= response.status < 300:
            raise gemini_error(response.status, await response.read(), self.redact,
                               response.headers)
