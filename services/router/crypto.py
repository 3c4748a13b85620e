"""Encryption of upstream keys at rest: AES-256-GCM, the channel name as associated data.

The 256-bit key comes from ROUTER_ENCRYPTION_KEY (base64) or, when that is unset, from
the file `router_secret` in $APIRELAY_HOME, created with mode 0600 on first start. The
associated data binds a ciphertext to its channel: a row copied onto another channel
fails to decrypt instead of lending that channel its key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
# How many trailing characters of a key a listing shows ("...abcd").
HINT_CHARS = 4


class EncryptionKeyError(ValueError):
    """The configured encryption key is missing, malformed or not the right size."""


class DecryptionError(ValueError):
    """A stored key cannot be decrypted: another encryption key, or the row was altered."""


class KeyCipher:
    """Encrypts and decrypts upstream keys with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(f"the router encryption key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def encrypt(self, channel: str, secret: str) -> bytes:
        """Nonce followed by the ciphertext of `secret`, bound to `channel`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), channel.encode())

    def decrypt(self, channel: str, blob: bytes) -> str:
        """The secret `encrypt(channel, ...)` produced; DecryptionError otherwise."""
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], channel.encode())
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("stored upstream key cannot be decrypted") from exc
        return plain.decode()


def hint(secret: str) -> str:
    """What a listing shows of a key: its last characters, never more."""
    return "..." + secret[-HINT_CHARS:] if len(secret) > 2 * HINT_CHARS else "..."


def decode_key(text: str) -> bytes:
    """A base64 (standard or URL-safe) 256-bit key; EncryptionKeyError otherwise."""
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncryptionKeyError("ROUTER_ENCRYPTION_KEY is not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(
            f"ROUTER_ENCRYPTION_KEY must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


def load_key(configured: str, secret_file: Path) -> bytes:
    """`configured` (base64) if set, else the key in `secret_file`, created on first use."""
    if configured:
        return decode_key(configured)
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two routers starting together cannot both write a different key.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decode_key(secret_file.read_text(encoding="ascii"))
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    logger.info("created the router encryption key file %s", secret_file)
    return key
