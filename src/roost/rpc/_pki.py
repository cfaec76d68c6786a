"""Making a deployment's gRPC trust: a CA, node certificates, the cluster key and node
credentials (:func:`write_cluster_credentials`). ``roost dev up`` uses it for the dev
cluster; ``roost cluster credentials`` for a real one."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.config import RpcSecurityConfig
from roost.rpc._security import node_credential

#: The hosts a node certificate names when none are given: loopback only.
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")


def _private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (from the first byte: no window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    days: int,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a little clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if issuer is None:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:  # a node: a server to its clients, and a client to the others' servers
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(_san(hosts), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def write_cluster_credentials(
    directory: Path,
    nodes: Sequence[str],
    *,
    hosts: Sequence[str] = LOCAL_HOSTS,
    days: int = 365,
    mtls: bool = True,
) -> dict[str, RpcSecurityConfig]:
    """A new CA, cluster key, and per node a certificate (for ``hosts``) and credential,
    in ``directory`` (keys mode 0600); the ``[distributed.security]`` of each node.

    The CA and cluster key are made once: a directory that has them keeps them, so adding a
    node later does not invalidate the others."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
    cluster_key_file = directory / "cluster.key"
    if ca_file.exists() and ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_file} is not an EC key made by roost")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate("roost deployment CA", ca_key, None, ca_key, days=days * 10)
        _private(ca_key_file, _pem_key(ca_key))
        ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    if not cluster_key_file.exists():
        _private(cluster_key_file, secrets.token_urlsafe(48).encode())
    cluster_key = cluster_key_file.read_bytes().strip()

    configs: dict[str, RpcSecurityConfig] = {}
    for node in nodes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(node, key, ca_cert.subject, ca_key, days=days, hosts=hosts)
        cert_file, key_file = directory / f"{node}.pem", directory / f"{node}-key.pem"
        credential_file = directory / f"{node}.credential"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _private(key_file, _pem_key(key))
        _private(credential_file, node_credential(cluster_key, node).encode())
        configs[node] = RpcSecurityConfig(
            ca_file=ca_file, cert_file=cert_file, key_file=key_file, mtls=mtls,
            credential_file=credential_file, cluster_key_file=cluster_key_file,
        )  # fmt: skip
    return configs


__all__ = ["LOCAL_HOSTS", "write_cluster_credentials"]
