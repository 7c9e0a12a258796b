"""A private authoritative DNS server (NSD) on a loopback port, for tests and benchmarks.

:class:`DnsServer` writes ``nsd.conf`` and one zone file per zone under its own
directory, starts ``nsd -d`` (foreground, no privilege drop, no chroot, no control
socket, no database) on ``127.0.0.1:PORT`` and waits until every zone answers its SOA.
Point a resolver straight at it: names outside its zones get REFUSED, which our client
reports as a server failure (the ``*_TEMPFAIL`` path).

:class:`BlackHole` is a UDP socket that swallows queries and never answers: a resolver
pointed at it times out, for the timeout tests.

NSD is Debian's ``nsd`` package (``apt-get install -y nsd``); :func:`find_nsd` says
whether it is there so tests can skip with a reason.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

NSD_PATHS = ("/usr/sbin/nsd", "/usr/local/sbin/nsd")
SOA_TEMPLATE = ("$TTL {ttl}\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 900 604800 {neg}\n"
                "@ IN NS ns.{zone}.\n")
ROOT = "."
"""The root zone's name for :class:`DnsServer`: a server holding an empty root zone
answers NXDOMAIN for every name outside its other zones, like a resolver of a network
where nothing resolves, but at once and without losing queries (for benchmarks)."""


def find_nsd() -> str | None:
    """The nsd binary, or None when the package is not installed."""
    found = shutil.which("nsd")
    if found:
        return found
    return next((p for p in NSD_PATHS if Path(p).exists()), None)


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port for UDP and TCP")


def zone_text(zone: str, records: str, ttl: int = 300, negative_ttl: int = 60) -> str:
    """A zone file: SOA and NS for ``zone``, then ``records`` (relative names allowed)."""
    base = zone.rstrip(".")
    return (f"$ORIGIN {base}.\n"
            + SOA_TEMPLATE.format(ttl=ttl, zone=base or "root", neg=negative_ttl)
            + records.strip() + "\n")


class DnsServer:
    """NSD serving ``zones`` (name -> zone file text) on 127.0.0.1:``port``."""

    def __init__(self, zones: Mapping[str, str], base: Path | None = None,
                 port: int | None = None) -> None:
        self.zones = {name.rstrip(".").lower(): text for name, text in zones.items()}
        self._own_base = base is None
        self.base = Path(base or tempfile.mkdtemp(prefix="scanner-nsd-"))
        self.port = port or free_udp_tcp_port()
        self.address = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    @property
    def resolver(self) -> str:
        """The ``resolvers`` entry that points at this server."""
        return f"{self.address}:{self.port}"

    def write_config(self) -> Path:
        """Write nsd.conf and the zone files (``start`` does this); returns nsd.conf."""
        self.base.mkdir(parents=True, exist_ok=True)
        lines = [
            "server:",
            f'  ip-address: {self.address}@{self.port}',
            f"  port: {self.port}",
            '  username: ""',
            '  chroot: ""',
            f'  zonesdir: "{self.base}"',
            f'  pidfile: "{self.base}/nsd.pid"',
            '  database: ""',
            f'  xfrdfile: "{self.base}/xfrd.state"',
            f'  xfrdir: "{self.base}"',
            f'  zonelistfile: "{self.base}/zone.list"',
            f'  logfile: "{self.base}/nsd.log"',
            "  server-count: 1",
            "  verbosity: 1",
            "  do-ip6: no",
            "  hide-version: yes",
            "  round-robin: no",
            # no response rate limiting: NSD drops or truncates answers beyond 200 a
            # second per kind by default, which no local caching resolver does
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
            "remote-control:",
            "  control-enable: no",
        ]
        for name, text in self.zones.items():
            file = f"{name or 'root'}.zone"
            (self.base / file).write_text(text, encoding="utf-8")
            lines += ["zone:", f'  name: "{name or ROOT}"', f'  zonefile: "{file}"']
        conf = self.base / "nsd.conf"
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        binary = find_nsd()
        if binary is None:
            raise FileNotFoundError("nsd is not installed (apt-get install -y nsd)")
        conf = self.write_config()
        began = time.monotonic()
        out = open(self.base / "nsd.out", "wb")  # noqa: SIM115 - owned by the process
        self._proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        try:
            self._wait_ready(began + timeout)
        except Exception:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _wait_ready(self, until: float) -> None:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        pending = set(self.zones)
        while pending:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"nsd exited with {self._proc.returncode}: {self.log()}")
            if time.monotonic() > until:
                raise RuntimeError(f"nsd did not serve {sorted(pending)} in time: {self.log()}")
            for zone in sorted(pending):
                query = dns.message.make_query(zone + ".", "SOA")
                try:
                    reply = dns.query.udp(query, self.address, port=self.port, timeout=0.2)
                except (OSError, dns.exception.Timeout):
                    continue
                if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                    pending.discard(zone)
            if pending:
                time.sleep(0.05)

    def log(self) -> str:
        """nsd's log and console output (for failure messages)."""
        texts = []
        for name in ("nsd.log", "nsd.out"):
            with contextlib.suppress(OSError):
                texts.append((self.base / name).read_text("utf-8", "replace"))
        return "\n".join(texts)[-4000:]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class BlackHole:
    """A bound UDP port on 127.0.0.1 that never answers (queries to it time out)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DNS_CHECKS = ("auth", "dnsbl", "uribl")
"""The checks that take a ``dns`` table."""


def nxdomain_server() -> DnsServer:
    """An NSD (not started) holding only an empty root zone: every name is NXDOMAIN at
    once. The benchmarks use it to measure the DNS checks' own work without a network."""
    return DnsServer({ROOT: zone_text(ROOT, "")})


def dns_checks_toml(resolver: str) -> str:
    """Configuration text pointing every DNS-using check at ``resolver``."""
    return "".join(f'\n[checks.settings.{check}.dns]\nresolvers = ["{resolver}"]\n'
                   for check in DNS_CHECKS)
