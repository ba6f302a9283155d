"""Writes of the score pipeline: game servers, the action catalog, action tokens and the one
path that changes a score (`score_update_apply`)."""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from accounts.selectors import user_signing_key
from leaderboard.selectors import all_time_ranks
from scoreboard import metrics
from scoreboard.encryption import encrypt_text
from scoreboard.errors import Forbidden
from scoring import anomaly, anticheat
from scoring.exceptions import (
    ActionAlreadyCompleted,
    ActionNotFound,
    DailyCapReached,
    InvalidActionToken,
)
from scoring.models import (
    USER_AGENT_MAX_LENGTH,
    Action,
    ActionToken,
    GameServer,
    ScoreStatus,
    ScoreTotal,
    ScoreUpdate,
)
from scoring.periods import DEFAULT_BOARD, Period, period_starts
from scoring.selectors import (
    action_active_by_type,
    completions_recent,
    score_total_all_time,
)
from scoring.signals import PeriodTotal, ScoreCommitted, announce_on_commit

# The catalog `load_actions` installs: (type, points, description, minimum seconds, daily cap).
DEFAULT_ACTIONS: tuple[tuple[str, int, str, int, int | None], ...] = (
    ("COMPLETE_QUEST", 50, "Finish a quest.", 30, None),
    ("WIN_GAME", 100, "Win a match.", 60, None),
    ("ACHIEVEMENT_UNLOCK", 25, "Unlock an achievement.", 0, None),
    ("DAILY_LOGIN", 10, "First log-in of the UTC day.", 0, 1),
)
GAME_SERVER_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedActionToken:
    token: str
    expires_in: int
    score_increment: int


@dataclass(frozen=True)
class AppliedScoreUpdate:
    score_update: ScoreUpdate
    new_score: int
    previous_rank: int | None
    new_rank: int | None

    @property
    def is_held(self) -> bool:
        """Held for a moderator by the anomaly rules: recorded, but not counted."""
        return self.score_update.status == ScoreStatus.HELD


def hash_action_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def game_server_create(*, name: str) -> tuple[GameServer, str]:
    """Register a game server; returns it with its secret, which is shown only this once."""
    secret = secrets.token_hex(32)
    server = GameServer.objects.create(
        name=name,
        key_id=f"gs_{secrets.token_hex(8)}",
        secret_encrypted=encrypt_text(secret),
    )
    return server, secret


def actions_load_defaults() -> list[Action]:
    """Install the default catalog. Existing actions are left as operators configured them."""
    created = []
    for action_type, points, description, min_seconds, daily_cap in DEFAULT_ACTIONS:
        action, was_created = Action.objects.get_or_create(
            action_type=action_type,
            defaults={
                "base_points": points,
                "description": description,
                "min_duration_seconds": min_seconds,
                "daily_cap_per_user": daily_cap,
            },
        )
        if was_created:
            created.append(action)
    return created


@dataclass(frozen=True)
class ActionClaim:
    """A validated `actions/complete` body. The `*_text` fields are exactly as sent: they are
    what the game server signed."""

    action_type: str
    action_id: uuid.UUID
    action_id_text: str
    timestamp: datetime
    timestamp_text: str
    key_id: str
    signature: str


@dataclass(frozen=True)
class ScoreClaim:
    """A validated `scores/update` body, with the fields the client signed exactly as sent."""

    user_id: uuid.UUID
    user_id_text: str
    action_type: str
    action_id: uuid.UUID
    action_id_text: str
    score_increment: int
    timestamp: datetime
    timestamp_text: str
    client_signature: str


def action_complete(*, user: User, claim: ActionClaim) -> IssuedActionToken:
    """Turn a game server's proof that `user` completed an action into a one-time token.

    The proof is HMAC-SHA256(server secret, `userId:actionType:actionId:timestamp`) over the
    fields exactly as sent. Each actionId can be completed once, ever.
    """
    server = anticheat.game_server_verify_proof(
        key_id=claim.key_id,
        message=f"{user.pk}:{claim.action_type}:{claim.action_id_text}:{claim.timestamp_text}",
        signature=claim.signature,
    )
    now = timezone.now()
    anticheat.check_timestamp_window(
        claim.timestamp, now=now, max_age_seconds=settings.SCOREBOARD_PROOF_MAX_AGE_SECONDS
    )
    action = action_active_by_type(claim.action_type)
    if action is None:
        raise ActionNotFound(f"No active action of type {claim.action_type}.")
    if ActionToken.objects.filter(action_id=claim.action_id).exists():
        raise ActionAlreadyCompleted()

    token = secrets.token_urlsafe(32)  # 256 random bits
    lifetime = settings.SCOREBOARD_ACTION_TOKEN_SECONDS
    with transaction.atomic():
        if action.daily_cap_per_user is not None:
            _check_daily_cap(user=user, action=action, now=now)
        try:
            with transaction.atomic():
                ActionToken.objects.create(
                    user=user,
                    action_type=action,
                    action_id=claim.action_id,
                    game_server=server,
                    token_hash=hash_action_token(token),
                    points=action.base_points,
                    completed_at=claim.timestamp,
                    expires_at=now + timedelta(seconds=lifetime),
                )
        except IntegrityError:
            raise ActionAlreadyCompleted() from None
    _touch_game_server(server, now=now)
    metrics.ACTION_TOKENS_ISSUED.inc()
    return IssuedActionToken(token=token, expires_in=lifetime, score_increment=action.base_points)


def _check_daily_cap(*, user: User, action: Action, now: datetime) -> None:
    # The user's row lock serialises this player's completions, so two at once cannot both
    # take the last slot; other players are not held up.
    User.objects.select_for_update().filter(pk=user.pk).first()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    issued_today = ActionToken.objects.filter(
        user=user, action_type=action, created_at__gte=day_start
    ).count()
    if action.daily_cap_per_user is not None and issued_today >= action.daily_cap_per_user:
        next_day = day_start + timedelta(days=1)
        raise DailyCapReached(
            f"{action.action_type} can be completed {action.daily_cap_per_user} times a day.",
            retry_after=max(1, math.ceil((next_day - now).total_seconds())),
        )


def _touch_game_server(server: GameServer, *, now: datetime) -> None:
    """Record use at most once a minute, so a busy server's row is not a write hot spot."""
    GameServer.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - GAME_SERVER_LAST_USED_RESOLUTION),
        pk=server.pk,
    ).update(last_used_at=now)


def score_update_submit(
    *,
    user: User,
    claim: ScoreClaim,
    action_token: str,
    ip_address: str | None,
    user_agent: str,
) -> AppliedScoreUpdate:
    """Check a client's claim of points and apply it: the claim is the caller's own, fresh,
    signed with the caller's signing key, and backed by an unused action token for exactly
    this action and increment."""
    if claim.user_id != user.pk:
        raise Forbidden("userId must be the authenticated user.")
    anticheat.check_timestamp_window(
        claim.timestamp,
        now=timezone.now(),
        max_age_seconds=settings.SCOREBOARD_SCORE_TIMESTAMP_MAX_AGE_SECONDS,
    )
    _verify_client_signature(user=user, claim=claim)
    if not action_token:
        metrics.action_token_rejected("missing")
        raise InvalidActionToken("The X-Action-Token header is required.")
    return score_update_apply(
        user=user,
        action_token=action_token,
        action_type=claim.action_type,
        action_id=claim.action_id,
        score_increment=claim.score_increment,
        client_timestamp=claim.timestamp,
        ip_address=ip_address,
        user_agent=user_agent,
    )


def _verify_client_signature(*, user: User, claim: ScoreClaim) -> None:
    """The client signs userId + actionId + timestamp + scoreIncrement (fields as sent) with
    its signing key. Keys derived from SECRET_KEY_FALLBACKS are accepted during a rotation."""
    message = (
        f"{claim.user_id_text}{claim.action_id_text}{claim.timestamp_text}{claim.score_increment}"
    )
    keys = [user_signing_key(user)] + [
        user_signing_key(user, secret=fallback) for fallback in settings.SECRET_KEY_FALLBACKS
    ]
    anticheat.check_client_signature(keys=keys, message=message, signature=claim.client_signature)


def score_update_apply(
    *,
    user: User,
    action_token: str,
    action_type: str,
    action_id: uuid.UUID,
    score_increment: int,
    client_timestamp: datetime | None,
    ip_address: str | None,
    user_agent: str,
) -> AppliedScoreUpdate:
    """Spend an action token and add its points, in one transaction.

    The token is consumed by one conditional UPDATE, so of any number of concurrent
    submissions exactly one wins. The anomaly rules then judge the update against the player's
    recent ones (`scoring.anomaly`): a held update is recorded but not counted, and announces
    nothing. Otherwise totals are added in the database (no read-modify-write), and the audit
    row records the scores and ranks before and after, its status and risk reasons.
    `score_committed` is sent after commit for counted (including flagged) updates only.
    """
    now = timezone.now()
    with transaction.atomic():
        spent = _consume_action_token(
            user=user,
            token=action_token,
            action_type=action_type,
            action_id=action_id,
            score_increment=score_increment,
            now=now,
        )
        token = spent.token
        assessment = _anomaly_assess(user=user, spent=spent, ip_address=ip_address, now=now)
        counted = assessment.status != ScoreStatus.HELD
        totals: dict[str, PeriodTotal] | None = None
        if counted:
            totals = score_totals_add(user=user, board=DEFAULT_BOARD, points=token.points, now=now)
            new_score = totals[Period.ALL_TIME].score
            previous_score = new_score - token.points
        else:
            new_score = previous_score = score_total_all_time(user_id=user.pk)
        if counted:
            previous_rank, new_rank = all_time_ranks(user=user, scores=[previous_score, new_score])
        else:
            [previous_rank] = all_time_ranks(user=user, scores=[previous_score])
            new_rank = previous_rank
        score_update = ScoreUpdate.objects.create(
            user=user,
            board=DEFAULT_BOARD,
            action_type=action_type,
            action_id=action_id,
            action_token=token,
            # A held update keeps the points claimed, for a moderator to approve later.
            score_increment=token.points,
            previous_score=previous_score,
            new_score=new_score,
            previous_rank=previous_rank,
            new_rank=new_rank,
            ip_address=ip_address,
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH],
            client_timestamp=client_timestamp,
            verified=True,
            status=assessment.status,
            risk_reasons=assessment.risk_reasons(),
            created_at=now,
        )
        if totals is not None:
            score_committed_announce(
                user=user,
                update=score_update,
                totals=totals,
                ranks=(previous_rank, new_rank),
                at=now,
            )
    metrics.ACTION_TOKENS_CONSUMED.inc()
    metrics.SCORE_UPDATES_ACCEPTED.labels(status=score_update.status).inc()
    return AppliedScoreUpdate(
        score_update=score_update,
        new_score=new_score,
        previous_rank=previous_rank,
        new_rank=new_rank,
    )


def score_committed_announce(
    *,
    user: User,
    update: ScoreUpdate,
    totals: dict[str, PeriodTotal],
    ranks: tuple[int | None, int | None],
    at: datetime,
) -> None:
    """Send `score_committed` for a change of `user`'s totals made by `update` (a counted
    score, an approval or a reversal), once the transaction commits."""
    announce_on_commit(
        ScoreCommitted(
            score_update_id=update.pk,
            user_id=user.pk,
            username=user.username,
            country=user.country,
            avatar=user.avatar,
            visible=user.is_on_leaderboards,
            board=update.board,
            status=update.status,
            score_increment=update.score_increment,
            totals=totals,
            previous_rank=ranks[0],
            new_rank=ranks[1],
            committed_at=at,
        )
    )


def _anomaly_assess(
    *, user: User, spent: SpentToken, ip_address: str | None, now: datetime
) -> anomaly.Assessment:
    """Judge the update that spends `token` against the player's recent completions.

    The player's row is locked first (as `_check_daily_cap` does), so concurrent updates of
    one player are judged one after the other, each seeing the ones committed before it: two
    updates cannot both escape a rule that they would trip together. Other players are not
    held up. Then one indexed query loads the history every rule needs.
    """
    config = anomaly.AnomalyConfig.from_settings()
    token, limits = spent.token, spent.limits
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    history = completions_recent(
        user_id=user.pk,
        since=config.history_start(now=now),
        action_type=token.action_type_id,
        same_type_since=config.same_type_start(now=now, action=limits),
    )
    update = anomaly.Completion(
        action_type=token.action_type_id,
        points=token.points,
        ip_address=ip_address,
        recorded_at=now,
        completed_at=token.completed_at,
        issued_at=token.created_at,
    )
    return anomaly.assess(update, history, limits, config)


@dataclass(frozen=True)
class SpentToken:
    """An action token just consumed, with the limits of its action."""

    token: ActionToken
    limits: anomaly.ActionLimits


def _consume_action_token(
    *,
    user: User,
    token: str,
    action_type: str,
    action_id: uuid.UUID,
    score_increment: int,
    now: datetime,
) -> SpentToken:
    """Spend the token if it is this user's, unused, unexpired and issued for exactly this
    action and increment: one conditional UPDATE … RETURNING, so of concurrent submissions
    exactly one wins. Only when nothing matched is the token read again, to tell why."""
    token_hash = hash_action_token(token)
    spent = _spend_token(
        token_hash=token_hash,
        user=user,
        action_type=action_type,
        action_id=action_id,
        points=score_increment,
        now=now,
    )
    if spent is not None:
        return spent
    found = ActionToken.objects.filter(token_hash=token_hash).first()
    # Another player's token is reported like an unknown one: nothing is revealed about it.
    if found is None or found.user_id != user.pk:
        metrics.action_token_rejected("unknown")
        raise InvalidActionToken()
    if found.expires_at <= now and found.used_at is None and found.is_valid:
        metrics.action_token_rejected("expired")
        raise InvalidActionToken("Action token has expired.")
    if found.used_at is None and found.is_valid:
        metrics.action_token_rejected("mismatch")
        raise InvalidActionToken(
            "Action token was issued for another action, type or score increment."
        )
    metrics.action_token_rejected("used")
    raise InvalidActionToken("Action token was already used.", security_event="action_token_reuse")


def _spend_token(
    *,
    token_hash: str,
    user: User,
    action_type: str,
    action_id: uuid.UUID,
    points: int,
    now: datetime,
) -> SpentToken | None:
    table = connection.ops.quote_name(ActionToken._meta.db_table)
    actions = connection.ops.quote_name(Action._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    uuid_field = ActionToken._meta.get_field("action_id")
    sql = (
        f"UPDATE {table} SET used_at = %s, is_valid = %s "  # noqa: S608
        "WHERE token_hash = %s AND user_id = %s AND action_type = %s AND action_id = %s "
        "AND points = %s AND used_at IS NULL AND is_valid AND expires_at > %s "
        "RETURNING *, "
        f"(SELECT min_duration_seconds FROM {actions} a WHERE a.action_type = {table}.action_type)"
        " AS action_min_duration_seconds, "
        f"(SELECT daily_cap_per_user FROM {actions} a WHERE a.action_type = {table}.action_type)"
        " AS action_daily_cap_per_user"
    )
    params = [
        at,
        False,
        token_hash,
        User._meta.pk.get_db_prep_value(user.pk, connection),
        action_type,
        uuid_field.get_db_prep_value(action_id, connection),
        points,
        at,
    ]
    # A raw queryset converts the returned columns as the model's fields would.
    spent = next(iter(ActionToken.objects.raw(sql, params)), None)
    if spent is None:
        return None
    returned = vars(spent)  # the action's columns arrive as attributes of the token
    return SpentToken(
        token=spent,
        limits=anomaly.ActionLimits(
            min_duration_seconds=returned["action_min_duration_seconds"],
            daily_cap_per_user=returned["action_daily_cap_per_user"],
        ),
    )


def score_totals_add(
    *, user: User, board: str, points: int, now: datetime
) -> dict[str, PeriodTotal]:
    """Add points to the user's total for every period bucket `now` falls into. Returns the
    new totals by period."""
    return score_totals_shift(
        user_id=user.pk, board=board, starts=period_starts(now), points=points, now=now
    )


def score_totals_shift(
    *, user_id: uuid.UUID, board: str, starts: dict[str, date], points: int, now: datetime
) -> dict[str, PeriodTotal]:
    """Add `points` to the user's totals in the given period buckets (not necessarily the
    current ones) with one INSERT … ON CONFLICT DO UPDATE that adds in the database
    (row-locked, so concurrent changes of one user all count). Each changed total gets
    `reached_at = now` and its `version` + 1 (the index applies only newer versions).

    A negative shift never takes a total below zero; a bucket with no row gets one at zero.
    """
    user_pk = User._meta.pk.get_db_prep_value(user_id, connection)
    reached_at = connection.ops.adapt_datetimefield_value(now)
    params: list[Any] = []
    for period, start in starts.items():
        params += [board, period, connection.ops.adapt_datefield_value(start), user_pk]
        params += [max(points, 0), reached_at, 1]
    params.append(points)
    table = connection.ops.quote_name(ScoreTotal._meta.db_table)
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(starts))
    sql = (
        f"INSERT INTO {table} "  # noqa: S608
        "(board, period, period_start, user_id, score, reached_at, version) "
        f"VALUES {rows} ON CONFLICT (board, period, period_start, user_id) DO UPDATE SET "
        f"score = {greatest}({table}.score + %s, 0), reached_at = excluded.reached_at, "
        f"version = {table}.version + 1 "
        "RETURNING period, score, version"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = {period: (score, version) for period, score, version in cursor.fetchall()}
    return {
        period: PeriodTotal(
            period_start=start,
            score=int(returned[period][0]),
            reached_at=now,
            version=int(returned[period][1]),
        )
        for period, start in starts.items()
    }
