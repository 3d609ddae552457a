"""schemathesis against the webhook's own OpenAPI (with the token): no input makes it answer 5xx,
and without a valid token every protected operation is refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import execute, query
from webhook.main import create_app

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 120


def _operations() -> list[schemathesis.APIOperation]:
    app = create_app(get_runtime(), launch_runs=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the webhook's OpenAPI is invalid: {result}"
        operations.append(result.ok())
    return operations


def _exercise(
    operation: schemathesis.APIOperation, token: str, statuses: Counter[tuple[str, int]], server_errors: list[str]
) -> None:
    label = operation.label

    # Valid and invalid inputs alike (schemathesis's positive and negative generation).
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def exercise(case: schemathesis.Case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        statuses[(label, response.status_code)] += 1
        # /ready is 503 only when PostgreSQL is down, which it is not here: no exception.
        if response.status_code >= 500:
            server_errors.append(f"{label} -> {response.status_code}: {response.text[:200]}")

    exercise()


@pytest.fixture()
def no_requests_left_behind(stack_settings: Settings) -> Iterator[None]:
    """The app runs here without its launcher: requests it accepted would wait for the next
    webhook process to start (the e2e systems after this module) and flood its run queue."""
    started = query("SELECT now()")[0][0]
    yield
    execute(
        "DELETE FROM ingestion_request WHERE created_at >= :started AND run_id IS NULL AND status = 'accepted'",
        started=started,
    )


@pytest.mark.usefixtures("no_requests_left_behind")
@pytest.mark.parametrize("authenticated", [True, False])
def test_generated_requests_never_get_a_server_error(stack_settings: Settings, authenticated: bool) -> None:
    reset_runtime()
    token = stack_settings.webhook_token.get_secret_value() if authenticated else "not-the-token-not-the-token"
    statuses: Counter[tuple[str, int]] = Counter()
    server_errors: list[str] = []
    operations = _operations()
    assert {op.label for op in operations} >= {
        "POST /api/v1/ingestion/studies",
        "GET /api/v1/ingestion/studies/{request_id}",
        "GET /health",
        "GET /ready",
    }
    for operation in operations:
        _exercise(operation, token, statuses, server_errors)
    print(f"fuzz (authenticated={authenticated}): {dict(statuses)}")
    assert not server_errors, "\n".join(server_errors[:10])
    if not authenticated:
        protected = [(label, code) for (label, code) in statuses if label.startswith(("POST /api", "GET /api"))]
        # Refused either way: 401, or a 4xx for a body that cannot even be read.
        assert protected and all(code in (400, 401, 413, 422) for _, code in protected)
        assert all(code != 202 for _, code in protected), "nothing is accepted without the token"
