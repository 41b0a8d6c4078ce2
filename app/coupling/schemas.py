"""API shapes of a school's ESIS connection (UWLR 2.2); secrets go in, never come out."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.coupling.health_schemas import HealthPublic
from app.sync.schemas import ContactReport

Url = Annotated[str, StringConstraints(pattern=r"^https://\S+$", max_length=500)]


def _pem_certificates(value: str) -> str:
    """A trust store that does not load would make every pull fail later; say so now."""
    # cryptography only when a connection is set: see app/esis/certs.py.
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not PEM CA certificates (-----BEGIN CERTIFICATE-----)") from None
    return value


CaPem = Annotated[str, AfterValidator(_pem_certificates)]


class CertificateUpload(BaseModel):
    """A PKCS#12 file (base64) with its password, or a PEM certificate and key."""

    model_config = ConfigDict(extra="forbid")

    pkcs12_base64: str | None = Field(default=None, max_length=2_000_000)
    password: str | None = Field(default=None, max_length=500)
    cert_pem: str | None = Field(default=None, max_length=100_000)
    key_pem: str | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _one_kind(self) -> CertificateUpload:
        if (self.pkcs12_base64 is None) == (self.cert_pem is None and self.key_pem is None):
            raise ValueError("give pkcs12_base64 (with password), or cert_pem and key_pem")
        if self.cert_pem is not None and self.key_pem is None:
            raise ValueError("cert_pem needs key_pem")
        return self


class ConnectionPut(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://customer.rovictonline.nl/uwlr2.2.svc",
                    "certificate": {"pkcs12_base64": "MIIK...", "password": "..."},
                    "autorisatiesleutel": "...",
                    "klantcode": "12345",
                    "klantnaam": "Basisschool De Regenboog",
                }
            ]
        },
    )

    url: Url = Field(description="The UWLR 2.2 service address (https).")
    certificate: CertificateUpload | None = Field(
        default=None,
        description="The client certificate; required on the first PUT, optional later (the "
        "stored one stays). Refused when it does not parse or has expired.",
    )
    ca_pem: CaPem | None = Field(
        default=None,
        max_length=100_000,
        description="CA certificates to trust for this service (PEM); default: the system's.",
    )
    autorisatiesleutel: str | None = Field(
        default=None, max_length=500, description="Required on the first PUT; never read back."
    )
    klantcode: str = Field(max_length=100)
    klantnaam: str = Field(max_length=200)


class CertificateInfo(BaseModel):
    subject: str
    not_after: dt.datetime = Field(description="When the client certificate expires.")


class ConnectionPublic(BaseModel):
    url: str
    klantcode: str
    klantnaam: str
    certificate: CertificateInfo
    autorisatiesleutel_set: bool = Field(
        description="Secrets are never shown, only that they are set."
    )
    ca_pem_set: bool
    updated_at: dt.datetime
    last_pulled_on: dt.date | None = Field(
        description="The school-local day of the last daily pull."
    )
    health: HealthPublic | None = Field(
        default=None, description="The connection's health (as `GET .../esis/health`)."
    )


# --- OpenAPI shapes of the XML bodies and the push's headers ---------------------------------

SNAPSHOT_BODY = {
    "required": True,
    "description": "A full snapshot of the school: JSON (the `EsisSnapshot` schema) or EDEXml "
    "2.0/2.1 XML with the guardian block (`esis-protocol.md`).",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/EsisSnapshot"}},
        "application/xml": {
            "schema": {"type": "string", "format": "binary", "maxLength": 134217728}
        },
    },
}
# Standard Webhooks 1.0: read by `signing.verify` from the raw headers (a missing or wrong one
# is a 401 `signature` problem, not a 422), so they are declared here rather than as params.
WEBHOOK_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": False,
        "description": "Standard Webhooks: the message id; also the idempotency key when "
        "`Idempotency-Key` is absent. Required when the school has a signing secret.",
        "schema": {"type": "string", "maxLength": 200, "pattern": r"^[\x21-\x7e]+$"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": False,
        "description": "Standard Webhooks: Unix seconds of signing; at most the configured "
        "tolerance (5 minutes) away from now.",
        "schema": {"type": "string", "maxLength": 12, "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": False,
        "description": "Standard Webhooks: space-separated `v1,<base64 HMAC-SHA256>` "
        "signatures of `<webhook-id>.<webhook-timestamp>.<body>`.",
        "schema": {"type": "string", "maxLength": 4000, "pattern": r"^v1,[A-Za-z0-9+/=]+( .+)?$"},
    },
]
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true`: this snapshot was received before; the answer is its first run.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
XML_BINARY = {"type": "string", "format": "binary", "maxLength": 134217728}

EDEXML_BODY = {
    "required": True,
    "description": "An EDEXml 2.0 or 2.1 file, optionally with the guardian block.",
    "content": {"application/xml": {"schema": XML_BINARY}},
}


class ContactImportPublic(BaseModel):
    """What a guardian contact file did (or, with `dry_run`, would do)."""

    dry_run: bool
    rows: int = Field(description="Rows read, each a guardian of one student.")
    applied: bool = Field(
        description="`true` after activation (guardians added or corrected at once); `false` "
        "before it: the file is kept for readiness (R1) and matched at activation (R2)."
    )
    stored_for_activation: bool = False
    students: int | None = Field(default=None, description="Before activation: students named.")
    guardians: int | None = Field(default=None, description="Before activation: guardians.")
    report: ContactReport | None = Field(
        default=None, description="After activation: what the file added and corrected."
    )
