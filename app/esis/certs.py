"""Certificates for the UWLR client: test PKI helpers and loading an uploaded client identity.

ESIS authenticates a coupling with a TLS client certificate, delivered as a PKCS#12 file with
a password (or as PEM certificate + key). `load_client_identity` turns either into a
`ClientIdentity` (PEM certificate chain + unencrypted PEM key, held in memory only) and refuses
what would fail later anyway: data that does not parse, a wrong password, a key that does not
belong to the certificate, an expired or not yet valid certificate.

`make_ca`, `make_cert` and `pkcs12_bytes` build a small PKI for tests and the fake ESIS.
Keys are ECDSA P-256: quick to generate and accepted by every TLS stack in use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as p12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.errors import Unprocessable

__all__ = [
    "ClientIdentity",
    "PemPair",
    "load_client_identity",
    "make_ca",
    "make_cert",
    "pkcs12_bytes",
]

DEFAULT_LIFETIME = dt.timedelta(days=365)
# Backdating not_before a little keeps freshly made certificates valid on a slightly slow clock.
BACKDATE = dt.timedelta(minutes=5)
MAX_UPLOAD_BYTES = 1024 * 1024


class PemPair(NamedTuple):
    """A certificate and its private key, both PEM (the key unencrypted PKCS#8)."""

    cert: bytes
    key: bytes


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


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _signing_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError("only EC and RSA keys are supported")
    return key


def make_ca(
    common_name: str = "esis-sync test CA",
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> PemPair:
    """A self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - BACKDATE
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + 10 * DEFAULT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return PemPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_cert(
    ca: PemPair | tuple[bytes, bytes],
    common_name: str,
    *,
    server: bool,
    san_ips: Sequence[str] = (),
    san_dns: Sequence[str] = (),
    organization: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> PemPair:
    """A leaf certificate signed by `ca`: a TLS server certificate or a client certificate.

    A server certificate gets `san_ips`/`san_dns` as subject alternative names (hostname
    checking uses only those); `not_after` in the past makes an expired certificate.
    """
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = _signing_key(ca[1])
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - BACKDATE
    end = not_after or start + DEFAULT_LIFETIME
    if end <= start:  # an expired certificate for tests: valid for one hour, long ago
        start = end - dt.timedelta(hours=1)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=server,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in san_dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in san_ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return PemPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def pkcs12_bytes(
    cert_pem: bytes,
    key_pem: bytes,
    password: str,
    *,
    chain_pem: bytes | None = None,
    friendly_name: str = "esis-sync",
) -> bytes:
    """A password-protected PKCS#12 file holding the certificate and key (as ESIS hands out)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem else None
    return p12.serialize_key_and_certificates(
        friendly_name.encode(),
        _signing_key(key_pem),
        cert,
        chain,
        serialization.BestAvailableEncryption(password.encode()),
    )


def _refuse(message: str) -> Unprocessable:
    return Unprocessable(message, errors=[{"field": "certificate", "message": message}])


def _from_pkcs12(
    data: bytes, password: str | None
) -> tuple[x509.Certificate, list[x509.Certificate], object]:
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

    Raises Unprocessable (with a message safe to show) when it cannot be used: not parseable,
    wrong password, key and certificate do not match, expired or not yet valid.
    """
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
        key_pem=_key_pem(key),
        not_after=not_after,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=not_before,
    )
