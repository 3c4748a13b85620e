"""Upstream keys at rest: AES-GCM bound to the channel, the key file, the env key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from services.router.crypto import (
    DecryptionError,
    EncryptionKeyError,
    KeyCipher,
    decode_key,
    hint,
    load_key,
)

SECRET = "sk-upstream-0123456789abcdef"


def test_round_trip_and_ciphertext_hides_the_key() -> None:
    cipher = KeyCipher(os.urandom(32))
    blob = cipher.encrypt("alpha", SECRET)
    assert SECRET.encode() not in blob
    assert cipher.decrypt("alpha", blob) == SECRET
    assert cipher.encrypt("alpha", SECRET) != blob  # a fresh nonce each time


def test_ciphertext_is_bound_to_its_channel_and_key() -> None:
    key = os.urandom(32)
    blob = KeyCipher(key).encrypt("alpha", SECRET)
    with pytest.raises(DecryptionError):
        KeyCipher(key).decrypt("beta", blob)
    with pytest.raises(DecryptionError):
        KeyCipher(os.urandom(32)).decrypt("alpha", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        KeyCipher(key).decrypt("alpha", tampered)


def test_key_file_is_created_0600_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "router_secret"
    first = load_key("", path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key("", path) == first


def test_configured_key_wins_and_is_validated(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert load_key(base64.b64encode(key).decode(), tmp_path / "unused") == key
    assert not (tmp_path / "unused").exists()
    assert decode_key(base64.urlsafe_b64encode(key).decode()) == key
    with pytest.raises(EncryptionKeyError):
        decode_key(base64.b64encode(b"short").decode())
    with pytest.raises(EncryptionKeyError):
        decode_key("not base64 !!")


def test_hint_shows_four_characters_at_most() -> None:
    assert hint(SECRET) == "...cdef"
    assert hint("short") == "..."
