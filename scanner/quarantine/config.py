"""The ``[quarantine]`` configuration section: where held mail is kept and who may release it.

Held messages are stored gzip-compressed below ``directory``; ``index`` names the
database that lists them (SQLite next to the files by default, PostgreSQL when several
filter hosts share one index). ``ampdp_socket`` is the Unix socket that speaks amavis's
AM.PDP protocol, so the stock ``amavisd-release`` client can release mail and
``amavisd-milter`` can have mail scanned before queue.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from string import Formatter

from scanner.config.schema import opt
from scanner.dburl import is_postgresql, redact
from scanner.errors import ConfigError

_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
RELEASE_URL_FIELDS = ("mail_id", "secret_id", "recipient")


@dataclass(frozen=True, slots=True)
class QuarantineConfig:
    """Quarantine storage, its index, release and the AM.PDP socket (see docs/quarantine.md)."""

    directory: str = opt("/var/lib/scanner/quarantine",
                         "directory holding the gzip-compressed quarantined messages")
    subdir_levels: int = opt(1, "subdirectories named after the first characters of the "
                             "mail_id (1: 7/spam-7vykgLjHGVrk.gz, 0: none)", min=0, max=2)
    index: str = opt("sqlite:", "index database: 'sqlite:' (DIRECTORY/index.sqlite), "
                     "'sqlite:/path/file', or 'postgresql://user@host/db' (needs psycopg)")
    ampdp_socket: str = opt("/var/lib/scanner/scanner.sock",
                            "Unix socket for AM.PDP: release requests (amavisd-release) "
                            "and scans for amavisd-milter; empty = off")
    socket_mode: int = opt(0o660, "permissions of the AM.PDP socket (432 = 0o660; TOML "
                           "takes 0o660)", min=0, max=0o777)
    socket_group: str = opt("", "group (name or number) given to the AM.PDP socket; "
                            "empty = unchanged")
    allowed_uids: tuple[int, ...] = opt(
        [0], "user ids allowed to use the AM.PDP socket (checked with SO_PEERCRED); the "
        "user running scanner is always allowed")
    allowed_gids: tuple[int, ...] = opt([], "group ids whose members' processes may use "
                                        "the AM.PDP socket (the peer process's gid or one "
                                        "of its supplementary groups, SO_PEERGROUPS; "
                                        "where the kernel does not give them, a group "
                                        "its user is a member of in /etc/group)")
    ampdp_inet: str = opt(
        "", "HOST:PORT where release requests are served over TCP too (amavis's "
        "AM.PDP-INET policy bank; iRedAdmin and Modoboa's inet mode use 127.0.0.1:9998); "
        "each request must carry the message's secret_id, from a client in "
        "ampdp_inet_networks; scans (amavisd-milter) stay on ampdp_socket; empty = off")
    ampdp_inet_networks: tuple[str, ...] = opt(
        ["127.0.0.0/8", "::1"], "client networks allowed to use ampdp_inet (amavis's "
        "inet_acl)")
    require_secret: bool = opt(False, "AM.PDP release requests must carry the message's "
                               "secret_id (a secret_id that is given is always checked)")
    release_header: str = opt("X-Quarantine-Released",
                              "header prepended to released mail: 'by WHO at DATE, id=ID'")
    requeue_host: str = opt("127.0.0.1", "where 'requeue' requests send mail so it is "
                            "scanned again (Postfix's port 25 listener)")
    requeue_port: int = opt(25, "port for 'requeue' requests", min=1, max=65535)
    digest_release_url: str = opt(
        "", "link shown for each message in 'scanner quarantine digest' mail, e.g. "
        "https://mail.example.com/release?id={mail_id}&s={secret_id} ({mail_id}, "
        "{secret_id}, {recipient}: URL-encoded); empty = the digest says to ask the "
        "administrator, quoting the id")

    def __post_init__(self) -> None:
        if not _HEADER_NAME.match(self.release_header):
            raise ConfigError(f"'quarantine.release_header' = {self.release_header!r} is not "
                              "a header field name (printable ASCII, no colon or space)")
        check_release_url(self.digest_release_url)
        if self.ampdp_inet:
            inet_address(self.ampdp_inet)
        for i, net in enumerate(self.ampdp_inet_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ConfigError(f"'quarantine.ampdp_inet_networks[{i}]' = {net!r} is not "
                                  "an IP network (e.g. 127.0.0.0/8)") from None
        index = self.index
        if not (index.startswith("sqlite:") or is_postgresql(index)):
            raise ConfigError(f"'quarantine.index' = {redact(index)!r}: use 'sqlite:', "
                              "'sqlite:/path/file' or 'postgresql://user@host/dbname'")


def inet_address(value: str) -> tuple[str, int]:
    """``127.0.0.1:9998`` or ``[::1]:9998`` as (address, port); ConfigError otherwise."""
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"'quarantine.ampdp_inet' = {value!r}: give ADDRESS:PORT, e.g. "
                          "127.0.0.1:9998 or [::1]:9998") from None
    return host, number


def check_release_url(url: str) -> None:
    """``digest_release_url``: empty, or an http(s) URL whose only ``{...}`` fields are
    :data:`RELEASE_URL_FIELDS` (a mistyped field would break every digest)."""
    if not url:
        return
    where = f"'quarantine.digest_release_url' = {url!r}"
    if not url.startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
        raise ConfigError(f"{where} is not an http:// or https:// URL without spaces")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(url)
                  if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}; write {{{{ and }}}} for braces") from None
    for name, spec, conv in fields:
        if name not in RELEASE_URL_FIELDS:
            raise ConfigError(f"{where}: unknown field {{{name}}}; use "
                              + ", ".join(f"{{{f}}}" for f in RELEASE_URL_FIELDS))
        if spec or conv:
            raise ConfigError(f"{where}: write {{{name}}} without a conversion or format")
