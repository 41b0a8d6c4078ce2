"""A bad `after` or `cursor` is a 422 problem like any other invalid query parameter:
`errors[]` names the parameter as the request spelled it (the change feed's is `after`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import SchoolKeys, auth, make_school


@pytest.fixture
def school(client: TestClient, db: sessionmaker[Session]) -> SchoolKeys:
    return make_school(client, db)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD = ["not a cursor!", _cursor("seven"), _cursor([1, 2, 3]), _cursor({"a": 1}), "e30"]

LISTS = [
    ("events", "after"),
    ("students", "cursor"),
    ("guardians", "cursor"),
    ("groups", "cursor"),
    ("staff", "cursor"),
    ("class-arrangements", "cursor"),
    ("sync-runs", "cursor"),
    ("drift", "cursor"),
]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(("path", "parameter"), LISTS)
def test_a_bad_cursor_is_a_422_naming_its_parameter(
    client: TestClient, school: SchoolKeys, path: str, parameter: str, bad: str
) -> None:
    response = client.get(
        f"/api/v1/schools/{school.key}/{path}",
        params={parameter: bad},
        headers=auth(school.admin),
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "/problems/validation"
    assert body["errors"] == [
        {
            "field": f"query.{parameter}",
            "message": "not a cursor this service issued",
            "type": "cursor",
        }
    ]
    assert body["detail"] == f"query.{parameter}: not a cursor this service issued"


def test_the_schools_list_names_cursor(client: TestClient, school: SchoolKeys) -> None:
    response = client.get(
        "/api/v1/schools", params={"cursor": _cursor(7)}, headers=auth(school.operator)
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "query.cursor"
