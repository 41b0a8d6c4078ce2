"""Errors are RFC 9457 problems: never a bare trace, never internals."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.main import create_app
from tests.factories import auth, make_school, operator_key


def test_unknown_path_is_a_problem(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not Found"


def test_malformed_json_is_a_422_problem(client: TestClient, db: sessionmaker[Session]) -> None:
    op = operator_key(db)
    response = client.post(
        "/api/v1/schools",
        content=b"{not json",
        headers={**auth(op), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/validation"


def test_declared_oversized_body_is_413_before_reading(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    op = operator_key(db)
    big = b"x" * (2 * 1024 * 1024 + 1)
    response = client.post(
        "/api/v1/schools", content=big, headers={**auth(op), "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"


def test_streamed_oversized_body_is_413(client: TestClient, db: sessionmaker[Session]) -> None:
    op = operator_key(db)

    def chunks() -> Iterator[
        bytes
    ]:  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(40):
            yield b"x" * 65536

    response = client.post(
        "/api/v1/schools",
        content=chunks(),
        headers={**auth(op), "content-type": "application/json"},
    )
    assert response.status_code == 413


def test_unexpected_error_is_a_500_problem_without_internals(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: jan@example.nl")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "jan@example.nl" not in response.text and "RuntimeError" not in response.text
    app.state.engine.dispose()


def test_request_id_is_echoed(client: TestClient, db: sessionmaker[Session]) -> None:
    school = make_school(client, db)
    response = client.get(
        f"/api/v1/schools/{school.key}", headers={**auth(school.reader), "x-request-id": "abc123"}
    )
    assert response.headers["x-request-id"] == "abc123"


def test_nul_characters_are_refused_everywhere(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    body = client.post(
        f"/api/v1/schools/{school.key}/groups",
        content=b'{"name": "BSO\\u0000"}',
        headers={**auth(school.admin), "content-type": "application/json"},
    )
    assert body.status_code == 422
    assert body.headers["content-type"] == "application/problem+json"
    query = client.get(
        f"/api/v1/schools/{school.key}/students?q=a%00b", headers=auth(school.reader)
    )
    assert query.status_code == 422
