"""Throwaway certificates for trying TLS and mutual TLS on this machine (never for production).

    python tests/support/certs.py DIR

writes into DIR: ``ca.pem`` (a CA), ``server.pem``/``server.key`` (for localhost and 127.0.0.1, signed
by the CA), ``client.pem``/``client.key`` (a client certificate from the same CA), and
``other-client.pem``/``other-client.key`` (a client certificate from another CA, which a server
trusting ``ca.pem`` must refuse). docs/deploy.md and the tests use exactly this.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs"]


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files :func:`make_certs` wrote."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path
    other_client_key: Path

    def read(self, name: str) -> bytes:
        """The bytes of the file named by field ``name`` (as grpc.ssl_channel_credentials wants)."""
        path = getattr(self, name)
        assert isinstance(path, Path)
        return path.read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        # Clients check the name they dialled against the SAN (the CN is not looked at).
        builder = builder.add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                x509.IPAddress(ipaddress.IPv6Address("::1")),
            ]),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_suffix(".key")
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        key_path.chmod(0o600)


def make_certs(directory: Path) -> Certs:
    """Write a CA, a server and a client certificate from it, and a client from another CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("streamserve test CA")
    other_key, other_cert = _ca("some other CA")
    _write(directory / "ca.pem", ca_cert)
    for name, (issuer_key, issuer), server in (("server", (ca_key, ca_cert), True),
                                               ("client", (ca_key, ca_cert), False),
                                               ("other-client", (other_key, other_cert), False)):
        key, cert = _leaf(issuer_key, issuer, "localhost" if server else name, server=server)
        _write(directory / f"{name}.pem", cert, key)
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem", server_key=directory / "server.key",
        client_cert=directory / "client.pem", client_key=directory / "client.key",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client.key",
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    made = make_certs(Path(sys.argv[1]))
    print(f"wrote {made.ca.parent}/: ca.pem, server.pem/.key, client.pem/.key, other-client.pem/.key")
