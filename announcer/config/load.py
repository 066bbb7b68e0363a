"""Reading the configuration file, and checking the files the configuration names.

`load_config(path)` = read the YAML (a `yaml.SafeLoader` that also rejects duplicate keys)
+ `parse_config` + `check_files`. Every failure, including YAML syntax errors, unreadable files
and absurd documents, comes out as `ConfigErrors`.

Secrets (token, BGP passwords) are read here by `read_secret`, and their content never goes
into an error message.

Must not: validate the document's structure (that is `parse`) or warn about the host
(that is `hostcheck`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from announcer.config.errors import ConfigError, ConfigErrors
from announcer.config.model import DEFAULT_PATH, Config
from announcer.config.parse import parse_config

MAX_DOCUMENT_BYTES: Final = 1 << 20
MAX_SECRET_LENGTH: Final = 4096
MAX_PASSWORD_LENGTH: Final = 80  # TCP_MD5SIG_MAXKEYLEN
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader, except that a key given twice in one mapping is an error rather than
    the last one silently winning."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return dict(super().construct_mapping(node, deep=deep))


def _read_bytes(file: Path, *, key: str, limit: int) -> bytes:
    try:
        with file.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        reason = f"cannot be read: {error.strerror or error}"
        raise _file_error(file, key, reason) from None
    if len(data) > limit:
        raise _file_error(file, key, f"is larger than {limit} bytes")
    return data


def _file_error(file: Path, key: str, reason: str) -> ConfigError:
    # Under a key, show the file; when the file is the path, don't say it twice.
    if key == str(file):
        return ConfigError(key, reason)
    return ConfigError(key, reason, value=str(file))


def read_document(file: Path) -> object:
    """The YAML document in `file`, as plain Python data; `ConfigErrors` naming the file and
    line for anything that is not one well-formed YAML document."""
    data = _read_bytes(file, key=str(file), limit=MAX_DOCUMENT_BYTES)
    try:
        return _load(data)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ConfigErrors([ConfigError(where, _yaml_reason(error))]) from None
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        # ReaderError (bad encoding, control characters), integers too long to convert,
        # nesting deeper than the composer's recursion.
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ConfigErrors([ConfigError(str(file), f"is not valid YAML: {reason}")]) from None


def _load(data: bytes) -> object:
    loader = _StrictLoader(data)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    problem, context = error.problem or "", error.context or ""
    # "but found another document" only makes sense after its context.
    reason = f"{context}, {problem}" if problem.startswith("but") and context else problem
    return " ".join((reason or context or "is not valid YAML").split())


def load_config(path: Path = DEFAULT_PATH) -> Config:
    """Read, parse and check a configuration file; raises `ConfigErrors` on any mistake."""
    try:
        config = parse_config(read_document(path))
    except ConfigErrors:
        raise
    except ConfigError as error:
        raise ConfigErrors([error]) from None
    problems = check_files(config)
    if problems:
        raise ConfigErrors(problems)
    return config


def read_secret(file: Path, *, key: str = "", max_length: int = MAX_SECRET_LENGTH) -> str:
    """The secret in `file` without one trailing newline. Errors name `key` (or the file) and
    never show the content."""
    where = key or str(file)
    problem = _regular_file(file, where)
    if problem is not None:
        raise problem
    data = _read_bytes(file, key=where, limit=4 * max_length + 2)
    try:
        secret = data.decode()
    except UnicodeDecodeError:
        raise _file_error(file, where, "is not UTF-8 text") from None
    secret = secret.removesuffix("\n")
    if not secret:
        raise _file_error(file, where, "holds an empty secret")
    if len(secret) > max_length:
        raise _file_error(file, where, f"holds a secret longer than {max_length}")
    if not secret.isprintable():
        reason = "holds a secret with control characters or more than one line"
        raise _file_error(file, where, reason)
    return secret


def read_password(file: Path, *, key: str = "") -> str:
    """A TCP MD5 password: at most 80 characters of visible ASCII, without quotes or
    backslashes, which ExaBGP's configuration syntax would interpret."""
    password = read_secret(file, key=key, max_length=MAX_PASSWORD_LENGTH)
    if not all("!" <= char <= "~" and char not in "\"'\\" for char in password):
        reason = "holds a password with spaces, quotes, backslashes or non-ASCII characters"
        raise _file_error(file, key or str(file), reason)
    return password


def _regular_file(file: Path, key: str) -> ConfigError | None:
    # Checked before opening: opening a FIFO would block the daemon's start.
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        return _file_error(file, key, "does not exist")
    except OSError as error:  # too long, not a directory, a loop, no permission
        return _file_error(file, key, f"cannot be read: {error.strerror or error}")
    if not stat.S_ISREG(mode):
        return _file_error(file, key, "is not a regular file")
    return None


def _missing(file: Path) -> bool:
    try:
        file.stat()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # exists in some form: _regular_file says what is wrong
    return False


def _check_readable(file: Path, key: str) -> list[ConfigError]:
    problem = _regular_file(file, key)
    if problem is None:
        try:
            _read_bytes(file, key=key, limit=MAX_DOCUMENT_BYTES)
        except ConfigError as error:
            problem = error
    return [] if problem is None else [problem]


def _check_executable(file: Path, key: str) -> list[ConfigError]:
    problem = _regular_file(file, key)
    if problem is None and not os.access(file, os.X_OK):
        problem = ConfigError(key, "is not executable", value=str(file))
    return [] if problem is None else [problem]


def _check_secret(file: Path, key: str, *, password: bool) -> list[ConfigError]:
    try:
        if password:
            read_password(file, key=key)
        else:
            read_secret(file, key=key)
    except ConfigError as error:
        return [error]
    return []


def check_files(config: Config) -> list[ConfigError]:
    """Mistakes in the files the configuration names: missing, unreadable, not a file, a
    secret of the wrong shape. A missing CA is not one (kubeadm writes it after the daemon
    starts): `host_warnings` reports it."""
    apiserver = config.apiserver
    problems: list[ConfigError] = []
    if not _missing(apiserver.ca_file):
        problems += _check_readable(apiserver.ca_file, "apiserver.ca_file")
    if apiserver.client_cert_file is not None:
        problems += _check_readable(apiserver.client_cert_file, "apiserver.client_cert_file")
    if apiserver.client_key_file is not None:
        problems += _check_readable(apiserver.client_key_file, "apiserver.client_key_file")
    if apiserver.token_file is not None:
        problems += _check_secret(apiserver.token_file, "apiserver.token_file", password=False)
    for index, neighbor in enumerate(config.bgp.neighbors):
        if neighbor.password_file is not None:
            key = f"bgp.neighbors[{index}].password_file"
            problems += _check_secret(neighbor.password_file, key, password=True)
    problems += _check_executable(config.exabgp.binary, "exabgp.binary")
    return problems
