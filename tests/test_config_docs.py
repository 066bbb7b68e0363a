"""Every full configuration shown in the docs (a YAML block with `vips:` and `bgp:`) parses,
and the docs name no removed command form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from announcer.config import parse_config

ROOT = Path(__file__).parent.parent
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [
    pytest.param(block, id=f"{doc.name}:{number}")
    for doc in DOCS
    for number, block in enumerate(YAML_BLOCK.findall(doc.read_text()))
    if re.search(r"^vips:", block, flags=re.MULTILINE) and re.search(r"^bgp:", block, re.M)
]


def test_the_docs_show_whole_configurations() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("block", EXAMPLES)
def test_every_configuration_in_the_docs_parses(block: str) -> None:
    parse_config(yaml.safe_load(block))


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_the_docs_use_current_forms(doc: Path) -> None:
    text = doc.read_text()
    assert "python3 -m venv /opt" not in text.replace("/usr/bin/python3 -m venv /opt", "")
    assert "apiServer.extraArgs.shutdown-delay-duration" not in text  # v1beta3's map form
    assert "python -m announcer.config.schema" not in text  # announcer config-schema


def test_kubeadm_upgrade_steps_upgrade_kubeadm_first_and_drain_the_node() -> None:
    text = (ROOT / "docs" / "kubeadm.md").read_text()
    section = text[text.index("## 6. Upgrading") : text.index("## 7.")]
    assert section.index("install -y kubeadm=") < section.index("kubeadm upgrade plan")
    assert "kubectl drain" in section and "kubectl uncordon" in section
    assert "`announcer drain` is not `kubectl drain`" in section


def test_kubeadm_doc_sets_the_log_format_and_ships_an_alert_that_fires_without_series() -> None:
    text = (ROOT / "docs" / "kubeadm.md").read_text()
    assert "add it to `ExecStart` with" not in text  # systemd refuses a second ExecStart=
    assert "log:\n  format: json" in text
    assert "absent(announcer_vip_announced == 1)" in text
    assert "config/prometheus/announcer.rules.yml" in text


def test_install_doc_covers_a_first_deployment() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    for needle in (
        "## First deployment",
        "arp_ignore = 1",
        "arp_announce = 2",
        "bgp listen range",
        "IPv6-only",
        '"[2001:db8:100::10]:6443"',
        "announcer config-schema",
        "scripts/build-man",
    ):
        assert needle in text, needle
