"""OpenAPI quality: integrators build against it, so every operation is fully described."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from openapi_spec_validator import validate

from app.errors import PROBLEM_TYPES, DomainError
from app.esis.errors import FormatError
from app.schools.dependencies import SCHOOL_KEY_PATTERN

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {"/healthz", "/readyz", "/metrics"}


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _has_examples(schema: dict[str, Any], spec: dict[str, Any]) -> bool:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return bool(schema.get("examples") or schema.get("example"))


def test_every_operation_has_summary_description_and_problem_responses(app: FastAPI) -> None:
    spec = app.openapi()
    missing: list[str] = []
    for path, method, op in _operations(spec):
        where = f"{method.upper()} {path}"
        if not op.get("summary"):
            missing.append(f"{where}: summary")
        if len(op.get("description", "")) < 20:
            missing.append(f"{where}: description")
        success = [code for code in op["responses"] if code.startswith("2")]
        if not success:
            missing.append(f"{where}: success response")
        if path in PUBLIC:
            continue
        for code in ("401", "403", "404") if "{school}" in path else ("401", "403"):
            content = op["responses"].get(code, {}).get("content", {})
            if "application/problem+json" not in content:
                missing.append(f"{where}: problem response {code}")
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None and not _has_examples(body["schema"], spec):
            missing.append(f"{where}: request example")
    assert missing == []


def test_rules_are_named_where_they_apply(app: FastAPI) -> None:
    spec = app.openapi()
    text = {f"{m.upper()} {p}": op["description"] for p, m, op in _operations(spec)}
    assert "R4" in text["POST /api/v1/schools/{school}/esis/snapshots"]
    assert "R5" in text["POST /api/v1/schools/{school}/drift/accept"]
    assert "R1" in text["POST /api/v1/schools/{school}/esis/activation"]
    assert "R6" in text["DELETE /api/v1/schools/{school}/students/{record_id}"]
    assert "R11" in text["POST /api/v1/schools/{school}/class-arrangements"]


def test_snapshot_schema_is_published_with_an_example(app: FastAPI) -> None:
    spec = app.openapi()
    snapshot = spec["components"]["schemas"]["EsisSnapshot"]
    assert snapshot["examples"][0]["school"]["school_year"] == "2026-2027"
    push = spec["paths"]["/api/v1/schools/{school}/esis/snapshots"]["post"]
    assert set(push["requestBody"]["content"]) == {"application/json", "application/xml"}


# Every operation id, pinned: generated clients name their methods after them, so a change
# here breaks integrators' code and must be deliberate.
OPERATION_IDS = {
    "accept_drift",
    "accept_key_change",
    "confirm_sync_run",
    "list_key_changes",
    "reject_key_change",
    "reject_sync_run",
    "activate_coupling",
    "create_api_key",
    "create_class_arrangement",
    "create_group",
    "create_guardian",
    "create_school",
    "create_signing_secret",
    "create_staff",
    "create_student",
    "create_webhook",
    "deactivate_coupling",
    "delete_class_arrangement",
    "delete_group",
    "delete_guardian",
    "delete_staff",
    "delete_student",
    "delete_webhook",
    "enable_webhook",
    "export_edexml",
    "get_activation_readiness",
    "get_class_arrangement",
    "get_corrections_report",
    "get_esis_connection",
    "get_esis_health",
    "get_group",
    "get_guardian",
    "get_liveness",
    "get_metrics",
    "get_missing_in_esis_report",
    "get_review_report",
    "get_school",
    "get_service_readiness",
    "get_staff",
    "get_student",
    "get_sync_run",
    "get_webhook",
    "get_year_transition",
    "import_edexml",
    "import_contacts",
    "list_api_keys",
    "list_class_arrangements",
    "list_drift",
    "list_events",
    "list_groups",
    "list_guardians",
    "list_schools",
    "list_signing_secrets",
    "list_staff",
    "list_students",
    "list_sync_runs",
    "list_webhook_deliveries",
    "list_webhooks",
    "list_year_transitions",
    "preview_year_transition",
    "pull_from_esis",
    "push_snapshot",
    "restore_class_arrangement",
    "restore_group",
    "restore_guardian",
    "restore_staff",
    "restore_student",
    "revoke_api_key",
    "revoke_signing_secret",
    "rotate_webhook_secret",
    "set_esis_connection",
    "start_year_transition",
    "test_esis_connection",
    "update_class_arrangement",
    "update_group",
    "update_guardian",
    "update_school",
    "update_staff",
    "update_student",
}  # fmt: skip


def test_operation_ids_are_short_stable_snake_case_and_unique(app: FastAPI) -> None:
    ids = [op["operationId"] for _p, _m, op in _operations(app.openapi())]
    assert len(ids) == len(set(ids))
    bad = [i for i in ids if not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", i) or len(i) > 40]
    assert bad == []
    assert set(ids) == OPERATION_IDS


def test_the_document_is_valid_openapi(app: FastAPI) -> None:
    validate(app.openapi())  # raises with the first error


def _all_subclasses(cls: type[Any]) -> list[type[Any]]:
    subs: list[type[Any]] = cls.__subclasses__()
    return [c for sub in subs for c in (sub, *_all_subclasses(sub))]


def test_every_problem_type_is_listed_in_the_schema_and_the_docs(app: FastAPI) -> None:
    slugs = {c.slug for base in (DomainError, FormatError) for c in (base, *_all_subclasses(base))}
    slugs |= {"internal"}  # the handler of unexpected errors
    slugs -= {"bad-request"}  # DomainError's default; every raised error is a subclass
    assert slugs <= set(PROBLEM_TYPES)
    described = app.openapi()["components"]["schemas"]["Problem"]["properties"]["type"]
    docs = (ROOT / "docs" / "api.md").read_text()
    for slug in PROBLEM_TYPES:
        assert f"/problems/{slug}" in described["description"], slug
        assert f"`{slug}`" in docs, slug


def test_the_problem_schema_names_every_extra_member(app: FastAPI) -> None:
    props = app.openapi()["components"]["schemas"]["Problem"]["properties"]
    for member in ("errors", "current_etag", "retry_after", "transition_id", "attempts"):
        assert member in props
    assert props["errors"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/FieldError"}


def test_headers_are_declared_where_they_are_sent(app: FastAPI) -> None:
    spec = app.openapi()
    for path, method, op in _operations(spec):
        where = f"{method.upper()} {path}"
        for code, response in op["responses"].items():
            assert "X-Request-ID" in response.get("headers", {}), f"{where} {code}"
        assert "500" in op["responses"], where
        if "401" in op["responses"]:
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"], where
        if "429" in op["responses"]:
            assert "Retry-After" in op["responses"]["429"]["headers"], where
    paths = spec["paths"]
    record = paths["/api/v1/schools/{school}/students/{record_id}"]
    assert "ETag" in record["get"]["responses"]["200"]["headers"]
    assert "ETag" in record["patch"]["responses"]["200"]["headers"]
    push = paths["/api/v1/schools/{school}/esis/snapshots"]["post"]
    assert "Idempotent-Replayed" in push["responses"]["200"]["headers"]
    assert "429" in push["responses"]
    headers = {p["name"] for p in push["parameters"] if p["in"] == "header"}
    assert {"webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key"} <= headers


def test_xml_bodies_are_binary_strings(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    binary = {"type": "string", "format": "binary"}
    bodies = [
        paths["/api/v1/schools/{school}/esis/snapshots"]["post"]["requestBody"],
        paths["/api/v1/schools/{school}/imports/edexml"]["post"]["requestBody"],
        paths["/api/v1/schools/{school}/exports/edexml"]["get"]["responses"]["200"],
    ]
    for body in bodies:
        assert binary.items() <= body["content"]["application/xml"]["schema"].items()


def test_path_parameters_are_bounded(app: FastAPI) -> None:
    for path, method, op in _operations(app.openapi()):
        for param in op.get("parameters", []):
            if param["in"] != "path":
                continue
            schema = param["schema"]
            where = f"{method.upper()} {path} {param['name']}"
            if param["name"] == "school":
                assert schema["pattern"] == SCHOOL_KEY_PATTERN, where
                assert schema["maxLength"] == 6, where
            else:
                assert schema.get("format") == "uuid" or "enum" in schema, where
                assert "maxLength" in schema or "enum" in schema, where


def test_responses_are_typed_not_open_maps(app: FastAPI) -> None:
    """No response member is an untyped object: event changes, run reports, drift values and
    the readiness probe all have schemas a generator can make models of."""
    components = app.openapi()["components"]["schemas"]
    assert "$ref" in str(components["SyncRunPublic"]["properties"]["report"])
    assert "$ref" in str(components["SyncRunPublic"]["properties"]["error"])
    changes = components["EventPublic"]["properties"]["changes"]["additionalProperties"]
    assert changes["anyOf"][0]["title"] == "FieldChange"
    assert "anyOf" in components["DriftItemPublic"]["properties"]["esis_value"]
    probe = app.openapi()["paths"]["/readyz"]["get"]["responses"]["200"]
    assert probe["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}
