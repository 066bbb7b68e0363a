"""An ExaBGP that cannot be executed is a named, final failure, not an endless retry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from announcer.config import Config
from announcer.speaker import Backoff, Speaker, SpeakerEvent
from announcer.speaker.errors import ExabgpCannotStart
from announcer.speaker.session import Failed

DEADLINE = 10.0


def test_identical_start_failures_end_the_speaker_naming_the_cause(
    fake_config: Callable[..., Config], fake_exabgp: Path
) -> None:
    fake_exabgp.chmod(0o644)  # as an ExaBGP its user cannot execute: EACCES at every start
    events: asyncio.Queue[SpeakerEvent] = asyncio.Queue()

    async def scenario() -> Failed:
        backoff = Backoff(initial=0.01, maximum=0.02, give_up=3)
        speaker = Speaker(fake_config(), on_event=events.put_nowait, backoff=backoff)
        await speaker.start()
        try:
            async with asyncio.timeout(DEADLINE):
                while not isinstance(event := await events.get(), Failed):
                    pass
            assert speaker.restarts == 2  # three starts, then no more
            return event
        finally:
            await speaker.stop()

    failed = asyncio.run(scenario())
    assert isinstance(failed.error, ExabgpCannotStart)
    assert str(failed.error) == (
        f"exabgp cannot be started (3 times in a row): [Errno 13] Permission denied: "
        f"'{fake_exabgp}'"
    )
