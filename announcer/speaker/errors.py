"""The speaker's exceptions.

```
Exception
 └── SpeakerError       something about ExaBGP or its relay went wrong
      ├── RenderError   our configuration cannot be turned into ExaBGP's (bad password file,
      │                 unusable path, a setting announcer must own)
      ├── ChannelClosed the relay connection is gone, or ExaBGP said it is shutting down
      ├── ExabgpCannotStart  ExaBGP failed to start the same way several times in a row
      └── EventError    a line from ExaBGP that is no event we understand (logged, skipped)
```
`Channel.send` also raises the builtin `TimeoutError` when no acknowledgement arrives in time.

Must not: import anything; these are leaves every module of the package may raise.
"""

from __future__ import annotations


class SpeakerError(Exception):
    """Base of the speaker's errors."""


class RenderError(SpeakerError):
    """The configuration cannot be rendered into a working ExaBGP configuration."""


class ChannelClosed(SpeakerError):
    """No command can be sent: the relay disconnected or ExaBGP is shutting down."""


class ExabgpCannotStart(SpeakerError):
    """Starting ExaBGP failed with the same error several times in a row (an unreadable or
    non-executable binary, a missing user): retrying will not help, and the message says why."""


class EventError(SpeakerError):
    """A line from ExaBGP that is neither an acknowledgement nor an event we understand."""
