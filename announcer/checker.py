"""The apiserver probe as the daemon runs it: built from the configuration once its files are
there, and built again when they change.

kubeadm writes the cluster CA after this daemon starts, and the kubelet's client certificate
and a token file rotate while it runs. So the files are looked at (a `stat` each, cheap)
before every probe: a missing or unloadable file is a failed probe with a reason, and a file
that changed (or a reloaded configuration) gets a fresh `httpx.AsyncClient` and `Prober`.
Between changes the one client lives on, as the probe's rules want.

Must not: retry, sleep or decide health; it answers every `probe()` with one `ProbeResult`.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx

from announcer.config import ApiserverConfig, ConfigError, read_secret
from announcer.health import ProbeResult
from announcer.probe import Prober, client_with, tls_context

__all__ = ["ApiserverCheck"]

log = logging.getLogger(__name__)

FileState = tuple[int, int, int] | None  # inode, size, mtime (ns); None: missing


def _file_state(path: Path | None) -> FileState:
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class ApiserverCheck:
    """`await check.probe()` -> ProbeResult, whatever state the files are in."""

    def __init__(self, config: ApiserverConfig, *, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._prober: Prober | None = None
        self._context: ssl.SSLContext | None = None
        self._built_for: tuple[ApiserverConfig, tuple[FileState, ...]] | None = None
        self._problem: str | None = None

    def configure(self, config: ApiserverConfig) -> None:
        """Use `config` from the next probe on (the client is rebuilt if it changed)."""
        self._config = config

    async def probe(self) -> ProbeResult:
        prober = await self._current()
        if prober is None:
            at = self._clock()
            reason = self._problem or "no probe"
            return ProbeResult(ok=False, status=None, reason=reason, latency=0.0, at=at)
        return await prober.probe()

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of the current client (for `CrashWatch`); None until the files
        are usable. A new object whenever the client is rebuilt."""
        return self._context

    async def aclose(self) -> None:
        client, self._client, self._prober, self._built_for = self._client, None, None, None
        self._context = None
        if client is not None:
            await client.aclose()

    def _files(self) -> tuple[Path | None, ...]:
        c = self._config
        return (c.ca_file, c.client_cert_file, c.client_key_file, c.token_file)

    async def _current(self) -> Prober | None:
        key = (self._config, tuple(_file_state(path) for path in self._files()))
        if self._built_for == key:
            return self._prober
        await self.aclose()
        self._built_for = key
        try:
            self._client, self._prober = self._build()
        except (OSError, ssl.SSLError, ConfigError) as exc:
            problem = _describe(exc, self._config)
            if problem != self._problem:
                log.warning(
                    "cannot probe the apiserver: %s", problem, extra={"event": "probe-setup"}
                )
            self._problem = problem
            return None
        if self._problem is not None:
            log.info("probe files usable again", extra={"event": "probe-setup"})
        self._problem = None
        return self._prober

    def _build(self) -> tuple[httpx.AsyncClient, Prober]:
        c = self._config
        token = (
            None if c.token_file is None else read_secret(c.token_file, key="apiserver.token_file")
        )
        context = tls_context(
            ca_file=c.ca_file,
            client_cert_file=c.client_cert_file,
            client_key_file=c.client_key_file,
        )
        client = client_with(context)
        prober = Prober(
            client,
            base_url=c.url,
            server_name=c.server_name,
            timeout=c.timeout,
            token=token,
            clock=self._clock,
        )
        self._context = context
        return client, prober


def _describe(exc: Exception, config: ApiserverConfig) -> str:
    if isinstance(exc, ConfigError):
        return exc.message
    if isinstance(exc, FileNotFoundError) and not config.ca_file.exists():
        return f"no CA file {config.ca_file} (yet)"
    if isinstance(exc, OSError) and exc.filename:
        return f"{os.fspath(exc.filename)}: {exc.strerror or exc}"
    return f"cannot load the TLS files: {exc}"
