"""A throwaway PKI for the drill and the tests, made with `cryptography`.

`make_pki(directory)` writes, all as PEM (keys mode 0600):

- `ca.pem` / `ca.key`: the test CA that signs the server and client certificates;
- `server.pem` / `server.key`: valid for `127.0.0.1` and `localhost`;
- `client.pem` / `client.key`: a client certificate signed by the test CA;
- `wrong-ca.pem` / `wrong-ca.key`: an unrelated CA, and `wrong-client.pem` /
  `wrong-client.key` signed by it, to show what a server or client signed by
  someone else looks like;
- `self-signed.pem` / `self-signed.key`: a self-signed server certificate for 127.0.0.1.

EC P-256 keys keep generation fast (a few milliseconds per key).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:  # only for the annotation: older cryptography releases name it otherwise
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

_VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, as PEM file paths."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Every file `make_pki` wrote."""

    directory: Path
    ca: CertPair
    server: CertPair
    client: CertPair
    wrong_ca: CertPair
    wrong_client: CertPair
    self_signed: CertPair


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "failover-engine drill"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: a private key is never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: CertificatePublicKeyTypes) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a clock a few minutes behind still accepts the certificates.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
    )


def _make_ca(directory: Path, stem: str, common_name: str) -> tuple[CertPair, x509.Certificate,
                                                                     ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(directory / f"{stem}.pem", directory / f"{stem}.key")
    _write_cert(pair.cert, cert)
    _write_key(pair.key, key)
    return pair, cert, key


def _make_leaf(
    directory: Path,
    stem: str,
    common_name: str,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    server: bool,
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, issuer_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    pair = CertPair(directory / f"{stem}.pem", directory / f"{stem}.key")
    _write_cert(pair.cert, cert)
    _write_key(pair.key, key)
    return pair


def make_pki(directory: str | Path) -> Pki:
    """Create the test CA, server, client, wrong-CA and self-signed certificates in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, ca_cert, ca_key = _make_ca(directory, "ca", "failover-engine drill CA")
    wrong_ca, wrong_cert, wrong_key = _make_ca(directory, "wrong-ca", "some other CA")
    return Pki(
        directory=directory,
        ca=ca,
        server=_make_leaf(directory, "server", "127.0.0.1", issuer=(ca_cert, ca_key), server=True),
        client=_make_leaf(directory, "client", "standby.drill", issuer=(ca_cert, ca_key),
                          server=False),
        wrong_ca=wrong_ca,
        wrong_client=_make_leaf(directory, "wrong-client", "impostor.drill",
                                issuer=(wrong_cert, wrong_key), server=False),
        self_signed=_make_leaf(directory, "self-signed", "127.0.0.1", issuer=None, server=True),
    )
