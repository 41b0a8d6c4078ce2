"""The published OpenAPI document: what FastAPI generates, finished where it cannot know.

FastAPI describes the routes; this adds what every operation shares (the `X-Request-ID`
response header, the 500 problem, problem+json for validation errors, the `Problem` schema
with its parts) and the integer formats JSON Schema leaves open, so that client generators
take the whole document (`tests/test_openapi.py` runs one).
"""

from __future__ import annotations

from typing import Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.errors import PROBLEM_JSON, Problem
from app.esis.schemas import EsisSnapshot

PROBLEM = {"$ref": "#/components/schemas/Problem"}
REQUEST_ID = {
    "description": "The request's id: the one sent in `X-Request-ID`, or a new one. Log lines "
    "of the request carry it.",
    "schema": {"type": "string", "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
}
INT32_MAX = 2**31 - 1


def operation_id(route: APIRoute) -> str:
    """The route's name: short and stable (`list_students`), unlike FastAPI's default of name,
    path and method. `tests/test_openapi.py` pins the list."""
    return route.name


def build(*, title: str, version: str, description: str, routes: Any, tags: Any) -> dict[str, Any]:
    schema = get_openapi(
        title=title, version=version, description=description, routes=routes, tags=tags
    )
    for item in schema["paths"].values():
        for operation in item.values():
            _finish_operation(operation)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    snapshot = EsisSnapshot.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(snapshot.pop("$defs", {}))
    components["EsisSnapshot"] = snapshot
    _integer_formats(schema)
    _string_lengths(schema)
    return schema


def _finish_operation(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        # An optional query parameter is absent or has a value: a query string cannot say
        # null, and `anyOf [X, null]` makes generators lose X's format and bounds.
        variants = parameter["schema"].get("anyOf", [])
        others = [v for v in variants if v != {"type": "null"}]
        if len(variants) == 2 and len(others) == 1:
            rest = {k: v for k, v in parameter["schema"].items() if k != "anyOf"}
            parameter["schema"] = {**others[0], **rest}
    responses = operation.setdefault("responses", {})
    if "422" in responses:
        # Validation errors are problem details too, not FastAPI's default shape.
        responses["422"] = {
            "description": "Request is not valid",
            "content": {PROBLEM_JSON: {"schema": PROBLEM}},
        }
    responses.setdefault(
        "500",
        {
            "description": "Internal server error (logged with the request id)",
            "content": {PROBLEM_JSON: {"schema": PROBLEM}},
        },
    )
    for response in responses.values():
        response.setdefault("headers", {}).setdefault("X-Request-ID", REQUEST_ID)


def _integer_formats(node: Any) -> None:
    """JSON Schema's `integer` has no size; generators and validators want one. Bounded ones
    fit in 32 bits; counts and sequence numbers are 64-bit columns."""
    if isinstance(node, dict):
        if node.get("type") == "integer" and "format" not in node:
            top = node.get("maximum")
            node["format"] = "int32" if top is not None and top <= INT32_MAX else "int64"
        for value in node.values():
            _integer_formats(value)
    elif isinstance(node, list):
        for value in node:
            _integer_formats(value)


# The longest text each string format allows: a UUID is 36 characters; an RFC 3339
# timestamp with microseconds and an offset 32.
FORMAT_LENGTHS = {"uuid": 36, "date-time": 40, "date": 10, "time": 20, "email": 320}


def _string_lengths(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") in FORMAT_LENGTHS:
            node.setdefault("maxLength", FORMAT_LENGTHS[node["format"]])
        for value in node.values():
            _string_lengths(value)
    elif isinstance(node, list):
        for value in node:
            _string_lengths(value)
