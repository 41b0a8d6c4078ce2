"""All settings in one place, read from the environment (prefix ESIS_SYNC_) or `.env`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from enum import StrEnum
from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Settings(BaseSettings):
    """Service settings. Every field is an environment variable `ESIS_SYNC_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="ESIS_SYNC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str = Field(
        default="sqlite:///./var/esis-sync.db",
        description="SQLAlchemy URL. SQLite (embedded default) or "
        "postgresql+psycopg://user@host:5432/db.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds to.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8000, description="Port the HTTP server binds to."
    )
    log_level: LogLevel = Field(default=LogLevel.INFO, description="Log level.")
    school_timezone: str = Field(
        default="Europe/Amsterdam",
        description="Time zone of the schools; the daily cut-off is read in it (R3).",
    )
    daily_cutoff: dt.time = Field(
        default=dt.time(17, 0),
        description="R3's cut-off: the daily sync time (school-local) a new school gets when "
        "its creation names none; each school may change its own later.",
    )
    max_upload_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=128 * 1024 * 1024,
        description="Largest request body accepted, in bytes; larger requests get 413.",
    )
    max_snapshot_records: Annotated[int, Field(ge=1)] = Field(
        default=200_000,
        description="Most records (groups, students, guardians, staff) one snapshot may carry.",
    )
    push_rate_per_minute: Annotated[int, Field(ge=1)] = Field(
        default=30,
        description="Most new snapshots one school may push per minute; more get 429 with "
        "Retry-After. Replays of a snapshot already received do not count.",
    )
    retention_days: Annotated[int, Field(ge=0, le=3650)] = Field(
        default=30,
        description="Days a soft-deleted record stays restorable before purge removes its "
        "personal data.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key(s) that encrypt stored secrets (ESIS credentials, signing "
        "secrets); comma-separated to rotate: the first encrypts, all decrypt. Required on "
        "PostgreSQL; the embedded default keeps a generated key in ./var/secret.key.",
    )
    webhook_tolerance_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=300,
        description="How far a signed push's webhook-timestamp may be from now.",
    )
    pull_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=4,
        description="Tries per pull from ESIS; transient failures (timeouts, 502-504, a cut "
        "answer) are retried with exponential backoff and jitter, faults and 4xx never.",
    )
    scheduler_interval_seconds: Annotated[int, Field(ge=5, le=3600)] = Field(
        default=60,
        description="How often a worker looks for schools whose daily sync time has passed.",
    )
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        # A pull mostly waits for ESIS (about 200 ms an answer) and takes its CPU in turns
        # with the worker's other pulls (PullOptions.gate), so more jobs at once overlap more
        # waits without more CPU per pull: 4 left a worker idle between answers (bench/README.md,
        # "Issue 18: ninth round").
        default=8,
        description="Jobs one worker process runs at once (PostgreSQL).",
    )
    job_stalled_seconds: Annotated[int, Field(ge=2, le=3600)] = Field(
        default=30,
        description="A worker silent for this long is taken for dead; its jobs run again.",
    )
    job_retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=30,
        description="Finished jobs of the queue (PostgreSQL) are deleted, with their events, "
        "this many days after they finished.",
    )
    embedded_worker: bool | None = Field(
        default=None,
        description="Run the scheduler inside `esis-sync serve`. Default: on for SQLite (no "
        "extra service), off otherwise (run `esis-sync worker`).",
    )
    bootstrap_operator_key: bool | None = Field(
        default=None,
        description="Create and print a first operator key at start when none exists. "
        "Default: on for SQLite (the embedded quick start), off otherwise.",
    )
    feed_retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=30,
        description="Days the change feed keeps events; `esis-sync purge` removes older ones "
        "(each school's newest stays). A cursor from before the oldest kept event gets 410.",
    )
    pull_quarantine_failures: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3,
        description="Consecutive failed pulls after which a school's connection is "
        "quarantined: the daily pull backs off (2, 4, then every 7 days) until a pull succeeds.",
    )
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = Field(
        default=10.0,
        description="Connect and read timeout of one webhook delivery.",
    )
    webhook_max_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10,
        description="Consecutive failed deliveries after which a webhook endpoint is disabled "
        "(an event says so); retries in between back off exponentially.",
    )
    webhook_backoff_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=30.0,
        description="First retry delay of a failed webhook delivery; doubled per failure, "
        "at most 6 hours.",
    )
    webhook_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=5,
        description="How often a worker looks for change-feed events to deliver to webhooks.",
    )

    console_idle_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = Field(
        default=30,
        description="Minutes a console session may sit unused before it must sign in again.",
    )

    refused_body_budget_bytes: Annotated[int, Field(ge=0)] = Field(
        default=32 * 1024 * 1024,
        description="Bytes of refused snapshot bodies (pushes and pulls that failed) one "
        "school keeps for diagnosis; beyond it the oldest are emptied (their runs and problems "
        "stay).",
    )
    refused_body_keep_hours: Annotated[int, Field(ge=0, le=720)] = Field(
        default=24,
        description="Hours a refused snapshot body is kept at most, within the budget.",
    )
    allow_private_esis_hosts: bool = Field(
        default=False,
        description="Let pulls connect to loopback, private, link-local and other non-public "
        "addresses. Off: a school admin cannot point the ESIS connection into the operator's "
        "network. On for tests, the demo and a fake ESIS on the same host.",
    )

    @field_validator("school_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("only sqlite:// and postgresql+psycopg:// URLs are supported")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            # psycopg 3 is the driver we ship; spell it out so SQLAlchemy picks it.
            value = "postgresql+psycopg://" + value.split("://", 1)[1]
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        import base64
        import binascii

        for key in value.get_secret_value().split(","):
            try:
                ok = len(base64.urlsafe_b64decode(key.strip().encode())) == 32
            except (binascii.Error, ValueError):
                ok = False
            if not ok:
                raise ValueError("each key must be a Fernet key (esis-sync generate-secret-key)")
        return value

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.school_timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def runs_embedded_worker(self) -> bool:
        return self.is_sqlite if self.embedded_worker is None else self.embedded_worker

    @property
    def should_bootstrap_operator_key(self) -> bool:
        if self.bootstrap_operator_key is None:
            return self.is_sqlite
        return self.bootstrap_operator_key


class SettingsError(Exception):
    """Settings could not be read; the message names each offending setting."""


def describe_settings_error(exc: ValidationError) -> str:
    lines = ["invalid settings:"]
    for error in exc.errors():
        name = "ESIS_SYNC_" + "_".join(str(part) for part in error["loc"]).upper()
        lines.append(f"  {name}: {error['msg']}")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning a validation error into one that names the settings."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_settings_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
