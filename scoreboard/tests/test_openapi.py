"""The OpenAPI document: valid, complete about errors, and the committed copy is current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from scoreboard.errors import ERROR_CODES

COMMITTED_SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_the_schema_is_valid_openapi_3(schema: dict[str, Any]) -> None:
    validate(schema)

    assert schema["openapi"].startswith("3.")


def test_the_error_envelope_and_every_code_are_documented(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["ErrorResponse"]

    assert error["properties"]["error"]["properties"]["code"]["enum"] == list(ERROR_CODES)
    for code in ERROR_CODES:
        assert f"`{code}`" in error["description"]


def test_every_operation_documents_error_responses(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status_range in ("4XX", "5XX"):
                response = operation["responses"][status_range]
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }, f"{method.upper()} {path}"


def test_every_operation_documents_rate_limiting(schema: dict[str, Any]) -> None:
    headers = schema["components"]["headers"]
    rate_limit_headers = {
        name: {"$ref": f"#/components/headers/{name}"}
        for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    }
    assert set(headers) == {"Retry-After", *rate_limit_headers}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert responses["429"]["headers"] == {
                "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                **rate_limit_headers,
            }, where
            for code in (code for code in responses if code.startswith("2")):
                assert responses[code]["headers"] == rate_limit_headers, where


def test_authenticated_operations_declare_the_bearer_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/api/v1/users/me"]["get"]["security"] == [{"jwtAuth": []}]


def test_the_committed_schema_matches_the_code(tmp_path: Path) -> None:
    generated = tmp_path / "openapi.yaml"

    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")

    assert yaml.safe_load(generated.read_text()) == yaml.safe_load(COMMITTED_SCHEMA.read_text()), (
        "docs/openapi.yaml is stale: run `make schema`"
    )


@pytest.mark.django_db
def test_schema_and_playground_are_served(api_client: APIClient) -> None:
    schema_response = api_client.get("/api/schema/?format=json")
    docs_response = api_client.get("/api/docs/")

    assert schema_response.status_code == 200
    assert schema_response.json()["info"]["title"] == "Live Scoreboard API"
    assert docs_response.status_code == 200
    assert b"swagger-ui" in docs_response.content
