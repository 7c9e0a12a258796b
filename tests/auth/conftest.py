"""Fixtures of the authentication tests: one NSD for the session, keys, check builders.

Every DNS query of these tests goes to the NSD started here on a loopback port; the
tests skip (with the reason) when Debian's ``nsd`` package is not installed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scanner.checks.base import CheckContext, LastGood
from scanner.config import Config, loads
from scanner.config.schema import build
from scanner.dns import DnsClient, DnsSettings
from scanner.testing.dns_server import BlackHole, DnsServer, find_nsd
from tests.auth.zones import all_zones, make_keys


@dataclass(frozen=True)
class Keys:
    """Private key files and their public records (k1: RSA 1024 bits, k2: RSA 2048 bits,
    ed: Ed25519)."""

    files: dict[str, Path]
    records: dict[str, str]


@pytest.fixture(scope="session")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(*make_keys(tmp_path_factory.mktemp("dkim-keys")))


@pytest.fixture(scope="session")
def dns_server(dkim_keys: Keys) -> Iterator[DnsServer]:
    if find_nsd() is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd): no test DNS server")
    server = DnsServer(all_zones(dkim_keys.records))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def black_hole() -> Iterator[BlackHole]:
    with BlackHole() as hole:
        yield hole


@pytest.fixture()
def dns_settings(dns_server: DnsServer) -> DnsSettings:
    return DnsSettings(resolvers=(dns_server.resolver,), timeout=1.0, budget=3.0,
                       cache_size=0)


async def run_inline(func: Any, *args: Any) -> Any:
    return func(*args)


def make_check(cls: type, settings: dict[str, Any], config: Config | None = None,
               last_good: LastGood | None = None) -> Any:
    """A check built like the registry does, from a settings table."""
    config = config or loads("")
    built = build(cls.Settings, settings, f"checks.settings.{cls.name}", config.source)
    return cls(built, CheckContext(config=config, run_cpu=run_inline,
                                   last_good=last_good or LastGood()))


def dns_table(server: DnsServer, **extra: Any) -> dict[str, Any]:
    """The ``dns`` settings table pointing at the test server."""
    return {"resolvers": [server.resolver], "timeout": 1.0, "budget": 3.0,
            "cache_size": 0, **extra}


_SHARE_LOOPBACK = [True]


@pytest.fixture(params=[True, False], ids=["kept-socket", "socket-per-query"])
def both_udp_transports(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run a test over both UDP transports of the DNS client (a kept socket for a
    loopback resolver, scanner.dns.shared_udp, and a socket per query): the clients
    :func:`scripted_client` makes within it use the one of this run."""
    _SHARE_LOOPBACK[0] = request.param
    yield
    _SHARE_LOOPBACK[0] = True


def scripted_client(port: int, timeout: float) -> DnsClient:
    """A DNS client without cache for a scripted resolver on 127.0.0.1:``port``."""
    return DnsClient([("127.0.0.1", port)], timeout, cache_size=0,
                     share_loopback=_SHARE_LOOPBACK[0])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def opendkim_missing() -> str:
    """Why OpenDKIM's opendkim-testmsg cannot run here ('' when it can)."""
    needed = [t for t in ("opendkim-testmsg", "unshare", "ip") if shutil.which(t) is None]
    if needed:
        return f"missing {', '.join(needed)} (apt-get install -y opendkim-tools)"
    if os.geteuid() != 0:
        return "needs root for private network and mount namespaces"
    return ""


def opendkim_verifies(server: DnsServer, raw: bytes, tmp_path: Path
                       ) -> subprocess.CompletedProcess:
    """Run opendkim-testmsg (which only uses /etc/resolv.conf, port 53) inside private
    network and mount namespaces with its own resolv.conf and an NSD on 127.0.0.1:53."""
    inner = DnsServer(server.zones, base=tmp_path / "nsd53", port=53)
    conf = inner.write_config()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    message = tmp_path / "signed.eml"
    message.write_bytes(raw)
    script = f"""
set -e
ip link set lo up
mount --bind {resolv} /etc/resolv.conf
{find_nsd()} -d -c {conf} >/dev/null 2>&1 &
NSD=$!
{sys.executable} - <<'EOF'
import time, dns.message, dns.query
for _ in range(100):
    try:
        dns.query.udp(dns.message.make_query("good.test.", "SOA"), "127.0.0.1", timeout=0.1)
        break
    except Exception:
        time.sleep(0.05)
EOF
set +e
opendkim-testmsg < {message}
RC=$?
kill $NSD
exit $RC
"""
    return subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
