"""`Idempotency-Key` for authenticated POSTs (DESIGN.md §4).

A retry with the same key and the same request (method, path with query, raw body) gets the
first 2xx answer again, marked `Idempotent-Replayed: true`; the same key with another request
gets 422 IDEMPOTENCY_KEY_REUSED. Keys belong to the authenticated user and are remembered for
`SCOREBOARD_IDEMPOTENCY_TTL_SECONDS`; `manage.py prune_idempotency_keys` deletes older ones.

The record is inserted first, in the transaction the handler then runs in. A duplicate that
arrives meanwhile waits until that transaction ends: on PostgreSQL its INSERT blocks on the
unique index, on SQLite its transaction cannot begin (they begin IMMEDIATE). It then replays
the committed answer, or runs the handler itself if the first attempt rolled back. Any answer
other than a 2xx, raised or returned, rolls back the handler's writes with the record, so a
retry runs again. Side effects outside the database must wait for `transaction.on_commit`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scoreboard.batches import delete_in_batches
from scoreboard.encryption import decrypt_text, encrypt_text
from scoreboard.errors import IdempotencyKeyReused, InvalidInput
from scoreboard.models import IDEMPOTENCY_KEY_MAX_LENGTH, IdempotencyRecord

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}\Z")
_INVALID_KEY_MESSAGE = f"Must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters."

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=IDEMPOTENCY_KEY_HEADER,
    # HTTP drops a header value's leading and trailing spaces, so the key's ends are not spaces.
    type={
        "type": "string",
        "pattern": rf"^[!-~]([ -~]{{0,{IDEMPOTENCY_KEY_MAX_LENGTH - 2}}}[!-~])?$",
    },
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        f"Up to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters, unique per intended "
        "operation. A retry with the same key and body replays the first successful response "
        f"(with `{REPLAYED_HEADER}: true`); the same key with another body gets 422 "
        "IDEMPOTENCY_KEY_REUSED."
    ),
)

View = TypeVar("View", bound=APIView)
P = ParamSpec("P")
Handler = Callable[Concatenate[View, Request, P], Response]


def idempotent(handler: Handler[View, P]) -> Handler[View, P]:
    """Make a DRF handler honour `Idempotency-Key`. Only for views that require a login."""

    @functools.wraps(handler)
    def wrapper(view: View, request: Request, *args: P.args, **kwargs: P.kwargs) -> Response:
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not _VALID_KEY.match(key):
            raise InvalidInput.for_fields({IDEMPOTENCY_KEY_HEADER: [_INVALID_KEY_MESSAGE]})
        user_pk = _user_pk(request)
        fingerprint = _fingerprint(request)
        with transaction.atomic():
            record, created = _claim(user_pk, key, fingerprint)
            if not created:
                return _replay(record, fingerprint)
            response = handler(view, request, *args, **kwargs)
            _settle(record, response)
        return response

    return extend_schema(parameters=[IDEMPOTENCY_KEY_PARAMETER])(wrapper)


def prune_expired_records(*, batch_size: int = 1000) -> int:
    """Delete records past the retention period, a batch per statement; returns how many."""
    expired = IdempotencyRecord.objects.filter(created_at__lt=_expiry_cutoff())
    return delete_in_batches(expired, batch_size=batch_size)


def records_forget_user(*, user_id: Any) -> int:
    """Delete every stored answer of one user (their responses may carry their data), for
    the erasure of their account; returns how many."""
    return IdempotencyRecord.objects.filter(user_id=user_id).delete()[0]


def _user_pk(request: Request) -> Any:
    user = request.user
    if not getattr(user, "is_authenticated", False):
        raise ImproperlyConfigured("@idempotent is only for views that require authentication.")
    return user.pk


def _fingerprint(request: Request) -> str:
    """SHA-256 over method, full path and the raw body, each length-prefixed."""
    raw = request._request
    digest = hashlib.sha256()
    for part in (str(raw.method).encode(), raw.get_full_path().encode(), raw.body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _expiry_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.SCOREBOARD_IDEMPOTENCY_TTL_SECONDS)


def _claim(user_pk: Any, key: str, fingerprint: str) -> tuple[IdempotencyRecord, bool]:
    """Insert the pending record; or, if the key is taken, the committed record and False."""
    mine = IdempotencyRecord.objects.filter(user_id=user_pk, key=key)
    mine.filter(created_at__lt=_expiry_cutoff()).delete()
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                user_id=user_pk, key=key, fingerprint=fingerprint
            )
    except IntegrityError:
        return mine.get(), False
    return record, True


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    body = decrypt_text(record.encrypted_body)
    return Response(
        json.loads(body) if body else None,
        status=record.status_code,
        headers={REPLAYED_HEADER: "true"},
    )


def _settle(record: IdempotencyRecord, response: Response) -> None:
    """Keep a 2xx answer; roll back anything else, as if the handler had raised."""
    if not status.is_success(response.status_code):
        # Marks only the innermost atomic block, the decorator's: the handler's own blocks
        # have all exited by now, and an enclosing transaction just loses this savepoint.
        transaction.set_rollback(True)
        return
    record.status_code = response.status_code
    record.encrypted_body = encrypt_text(JSONRenderer().render(response.data).decode())
    record.save(update_fields=["status_code", "encrypted_body"])
