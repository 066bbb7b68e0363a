"""The daemon's log lines: key=value fields in text, journald's form, one JSON object a line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from announcer.logs import LogFormat, configure

log = logging.getLogger("announcer.test")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger("announcer")
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    for handler in set(root.handlers) - set(handlers):
        root.removeHandler(handler)
    root.setLevel(level)


def transition() -> None:
    log.info(
        "health down -> rising (ok)",
        extra={"event": "transition", "old": "down", "new": "rising", "reason": "http 500: etcd"},
    )


def test_text_lines_carry_the_fields_as_key_value(stream: io.StringIO) -> None:
    configure(LogFormat.TEXT, stream=stream, environ={})
    transition()
    line = stream.getvalue().rstrip("\n")
    assert line.endswith(
        " INFO announcer.test: health down -> rising (ok) event=transition old=down new=rising "
        'reason="http 500: etcd"'
    )
    assert line[:4].isdigit()  # a timestamp first, outside journald


def test_under_journald_no_timestamp_but_a_priority(stream: io.StringIO) -> None:
    configure(LogFormat.TEXT, stream=stream, environ={"JOURNAL_STREAM": "8:1234"})
    log.warning("exabgp exited", extra={"exabgp_pid": 42})
    assert stream.getvalue() == "<4>announcer.test: exabgp exited exabgp_pid=42\n"


def test_json_is_one_object_a_line(stream: io.StringIO) -> None:
    configure(LogFormat.JSON, stream=stream, environ={})
    transition()
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"event": "failed"})
    first, second = stream.getvalue().splitlines()
    entry = json.loads(first)
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "info",
        "logger": "announcer.test",
        "message": "health down -> rising (ok)",
        "event": "transition",
        "old": "down",
        "new": "rising",
        "reason": "http 500: etcd",
    }
    failure = json.loads(second)
    assert failure["event"] == "failed"
    assert "ValueError: boom" in failure["exception"]


def test_debug_lines_only_at_debug_level(stream: io.StringIO) -> None:
    configure(LogFormat.TEXT, stream=stream, environ={})
    log.debug("probe: ok")
    assert stream.getvalue() == ""
    configure(LogFormat.TEXT, level=logging.DEBUG, stream=stream, environ={})
    log.debug("probe: ok")
    assert "probe: ok" in stream.getvalue()


def test_values_that_need_it_are_quoted(stream: io.StringIO) -> None:
    configure(LogFormat.TEXT, stream=stream, environ={"JOURNAL_STREAM": "1:1"})
    log.info("x", extra={"empty": "", "quote": 'a"b', "plain": "198.51.100.10/32"})
    assert (
        stream.getvalue() == '<6>announcer.test: x empty="" quote="a\\"b" plain=198.51.100.10/32\n'
    )
