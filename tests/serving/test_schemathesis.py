"""Property-based fuzzing of the OpenAPI spec (schemathesis, in-process ASGI): no server errors, and every
response matches its documented status code, content type and schema. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = ("GET /healthz", "GET /v1/model", "POST /v1/predict", "POST /v1/predict/batch")


def test_openapi_fuzz_finds_no_server_errors(app) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = {}
    for result in schema.get_all_operations():
        op = result.ok()
        operations[f"{op.method.upper()} {op.path}"] = op
    assert set(OPERATIONS) <= set(operations)
    calls: dict[str, list[int]] = {}
    for label in OPERATIONS:
        _fuzz(operations[label], calls.setdefault(label, []))
    assert all(calls[label] for label in OPERATIONS), calls
    assert all(code < 500 for codes in calls.values() for code in codes), calls


def _fuzz(operation, codes: list[int]) -> None:
    """Run a bounded Hypothesis search over one operation, recording the status codes."""

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        codes.append(case.call_and_validate(checks=CHECKS).status_code)

    fuzz()
