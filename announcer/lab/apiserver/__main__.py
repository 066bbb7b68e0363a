"""`python -m announcer.lab.apiserver`: run one fake kube-apiserver until SIGTERM/SIGINT.

Owns the command line and the process's signal handling. It must not implement behaviour
of the server (that is `server`) nor of its control socket (that is `control`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click

from announcer.lab.apiserver.control import serve_control
from announcer.lab.apiserver.credentials import load_tokens, server_tls_context
from announcer.lab.apiserver.listen import DEFAULT_LISTEN, ListenAddress
from announcer.lab.apiserver.server import FakeApiserver
from announcer.lab.apiserver.states import State

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _listen_addresses(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[ListenAddress, ...]:
    try:
        return tuple(ListenAddress.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command()
@click.option("--node", required=True, help="Node name, reported by /version and /lab/hold.")
@click.option("--cert", required=True, type=_FILE, help="Serving certificate (PEM).")
@click.option("--key", required=True, type=_FILE, help="Serving key (PEM).")
@click.option("--client-ca", required=True, type=_FILE, help="CA for client certificates.")
@click.option(
    "--control",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Unix socket for run-time control.",
)
@click.option(
    "--listen",
    "listen",
    multiple=True,
    metavar="HOST:PORT",
    default=[DEFAULT_LISTEN],
    callback=_listen_addresses,
    show_default=True,
    help="Address to listen on (repeatable).",
)
@click.option(
    "--state",
    type=click.Choice([s.value for s in State]),
    default=State.READY.value,
    show_default=True,
    help="State to start in.",
)
@click.option("--token-file", type=_FILE, default=None, help="Static bearer tokens (CSV).")
def main(
    *,
    node: str,
    cert: Path,
    key: Path,
    client_ca: Path,
    control: Path,
    listen: tuple[ListenAddress, ...],
    state: str,
    token_file: Path | None,
) -> None:
    """Run a fake kube-apiserver that answers health probes like the real one."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    apiserver = FakeApiserver(
        node=node,
        tls=server_tls_context(cert=cert, key=key, client_ca=client_ca),
        listen=listen,
        state=State(state),
        tokens=load_tokens(token_file) if token_file else None,
    )
    try:
        asyncio.run(_run(apiserver, control))
    except OSError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from exc


async def _run(apiserver: FakeApiserver, control: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with apiserver:
        control_server = await serve_control(control, apiserver)
        try:
            await stop.wait()
        finally:
            control_server.close()
            await asyncio.to_thread(control.unlink, missing_ok=True)
    logging.getLogger("announcer.lab.apiserver").info("%s: exiting", apiserver.node)


if __name__ == "__main__":
    main()
