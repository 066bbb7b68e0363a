"""The probe as the daemon builds it: the TLS context it shares with the crash watch follows
the files (no network: a missing CA is a failed probe before any connection)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import trustme

from announcer.checker import ApiserverCheck
from announcer.config import ApiserverConfig


def test_the_tls_context_exists_once_the_files_do_and_is_rebuilt_when_they_change(
    tmp_path: Path,
) -> None:
    ca_file = tmp_path / "ca.crt"
    # Nothing listens on port 1 of loopback: every probe fails fast, refused.
    config = ApiserverConfig(url="https://127.0.0.1:1", ca_file=ca_file)

    async def scenario() -> None:
        check = ApiserverCheck(config, clock=time.monotonic)
        try:
            result = await check.probe()
            assert (result.ok, result.reason) == (False, f"no CA file {ca_file} (yet)")
            assert check.ssl_context is None
            trustme.CA().cert_pem.write_to_path(str(ca_file))
            await check.probe()
            first = check.ssl_context
            assert first is not None
            await check.probe()
            assert check.ssl_context is first  # unchanged files: the same client
            # A new CA put in place atomically, as kubeadm does: another inode.
            trustme.CA().cert_pem.write_to_path(str(tmp_path / "new.crt"))
            (tmp_path / "new.crt").replace(ca_file)
            await check.probe()
            assert check.ssl_context is not None
            assert check.ssl_context is not first
        finally:
            await check.aclose()
        assert check.ssl_context is None

    asyncio.run(scenario())
