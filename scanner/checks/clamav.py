"""CLAMAV: scan the message and its decoded parts with clamd (INSTREAM).

What is scanned: the whole raw message once (clamd understands MIME, mbox and many
archive formats itself), then every part the decoders put in ``task.parts`` whose bytes
differ from anything already scanned (deduplicated by SHA-256), so a signature is found
wherever either clamd or our decoders can reach it. Not sent again by default (as
rspamd's antivirus module leaves text parts out unless ``scan_text_mime``): the
message's own MIME containers and the inline text in them (see
:func:`covered_by_message`), which clamd already reads from the whole message, unless
clamd did not read the whole message to the end (larger than ``stream_max_length``,
clamd's size limit, a limit alert): then they are sent as any part. Parts are optional:
with an empty ``task.parts`` only the raw message is scanned.

Outcomes are symbols, never exceptions:

* ``CLAMAV_VIRUS`` (category VIRUS): options are the virus names, ``part`` the part path
  (None for the whole message).
* ``CLAMAV_UNCHECKED`` (category UNCHECKED): something was not scanned because it is
  larger than clamd's StreamMaxLength (``stream_max_length``), or clamd said so, or
  clamd hit a scan limit (``Heuristics.Limits.Exceeded.*``, reported when clamd.conf
  has ``AlertExceedsMax yes``); also clamd failures when ``fail_action = "unchecked"``.
* ``CLAMAV_SPAM`` (no category; weight 1 times the hit's factor): clamd named something
  that ``virus_name_to_spam_score`` calls spam, not a virus (its phishing heuristics,
  Sanesecurity's spam signatures: amavis's ``@virus_name_to_spam_score_maps``, see
  :mod:`scanner.checks.clamav_names`); options are the names, the factor the highest
  of their scores. A reply that also names a real virus is a virus, names and all.
* ``CLAMAV_FAIL`` (``tempfail`` in the shipped score table): every endpoint failed,
  timed out or answered garbage and ``fail_action = "tempfail"``. Endpoints that
  refused the connection or hung up without an answer (a clamd being restarted) are
  tried again after ``retry_delays`` (amavis: 1 s, then 6 s) while the check's time
  (``checks.timeout``, or what is left of ``server.message_timeout`` if less) allows.
  With a ``backup_command`` (amavis's
  ``@av_scanners_backup``, clamscan) the pieces clamd did not answer are scanned by it
  (:mod:`scanner.checks.clamav_backup`) and only its failure is CLAMAV_FAIL; its
  results are read as clamd's, are not cached, and are marked in the log and in
  CLAMAV_UNCHECKED's options with ``backup clamscan``.

A virus outranks failures: once something is infected, failures and unscanned pieces
no longer change the outcome and are not reported. Definite answers (clean, infected)
are kept in a per-process LRU cache keyed by the SHA-256 of the scanned bytes, for
``cache_ttl`` seconds: an answer holds for the signatures clamd had then, and freshclam
brings new ones (clamd's VERSION names no database version for third-party signatures,
so the age of the answer is what is known).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from scanner.checks.base import CheckContext, time_for_check
from scanner.checks.clamav_backup import BackupError, BackupScanner
from scanner.checks.clamav_names import AMAVIS_SPAM_NAMES, NameTable, SpamName
from scanner.checks.clamd_client import (
    LIMITS_PREFIX,
    ClamdClient,
    ClamdError,
    ScanReply,
    Status,
)
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.task import Hit, Task
from scanner.throttle import LogThrottle, held_note

log = logging.getLogger("scanner.checks.clamav")

VIRUS = "CLAMAV_VIRUS"
FAIL = "CLAMAV_FAIL"
UNCHECKED = "CLAMAV_UNCHECKED"
SPAM = "CLAMAV_SPAM"
_HASH_IN_THREAD = 1024 * 1024  # hash larger data off the event loop
_DEADLINE_RESERVE = 1.0
"""Seconds before checks.timeout by which the check gives up on clamd by itself."""
BACKUP_SHARE = 0.5
"""With a backup_command, the share of the check's time clamd may use; the backup
scanner has the rest."""


@dataclass(frozen=True, slots=True)
class ClamAVSettings:
    """Settings of the ClamAV check ([checks.settings.clamav])."""

    endpoints: tuple[str, ...] = opt(
        ["unix:/var/run/clamav/clamd.ctl"],
        "clamd sockets tried in order: unix:/path or tcp:host:port")
    timeout: float = opt(60.0, "seconds for one scan request (send + clamd's answer)",
                         min=0.1)
    connect_timeout: float = opt(5.0, "seconds to connect to one endpoint", min=0.1)
    stream_max_length: int = opt(
        25 * 1024 * 1024, "clamd's StreamMaxLength, bytes; larger data is not sent and "
        "counts as UNCHECKED", min=1)
    chunk_size: int = opt(64 * 1024, "INSTREAM chunk size, bytes", min=1024,
                          max=16 * 1024 * 1024)
    cache_size: int = opt(10000, "results remembered per worker by SHA-256; 0 = no cache",
                          min=0)
    cache_ttl: float = opt(600.0, "seconds a remembered result is used; clamd may have new "
                           "signatures by then", min=0.0)
    retry_delays: tuple[float, ...] = opt(
        [1.0, 6.0], "seconds to wait before each new try of the endpoints that refused the "
        "connection or hung up without an answer (clamd restarting), after every endpoint "
        "failed: amavis's 1 s, then 6 s; never past checks.timeout or past what is left of "
        "server.message_timeout; [] = no retry",
        min=0.0, max=60.0)
    fail_action: str = opt(
        "tempfail", "clamd unusable: tempfail (CLAMAV_FAIL, Postfix retries) or unchecked "
        "(CLAMAV_UNCHECKED, mail passes tagged)", choices=("tempfail", "unchecked"))
    first_infected_stops_scan: bool = opt(True, "stop at the first infected piece")
    scan_parts: bool = opt(True, "also scan decoded parts, not only the raw message")
    scan_text_parts: bool = opt(
        False, "also send the message's own MIME containers and inline text parts (no "
        "file name, declared and detected as plain text or HTML, no decoding trouble) "
        "separately; clamd reads them from the whole message already")
    reuse_connections: bool = opt(True, "keep connections to clamd open between scans "
                                  "(clamd's IDSESSION) for pieces up to 64 KiB")
    backup_command: tuple[str, ...] = opt(
        [], "a command-line scanner run on the pieces clamd gave no answer for (amavis's "
        "@av_scanners_backup), e.g. [\"clamscan\", \"--stdout\", \"--no-summary\", "
        "\"{}\"]: {} is the directory of the files, {}/* the files; its output is read as "
        "clamscan's; CLAMAV_FAIL only when it fails too; [] = none")
    virus_name_to_spam_score: tuple[SpamName, ...] = opt(
        AMAVIS_SPAM_NAMES, "names clamd reports that are spam, not viruses (amavis's "
        "@virus_name_to_spam_score_maps, its default list): first match wins")


@dataclass(slots=True)
class _Found:
    """What the scan of one message found so far."""

    hits: list[Hit] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    spam: dict[str, float] = field(default_factory=dict)
    whole_read: bool = False
    """The whole message was read to the end (by clamd or the backup)."""

    def result(self) -> list[Hit]:
        hits = list(self.hits)
        if not hits and self.unchecked:
            hits.append(Hit(UNCHECKED, options=tuple(self.unchecked)))
        if self.spam:
            hits.append(Hit(SPAM, factor=max(self.spam.values()), options=tuple(self.spam)))
        return hits


@dataclass(frozen=True, slots=True)
class _Piece:
    """One thing to scan: the raw message or a decoded part."""

    path: str | None
    sha256: str
    size: int
    data: Callable[[], bytes]
    covered: bool = False
    """Inline text or a MIME container clamd reads in the whole message: sent only when
    the whole message got no complete answer (too large, a limit alert)."""


class ResultCache:
    """A bounded LRU map from SHA-256 to a definite clamd answer, each used for ``ttl``
    seconds after clamd gave it (``clock`` tells the time)."""

    def __init__(self, size: int, ttl: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, ScanReply]] = OrderedDict()

    def get(self, key: str) -> ScanReply | None:
        found = self._items.get(key)
        if found is None:
            return None
        if self.clock() - found[0] >= self.ttl:  # older signatures: ask clamd again
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return found[1]

    def put(self, key: str, reply: ScanReply) -> None:
        if self.size <= 0 or reply.status not in (Status.CLEAN, Status.INFECTED):
            return
        self._items[key] = (self.clock(), reply)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class ClamAV:
    """Scan with clamd; report viruses, unscanned pieces and clamd failures."""

    name: ClassVar[str] = "clamav"
    description: ClassVar[str] = "ClamAV (clamd INSTREAM) on the raw message and its parts"
    symbols: ClassVar[dict[str, str]] = {
        VIRUS: "clamd found a virus (options: names; part: where)",
        FAIL: "clamd could not be used (unreachable, timeout, bad answer)",
        UNCHECKED: "something was not virus-scanned (too large, or clamd failed and "
                   "fail_action = unchecked)",
        SPAM: "clamd named spam or phishing, not a virus (options: names)",
    }
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "virus"
    Settings: ClassVar[type] = ClamAVSettings

    def __init__(self, settings: ClamAVSettings, context: CheckContext) -> None:
        self.settings = settings
        self.context = context
        try:
            self.names = NameTable(settings.virus_name_to_spam_score)
        except ValueError as exc:
            raise ConfigError(f"checks.settings.clamav.virus_name_to_spam_score{exc}"
                              ) from None
        try:
            self.client = ClamdClient(
                settings.endpoints, timeout=settings.timeout,
                connect_timeout=settings.connect_timeout, chunk_size=settings.chunk_size,
                reuse=settings.reuse_connections, retry_delays=settings.retry_delays,
                inconclusive=self._not_a_virus)
        except ValueError as exc:
            raise ConfigError(f"checks.settings.clamav.endpoints: {exc}") from None
        self.cache = ResultCache(settings.cache_size, settings.cache_ttl)
        self.backup: BackupScanner | None = None
        self._backup_failures = LogThrottle(10.0)
        if settings.backup_command:
            try:
                self.backup = BackupScanner(settings.backup_command,
                                            context.config.server.tmp_dir)
            except ValueError as exc:
                raise ConfigError(f"checks.settings.clamav.backup_command: {exc}") from None

    def _not_a_virus(self, name: str) -> bool:
        """A limit alert or a spam name: more records after it must still be read."""
        return name.startswith(LIMITS_PREFIX) or self.names.spam_score(name) is not None

    def close(self) -> None:
        """Close the connections kept open to clamd."""
        self.client.close()

    async def probe(self) -> str | None:
        """A look at clamd when the filter starts: None when it answers PING, else what
        will happen to mail until it does (start-up goes on: clamd may come up later)."""
        missing = self.backup.missing() if self.backup else None
        note = f"checks.settings.clamav.backup_command: {missing}" if missing else None
        if await self.client.ping():
            return note
        fate = ("deferred (451 ... CLAMAV_FAIL) and kept in Postfix's queue"
                if self.settings.fail_action == "tempfail" else "passed as UNCHECKED")
        if self.backup and not missing:
            fate = f"scanned by {self.backup.label} (and {fate} if that fails)"
        return (f"clamd at {', '.join(self.settings.endpoints)} does not answer PING: every "
                f"message will be {fate} until it does (README, ClamAV)"
                + (f"; {note}" if note else ""))

    async def run(self, task: Task) -> Iterable[Hit]:
        found = _Found()
        deadline = self._deadline(task)
        clamd_deadline = self._clamd_deadline(deadline)
        pieces = await self._pieces(task)
        for index, piece in enumerate(pieces):
            if self._skip(piece, found):
                continue
            try:
                reply = await self._scan(piece, clamd_deadline)
            except ClamdError as exc:
                detail = f"{piece.path or 'message'}: {exc}"
                if found.hits:  # a virus outranks failures
                    return found.hits
                return await self._backup(task, pieces[index:], found, detail, deadline)
            if self._take(task, piece, reply, found, "clamd"):
                break
        return found.result()

    def _skip(self, piece: _Piece, found: _Found) -> bool:
        """True for a piece not to be sent: covered by a whole read of the message, or
        too large (then counted as unchecked)."""
        if piece.covered and found.whole_read:
            return True
        if piece.size > self.settings.stream_max_length:
            found.unchecked.append(f"{piece.path or 'message'}: {piece.size} bytes > "
                                   "stream_max_length")
            return True
        return False

    def _take(self, task: Task, piece: _Piece, reply: ScanReply, found: _Found,
              origin: str) -> bool:
        """Add one piece's answer (from ``origin``) to ``found``; True when the scan
        should stop there (an infected piece and ``first_infected_stops_scan``)."""
        where = piece.path or "message"
        if reply.status is Status.TOO_LARGE:
            found.unchecked.append(f"{where}: {origin}: size limit exceeded")
            return False
        names = tuple(n for n in reply.names if not n.startswith(LIMITS_PREFIX))
        found.unchecked += [f"{where}: {origin}: {n}" for n in reply.names if n not in names]
        found.whole_read = found.whole_read or (piece.path is None and names == reply.names)
        viruses = self._viruses(names, found.spam)
        if not viruses:
            return False
        by = "" if origin == "clamd" else f" ({origin})"
        log.info("%s: %s in %s%s", task.mail_id, ", ".join(viruses), where, by)
        found.hits.append(Hit(VIRUS, options=viruses, part=piece.path))
        return self.settings.first_infected_stops_scan

    async def _backup(self, task: Task, rest: list[_Piece], found: _Found, detail: str,
                      deadline: float) -> list[Hit]:
        """clamd gave no answer for ``rest[0]`` (``detail``): scan ``rest`` with the
        backup command, or fail as without one."""
        if self.backup is None:
            return [self._failure(detail)]
        send = [piece for piece in rest if not self._skip(piece, found)]
        label = self.backup.label
        try:
            replies = await self.backup.scan([piece.data for piece in send], deadline)
        except BackupError as exc:
            self._report_backup_failure(task, str(exc))
            return [self._failure(f"{detail}; {label}: {exc}")]
        failed = ""
        for piece, reply in zip(send, replies, strict=True):
            if piece.covered and found.whole_read:
                continue
            if isinstance(reply, ClamdError):
                failed = failed or f"{piece.path or 'message'}: {reply}"
            elif self._take(task, piece, reply, found, label):
                break
        if failed:
            self._report_backup_failure(task, failed)
            return found.hits or [self._failure(f"{detail}; {label}: {failed}")]
        log.info("%s: scanned by %s, clamd gave no answer (%s)", task.mail_id, label, detail)
        return found.result()

    def _viruses(self, found: tuple[str, ...], spam: dict[str, float]) -> tuple[str, ...]:
        """The virus names of one reply; when every name is spam (amavis: all of them),
        none, and the names go into ``spam`` with their scores."""
        scores = [self.names.spam_score(n) for n in found]
        if any(score is None for score in scores):
            return found
        for name, score in zip(found, scores, strict=True):
            spam.setdefault(name, score or 0.0)
        return ()

    def _report_backup_failure(self, task: Task, detail: str) -> None:
        """A warning when the backup failed too, at most one per 10 s (as clamd's)."""
        held = self._backup_failures.due("backup")
        if held is not None and self.backup is not None:
            log.warning("%s: %s failed too: %s%s", task.mail_id, self.backup.label, detail,
                        held_note(held, "more failed backup scans"))

    def _failure(self, detail: str) -> Hit:
        if self.settings.fail_action == "unchecked":
            return Hit(UNCHECKED, options=(f"clamd failed: {detail}",))
        return Hit(FAIL, options=(detail,))

    def _deadline(self, task: Task) -> float:
        """When this message's clamd requests must be over (the event loop's clock): a
        little before the runner's checks.timeout or the message's own deadline
        (server.message_timeout), whichever comes first, so that a failure still ends
        as this check's own outcome (CLAMAV_FAIL or, with fail_action = "unchecked",
        UNCHECKED) rather than as the runner's or the message's timeout."""
        budget = time_for_check(task, self.context.config.checks.timeout)
        return asyncio.get_running_loop().time() + budget - min(_DEADLINE_RESERVE,
                                                                  budget / 10)

    def _clamd_deadline(self, deadline: float) -> float:
        """When clamd must have answered: ``deadline``, or with a backup command half-way
        there, so that a clamd that accepts and never answers (overloaded, stuck) leaves
        the backup the other half instead of nothing."""
        if self.backup is None:
            return deadline
        now = asyncio.get_running_loop().time()
        return now + max(0.0, deadline - now) * BACKUP_SHARE

    async def _scan(self, piece: _Piece, deadline: float) -> ScanReply:
        cached = self.cache.get(piece.sha256)
        if cached is not None:
            return cached
        reply = await self.client.instream(piece.data(), deadline)
        self.cache.put(piece.sha256, reply)
        return reply

    async def _pieces(self, task: Task) -> list[_Piece]:
        """The raw message first, then each new part, each bytes-identical one once;
        with ``scan_text_parts`` off the parts clamd reads in the whole message are
        marked ``covered`` (and not counted as seen: only sent if that read failed)."""
        raw = task.raw
        pieces = [_Piece(None, await _sha256(raw), len(raw), lambda: raw)]
        if self.settings.scan_parts:
            seen = {pieces[0].sha256}
            parts = getattr(task, "parts", None) or ()
            by_index = {getattr(p, "index", None): p for p in parts}
            covered = {id(p) for p in parts if not self.settings.scan_text_parts
                       and covered_by_message(p, by_index)}
            for part, piece in _parts(parts):
                if piece.size and piece.sha256 not in seen:
                    if id(part) in covered:
                        pieces.append(dataclasses.replace(piece, covered=True))
                        continue
                    seen.add(piece.sha256)
                    pieces.append(piece)
        return pieces


async def _sha256(data: bytes) -> str:
    if len(data) >= _HASH_IN_THREAD:  # hashlib releases the GIL for large inputs
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(data).hexdigest()


_TEXT_DECLARED = frozenset({None, "text/plain", "text/html"})
_TEXT_DETECTED = frozenset({"asc", "html"})


def covered_by_message(part: Any, by_index: Mapping[Any, Any]) -> bool:
    """True for what clamd finds by itself in the whole message: the message's own MIME
    structure and the inline text in it.

    That is a part without a file name and without flags (decoding trouble, ambiguity),
    whose every ancestor was split by the MIME decoder and has no flags either, and which
    is itself either a MIME container (multipart, message/rfc822) or a leaf declared (or
    defaulted) text/plain or text/html and detected as plain text or HTML. clamd's own
    MIME parser extracts exactly these entities from the raw message. Attachments and
    parts from any other container (archives, TNEF, Office files, uuencode) never count
    as covered, nor does anything that is not a decoders ``Part``.
    """
    try:
        if part.name or part.flags:
            return False
        if part.is_leaf:
            if (part.declared_type not in _TEXT_DECLARED
                    or part.detected_type not in _TEXT_DETECTED):
                return False
        elif part.decoder != "mime":
            return False
        parent = part.parent
        for _ in range(len(by_index) + 1):
            if parent is None:
                return True
            ancestor = by_index.get(parent)
            if ancestor is None or ancestor.decoder != "mime" or ancestor.flags:
                return False
            parent = ancestor.parent
    except AttributeError:  # not a decoders Part: scan it
        return False
    return False


def _parts(parts: Iterable[Any]) -> Iterator[tuple[Any, _Piece]]:
    """Decoded parts with their pieces, read defensively (the decoders may be absent)."""
    for part in parts:
        getter = getattr(part, "data", None)
        if getter is None:
            continue
        data_of: Callable[[], bytes] = getter if callable(getter) else (lambda g=getter: g)
        digest = _hex_digest(getattr(part, "sha256", None))
        size = getattr(part, "size", None)
        if digest is None or not isinstance(size, int):
            blob = data_of()
            digest, size = hashlib.sha256(blob).hexdigest(), len(blob)
            data_of = _constant(blob)
        yield part, _Piece(_path_of(part), digest, size, data_of)


def _constant(blob: bytes) -> Callable[[], bytes]:
    return lambda: blob


def _hex_digest(value: Any) -> str | None:
    if callable(value):
        value = value()
    if isinstance(value, bytes | bytearray) and len(value) == 32:
        return bytes(value).hex()
    if isinstance(value, str) and len(value) == 64:
        return value.lower()
    return None


def _path_of(part: Any) -> str | None:
    path = getattr(part, "path_string", None)
    if callable(path):
        path = path()
    return str(path) if path is not None else None
