"""Small factories: keys and schools made through the same services the API uses."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role
from app.auth.service import create_key


def operator_key(db: sessionmaker[Session]) -> str:
    with db.begin() as session:
        _key, secret = create_key(
            session=session,
            role=Role.OPERATOR,
            name="test operator",
            school_id=None,
            created_by="test",
        )
    return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class SchoolKeys:
    key: str
    operator: str
    admin: str
    reader: str
    esis: str

    def for_role(self, role: Role) -> str:
        return str(getattr(self, role.value))


def make_school(
    client: TestClient,
    db: sessionmaker[Session],
    *,
    brin: str = "12AB",
    branch: str = "00",
    name: str = "Basisschool De Regenboog",
    operator: str | None = None,
    **policy: object,
) -> SchoolKeys:
    op = operator or operator_key(db)
    response = client.post(
        "/api/v1/schools",
        json={"brin": brin, "branch": branch, "name": name, **policy},
        headers=auth(op),
    )
    assert response.status_code == 201, response.text
    key = response.json()["key"]
    secrets = {}
    for role in ("admin", "reader", "esis"):
        made = client.post(
            f"/api/v1/schools/{key}/api-keys",
            json={"role": role, "name": f"test {role}"},
            headers=auth(op),
        )
        assert made.status_code == 201, made.text
        secrets[role] = made.json()["secret"]
    return SchoolKeys(key=key, operator=op, **secrets)
