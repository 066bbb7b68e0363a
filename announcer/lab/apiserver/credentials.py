"""TLS and credentials of the fake apiserver: the serving context, who a client certificate
names, the static token file.

Owns turning files into an `ssl.SSLContext` and identities. It must not decide what an
identity may do (that is `routes`).
"""

from __future__ import annotations

import csv
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from announcer.lab.apiserver.routes import Identity

AUTHENTICATED = "system:authenticated"


def server_tls_context(*, cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """Serve `cert`; ask for an optional client certificate, verified against `client_ca`.

    Only HTTP/1.1 is offered over ALPN, so clients never negotiate h2 with this server.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["http/1.1"])
    return context


def peer_identity(ssl_object: ssl.SSLObject | None) -> Identity | None:
    """The user a verified client certificate names (CN user, O groups), like x509 auth."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    subject = x509.load_der_x509_certificate(der).subject
    users = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    groups = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if not users:
        return None
    return Identity(users[0], (*groups, AUTHENTICATED))


def load_tokens(path: Path) -> dict[str, Identity]:
    """Read a kube-apiserver `--token-auth-file`: `token,user,uid[,"group1,group2"]` lines.

    A line holding only a token names the user `lab-token`.
    """
    tokens: dict[str, Identity] = {}
    with path.open(newline="", encoding="utf-8") as stream:
        for row in csv.reader(stream):
            fields = [f.strip() for f in row]
            if not fields or not fields[0] or fields[0].startswith("#"):
                continue
            user = fields[1] if len(fields) > 1 and fields[1] else "lab-token"
            groups = [g.strip() for g in fields[3].split(",")] if len(fields) > 3 else []
            groups = [g for g in groups if g]
            tokens[fields[0]] = Identity(user, (*groups, AUTHENTICATED))
    return tokens
