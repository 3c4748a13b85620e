"""Fake upstream vendors (aiohttp apps on 127.0.0.1) that the official SDKs accept."""
