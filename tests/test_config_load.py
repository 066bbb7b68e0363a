"""Reading configuration files and the files they name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from announcer.config import (
    ConfigError,
    ConfigErrors,
    check_files,
    load_config,
    parse_config,
    read_document,
    read_secret,
)
from announcer.config.load import read_password

SNIPPETS = Path(__file__).parent / "config_snippets"


def errors_of(file: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(file)
    return [str(error) for error in caught.value.errors]


def write(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Every file a configuration can name, valid."""
    return {
        "ca": write(tmp_path, "ca.crt", "-----BEGIN CERTIFICATE-----\n"),
        "cert": write(tmp_path, "client.crt", "-----BEGIN CERTIFICATE-----\n"),
        "key": write(tmp_path, "client.key", "-----BEGIN PRIVATE KEY-----\n"),
        "token": write(tmp_path, "token", "s3cret-token\n"),
        "password": write(tmp_path, "md5", "bgp-Pa55word\n"),
    }


def config_text(files: dict[str, Path], **extra: str) -> str:
    neighbor = {"address": "192.0.2.1", "peer_as": 65000, "password_file": str(files["password"])}
    document = {
        "apiserver": {
            "ca_file": str(files["ca"]),
            "client_cert_file": str(files["cert"]),
            "client_key_file": str(files["key"]),
            "token_file": str(files["token"]),
        },
        "vips": ["198.51.100.10/32"],
        "bgp": {"router_id": "192.0.2.2", "local_as": 65100, "neighbors": [neighbor]},
    }
    return yaml.safe_dump(document) + "".join(f"{key}: {value}\n" for key, value in extra.items())


def test_load_config_with_every_file_present(tmp_path: Path, files: dict[str, Path]) -> None:
    config = load_config(write(tmp_path, "config.yaml", config_text(files)))
    assert config.apiserver.token_file == files["token"]
    assert config.bgp.neighbors[0].password_file == files["password"]


def test_missing_ca_is_not_an_error(tmp_path: Path, files: dict[str, Path]) -> None:
    # The daemon starts before `kubeadm init` writes the CA: host_warnings reports it.
    files["ca"].unlink()
    assert load_config(write(tmp_path, "config.yaml", config_text(files))).apiserver.ca_file


def test_every_file_problem_is_reported(tmp_path: Path, files: dict[str, Path]) -> None:
    files["ca"].unlink()
    files["ca"].mkdir()
    files["key"].unlink()
    files["token"].write_text("\n")
    files["password"].write_text('has"quote\n')
    assert errors_of(write(tmp_path, "config.yaml", config_text(files))) == [
        f"apiserver.ca_file: {str(files['ca'])!r} is not a regular file",
        f"apiserver.client_key_file: {str(files['key'])!r} does not exist",
        f"apiserver.token_file: {str(files['token'])!r} holds an empty secret",
        f"bgp.neighbors[0].password_file: {str(files['password'])!r} holds a password with "
        "spaces, quotes, backslashes or non-ASCII characters",
    ]


def test_secret_content_never_appears_in_errors(tmp_path: Path) -> None:
    secret = write(tmp_path, "token", "line-one\nline-two-XYZZY\n")
    with pytest.raises(ConfigError) as caught:
        read_secret(secret, key="apiserver.token_file")
    assert "XYZZY" not in str(caught.value)
    assert "line-one" not in str(caught.value)
    assert str(caught.value) == (
        f"apiserver.token_file: {str(secret)!r} holds a secret with control characters or "
        "more than one line"
    )


def test_read_secret_strips_exactly_one_newline(tmp_path: Path) -> None:
    assert read_secret(write(tmp_path, "a", "token\n")) == "token"
    assert read_secret(write(tmp_path, "b", "token")) == "token"
    with pytest.raises(ConfigError):
        read_secret(write(tmp_path, "c", "token\n\n"))


def test_password_length_is_tcp_md5s(tmp_path: Path) -> None:
    assert read_password(write(tmp_path, "ok", "x" * 80 + "\n")) == "x" * 80
    with pytest.raises(ConfigError, match="longer than 80"):
        read_password(write(tmp_path, "long", "x" * 81))


def test_exabgp_binary_must_be_executable(tmp_path: Path) -> None:
    binary = write(tmp_path, "exabgp", "#!/bin/sh\n", mode=0o644)
    document = yaml.safe_load((SNIPPETS / "minimal.yaml").read_text())
    document["exabgp"] = {"binary": str(binary)}
    config = parse_config(document)
    if os.geteuid() == 0:  # root may execute anything with one x bit; there is none here
        assert not os.access(binary, os.X_OK)
    assert [str(error) for error in check_files(config)] == [
        f"exabgp.binary: {str(binary)!r} is not executable"
    ]
    binary.chmod(0o755)
    assert check_files(config) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vips: [a\nbgp: {}\n", "{file}:2: expected ',' or ']', but got ':'"),
        ("bgp: {}\nvips: []\nbgp: {}\n", "{file}:3: found duplicate key 'bgp'"),
        ("bgp:\n  hold_time: 3\n  hold_time: 4\n", "{file}:3: found duplicate key 'hold_time'"),
        ("a: b: c\n", "{file}:1: mapping values are not allowed here"),
        ("", "(top level): the document is empty"),
        ("- 1\n", "(top level): [1] is not a mapping of sections"),
        (
            "--- {}\n--- {}\n",
            "{file}:2: expected a single document in the stream, but found another document",
        ),
        (
            "vips: !!python/object:os.system [id]\n",
            "{file}:1: could not determine a constructor "
            "for the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
    ],
)
def test_unreadable_documents_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    file = write(tmp_path, "config.yaml", text)
    assert errors_of(file) == [message.format(file=file)]


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = (SNIPPETS / "minimal.yaml").read_text() + (
        "x-base: &base {delay: 1.0}\n"  # an unknown key, but no duplicate
    )
    file = write(tmp_path, "config.yaml", text + "drain: {<<: *base, delay: 2.0}\n")
    assert errors_of(file)[0].startswith("x-base: unknown key")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"vips: [\xff]\n", "is not valid YAML: unacceptable character #x00ff"),
        (b"vips: 1" + b"0" * 5000 + b"\n", "is not valid YAML: Exceeds the limit"),
        (b"[" * 2000 + b"]" * 2000, "is not valid YAML"),
        (b"a: \x07\n", "is not valid YAML: unacceptable character #x0007"),
    ],
)
def test_absurd_documents_are_config_errors(tmp_path: Path, content: bytes, reason: str) -> None:
    file = tmp_path / "config.yaml"
    file.write_bytes(content)
    (message,) = errors_of(file)
    assert message.startswith(f"{file}: {reason}")
    assert "\n" not in message


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: cannot be read: No such file or directory"
    ]
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (1 << 20) + b"\n")
    assert errors_of(big) == [f"{big}: is larger than 1048576 bytes"]


def test_read_document_returns_plain_data(tmp_path: Path) -> None:
    file = write(tmp_path, "config.yaml", "a: [1, 2.5, yes, null, '0600']\n")
    assert read_document(file) == {"a": [1, 2.5, True, None, "0600"]}
