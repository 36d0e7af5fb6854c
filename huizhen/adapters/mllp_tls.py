"""TLS for MLLP: the contexts for both ends, and who a client certificate names.

A HIS that connects with a client certificate is identified by it (DESIGN:
"a TLS client certificate … maps each to its facility"); the listener hands
its subject, common name and fingerprint to the handler in ``PeerInfo``.
Errors loading certificates are configuration errors: they stop start-up.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from huizhen.integration.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class CertIdentity:
    subject: str  # RFC 4514, e.g. "O=Town Clinic,CN=his.town.example"
    common_name: str | None
    fingerprint: str  # SHA-256 of the DER certificate, lowercase hex
    dns_names: tuple[str, ...] = ()  # subjectAltName DNS entries


def certificate_identity(der: bytes) -> CertIdentity:
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    return CertIdentity(
        subject=cert.subject.rfc4514_string(),
        common_name=str(names[0].value) if names else None,
        fingerprint=hashlib.sha256(der).hexdigest(),
        dns_names=dns,
    )


def server_ssl_context(
    cert_file: str,
    key_file: str,
    client_ca_file: str | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """TLS ≥ 1.2; with ``client_ca_file`` client certificates are verified against it
    (required with ``require_client_cert``, else optional)."""
    if require_client_cert and not client_ca_file:
        raise ConfigurationError("require_client_cert needs client_ca_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
        if client_ca_file:
            context.load_verify_locations(client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the MLLP TLS certificate or key: {exc}") from exc
    if client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_ssl_context(
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (the system CAs without it); with
    ``cert_file`` present a client certificate (mutual TLS)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the MLLP TLS certificate or key: {exc}") from exc
    return context
