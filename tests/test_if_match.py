"""`If-Match` uses the strong comparison (RFC 9110 13.1.1): a weak tag never matches."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.errors import PreconditionFailed
from app.roster.etags import check_if_match
from tests.factories import auth, make_school
from tests.merge_helpers import activate, one
from tests.snapshots import school_snapshot


@pytest.mark.parametrize("header", ['"1"', "*", ' "9" , "1" ', '"1",W/"1"', 'W/"9", "1"'])
def test_a_strong_match_passes(header: str) -> None:
    check_if_match(header, '"1"', what="record", version=1)


@pytest.mark.parametrize(
    "header", ['W/"1"', 'w/"1"', 'W/"1", W/"2"', '"2"', "1", '"1', "", '"1" "2"', 'W/ "1"']
)
def test_a_weak_stale_or_malformed_tag_is_refused(header: str) -> None:
    with pytest.raises(PreconditionFailed) as refused:
        check_if_match(header, '"1"', what="record", version=1)
    assert refused.value.extra["current_etag"] == '"1"'


def test_a_weak_etag_gets_412_and_changes_nothing(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    activate(client, school, school_snapshot(students=2))
    student = one(db, "student", esis_key="S0001")
    url = f"/api/v1/schools/{school.key}/students/{student['id']}"
    tag = client.get(url, headers=auth(school.admin)).headers["etag"]
    assert tag == '"1"'
    weak = client.patch(
        url, json={"given_name": "Saar"}, headers={**auth(school.admin), "If-Match": f"W/{tag}"}
    )
    assert weak.status_code == 412, weak.text
    assert weak.json()["current_etag"] == tag
    assert "weak" in weak.json()["detail"]
    assert one(db, "student", id=student["id"])["given_name"] == student["given_name"]
    gone = client.delete(url, headers={**auth(school.admin), "If-Match": f"W/{tag}"})
    assert gone.status_code == 412, gone.text
    assert one(db, "student", id=student["id"])["deleted_at"] is None
    strong = client.patch(
        url, json={"given_name": "Saar"}, headers={**auth(school.admin), "If-Match": f'"7", {tag}'}
    )
    assert strong.status_code == 200, strong.text


def test_class_arrangements_take_a_list_and_refuse_weak_tags(
    client: TestClient, db: sessionmaker[Session]
) -> None:
    school = make_school(client, db)
    made = client.post(
        f"/api/v1/schools/{school.key}/class-arrangements",
        json={"name": "Indeling 2027-2028", "school_year": "2027-2028"},
        headers=auth(school.admin),
    )
    assert made.status_code == 201, made.text
    url = f"/api/v1/schools/{school.key}/class-arrangements/{made.json()['id']}"
    weak = client.patch(
        url, json={"name": "x"}, headers={**auth(school.admin), "If-Match": 'W/"1"'}
    )
    assert weak.status_code == 412, weak.text
    listed = client.patch(
        url, json={"name": "y"}, headers={**auth(school.admin), "If-Match": '"5", "1"'}
    )
    assert listed.status_code == 200, listed.text
