"""drf-spectacular: document our JWT authentication as the bearer scheme simplejwt's is, and
the body of `DELETE users/me`."""

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.openapi import AutoSchema

F = TypeVar("F", bound=Callable[..., Any])


class ScoreboardJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.JWTAuthentication"
    name = "jwtAuth"


class DeleteWithBodySchema(AutoSchema):
    """drf-spectacular documents the request bodies of PUT, PATCH and POST only (OpenAPI 3.0
    leaves DELETE bodies undefined); `DELETE users/me` takes the password confirming the
    erasure in its body, and the document should say so."""

    def _get_request_body(self, direction: str = "request") -> Any:
        if self.method != "DELETE":
            return super()._get_request_body(direction)
        self.method = "POST"  # the only check standing between a DELETE and its body
        try:
            return super()._get_request_body(direction)
        finally:
            self.method = "DELETE"


def documented_body(view_method: F) -> F:
    """Use DeleteWithBodySchema for one view method (put it under @extend_schema)."""
    view_method.schema = DeleteWithBodySchema  # type: ignore[attr-defined]
    return view_method
