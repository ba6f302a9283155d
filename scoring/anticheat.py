"""Checks that decide whether a claim of points is authentic: game-server proofs, the
client's signature and the freshness of timestamps. Each raises a typed error or returns."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings

from scoreboard.encryption import DecryptionFailed, decrypt_text
from scoreboard.errors import InvalidInput
from scoring.exceptions import InvalidClientSignature, InvalidProof
from scoring.models import GameServer


def hmac_sha256_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def game_server_verify_proof(*, key_id: str, message: str, signature: str) -> GameServer:
    """The active game server whose secret signed `message`. An unknown key, a disabled
    server and a wrong signature are reported alike."""
    server = GameServer.objects.filter(key_id=key_id, is_active=True).first()
    if server is None:
        raise InvalidProof()
    try:
        secret = decrypt_text(server.secret_encrypted)
    except DecryptionFailed:
        raise InvalidProof() from None
    if not hmac.compare_digest(hmac_sha256_hex(secret, message), signature.lower()):
        raise InvalidProof()
    return server


def check_client_signature(*, keys: Sequence[str], message: str, signature: str) -> None:
    given = signature.lower()
    matches = [hmac.compare_digest(hmac_sha256_hex(key, message), given) for key in keys]
    if not any(matches):
        raise InvalidClientSignature()


def check_timestamp_window(moment: datetime, *, now: datetime, max_age_seconds: int) -> None:
    """Not older than `max_age_seconds`, and not ahead of our clock by more than the allowed
    skew: stale or post-dated claims cannot be replayed later."""
    skew = timedelta(seconds=settings.SCOREBOARD_CLOCK_SKEW_SECONDS)
    if moment < now - timedelta(seconds=max_age_seconds):
        raise InvalidInput.for_fields(
            {"timestamp": [f"The timestamp is older than {max_age_seconds} seconds."]}
        )
    if moment > now + skew:
        raise InvalidInput.for_fields({"timestamp": ["The timestamp is in the future."]})
