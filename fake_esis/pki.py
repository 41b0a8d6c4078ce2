"""A small PKI for tests, the demo and the fake ESIS: a CA, certificates, PKCS#12 files.

Keys are ECDSA P-256: quick to generate and accepted by every TLS stack in use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as p12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.esis.certs import private_key_pem as _key_pem

__all__ = ["PemPair", "make_ca", "make_cert", "pkcs12_bytes"]

DEFAULT_LIFETIME = dt.timedelta(days=365)
# Backdating not_before a little keeps freshly made certificates valid on a slightly slow clock.
BACKDATE = dt.timedelta(minutes=5)


class PemPair(NamedTuple):
    """A certificate and its private key, both PEM (the key unencrypted PKCS#8)."""

    cert: bytes
    key: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


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
    legacy: bool = False,
) -> bytes:
    """A password-protected PKCS#12 file holding the certificate and key (as ESIS hands out).

    `legacy`: encrypted the old way (PBE with SHA-1 and 3DES, SHA-1 MAC), as certificates
    made with older tools still are."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    chain = x509.load_pem_x509_certificates(chain_pem) if chain_pem else None
    encryption: serialization.KeySerializationEncryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(p12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the legacy format under test
        .build(password.encode())
        if legacy
        else serialization.BestAvailableEncryption(password.encode())
    )
    return p12.serialize_key_and_certificates(
        friendly_name.encode(), _signing_key(key_pem), cert, chain, encryption
    )
