"""The webhook's HTTP contract, in-process against the real PostgreSQL (runs not launched)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from dicom_pipeline_dev.stack.kafka import KafkaService
from fastapi.testclient import TestClient

from dicom_pipeline.runtime import get_runtime, reset_runtime
from dicom_pipeline.settings import Settings
from tests.helpers import execute, made_up_orthanc_id, query
from webhook.main import WebhookConfigError, create_app

pytestmark = pytest.mark.integration

STUDY_ID = "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c"


@pytest.fixture()
def client(stack_settings: Settings) -> Iterator[TestClient]:
    reset_runtime()
    with TestClient(create_app(get_runtime(), launch_runs=False), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture()
def auth(stack_settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack_settings.webhook_token.get_secret_value()}"}


def _assert_error_shape(body: dict[str, object], code: str) -> None:
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == code and error["message"] and error["correlation_id"]


def test_accepted_notification_is_recorded_and_answered_202(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/ingestion/studies", json={"ID": STUDY_ID}, headers={**auth, "X-Correlation-ID": "orthanc-call-1"}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted" and body["correlation_id"] == "orthanc-call-1"
    assert response.headers["X-Correlation-ID"] == "orthanc-call-1"
    assert query(
        "SELECT orthanc_id, correlation_id, trigger, status FROM ingestion_request WHERE id = :id",
        id=uuid.UUID(body["request_id"]),
    ) == [(STUDY_ID, "orthanc-call-1", "webhook", "accepted")]

    state = client.get(f"/api/v1/ingestion/studies/{body['request_id']}", headers=auth)
    assert state.status_code == 200
    assert state.json()["status"] == "accepted" and state.json()["run_id"] is None


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-wrong-token", "Basic abc", "Bearer "])
def test_missing_or_wrong_token_is_401_with_the_error_shape(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/ingestion/studies", json={"ID": STUDY_ID}, headers=headers)
    assert response.status_code == 401
    _assert_error_shape(response.json(), "unauthorized")
    assert client.get(f"/api/v1/ingestion/studies/{uuid.uuid4()}", headers=headers).status_code == 401
    deletion = client.post("/api/v1/ingestion/deletions", json={"ID": STUDY_ID, "Level": "Study"}, headers=headers)
    assert deletion.status_code == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "JSON"),
        (b'{"ID": "../../etc/passwd"}', "ID"),
        (b'{"ID": "6EAB340E-5e10a3c7-c6c79b88-c662da39-824f4f3c"}', "ID"),
        (b'{"ID": 42}', "ID"),
        (b'{"id": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c"}', "ID"),
        (b'{"ID": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c", "extra": 1}', "extra"),
        (b"[]", "body"),
    ],
)
def test_malformed_bodies_and_ids_are_422_naming_the_problem(
    client: TestClient, auth: dict[str, str], body: bytes, fragment: str
) -> None:
    response = client.post(
        "/api/v1/ingestion/studies", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    _assert_error_shape(response.json(), "invalid_request")
    assert fragment.lower() in response.json()["error"]["message"].lower()


def test_body_over_the_limit_is_413(client: TestClient, auth: dict[str, str], stack_settings: Settings) -> None:
    big = b'{"ID": "' + b"a" * (stack_settings.webhook_max_body_bytes + 10) + b'"}'
    response = client.post(
        "/api/v1/ingestion/studies", content=big, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    _assert_error_shape(response.json(), "payload_too_large")


def test_unknown_request_id_is_404_and_malformed_one_is_422(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get(f"/api/v1/ingestion/studies/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/api/v1/ingestion/studies/not-a-uuid", headers=auth).status_code == 422


def test_malformed_correlation_id_is_replaced_on_every_response(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Correlation-ID": "bad value with spaces"})
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    returned = response.headers["X-Correlation-ID"]
    assert returned != "bad value with spaces" and len(returned) == 36


def test_metrics_expose_http_counts_and_pipeline_gauges(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/api/v1/ingestion/studies", json={"ID": STUDY_ID}, headers=auth)
    text = client.get("/metrics").text
    assert 'dicom_webhook_http_requests_total{method="POST",route="/api/v1/ingestion/studies",status="202"}' in text
    for gauge in (
        "dicom_pipeline_studies",
        "dicom_pipeline_study_versions",
        "dicom_pipeline_outbox_pending",
        "dicom_pipeline_dead_letters_open",
        "dicom_pipeline_last_ingestion_age_seconds",
    ):
        assert f"\n{gauge} " in text


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/api/v1/ingestion/studies",
        "/api/v1/ingestion/studies/{request_id}",
        "/api/v1/ingestion/deletions",
        "/health",
        "/ready",
        "/metrics",
    } <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_service_refuses_to_start_without_a_token(stack_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOM_PIPELINE_WEBHOOK_TOKEN", "short")
    reset_runtime()
    try:
        with pytest.raises(WebhookConfigError, match="WEBHOOK_TOKEN"):
            create_app(get_runtime())
    finally:
        monkeypatch.undo()
        reset_runtime()


def test_with_only_kafka_down_ready_is_200_listing_it_and_a_study_is_accepted(
    client: TestClient, stack_settings: Settings, kafka_stopped: KafkaService
) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    # Dagster is not running for this test either: reported, and not a reason to refuse.
    assert body["status"] == "ready" and "kafka" in body["degraded"] and "postgresql" not in body["degraded"]
    assert body["checks"]["kafka"] != "ok"
    assert body["checks"]["postgresql"] == "ok" and body["checks"]["orthanc"] == "ok"
    assert body["checks"]["schema_registry"] == "ok"  # the stack's registry, checked where one is set
    metrics = client.get("/metrics").text
    assert 'dicom_pipeline_dependency_up{dependency="kafka"} 0.0' in metrics
    assert 'dicom_pipeline_dependency_up{dependency="postgresql"} 1.0' in metrics

    accepted = client.post(
        "/api/v1/ingestion/studies",
        json={"ID": made_up_orthanc_id()},
        headers={"Authorization": f"Bearer {stack_settings.webhook_token.get_secret_value()}"},
    )
    assert accepted.status_code == 202
    execute("DELETE FROM ingestion_request WHERE id = CAST(:id AS uuid)", id=accepted.json()["request_id"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"ID": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c"}', "level"),
        (b'{"ID": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c", "Level": "Patient"}', "level"),
        (b'{"ID": "../x", "Level": "Study"}', "ID"),
        (b'{"ID": "6eab340e-5e10a3c7-c6c79b88-c662da39-824f4f3c", "Level": "Study", "x": 1}', "x"),
    ],
)
def test_malformed_deletion_notices_are_422_naming_the_problem(
    client: TestClient, auth: dict[str, str], body: bytes, fragment: str
) -> None:
    response = client.post(
        "/api/v1/ingestion/deletions", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    _assert_error_shape(response.json(), "invalid_request")
    assert fragment.lower() in response.json()["error"]["message"].lower()


def test_deletion_notices_of_one_study_gather_in_one_request_and_unknown_instances_are_ignored(
    client: TestClient, auth: dict[str, str]
) -> None:
    study_id = made_up_orthanc_id()
    url = "/api/v1/ingestion/deletions"
    first = client.post(url, json={"ID": study_id, "Level": "Study"}, headers=auth)
    again = client.post(url, json={"ID": study_id, "Level": "Study"}, headers=auth)
    unknown = client.post(url, json={"ID": made_up_orthanc_id(), "Level": "Instance"}, headers=auth)

    assert (first.status_code, again.status_code, unknown.status_code) == (202, 202, 202)
    assert first.json()["status"] == "accepted"
    assert again.json()["request_id"] == first.json()["request_id"], "a waiting request gathers the notices"
    assert unknown.json() == {**unknown.json(), "status": "ignored", "request_id": None}
    assert query("SELECT trigger, status FROM ingestion_request WHERE orthanc_id = :id", id=study_id) == [
        ("orthanc-deletion", "accepted")
    ]
    execute("DELETE FROM ingestion_request WHERE orthanc_id = :id", id=study_id)
