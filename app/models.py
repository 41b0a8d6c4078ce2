"""Every table, imported in one place for alembic and the tests."""

from app.auth.models import ApiKey
from app.coupling.health_models import ConnectionHealth
from app.coupling.models import ContactFile, EsisConnection, SigningSecret
from app.db import metadata
from app.events.models import Event
from app.roster.models import (
    ClassArrangement,
    ClassPlacement,
    Group,
    Guardian,
    Staff,
    StaffGroup,
    Student,
    StudentGroup,
    StudentGuardian,
)
from app.schools.models import School
from app.sync.models import DriftItem, KeyChange, Snapshot, SyncRun
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.year_transition.models import YearTransition

__all__ = [
    "ApiKey",
    "ClassArrangement",
    "ClassPlacement",
    "ConnectionHealth",
    "ContactFile",
    "DriftItem",
    "EsisConnection",
    "Event",
    "Group",
    "Guardian",
    "KeyChange",
    "School",
    "SigningSecret",
    "Snapshot",
    "Staff",
    "StaffGroup",
    "Student",
    "StudentGroup",
    "StudentGuardian",
    "SyncRun",
    "WebhookDelivery",
    "WebhookEndpoint",
    "YearTransition",
    "metadata",
]
