"""Property-based fuzzing of the OpenAPI spec (schemathesis, in-process ASGI) with **every** check schemathesis
registers (the Python equivalent of ``st run --checks all``), configured by the repository's ``schemathesis.toml``:
no server errors, responses match their documented status codes, content types, headers and schemas, schema-invalid
requests are rejected and schema-valid ones accepted. Bounded: a fixed number of examples per operation."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from tests.serving.conftest import small_limits_app

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
OPERATIONS = ("GET /healthz", "GET /v1/model", "POST /v1/predict", "POST /v1/predict/batch")


def all_checks() -> list:
    load_all_checks()
    return list(CHECKS.get_all())


def test_all_checks_are_used() -> None:
    names = {c.__name__ for c in all_checks()}
    assert {"not_a_server_error", "negative_data_rejection", "positive_data_acceptance",
            "response_schema_conformance", "status_code_conformance", "unsupported_method"} <= names


def test_openapi_fuzz_with_all_checks_finds_no_failures(predictor) -> None:
    # its own app: schemathesis runs the app's lifespan to its end, which takes a shared app out of readiness
    app = small_limits_app(predictor)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_path(CONFIG))
    operations = {}
    for result in schema.get_all_operations():
        op = result.ok()
        operations[f"{op.method.upper()} {op.path}"] = op
    assert set(OPERATIONS) <= set(operations)
    checks = all_checks()
    calls: dict[str, list[int]] = {}
    failures: list[str] = []
    for label in OPERATIONS:
        _fuzz(operations[label], checks, calls.setdefault(label, []), failures)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:5])
    assert all(calls[label] for label in OPERATIONS), calls
    assert any(200 <= c < 300 for c in calls["POST /v1/predict/batch"] + calls["GET /v1/model"]), calls


def _fuzz(operation, checks: list, codes: list[int], failures: list[str]) -> None:
    """Run a bounded Hypothesis search over one operation, recording status codes and every failure."""

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        try:
            codes.append(case.call_and_validate(checks=checks).status_code)
        except Exception as exc:  # collect them all instead of stopping at the first
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc).split('Reproduce')[0]}")

    fuzz()
