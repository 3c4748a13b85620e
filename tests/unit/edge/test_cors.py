"""edge.cors.CorsPolicy and EDGE_CORS_ORIGINS parsing."""

from __future__ import annotations

from edge.config import Settings
from edge.cors import EXPOSE_HEADERS, CorsPolicy


def test_origins_are_parsed_normalised_and_off_by_default() -> None:
    assert Settings.from_env({}).cors_origins == ()
    env = {"EDGE_CORS_ORIGINS": " https://App.example.com/ ,, http://localhost:3000"}
    assert Settings.from_env(env).cors_origins == (
        "https://app.example.com", "http://localhost:3000",
    )


def test_listed_origins_are_echoed_and_others_refused() -> None:
    policy = CorsPolicy.of(["https://app.example.com"])
    assert policy.allow_origin("https://app.example.com") == "https://app.example.com"
    assert policy.allow_origin("https://evil.example.com") is None
    assert policy.allow_origin("null") is None


def test_wildcard_allows_every_origin_as_star() -> None:
    policy = CorsPolicy.of(["https://app.example.com", "*"])
    assert policy.allow_origin("https://anything.example") == "*"


def test_exposed_headers_cover_what_sdks_read() -> None:
    exposed = EXPOSE_HEADERS.split(", ")
    for name in ("x-request-id", "openai-processing-ms", "retry-after",
                 "x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens"):
        assert name in exposed
