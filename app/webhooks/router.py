"""A school's webhook endpoints (HTTP only): admin role."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.errors import Forbidden, NotFound, Unauthorized, Unprocessable, problem_responses
from app.pagination import Cursor, Limit
from app.schools.dependencies import SessionDep, WriteSchool
from app.webhooks import repository, service
from app.webhooks.schemas import (
    DeliveryList,
    DeliveryPublic,
    WebhookCreate,
    WebhookList,
    WebhookPublic,
    WebhookWithSecret,
)

router = APIRouter(prefix="/api/v1/schools/{school}/webhooks", tags=["webhooks"])
AUTH = (Unauthorized, Forbidden, NotFound)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    description="Every change-feed event of the school from now on is delivered to `url` as a "
    "Standard Webhooks 1.0 request (`webhook-id`, `webhook-timestamp`, `webhook-signature`), "
    "one at a time and in order, retried with exponential backoff; the endpoint is disabled "
    "after repeated failure. The URL must be https (http only on loopback) and may not "
    "resolve to a private or link-local address. The signing secret is in this answer only.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def create_webhook(
    data: WebhookCreate, request: Request, ctx: WriteSchool, session: SessionDep
) -> WebhookWithSecret:
    return service.create(
        session=session,
        settings=request.app.state.settings,
        school_id=ctx.school.id,
        data=data,
        actor=ctx.principal.actor,
    )


@router.get(
    "",
    summary="List webhook endpoints",
    description="Each endpoint's address, state and delivery position; never its secret.",
    responses=problem_responses(*AUTH),
)
def list_webhooks(ctx: WriteSchool, session: SessionDep) -> WebhookList:
    rows = repository.list_endpoints(session=session, school_id=ctx.school.id)
    return WebhookList(items=[service.public(r) for r in rows])


@router.get(
    "/{webhook_id}",
    summary="Get a webhook endpoint",
    description="Its state: enabled or why disabled, the last event delivered, failures and "
    "when the next attempt is due; never its secret.",
    responses=problem_responses(*AUTH),
)
def get_webhook(webhook_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> WebhookPublic:
    row = repository.get(session=session, school_id=ctx.school.id, endpoint_id=webhook_id)
    return service.public(row)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a webhook endpoint",
    description="Deliveries stop; the endpoint's delivery log goes with it.",
    responses=problem_responses(*AUTH),
)
def delete_webhook(webhook_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> Response:
    service.delete(
        session=session, school_id=ctx.school.id, endpoint_id=webhook_id, actor=ctx.principal.actor
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/secret",
    summary="Rotate the signing secret",
    description="A new secret, shown in this answer only. For 24 hours every delivery carries "
    "two signatures (new and old secret), so the receiver can switch without a gap.",
    responses=problem_responses(*AUTH),
)
def rotate_webhook_secret(
    webhook_id: uuid.UUID, request: Request, ctx: WriteSchool, session: SessionDep
) -> WebhookWithSecret:
    return service.rotate_secret(
        session=session,
        settings=request.app.state.settings,
        school_id=ctx.school.id,
        endpoint_id=webhook_id,
        actor=ctx.principal.actor,
    )


@router.post(
    "/{webhook_id}/enable",
    summary="Enable a disabled webhook endpoint",
    description="After the receiver is fixed: deliveries resume with the event that failed.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def enable_webhook(webhook_id: uuid.UUID, ctx: WriteSchool, session: SessionDep) -> WebhookPublic:
    row = service.enable(
        session=session, school_id=ctx.school.id, endpoint_id=webhook_id, actor=ctx.principal.actor
    )
    return service.public(row)


@router.get(
    "/{webhook_id}/deliveries",
    name="list_webhook_deliveries",
    summary="The delivery log",
    description="Every attempt, newest first: event, `webhook-id`, attempt number, outcome, "
    "the receiver's status code or the error, and how long it took.",
    responses=problem_responses(*AUTH, Unprocessable),
)
def list_deliveries(
    webhook_id: uuid.UUID,
    ctx: WriteSchool,
    session: SessionDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> DeliveryList:
    repository.get(session=session, school_id=ctx.school.id, endpoint_id=webhook_id)
    rows, next_cursor = repository.list_deliveries(
        session=session,
        school_id=ctx.school.id,
        endpoint_id=webhook_id,
        limit=limit,
        cursor=cursor,
    )
    return DeliveryList(
        items=[DeliveryPublic.model_validate(r) for r in rows], next_cursor=next_cursor
    )
