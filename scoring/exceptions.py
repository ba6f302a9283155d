"""Errors of the score pipeline, each with its code from the API contract (DESIGN.md §4)."""

from __future__ import annotations

from rest_framework import status

from scoreboard.errors import ApplicationError, Forbidden


class ActionNotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    error_code = "ACTION_NOT_FOUND"
    default_detail = "No active action of that type exists."


class ActionAlreadyCompleted(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    error_code = "ACTION_ALREADY_COMPLETED"
    default_detail = "This action was already completed."


class InvalidActionToken(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    error_code = "INVALID_ACTION_TOKEN"
    default_detail = "Action token is invalid or already used."
    default_security_event = "action_token_rejected"


class InvalidProof(Forbidden):
    default_detail = "The game-server proof is not valid."
    default_security_event = "game_server_proof_invalid"


class InvalidClientSignature(Forbidden):
    default_detail = "clientSignature does not match the signed fields."
    default_security_event = "client_signature_invalid"


class DailyCapReached(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = "RATE_LIMIT_EXCEEDED"
    default_detail = "The daily limit for this action is reached."


class ScoreUpdateNotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    error_code = "NOT_FOUND"
    default_detail = "No score update with that id."


class UserNotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    error_code = "USER_NOT_FOUND"
    default_detail = "No user with that id."


class DecisionConflict(ApplicationError):
    """The update's review state does not allow the decision (approving a rejected update,
    deciding on a reversal entry). Repeating the decision already taken is not a conflict."""

    status_code = status.HTTP_409_CONFLICT
    error_code = "DECISION_CONFLICT"
    default_detail = "The update's review state does not allow this decision."
