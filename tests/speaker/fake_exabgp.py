#!/usr/bin/python3 -I
"""A stand-in for `exabgp server CONF`, for the speaker's tests: it runs the `process` of CONF
the way ExaBGP does (stdin/stdout pipes, its own process group) and answers commands.

Commands (from the relay):
  fake exit N                  exit with code N at once, without an acknowledgement
  fake silent                  no acknowledgement
  fake session PEER STATE      emit a real-looking `state` event, then `done`
  anything with `bogus`        `error`
  anything else                `done`
SIGTERM: send ExaBGP's shutdown notification, stop the relay, exit 0 (as ExaBGP does).
With `exabgp.fake.mode=crash` in the environment it exits 1 at once; with `stubborn` it
ignores SIGTERM.
Standard library only: it runs as an unprivileged user with `-I`.
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path


def state_event(peer: str, state: str) -> str:
    neighbor = {"address": {"local": "192.0.2.2", "peer": peer}, "state": state}
    if state == "down":
        neighbor["reason"] = "closing connection"
    return json.dumps({"exabgp": "5.0.0", "type": "state", "neighbor": neighbor})


def answer(command: str) -> str | None:
    words = command.split()
    if words[:2] == ["fake", "exit"]:
        sys.stderr.write(f"fake exabgp: exiting with {words[2]}\n")
        sys.stderr.flush()
        os._exit(int(words[2]))
    if words[:2] == ["fake", "silent"]:
        return None
    if words[:2] == ["fake", "session"]:
        return state_event(words[2], words[3]) + "\ndone"
    return "error" if "bogus" in command else "done"


def main() -> None:
    mode = os.environ.get("exabgp.fake.mode")  # noqa: SIM112 - ExaBGP's spelling
    if mode == "crash":
        sys.stderr.write("fake exabgp: crashing\n")
        sys.exit(1)
    text = Path(sys.argv[2]).read_text()
    run = re.search(r"^\s*run (.*);$", text, re.MULTILINE)
    assert run is not None
    relay = subprocess.Popen(
        run[1].split(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=os.setpgrp
    )
    assert relay.stdin is not None and relay.stdout is not None
    to_relay = relay.stdin

    def shutdown(signum: int, frame: object) -> None:
        # Closing the relay's stdin (rather than ExaBGP's terminate after 0.1 s) lets it pass
        # the notification on before it exits: the tests need that order to be certain.
        # Straight to the descriptor: the handler may interrupt the loop's own flush of
        # `to_relay`, and a buffered writer refuses a reentrant call.
        os.write(to_relay.fileno(), b'{ "type": "notification", "notification": "shutdown" }\n')
        os.close(to_relay.fileno())
        relay.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else shutdown)
    sys.stderr.write(f"fake exabgp: started relay {relay.pid}\n")
    sys.stderr.flush()
    for line in relay.stdout:
        reply = answer(line.decode().strip())
        if reply is not None:
            to_relay.write(reply.encode() + b"\n")
            to_relay.flush()
    sys.stderr.write("fake exabgp: the relay went away\n")
    sys.exit(1)


if __name__ == "__main__":
    main()
