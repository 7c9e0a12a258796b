"""The AM.PDP socket: amavis's policy-delegation protocol over a Unix socket.

A dispatcher for two kinds of clients:

* ``request=release`` and ``request=requeue`` (amavis's ``amavisd-release``) with
  ``mail_id``, ``secret_id``, ``mail_file``, ``partition_tag``, ``quar_type``,
  ``requested_by``, ``sender`` and ``recipient`` lines release our quarantine; the answer
  has one ``setreply`` per recipient;
* ``request=AM.PDP`` (``amavisd-milter``) scans a message file with the worker's
  pipeline (:mod:`scanner.serve.pdp_scan`).

Who may connect is decided by the socket's mode and group and, per connection, by the
peer's uid/gid (SO_PEERCRED) against ``[quarantine] allowed_uids``/``allowed_gids``: a
gid counts when it is the peer process's (primary) gid or one of its supplementary
groups, as the kernel gives them at connect time (SO_PEERGROUPS, Linux 4.13): the
groups the process really has, as for a user added to an ``amavis`` group who logged in
again. Where the kernel does not give them (another system, more groups than fit), the
group database (``/etc/group``, NSS) is asked for the memberships of the peer's user.

Over TCP (``[quarantine] ampdp_inet``, amavis's AM.PDP-INET policy bank, which web
front ends such as iRedAdmin and Modoboa's inet mode use) there are no peer credentials:
a client is allowed by its address (``ampdp_inet_networks``, amavis's ``inet_acl``),
every release or requeue must carry the message's secret_id, and scans are refused
(their ``mail_file`` is a path on this host: they stay on the Unix socket).

The master binds the sockets (:func:`bind_ampdp_socket`, :func:`bind_ampdp_inet`)
before forking; each worker serves them with :func:`start_ampdp_server` (or
:func:`serve_ampdp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from scanner.hostname import configured_hostname
from scanner.mailid import LogIds
from scanner.quarantine.ampdp_proto import (
    MAX_LINE,
    ProtocolError,
    format_message,
    read_message,
)
from scanner.quarantine.config import QuarantineConfig, inet_address
from scanner.quarantine.record import (
    AlreadyReleased,
    BadSecret,
    IndexUnavailable,
    QuarantineError,
    UnknownMailId,
)
from scanner.quarantine.release import release, released_marker
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.reinject.pool import ConnectionPool
from scanner.text import printable
from scanner.unixsock import UnixSocketError, bind_unix_socket, unlink_unix_socket

log = logging.getLogger("scanner")
REQUEST_TIMEOUT = 60.0
Attrs = list[tuple[str, tuple[str, ...]]]
Scan = Callable[[dict[str, list[str]], str], Awaitable[Attrs]]
"""Answers one ``request=AM.PDP``: (attributes by lower-case name, log id) -> answer."""


# -- the socket ----------------------------------------------------------------------------

def bind_ampdp_socket(cfg: QuarantineConfig) -> socket.socket:
    """A listening Unix socket at ``cfg.ampdp_socket`` with the configured mode and group.

    A stale socket file (nobody listening) is replaced; a live one or a non-socket file
    in the way raises :class:`QuarantineError`.
    """
    try:
        return bind_unix_socket(cfg.ampdp_socket, cfg.socket_mode, cfg.socket_group,
                                "AM.PDP socket")
    except UnixSocketError as exc:
        raise QuarantineError(str(exc)) from None


def bind_ampdp_inet(cfg: QuarantineConfig) -> socket.socket:
    """A listening TCP socket at ``cfg.ampdp_inet``; OSError when it cannot be bound."""
    host, port = inet_address(cfg.ampdp_inet)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def unlink_ampdp_socket(sock: socket.socket) -> None:
    """Remove the socket file if it is still ours (call once, in the master, at exit)."""
    unlink_unix_socket(sock)


# -- serving -------------------------------------------------------------------------------

async def start_ampdp_server(path_or_sock: str | socket.socket, q: Quarantine | None,
                             config: Any, hostname: str | None = None,
                             log_ids: LogIds | None = None, scan: Scan | None = None
                             ) -> asyncio.AbstractServer:
    """Serve AM.PDP on a bound socket (or bind ``path`` here); ``config`` is the whole
    configuration (``[quarantine]`` and ``[reinject]`` are used). ``log_ids``: the
    worker's counter, shared with its SMTP sessions so that no two log lines of one
    worker carry the same ``(PID-NN)``. ``q`` None: the quarantine is unusable, release
    requests are deferred. ``scan``: what answers ``request=AM.PDP``
    (:meth:`scanner.serve.pdp_scan.PdpScanner.answer`)."""
    if isinstance(path_or_sock, str):
        cfg = config.quarantine
        if path_or_sock != cfg.ampdp_socket:
            import dataclasses

            cfg = dataclasses.replace(cfg, ampdp_socket=path_or_sock)
        sock = bind_ampdp_socket(cfg)
    else:
        sock = path_or_sock
    service = AmpdpService(q, config, hostname or configured_hostname(config.server.hostname),
                           scan)
    if log_ids is not None:
        service.log_ids = log_ids
    if sock.family == socket.AF_UNIX:
        return await asyncio.start_unix_server(service.handle, sock=sock, limit=MAX_LINE + 2)
    return await asyncio.start_server(service.handle, sock=sock, limit=MAX_LINE + 2)


async def serve_ampdp(sock: socket.socket, q: Quarantine | None, config: Any,
                      hostname: str | None = None) -> None:
    """Serve until cancelled."""
    server = await start_ampdp_server(sock, q, config, hostname)
    async with server:
        await server.serve_forever()


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux; Python 3.11 does not export it
_GID = struct.Struct("I")  # gid_t
PEERGROUPS_BUFFER = 1024  # bytes: the most Python's getsockopt reads (256 groups)


def peer_groups(sock: socket.socket) -> list[int] | None:
    """The supplementary groups the peer process had when it connected (SO_PEERGROUPS),
    or None when the kernel does not say (not Linux, a kernel before 4.13, or more
    groups than :data:`PEERGROUPS_BUFFER` holds)."""
    if not hasattr(socket, "SO_PEERCRED"):  # not Linux: 59 means something else
        return None
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, PEERGROUPS_BUFFER)
    except OSError:  # ENOPROTOOPT (old kernel), ERANGE (too many groups)
        return None
    return [g for (g,) in _GID.iter_unpack(data[:len(data) - len(data) % _GID.size])]


def member_gids(uid: int, gid: int) -> list[int]:
    """The groups of the user with ``uid`` in the group database, with ``gid`` (the
    peer's own); just ``[gid]`` when no user has that uid (logged: its memberships
    cannot be known, so allowed_gids only counts its process's gid)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        log.warning("AM.PDP: uid %d has no entry in the user database (getpwuid), so its "
                    "group memberships are unknown: only its process's gid %d is compared "
                    "with [quarantine] allowed_gids", uid, gid)
        return [gid]
    try:
        return os.getgrouplist(name, gid)
    except OSError as exc:
        log.warning("AM.PDP: the groups of user %s (uid %d) could not be read "
                    "(getgrouplist: %s): only its process's gid %d is compared with "
                    "[quarantine] allowed_gids", name, uid, exc.strerror or exc, gid)
        return [gid]


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class AmpdpService:
    """Answers release/requeue and scan requests on accepted connections."""

    def __init__(self, q: Quarantine | None, config: Any, hostname: str,
                 scan: Scan | None = None) -> None:
        self.q = q
        self.scan = scan
        self.cfg: QuarantineConfig = config.quarantine
        reinject = config.reinject
        self.release_hop = NextHop.from_config(reinject, hostname)
        self.requeue_hop = NextHop(self.cfg.requeue_host, self.cfg.requeue_port, False,
                                   reinject.connect_timeout, reinject.timeout,
                                   reinject.helo or hostname, reinject.xforward)
        self.pools = {"release": ConnectionPool(self.release_hop, max_idle=2),
                      "requeue": ConnectionPool(self.requeue_hop, max_idle=2)}
        self.log_ids = LogIds()
        self.networks = [ipaddress.ip_network(n, strict=False)
                         for n in self.cfg.ampdp_inet_networks]
        self.mark_released = released_marker(config)

    def allowed(self, uid: int, gid: int) -> bool:
        """The peer may use the socket by its uid or its process's gid alone."""
        return (uid == os.geteuid() or uid in self.cfg.allowed_uids
                or gid in self.cfg.allowed_gids)

    async def permitted(self, uid: int, gid: int, groups: list[int] | None = None) -> bool:
        """:meth:`allowed`, or one of the peer's supplementary ``groups`` is allowed;
        without them (None: the kernel did not say), the peer's user is a member of an
        allowed group in the group database (read in a thread: NSS may ask a directory
        server)."""
        if self.allowed(uid, gid):
            return True
        if not self.cfg.allowed_gids or uid < 0:
            return False
        if groups is None:
            groups = await asyncio.get_running_loop().run_in_executor(None, member_gids,
                                                                      uid, gid)
        return not set(groups).isdisjoint(self.cfg.allowed_gids)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            await self._handle_inet(reader, writer)
            return
        try:
            pid, uid, gid = peer_credentials(sock)
        except OSError:
            pid, uid, gid = 0, -1, -1
        groups = peer_groups(sock)  # now: the groups it had when it connected
        decided: list[bool] = []  # decided at the first request

        async def refusal(log_id: str) -> str | None:
            if not decided:
                decided.append(await self.permitted(uid, gid, groups))
            if decided[0]:
                return None
            log.warning("(%s) AM.PDP: refused uid %d gid %d (pid %d %s)", log_id, uid, gid,
                        pid, printable(_process_name(pid)))
            return (f"permission denied: uid {uid} gid {gid} may not use this socket (see "
                    "[quarantine] allowed_uids and allowed_gids)")

        await self._requests(reader, writer, refusal, lambda a: _requester(a, pid, uid))

    async def _handle_inet(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        """A TCP client: allowed by its address; release and requeue only, each with
        the message's secret_id."""
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            allowed = any(address in net for net in self.networks)
        except ValueError:
            allowed = False
        shown = f"[{peer[0]}]:{peer[1]}"

        async def refusal(log_id: str) -> str | None:
            if allowed:
                return None
            log.warning("(%s) AM.PDP: refused %s (not in [quarantine] ampdp_inet_networks)",
                        log_id, shown)
            return (f"permission denied: {peer[0]} may not use this port (see "
                    "[quarantine] ampdp_inet_networks)")

        def requester(attrs: Sequence[tuple[str, str]]) -> str:
            asked = next((v.strip() for k, v in attrs
                          if k.lower() == "requested_by" and v.strip()), "")
            return f"{printable(asked or 'AM.PDP client')} (AM.PDP, {shown})"

        await self._requests(reader, writer, refusal, requester, inet=True)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        refusal: Callable[[str], Awaitable[str | None]],
                        requester: Callable[[Sequence[tuple[str, str]]], str],
                        inet: bool = False) -> None:
        """Answer a connection's requests in turn; ``refusal`` (the log id) says why
        the peer may not ask (None: it may), and ends the connection."""
        try:
            while True:
                try:
                    attrs = await asyncio.wait_for(read_message(reader), REQUEST_TIMEOUT)
                except (ProtocolError, TimeoutError) as exc:
                    why = str(exc) or "timed out waiting for a request"
                    writer.write(format_message(_error("", "554 5.5.2", why, 69)))
                    await writer.drain()
                    return
                if attrs is None:
                    return
                log_id = self.log_ids.next()
                refused = await refusal(log_id)
                if refused is not None:
                    writer.write(format_message(_error(log_id, "554 5.7.1", refused, 69)))
                    await writer.drain()
                    return
                writer.write(format_message(await self.answer(attrs, requester(attrs),
                                                              log_id, inet=inet)))
                await writer.drain()
        except (ConnectionError, BrokenPipeError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def answer(self, attrs: Sequence[tuple[str, str]], who: str, log_id: str,
                     inet: bool = False) -> Attrs:
        """The response attributes for one request (``inet``: over TCP: no scans, and
        a release needs the secret_id)."""
        values: dict[str, list[str]] = {}
        for name, value in attrs:
            values.setdefault(name.lower(), []).append(value)
        request = (values.get("request") or [""])[0].strip().lower()
        if request == "am.pdp" and inet:
            return _error(log_id, "554 5.5.1", "scans (request=AM.PDP) are served on the "
                          "AM.PDP Unix socket only, not over TCP", 69)
        if request == "am.pdp":
            return await self._scan(values, log_id)
        if request not in ("release", "requeue"):
            return _error(log_id, "554 5.5.1", f"unsupported request {request!r} (AM.PDP, "
                          "release and requeue are served here)", 69)
        if self.q is None:
            return _error(log_id, "451 4.5.0", "the quarantine is unusable (see the log); "
                          "try again later", 75, "tempfail")
        mail_id = _mail_id(values)
        shown = printable(mail_id)  # for the log: the peer chose these characters
        secret = (values.get("secret_id") or [""])[0].strip() or None
        rcpts = [r.strip() for r in values.get("recipient", []) if r.strip()]
        sender = values.get("sender", [None])[0]
        ref = f"rel-{mail_id}" if mail_id else "rel-?"
        try:
            if secret is None and (self.cfg.require_secret or inet):
                raise BadSecret(f"a secret_id is required to release {mail_id}"
                                + (" over TCP" if inet else ""))
            replies = await release(
                self.q, self.pools[request], mail_id, recipients=rcpts or None,
                requested_by=who, secret_id=secret,
                sender=sender.strip() if sender is not None else None,
                on_released=self.mark_released if request == "release" else None)
        except (UnknownMailId, BadSecret, AlreadyReleased) as exc:
            log.info("(%s) AM.PDP %s %s by %s refused: %s", log_id, request, shown, who, exc)
            return _error(log_id, "550 5.7.1" if isinstance(exc, BadSecret) else "550 5.7.0",
                          f"Not released, id={ref}: {exc}", 69)
        except IndexUnavailable as exc:  # nothing wrong with the message: try again
            log.warning("(%s) AM.PDP %s %s by %s deferred: %s", log_id, request, shown, who,
                        exc)
            return _error(log_id, "451 4.5.0", f"Error in processing, id={ref}: {exc}", 75,
                          "tempfail")
        except QuarantineError as exc:
            log.warning("(%s) AM.PDP %s %s by %s failed: %s", log_id, request, shown, who,
                        exc)
            return _error(log_id, "550 5.3.0", f"Not released, id={ref}: {exc}", 69)
        except Exception as exc:
            log.exception("(%s) AM.PDP %s %s failed", log_id, request, shown)
            return _error(log_id, "451 4.5.0", f"Error in processing, id={ref}: {exc}", 75)
        out: Attrs = [("version_server", ("2",)), ("log_id", (log_id,))]
        for reply in replies:
            out.append(("setreply", _amavis_reply(reply, ref)))
        codes = {r[:1] for r in replies}
        exit_code = 0 if codes == {"2"} else 75 if "4" in codes else 69
        log.info("(%s) AM.PDP %s %s by %s: %s", log_id, request, shown, who, "; ".join(replies))
        out.append(("exit_code", (str(exit_code),)))
        return out


    async def _scan(self, values: dict[str, list[str]], log_id: str) -> Attrs:
        """A scan for a milter; any failure defers the message (never passes it)."""
        if self.scan is None:  # a server started without the pipeline (tools, tests)
            return _error(log_id, "451 4.5.0", "no scanner runs behind this socket "
                          "(request=AM.PDP)", 75, "tempfail")
        try:
            return await self.scan(values, log_id)
        except Exception as exc:
            log.exception("(%s) AM.PDP scan failed; tempfail", log_id)
            return _error(log_id, "451 4.5.0", f"Error in processing, id={log_id}: "
                          f"{type(exc).__name__}", 75, "tempfail")


def _error(log_id: str, code: str, text: str, exit_code: int,
           return_value: str | None = None) -> Attrs:
    rcode, xcode = code.split()
    out: Attrs = [("version_server", ("2",))]
    if log_id:
        out.append(("log_id", (log_id,)))
    out.append(("setreply", (rcode, xcode, text)))
    if return_value:
        out.append(("return_value", (return_value,)))
    out.append(("exit_code", (str(exit_code),)))
    return out


def _amavis_reply(reply: str, ref: str) -> tuple[str, str, str]:
    """``250 2.0.0 from MTA(...): 250 ...`` -> ``250 2.6.0 Ok, id=rel-X, from MTA(...): ...``."""
    code, _, rest = reply.partition(" ")
    enhanced, _, text = rest.partition(" ")
    if code.startswith("2"):
        return code, "2.6.0", f"Ok, id={ref}, {text}"
    return code, enhanced, f"Failed, id={ref}, {text}"


def _mail_id(values: dict[str, list[str]]) -> str:
    """The mail_id asked for; derived from ``mail_file`` when only that is usable.

    ``amavisd-release`` extracts the id from a file name with a pattern that expects
    letters or digits at both ends; for ids starting with ``_`` or ending in ``-``/``_``
    it sends the whole name, which still ends in the 12-character id.
    """
    given = (values.get("mail_id") or [""])[0].strip()
    if len(given) == 12:
        return given
    source = (values.get("mail_file") or [given])[0].strip()
    name = os.path.basename(source.split("[", 1)[0])
    stem = name[:-3] if name.endswith(".gz") else name
    return stem[-12:] if len(stem) >= 12 else given


def _requester(attrs: Sequence[tuple[str, str]], pid: int, uid: int) -> str:
    """Who asks: ``requested_by`` or the peer's program name, control characters
    escaped (it goes into log lines, the index and the release header)."""
    asked = next((v.strip() for k, v in attrs if k.lower() == "requested_by" and v.strip()), "")
    name = asked or _process_name(pid) or "AM.PDP client"
    return f"{printable(name)} (AM.PDP, uid {uid})"

