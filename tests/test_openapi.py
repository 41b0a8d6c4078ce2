"""OpenAPI quality: integrators build against it, so every operation is fully described."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

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
