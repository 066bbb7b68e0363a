"""A fake kube-apiserver for the lab and the tests: health endpoints, /version and the
shutdown sequence of the real one (see `reference/apiserver-health.md`), over real TLS, with
states switched at run time through a unix control socket.

Modules: `states` (the vocabulary), `checks` (health bodies), `http11` (wire format),
`routes` (what to answer), `credentials` (TLS and identities), `listen` (addresses),
`connection` and `server` (the asyncio server), `control` (the control socket),
`__main__` (the process).
"""

from __future__ import annotations

from announcer.lab.apiserver.listen import ListenAddress
from announcer.lab.apiserver.server import FakeApiserver
from announcer.lab.apiserver.states import Options, State

__all__ = ["FakeApiserver", "ListenAddress", "Options", "State"]
