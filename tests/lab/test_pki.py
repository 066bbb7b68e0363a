"""The lab PKI: kubeadm-like serving certificates, a kubelet-like client certificate, key
modes, and idempotence (an existing CA is kept)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from announcer.lab.pki import LabPki, write_lab_pki

VIPS = ["198.51.100.10/32", "2001:db8:100::10/128"]
NODES = {"cp1": VIPS, "cp2": VIPS}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(names.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return dns, ips


@pytest.fixture
def pki(tmp_path: Path) -> LabPki:
    return write_lab_pki(tmp_path / "lab", NODES)


def test_layout_follows_the_lab_contract(tmp_path: Path, pki: LabPki) -> None:
    lab = tmp_path / "lab"
    expected = {
        "pki/ca.crt",
        "pki/ca.key",
        "pki/client.crt",
        "pki/client.key",
        "pki/other-ca.crt",
        *(
            f"{node}/pki/{name}"
            for node in NODES
            for name in ("ca.crt", "apiserver.crt", "apiserver.key")
        ),
    }
    found = {str(p.relative_to(lab)) for p in lab.rglob("*") if p.is_file()}
    assert found == expected
    assert pki.nodes["cp1"].cert == lab / "cp1/pki/apiserver.crt"
    assert pki.nodes["cp2"].ca_cert.read_bytes() == pki.ca_cert.read_bytes()


def test_keys_are_private(pki: LabPki) -> None:
    keys = [pki.ca_key, pki.client_key, *(n.key for n in pki.nodes.values())]
    assert {stat.S_IMODE(k.stat().st_mode) for k in keys} == {0o600}


def test_serving_cert_has_kubeadm_names_and_no_loopback(pki: LabPki) -> None:
    cert = _cert(pki.nodes["cp1"].cert)
    dns, ips = _sans(cert)
    assert dns == {
        "cp1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert ips == {"10.96.0.1", "198.51.100.10", "2001:db8:100::10"}
    assert not {"localhost", "127.0.0.1", "::1"} & (dns | ips)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(_cert(pki.ca_cert))


def test_client_cert_is_kubelet_like(pki: LabPki) -> None:
    cert = _cert(pki.client_cert)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:lab"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(_cert(pki.ca_cert))


def test_other_ca_is_unrelated(pki: LabPki) -> None:
    other = _cert(pki.other_ca_cert)
    assert other.subject != _cert(pki.ca_cert).subject
    with pytest.raises(ValueError):
        _cert(pki.client_cert).verify_directly_issued_by(other)


def _snapshot(lab: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lab)): p.read_bytes() for p in lab.rglob("*") if p.is_file()}


def test_second_run_changes_nothing(tmp_path: Path, pki: LabPki) -> None:
    before = _snapshot(tmp_path / "lab")
    assert write_lab_pki(tmp_path / "lab", NODES) == pki
    assert _snapshot(tmp_path / "lab") == before


def test_existing_ca_is_kept_when_nodes_or_sans_change(tmp_path: Path, pki: LabPki) -> None:
    lab = tmp_path / "lab"
    before = _snapshot(lab)
    again = write_lab_pki(lab, {"cp1": ["203.0.113.7"], "cp2": VIPS, "cp3": VIPS})
    after = _snapshot(lab)
    assert after["pki/ca.crt"] == before["pki/ca.crt"]
    assert after["pki/client.crt"] == before["pki/client.crt"]
    assert after["cp2/pki/apiserver.crt"] == before["cp2/pki/apiserver.crt"]
    assert after["cp1/pki/apiserver.crt"] != before["cp1/pki/apiserver.crt"]
    _, ips = _sans(_cert(again.nodes["cp1"].cert))
    assert ipaddress.ip_address("203.0.113.7") in {ipaddress.ip_address(i) for i in ips}
    for node in ("cp1", "cp3"):
        _cert(again.nodes[node].cert).verify_directly_issued_by(_cert(pki.ca_cert))


def test_missing_or_foreign_leaf_is_reissued_from_the_kept_ca(tmp_path: Path, pki: LabPki) -> None:
    pki.client_key.unlink()
    # A serving cert from another CA (with its own key) must not be kept either.
    pki.nodes["cp2"].cert.write_bytes(pki.other_ca_cert.read_bytes())
    again = write_lab_pki(tmp_path / "lab", NODES)
    ca = _cert(pki.ca_cert)
    _cert(again.client_cert).verify_directly_issued_by(ca)
    _cert(again.nodes["cp2"].cert).verify_directly_issued_by(ca)
    assert again.client_key.is_file()
