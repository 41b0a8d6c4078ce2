"""Certificates for the UWLR client: loading an uploaded client identity.

ESIS authenticates a coupling with a TLS client certificate, delivered as a PKCS#12 file with
a password (or as PEM certificate + key). `load_client_identity` turns either into a
`ClientIdentity` (PEM certificate chain + unencrypted PEM key, held in memory only) and refuses
what would fail later anyway: data that does not parse, a wrong password, a key that does not
belong to the certificate, an expired or not yet valid certificate.

The small PKI for tests and the fake ESIS is in `fake_esis.pki`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.esis.errors import FormatError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["ClientIdentity", "load_client_identity", "private_key_pem"]

MAX_UPLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ClientIdentity:
    """A TLS client identity, ready for `ssl.SSLContext.load_cert_chain` (via a file)."""

    cert_pem: bytes  # the certificate first, then any chain certificates from the PKCS#12
    key_pem: bytes = field(repr=False)  # unencrypted PKCS#8; never logged or shown
    not_after: dt.datetime  # aware, UTC
    subject: str  # RFC 4514, e.g. "CN=esis-sync,O=School"
    issuer: str = ""
    not_before: dt.datetime | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def private_key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    # cryptography only when a certificate is loaded: see load_client_identity.
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _refuse(message: str) -> FormatError:
    return FormatError(message, errors=[{"field": "certificate", "message": message}])


def _from_pkcs12(
    data: bytes, password: str | None
) -> tuple[x509.Certificate, list[x509.Certificate], object]:
    # cryptography only when a certificate is loaded: see load_client_identity.
    from cryptography.hazmat.primitives.serialization import pkcs12 as p12

    try:
        key, cert, extra = p12.load_key_and_certificates(
            data, password.encode() if password else None
        )
    except ValueError:
        # cryptography cannot tell a wrong password from a damaged file; neither can we.
        hint = "no password was given" if not password else "the password is wrong"
        raise _refuse(
            f"the PKCS#12 file could not be opened: {hint}, or it is not a PKCS#12 file"
        ) from None
    except Exception:  # e.g. an unsupported algorithm inside the file
        raise _refuse("the PKCS#12 file could not be read") from None
    if cert is None or key is None:
        raise _refuse("the PKCS#12 file must hold both a certificate and its private key")
    return cert, list(extra), key


def _from_pem(
    cert_pem: bytes, key_pem: bytes, password: str | None
) -> tuple[x509.Certificate, list[x509.Certificate], object]:
    # cryptography only when a certificate is loaded: see load_client_identity.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise _refuse("the certificate is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password.encode() if password else None)
    except TypeError:
        raise _refuse("the private key is encrypted and no password was given") from None
    except ValueError:
        raise _refuse(
            "the private key could not be read: it is not a PEM key or the password is wrong"
        ) from None
    return certs[0], certs[1:], key


def load_client_identity(
    *,
    pkcs12: bytes | None = None,
    password: str | None = None,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    now: dt.datetime | None = None,
) -> ClientIdentity:
    """Validates and unpacks a client certificate: a PKCS#12 (with password) or PEM cert + key.

    Raises FormatError (with a message safe to show) when it cannot be used: not parseable,
    wrong password, key and certificate do not match, expired or not yet valid.
    """
    # cryptography (~7 MB) only when a certificate is loaded: the serving process imports
    # this module for `ClientIdentity`, and most of its life uses none.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if pkcs12 is not None and (cert_pem is not None or key_pem is not None):
        raise _refuse("give either a PKCS#12 file or a PEM certificate and key, not both")
    if pkcs12 is not None:
        if len(pkcs12) > MAX_UPLOAD_BYTES:
            raise _refuse("the PKCS#12 file is too large")
        cert, chain, key = _from_pkcs12(pkcs12, password)
    elif cert_pem is not None and key_pem is not None:
        if len(cert_pem) + len(key_pem) > MAX_UPLOAD_BYTES:
            raise _refuse("the certificate is too large")
        cert, chain, key = _from_pem(cert_pem, key_pem, password)
    else:
        raise _refuse("a PKCS#12 file or a PEM certificate with its key is required")

    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise _refuse("only RSA and EC private keys are supported")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise _refuse("the private key does not belong to the certificate")

    moment = now or _now()
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    if not_after <= moment:
        raise _refuse(f"the certificate expired on {not_after.date().isoformat()}")
    if not_before > moment:
        raise _refuse(f"the certificate is not valid before {not_before.isoformat()}")

    return ClientIdentity(
        cert_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain]),
        key_pem=private_key_pem(key),
        not_after=not_after,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=not_before,
    )
