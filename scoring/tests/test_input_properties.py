"""Whatever JSON a client sends, a score update body is either exactly valid or refused with
field errors; nothing else escapes validation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.api.serializers import ScoreUpdateInputSerializer

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def valid_body() -> dict[str, Any]:
    return {
        "userId": str(uuid.uuid4()),
        "actionType": "WIN_GAME",
        "actionId": str(uuid.uuid4()),
        "scoreIncrement": 100,
        "timestamp": "2026-11-27T10:30:00Z",
        "clientSignature": "a" * 64,
    }


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    field=st.sampled_from(sorted(valid_body())),
    value=json_values,
)
def test_any_value_in_any_field_is_accepted_only_in_its_own_type(
    catalog: None, field: str, value: Any
) -> None:
    body = {**valid_body(), field: value}

    serializer = ScoreUpdateInputSerializer(data=body)

    if serializer.is_valid():
        claim = serializer.to_claim()
        if field == "scoreIncrement":
            assert type(value) is int
            assert 1 <= value <= 1000
            assert claim.score_increment == value
        else:
            assert isinstance(value, str)
    else:
        assert set(serializer.errors) == {field}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(extra=st.text(min_size=1, max_size=20), value=json_values)
def test_any_undeclared_field_is_refused(catalog: None, extra: str, value: Any) -> None:
    body = valid_body()
    if extra in body:
        return
    body[extra] = value

    serializer = ScoreUpdateInputSerializer(data=body)

    assert not serializer.is_valid()
    assert serializer.errors == {extra: ["Unknown field."]}
