"""Configuration errors, and the bounded description of a bad value they carry.

```
ValueError
 └── ConfigError          one mistake: `bgp.neighbors[1].peer_as: 'abc' is not an AS number`
      └── ConfigErrors    every mistake found in one document (what parse and load raise)
```

Every error names the key path; errors about a value also show it. Values come from untrusted
documents (huge integers, deep or self-referencing lists, control characters), so they are
described with a bounded `reprlib`, never `repr`.

Must not: know about YAML, files or the command line.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from typing import Final

_NO_VALUE: Final = object()
# Python refuses to turn integers above 4300 digits into text; stay far below that.
_MAX_INT_BITS: Final = 256


class _BoundedRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 80
        self.maxother = 80
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _MAX_INT_BITS:
            return f"<{'-' if x < 0 else ''}integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr1(self, x: object, level: int) -> str:
        # Spell YAML's scalars the way the operator wrote them.
        if x is None:
            return "null"
        if isinstance(x, bool):
            return "true" if x else "false"
        return super().repr1(x, level)


_REPR: Final = _BoundedRepr()


def describe(value: object) -> str:
    """A short, single-line, safe rendering of a value from a configuration document."""
    return _REPR.repr(value)


class ConfigError(ValueError):
    """One configuration mistake. `path` is the key path, e.g. `bgp.neighbors[1].peer_as`."""

    def __init__(self, path: str, reason: str, *, value: object = _NO_VALUE) -> None:
        self.path = path
        self.reason = reason
        if value is _NO_VALUE:
            self.message = f"{path}: {reason}"
        else:
            self.message = f"{path}: {describe(value)} {reason}"
        super().__init__(self.message)

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        """The single mistakes this error stands for (itself, for a plain ConfigError)."""
        return (self,)


class ConfigErrors(ConfigError):
    """Every mistake found in one document, in document order; `path` is the first one's."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        flat = tuple(single for error in errors for single in error.errors)
        if not flat:
            raise ValueError("ConfigErrors needs at least one error")
        self._errors = flat
        self.path = flat[0].path
        self.reason = flat[0].reason
        self.message = "\n".join(error.message for error in flat)
        ValueError.__init__(self, self.message)

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        return self._errors
