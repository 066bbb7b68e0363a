"""Reading untrusted YAML values: one converter per kind of scalar, and `Section`, a mapping
being read that records every mistake and the keys it did not recognise.

A converter takes `(value, path)` and returns a typed value or raises one `ConfigError`; it
never lets another exception out, whatever the document holds (bools are not integers here,
NaN is not a number, text never carries control characters).

Must not: know which keys exist (that is `parse`), read files or look at the host.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Final, TypeVar

from announcer.config.errors import ConfigError, ConfigErrors, describe
from announcer.config.model import IPAddress

T = TypeVar("T")
Convert = Callable[[object, str], T]

_MAX_TEXT: Final = 4096
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def key_path(parent: str, key: object) -> str:
    """`parent.key` for plain keys, `parent['odd key']` for anything else."""
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{describe(key)}]"


def _unsafe_char(text: str) -> str | None:
    # Text ends up in ExaBGP's line-based API and config: a line break (or anything that is
    # not a visible character) could smuggle in a second command.
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            return char
    return None


def text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, "is not a string", value=value)
    if not value:
        raise ConfigError(path, "is empty", value=value)
    if len(value) > _MAX_TEXT:
        raise ConfigError(path, f"is longer than {_MAX_TEXT} characters", value=value)
    char = _unsafe_char(value)
    if char is not None:
        raise ConfigError(path, f"contains the control character {char!r}", value=value)
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, "is not true or false", value=value)
    return value


def integer(value: object, path: str, *, lo: int, hi: int) -> int:
    # bool is an int in Python, but `hold_time: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(path, f"is not an integer in {lo}..{hi}", value=value)
    return value


def integer_in(lo: int, hi: int) -> Convert[int]:
    return lambda value, path: integer(value, path, lo=lo, hi=hi)


def seconds(value: object, path: str, *, lo: float, hi: float, lo_open: bool = False) -> float:
    wanted = f"{'above' if lo_open else 'from'} {lo:g} {'up ' if lo_open else ''}to {hi:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"is not a number of seconds {wanted}", value=value)
    number = float(value) if isinstance(value, float) or abs(value) < 2**63 else math.inf
    if not math.isfinite(number) or number > hi or number < lo or (lo_open and number == lo):
        raise ConfigError(path, f"is not a number of seconds {wanted}", value=value)
    return number


def seconds_in(lo: float, hi: float, *, lo_open: bool = False) -> Convert[float]:
    return lambda value, path: seconds(value, path, lo=lo, hi=hi, lo_open=lo_open)


def absolute_path(value: object, path: str) -> Path:
    result = Path(text(value, path))
    if not result.is_absolute():
        raise ConfigError(path, "is not an absolute path", value=value)
    return result


def address(value: object, path: str) -> IPAddress:
    """A unicast IP address literal (no zone index: it would reach ExaBGP verbatim)."""
    raw = text(value, path)
    try:
        result = ip_address(raw)
    except ValueError:
        raise ConfigError(path, "is not an IP address", value=value) from None
    if isinstance(result, IPv6Address) and result.scope_id is not None:
        raise ConfigError(path, "has a zone index; use a global address", value=value)
    if result.is_unspecified or result.is_multicast:
        raise ConfigError(path, "is not a unicast address", value=value)
    return result


def ipv4_address(value: object, path: str) -> IPv4Address:
    result = address(value, path)
    if not isinstance(result, IPv4Address):
        raise ConfigError(path, "is not an IPv4 address", value=value)
    return result


def ipv6_address(value: object, path: str) -> IPv6Address:
    result = address(value, path)
    if not isinstance(result, IPv6Address):
        raise ConfigError(path, "is not an IPv6 address", value=value)
    return result


_ASDOT: Final = re.compile(r"([0-9]{1,5})\.([0-9]{1,5})")
_ASPLAIN: Final = re.compile(r"[0-9]{1,10}")


def as_number(value: object, path: str) -> int:
    """asplain (`65100`, `4200000000`) or asdot as a quoted string (`"1.10"` = 65546)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _ASPLAIN.fullmatch(value):
        number = int(value)
    elif isinstance(value, str) and (match := _ASDOT.fullmatch(value)):
        high, low = int(match[1]), int(match[2])
        if high <= 0xFFFF and low <= 0xFFFF:
            number = high << 16 | low
    if isinstance(value, float):
        raise ConfigError(path, 'is not an AS number (quote asdot numbers: "1.10")', value=value)
    if number is None or not 1 <= number <= 0xFFFFFFFF:
        raise ConfigError(path, "is not an AS number", value=value)
    return number


def optional(convert: Convert[T]) -> Convert[T | None]:
    """`convert`, except that null stays None."""

    def convert_optional(value: object, path: str) -> T | None:
        return None if value is None else convert(value, path)

    return convert_optional


class Section:
    """A mapping being read. Errors go to the shared list; keys whose value was rejected are
    remembered in `bad`, so that rules relating several keys skip them instead of reporting
    a second, misleading error. Call `finish()` to report unknown keys.
    """

    def __init__(self, data: object, path: str, errors: list[ConfigError]) -> None:
        self.path = path
        self.bad: set[str] = set()
        self._errors = errors
        self._used: set[str] = set()
        self._data: dict[object, object] = {}
        if isinstance(data, dict):
            self._data = data
        elif data is not None:  # a section with every key commented out is null: all defaults
            errors.append(ConfigError(path, "is not a mapping", value=data))

    def at(self, key: str) -> str:
        return key_path(self.path, key)

    def has(self, key: str) -> bool:
        return key in self._data

    def take(self, key: str, convert: Convert[T], default: T) -> T:
        """The converted value of `key`, or `default` when absent or wrong (error recorded)."""
        self._used.add(key)
        if key not in self._data:
            return default
        try:
            return convert(self._data[key], self.at(key))
        except ConfigError as error:
            self.reject(key, error)
            return default

    def require(self, key: str, convert: Convert[T], placeholder: T) -> T:
        """Like `take`, but a missing key is an error; `placeholder` is never returned in a
        Config because the parse then fails."""
        if key not in self._data:
            self._used.add(key)
            self.reject(key, ConfigError(self.at(key), "is required"))
            return placeholder
        return self.take(key, convert, placeholder)

    def raw(self, key: str) -> object:
        self._used.add(key)
        return self._data.get(key)

    def reject(self, key: str, error: ConfigError) -> None:
        self.bad.add(key)
        self._errors.append(error)

    def fine(self, *keys: str) -> bool:
        return not self.bad.intersection(keys)

    def finish(self) -> None:
        expected = ", ".join(sorted(self._used))
        for key in self._data:
            if key not in self._used:
                where = key_path(self.path, key)
                self._errors.append(ConfigError(where, f"unknown key (expected: {expected})"))


def items(value: object, path: str) -> list[tuple[str, object]]:
    """The elements of a YAML sequence with their paths."""
    if not isinstance(value, list):
        raise ConfigError(path, "is not a list", value=value)
    return [(f"{path}[{index}]", item) for index, item in enumerate(value)]


def each_item(
    value: object, path: str, convert: Convert[T], *, repeated: str = "repeats {first}"
) -> list[T]:
    """Every element of a YAML sequence, converted and without repeats; `ConfigErrors`
    naming every bad or repeated element (`repeated` may name `{first}`, its first path)."""
    converted: list[T] = []
    first: dict[T, str] = {}
    problems: list[ConfigError] = []
    for item_path, item in items(value, path):
        try:
            result = convert(item, item_path)
        except ConfigError as error:
            problems.append(error)
            continue
        if result in first:
            reason = repeated.format(first=first[result])
            problems.append(ConfigError(item_path, reason, value=item))
            continue
        first[result] = item_path
        converted.append(result)
    if problems:
        raise ConfigErrors(problems)
    return converted
