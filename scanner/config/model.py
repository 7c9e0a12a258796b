"""The configuration schema: frozen dataclasses with shipped defaults and documentation.

Every key of the TOML file maps to a field here. ``scanner config show`` prints the
effective values; the README's configuration reference follows this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanner.config.policy import PolicyConfig, PolicyOverride
from scanner.config.schema import opt
from scanner.quarantine.config import QuarantineConfig
from scanner.sqllog.config import SqlLogConfig

PROTOCOLS = ("smtp", "lmtp")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """One listening socket; the policy bank names the per-listener policy overlay."""

    address: str = opt("127.0.0.1", "IP address to listen on (loopback unless you know why)")
    port: int = opt(10024, "TCP port", min=1, max=65535)
    path: str = opt("", "Unix socket to listen on instead of address and port (absolute "
                    "path; Postfix reaches it as lmtp nexthop unix:PATH); empty = TCP")
    socket_mode: int = opt(0o660, "permissions of the socket at path (432 = 0o660; TOML "
                           "takes 0o660)", min=0, max=0o777)
    socket_group: str = opt("", "group (name or number) given to the socket at path, e.g. "
                            "postfix; empty = unchanged")
    protocol: str = opt("smtp", "smtp (ESMTP) or lmtp (one reply per recipient)",
                        choices=PROTOCOLS)
    policy_bank: str = opt("", "policy bank for mail received here: ORIGINATING (built in) or "
                                  "the NAME of a [policy_banks.NAME] table (case-sensitive)")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Process model, limits and timeouts of ``scanner serve``."""

    workers: int = opt(0, "pre-forked worker processes; 0 = one per CPU core", min=0, max=64)
    concurrency: int = opt(
        20, "SMTP/LMTP connections served at once (amavis's $max_servers; Postfix's maxproc "
        "for the filter); each worker keeps at most its share open, a connection beyond "
        "the limit waits in the listen queue", min=1, max=1000)
    hostname: str = opt("", "name in the greeting, Received and X-Virus-Scanned headers, "
                        "Authentication-Results and log lines; empty = the host name, "
                        "fully qualified if the resolver knows it so (not localhost)",
                        text="hostname")
    message_timeout: float = opt(
        600.0, "seconds for scanning and reinjecting one message; Postfix's "
        "*_data_done_timeout must be larger", min=5.0)
    idle_timeout: float = opt(300.0, "seconds an SMTP connection is kept while the client "
                              "sends nothing (also within DATA); not while a message is "
                              "scanned and reinjected (message_timeout)", min=1.0)
    max_message_size: int = opt(104857600, "largest message accepted, bytes (SIZE)", min=1024)
    max_line_length: int = opt(
        65536, "longest line accepted in commands and DATA, bytes; longer -> 500 5.5.2",
        min=1002)
    inline_cpu_max_size: int = opt(
        32768, "messages up to this many bytes are analysed in the worker's event loop "
        "(cheaper than a thread hand-over), larger ones in its thread pool; 0 = always "
        "the pool", min=0)
    xforward_hosts: tuple[str, ...] = opt(
        ["127.0.0.0/8", "::1"], "networks allowed to send XFORWARD")
    log_level: str = opt("info", "debug, info, warning or error; debug also logs what the "
                         "decoder libraries say about each file", choices=LOG_LEVELS)
    log_file: str = opt("", "append log lines to this file; empty = standard error")
    syslog: bool = opt(False, "also log to syslog (facility mail, ident scanner)")
    pid_file: str = opt("", "write the master's PID here, locked while it runs (a second "
                        "scanner serve with the same file stops at start); removed at exit")
    status_file: str = opt(
        "", "file holding the workers' live state and counters, read by `scanner status` "
        "(like amavisd-nanny's database); empty = kept in memory only (the watchdog works "
        "either way)")
    max_requests: int = opt(
        0, "messages a worker handles before it makes way for a fresh one (amavis's "
        "$max_requests; checked once a second); 0 = never", min=0)
    hang_limit: int = opt(
        2, "a message that stopped a worker this many times (the watchdog killed the "
        "worker while busy with it, or its stage stuck in the thread pool) is answered 451 "
        "at once from then on, without scanning, so Postfix keeps it until it expires "
        "(with a status_file the count survives restarts for 5 days); "
        "0 = scan it every time", min=0)
    watchdog_timeout: float = opt(
        60.0, "seconds a worker's event loop may go without its heartbeat (one a second) "
        "before the master kills and replaces the worker; its open transactions get no "
        "reply, so Postfix retries them. A worker whose thread-pool stage runs longer "
        "than message_timeout plus this retires itself. 0 = off", min=0.0)
    tmp_dir: str = opt("", "private temporary directory root; empty = system default")


@dataclass(frozen=True, slots=True)
class ReinjectConfig:
    """Where scanned mail goes next (Postfix's reinjection listener)."""

    host: str = opt("127.0.0.1", "next hop address")
    port: int = opt(10025, "next hop port", min=1, max=65535)
    protocol: str = opt("smtp", "smtp or lmtp", choices=PROTOCOLS)
    connect_timeout: float = opt(30.0, "seconds to connect to the next hop", min=0.1)
    timeout: float = opt(300.0, "seconds for any one reply of the next hop", min=0.1)
    helo: str = opt("", "name in our EHLO/LHLO; empty = server hostname", text="hostname")
    xforward: bool = opt(True, "pass the client's XFORWARD attributes on when offered")
    chunking: bool = opt(True, "send commands and content in one batch with BDAT (CHUNKING, "
                         "RFC 3030) when the next hop offers it: one round trip instead of "
                         "two")


@dataclass(frozen=True, slots=True)
class DecodeConfig:
    """Unpacking of MIME parts and archives, with amavis's bomb limits (Debian values)."""

    enabled: bool = opt(True, "decode MIME and archives (off: checks see the raw message "
                        "only, so no file is ever banned; serve and config check warn)")
    max_depth: int = opt(14, "deepest nesting decoded (amavis $MAXLEVELS)", min=1, max=100)
    max_parts: int = opt(1500, "most parts per message (amavis $MAXFILES)", min=1)
    min_quota: int = opt(102400, "expansion quota floor, bytes ($MIN_EXPANSION_QUOTA)", min=0)
    min_factor: int = opt(5, "quota is at least this times the message size", min=0)
    max_quota: int = opt(314572800, "quota ceiling for the factor below, bytes", min=0)
    max_factor: int = opt(500, "quota is at most this times the size (up to max_quota)",
                          min=0)
    time_budget: float = opt(30.0, "seconds of decoding per message", min=0.1)
    spool_threshold: int = opt(1048576, "parts larger than this go to a private temp file",
                               min=0)


@dataclass(frozen=True, slots=True)
class ChecksConfig:
    """Which checks run; per-check settings live in [checks.settings.NAME]."""

    enabled: tuple[str, ...] = opt(["*"], "check names to run; '*' = every installed check "
                                   "that is on by default")
    disabled: tuple[str, ...] = opt([], "check names or patterns ('dns*') never to run; "
                                    "each must match an installed check")
    timeout: float = opt(120.0, "seconds one check may take before it counts as failed",
                         min=0.1)
    score_files: tuple[str, ...] = opt(
        [], "site score tables read after the shipped ones (same format as "
        "scanner/data/scores/*.toml): change weights, add symbols of your own lists; read "
        "at start (a restart applies an edit; SIGHUP does not)")
    settings: Mapping[str, Any] = opt({}, "per-check tables, checked by each check")


@dataclass(frozen=True, slots=True)
class NoticesConfig:
    """Texts of admin and recipient notices, quarantine digests and DSNs (README: Notice
    templates)."""

    templates_dir: str = opt(
        "", "directory of site templates, one KIND.txt per notice (admin-virus.txt, "
        "recipient-banned.txt, dsn.txt, digest.txt, ...); a kind without a file there keeps the "
        "shipped text; empty = the shipped texts (scanner/data/notices/); read at start "
        "and again on SIGHUP (a broken file keeps the templates in use)")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one scanner instance."""

    server: ServerConfig = opt(ServerConfig)
    listeners: tuple[ListenerConfig, ...] = opt(
        lambda: (ListenerConfig(),), "listening sockets ([[listeners]] tables)")
    reinject: ReinjectConfig = opt(ReinjectConfig)
    policy: PolicyConfig = opt(PolicyConfig)
    policy_banks: Mapping[str, PolicyOverride] = opt(
        {}, "named partial policies: [policy_banks.ORIGINATING], [policy_banks.MYNETS], "
        "[policy_banks.MYUSERS] (our users' own mail from a local sender)")
    decode: DecodeConfig = opt(DecodeConfig)
    checks: ChecksConfig = opt(ChecksConfig)
    quarantine: QuarantineConfig = opt(QuarantineConfig)
    notices: NoticesConfig = opt(NoticesConfig)
    sql_log: SqlLogConfig = opt(SqlLogConfig)
    source: str = opt("<defaults>", "file this configuration was read from")
