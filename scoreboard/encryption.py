"""Encryption at rest for secrets the service must read back (game-server HMAC keys, replayed
responses that carry tokens).

Fernet (AES-128-CBC + HMAC-SHA256) keyed from `SCOREBOARD_ENCRYPTION_KEY`. Any string of at
least 32 characters works as a key: it is stretched with SHA-256 into Fernet's key format.
Values written under a key listed in `SCOREBOARD_ENCRYPTION_KEY_FALLBACKS` still decrypt, so a
key can be rotated without a migration (`rotate` re-encrypts a value under the current key).
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


class DecryptionFailed(Exception):
    """The value was not written under the current key nor any fallback key."""


def _fernet_for(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


@cache
def _keyring() -> MultiFernet:
    keys = [settings.SCOREBOARD_ENCRYPTION_KEY, *settings.SCOREBOARD_ENCRYPTION_KEY_FALLBACKS]
    return MultiFernet([_fernet_for(key) for key in keys])


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("SCOREBOARD_ENCRYPTION_KEY"):
        _keyring.cache_clear()


def encrypt_text(plaintext: str) -> str:
    return _keyring().encrypt(plaintext.encode()).decode("ascii")


def decrypt_text(ciphertext: str) -> str:
    try:
        return _keyring().decrypt(ciphertext.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        raise DecryptionFailed("stored value does not decrypt under any configured key") from None


def rotate(ciphertext: str) -> str:
    """The same value, encrypted under the current key."""
    try:
        return _keyring().rotate(ciphertext.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise DecryptionFailed("stored value does not decrypt under any configured key") from None
