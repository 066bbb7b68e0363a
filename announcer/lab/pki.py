"""The lab PKI: a lab CA, kubeadm-like apiserver serving certificates, a kubelet-like client
certificate and an unrelated CA for wrong-CA tests.

Layout under the lab dir: `pki/{ca.crt,ca.key,client.crt,client.key,other-ca.crt}` and, for
each control-plane node, `<node>/pki/{ca.crt,apiserver.crt,apiserver.key}`. Keys are 0600.

Idempotent: an existing CA is kept (CAs are made with trustme, which cannot load one, so
leaves are issued from the CA as loaded from disk with `cryptography`); an existing leaf is
kept while it is issued by that CA, matches its key, is valid and names what it should;
anything else is (re)issued. Serving certificates name what kubeadm puts in them and, like
kubeadm's, no loopback name: a probe to 127.0.0.1 must check the name `kubernetes`.

It must not start anything or touch files outside the lab dir.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_IP = "10.96.0.1"
KUBERNETES_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CLIENT_USER = "system:node:lab"
CLIENT_GROUP = "system:nodes"
LEAF_VALIDITY = datetime.timedelta(days=3650)

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Private = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class NodePki:
    """One control-plane node's `/etc/kubernetes/pki` (as seen from the host)."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class LabPki:
    ca_cert: Path
    ca_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    nodes: Mapping[str, NodePki]


@dataclass(frozen=True)
class _Leaf:
    common_name: str
    organizations: tuple[str, ...]
    names: frozenset[x509.GeneralName]
    usage: x509.ObjectIdentifier


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: _Private


def write_lab_pki(lab_dir: Path, nodes: Mapping[str, Sequence[str]]) -> LabPki:
    """Create (or complete) the lab PKI; `nodes` maps node name -> extra SANs (the VIPs)."""
    pki = lab_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    _ensure_ca(pki / "ca.crt", pki / "ca.key", unit="lab CA")
    _ensure_ca(pki / "other-ca.crt", None, unit="unrelated CA")
    issuer = _load_issuer(pki / "ca.crt", pki / "ca.key")
    client = _Leaf(CLIENT_USER, (CLIENT_GROUP,), frozenset(), ExtendedKeyUsageOID.CLIENT_AUTH)
    _ensure_leaf(pki / "client.crt", pki / "client.key", issuer, client)
    node_pki = {
        name: _write_node(lab_dir / name / "pki", issuer, name, extra)
        for name, extra in nodes.items()
    }
    return LabPki(
        ca_cert=pki / "ca.crt",
        ca_key=pki / "ca.key",
        client_cert=pki / "client.crt",
        client_key=pki / "client.key",
        other_ca_cert=pki / "other-ca.crt",
        nodes=node_pki,
    )


def serving_names(node: str, extra: Sequence[str]) -> frozenset[x509.GeneralName]:
    """The SANs of a node's apiserver certificate, as kubeadm issues them.

    `extra` holds addresses (a prefix such as `198.51.100.10/32` counts as its address) or
    DNS names.
    """
    names: set[x509.GeneralName] = {x509.DNSName(n) for n in (node, *KUBERNETES_NAMES)}
    names.add(x509.IPAddress(ipaddress.ip_address(SERVICE_IP)))
    for item in extra:
        address = _address(item)
        names.add(x509.IPAddress(address) if address is not None else x509.DNSName(item))
    return frozenset(names)


def _address(text: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        return None


def _write_node(directory: Path, issuer: _Issuer, node: str, extra: Sequence[str]) -> NodePki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = issuer.cert.public_bytes(serialization.Encoding.PEM)
    ca_copy = directory / "ca.crt"
    if not ca_copy.is_file() or ca_copy.read_bytes() != ca_pem:
        _write(ca_copy, ca_pem, mode=0o644)
    leaf = _Leaf("kube-apiserver", (), serving_names(node, extra), ExtendedKeyUsageOID.SERVER_AUTH)
    _ensure_leaf(directory / "apiserver.crt", directory / "apiserver.key", issuer, leaf)
    return NodePki(
        ca_cert=ca_copy, cert=directory / "apiserver.crt", key=directory / "apiserver.key"
    )


def _ensure_ca(cert_path: Path, key_path: Path | None, *, unit: str) -> None:
    if cert_path.is_file() and (key_path is None or key_path.is_file()):
        if key_path is not None:
            key_path.chmod(0o600)
        return
    ca = trustme.CA(organization_name="announcer lab", organization_unit_name=unit)
    if key_path is not None:
        _write(key_path, ca.private_key_pem.bytes(), mode=0o600)
    _write(cert_path, ca.cert_pem.bytes(), mode=0o644)


def _load_issuer(cert_path: Path, key_path: Path) -> _Issuer:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, _Private):
        raise ValueError(f"{key_path}: not an EC private key")
    return _Issuer(cert, key)


def _ensure_leaf(cert_path: Path, key_path: Path, issuer: _Issuer, leaf: _Leaf) -> None:
    if _is_current(cert_path, key_path, issuer, leaf):
        key_path.chmod(0o600)
        return
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(issuer, key, leaf)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, mode=0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _is_current(cert_path: Path, key_path: Path, issuer: _Issuer, leaf: _Leaf) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(issuer.cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return (
        _public(cert.public_key()) == _public(key.public_key())
        and cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        and cert.subject == _subject(leaf)
        and _names(cert) == leaf.names
    )


def _names(cert: x509.Certificate) -> frozenset[x509.GeneralName]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(names)


def _public(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return b""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _subject(leaf: _Leaf) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in leaf.organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, leaf.common_name))
    return x509.Name(attributes)


def _issue(issuer: _Issuer, key: _Private, leaf: _Leaf) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_subject(leaf))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([leaf.usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if leaf.names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sorted(leaf.names, key=str)), critical=False
        )
    return builder.sign(issuer.key, hashes.SHA256())


_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` atomically; the temporary file has `mode` from its creation on."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    tmp.chmod(mode)  # the umask narrows the creation mode
    tmp.replace(path)
