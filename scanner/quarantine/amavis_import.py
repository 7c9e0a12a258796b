"""Bring amavis's quarantine over: ``scanner quarantine import-amavis [DIR]``.

A site that replaces amavis still has mail amavis held (Debian: ``local:`` files under
``/var/lib/amavis/virusmails``, ``7/spam-7vykgLjHGVrk.gz``, ``virus-...`` and the like
uncompressed). Without this it could no longer be released once amavis is gone. Each
file becomes a message of scanner's quarantine under the same mail_id (so the ids in
amavis's log lines and notices, and ``amavisd-release`` with them, keep working),
stored at the file's modification time; the amavis file is left where it is.

amavis writes a quarantine file as the message with header fields in front
(``Amavis::Out::Local`` and ``do_quarantine``): ``Return-Path``, ``Delivered-To``,
``X-Envelope-From``, ``X-Envelope-To``, ``X-Envelope-To-Blocked``, ``X-Quarantine-ID``
and the fields it would have added to the delivered copy (``X-Spam-*``,
``X-Amavis-Alert`` ...). It reads them back on release by walking the fields from the
top while they are of those kinds (``msg_from_quarantine``); the message it releases
starts at the first other field. This reads them the same way: the envelope from those
fields, the message from there on, with CRLF line ends as scanner stores messages
(amavis writes LF). ``X-Envelope-To-Blocked`` gives the recipients the message was
held for; files from before amavis 2.6 lack it, and then nobody is known to have got
it. A single-message mbox file (a ``From`` line first) is read too, its ``>From``
escapes undone.

Left out, with the reason: files not named as amavis names them, archive copies
(``archive-...``, copies of delivered mail, not held), files whose
``X-Quarantine-ID`` is not their own, files without sender or recipients (amavis
refuses to release them too), and ids the quarantine already has (so a second run
imports only what is new).
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scanner.pipeline.parse import header_display, header_text, parse_headers
from scanner.quarantine import files
from scanner.quarantine.record import QuarantineError, QuarantineRecord

if TYPE_CHECKING:
    from scanner.quarantine.store import Quarantine

DEFAULT_DIRECTORY = "/var/lib/amavis/virusmails"  # Debian's $QUARANTINEDIR
MAX_FILE_BYTES = 1 << 30  # a quarantined message this large (decompressed) is damage
_NAME = re.compile(r"^(?P<prefix>[a-z][a-z0-9-]*?)-(?P<id>[A-Za-z0-9_-]{12})(?:\.gz)?$")
# amavis's file name prefixes (its default *_quarantine_method settings) and categories
CATEGORIES = {"virus": "VIRUS", "banned": "BANNED", "spam": "SPAM", "spammy": "SPAMMY",
              "badh": "BAD-HEADER", "unchecked": "UNCHECKED", "oversized": "OVERSIZED",
              "clean": "CLEAN"}
ARCHIVE_PREFIXES = ("archive",)  # $archive_quarantine_method: every message, not held
_SKIPPED = re.compile(
    rb"(?i)^(?:delivered-to|x-amavis-(?:hold|alert|modified|penpals|policybank|"
    rb"os-fingerprint)|x-spam-[^:]+|x-crm114-[^:]+):")
_ADDR = re.compile(r"<([^<>]*)>")
_TESTS = re.compile(r"tests=\[([^\]]*)\]")


@dataclass(frozen=True, slots=True)
class AmavisMessage:
    """What one amavis quarantine file holds."""

    mail_id: str
    category: str
    sender: str
    recipients: list[str]
    held_for: list[str] | None  # None: the file has no X-Envelope-To-Blocked
    score: float | None
    symbols: list[str]
    raw: bytes  # the message as amavis would release it, CRLF line ends
    stored_at: float
    secret_id: str = ""  # amavis's (SQL quarantine only); "": a new one is made


def amavis_files(directory: Path) -> Iterator[Path]:
    """Every regular file below ``directory`` (amavis's subdirectories too), sorted."""
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


class NotHeldMail(QuarantineError):
    """The file is not a message amavis held: not named as its quarantine files are,
    or an archive copy."""


@dataclass(slots=True)
class ImportResult:
    """What :func:`import_directory` did."""

    added: list[QuarantineRecord] = field(default_factory=list)
    """Imported (with ``dry_run``: would be)."""
    failed: list[str] = field(default_factory=list)
    """Quarantine files that could not be imported: ``PATH: why``."""
    ignored: list[str] = field(default_factory=list)
    """Other files (:class:`NotHeldMail`): ``PATH: why``."""
    present: list[str] = field(default_factory=list)
    """mail_ids the quarantine had already (imported before)."""


def read_message(path: Path) -> AmavisMessage:
    """One quarantine file; QuarantineError saying why it cannot be imported
    (:class:`NotHeldMail` for a file that is no held message)."""
    m = _NAME.match(path.name)
    if m is None:
        raise NotHeldMail("not an amavis quarantine file name (PREFIX-MAILID[.gz])")
    prefix, mail_id = m.group("prefix"), m.group("id")
    if prefix in ARCHIVE_PREFIXES:
        raise NotHeldMail("an archive copy of delivered mail, not held mail")
    data = _read(path)
    return parse_text(data, mail_id=mail_id, category=CATEGORIES.get(prefix, prefix.upper()),
                      stored_at=path.stat().st_mtime)


def parse_text(data: bytes, *, mail_id: str, category: str, stored_at: float,
               secret_id: str = "") -> AmavisMessage:
    """A message as amavis stored it (a file's bytes, or the chunks of its SQL
    ``quarantine`` rows joined): its envelope fields read, the message from the first
    field amavis did not add. QuarantineError when it is not ``mail_id``'s or has no
    envelope."""
    fields, start, mbox = _prefix(data)
    body = data[start:]
    if mbox:
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
    qid = _one(fields, b"x-quarantine-id").strip().strip("<>")
    if qid != mail_id:
        raise QuarantineError(f"its X-Quarantine-ID is {qid or 'missing'}, not {mail_id}")
    sender_field = _one(fields, b"return-path") or _one(fields, b"x-envelope-from")
    if not sender_field:
        raise QuarantineError("no X-Envelope-From or Return-Path: its sender is unknown")
    recipients = [a for a in _addresses(_all(fields, b"x-envelope-to")) if a]
    if not recipients:
        raise QuarantineError("no X-Envelope-To: its recipients are unknown")
    blocked = _all(fields, b"x-envelope-to-blocked")
    senders = _addresses(sender_field)
    return AmavisMessage(
        mail_id=mail_id, category=category,
        sender=senders[0] if senders else "", recipients=recipients,
        held_for=None if blocked is None else [a for a in _addresses(blocked) if a],
        score=_score(_one(fields, b"x-spam-score")),
        symbols=_symbols(_all(fields, b"x-spam-status") or ""),
        raw=re.sub(rb"\r?\n", b"\r\n", body), stored_at=stored_at, secret_id=secret_id)


def import_directory(q: Quarantine, directory: Path, *, dry_run: bool = False
                     ) -> ImportResult:
    """Import every amavis quarantine file below ``directory``."""
    if not directory.is_dir():
        raise QuarantineError(f"{directory}: no such directory (amavis's $QUARANTINEDIR)")
    out = ImportResult()
    if not dry_run:
        make_quarantine_directory(q.directory)
    paths = list(amavis_files(directory))
    named = {path: m.group("id") for path in paths if (m := _NAME.match(path.name))}
    have = q.index.known(list(named.values()))  # one query, not one per file
    for path in paths:
        if named.get(path) in have:
            out.present.append(named[path])
            continue
        try:
            msg = read_message(path)
        except NotHeldMail as exc:
            out.ignored.append(f"{path}: {exc}")
            continue
        except QuarantineError as exc:
            out.failed.append(f"{path}: {exc}")
            continue
        try:
            out.added.append(store_message(q, msg, dry_run=dry_run))
        except QuarantineError as exc:
            out.failed.append(f"{path}: {exc}")
    return out


def give_to_directory_owner(base: Path, path: Path) -> None:
    """Run as root: hand ``path`` and the directories between it and ``base`` to
    ``base``'s owner, so ``scanner serve`` (its user) can read and release them."""
    if os.geteuid() != 0:
        return
    st = os.stat(base)
    current = path
    while current != base and base in current.parents:
        os.chown(current, st.st_uid, st.st_gid, follow_symlinks=False)
        current = current.parent


def make_quarantine_directory(base: Path) -> None:
    """Create the quarantine directory if it does not exist yet (run before the filter
    ever stored anything), as root owned like its parent (the service user's home,
    ``/var/lib/scanner``): the files given to its owner must be the filter's."""
    if base.is_dir():
        return
    base.mkdir(mode=files.DIR_MODE, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        st = os.stat(base.parent)
        os.chown(base, st.st_uid, st.st_gid, follow_symlinks=False)


def store_message(q: Quarantine, msg: AmavisMessage, *, dry_run: bool = False
                  ) -> QuarantineRecord:
    """Add ``msg`` to the quarantine (with ``dry_run``: the record it would get), its
    file given to the quarantine directory's owner when root runs this."""
    headers = parse_headers(msg.raw)
    about = {"mail_id": msg.mail_id, "sender": msg.sender, "recipients": msg.recipients,
             "category": msg.category, "score": msg.score, "symbols": msg.symbols,
             "subject": header_display(headers, "Subject"),
             "message_id": header_text(headers, "Message-ID"), "client_addr": None,
             "policy_bank": "", "held_for": msg.held_for}
    if dry_run:
        return QuarantineRecord(**about, secret_id=msg.secret_id, stored_at=msg.stored_at,
                                size=len(msg.raw), relative_path="", path="")
    rec = q.store(**about, raw=msg.raw, stored_at=msg.stored_at,
                  secret_id=msg.secret_id or None)
    give_to_directory_owner(q.directory, Path(rec.path))
    return rec


def _read(path: Path) -> bytes:
    try:  # never through a link: the directory belongs to amavis's user, not to root
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise QuarantineError(f"cannot read it: {exc.strerror}") from None
    if path.name.endswith(".gz"):
        try:
            out = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = out.decompress(data, MAX_FILE_BYTES + 1)
        except zlib.error as exc:
            raise QuarantineError(f"corrupt gzip data: {exc}") from None
        if not out.eof and len(data) <= MAX_FILE_BYTES:
            raise QuarantineError("corrupt gzip data: cut short")
    if len(data) > MAX_FILE_BYTES:
        raise QuarantineError(f"larger than {MAX_FILE_BYTES} bytes")
    return data


def _prefix(data: bytes) -> tuple[list[tuple[bytes, bytes]], int, bool]:
    """amavis's own fields at the top of a file: ((lower-cased name, value) in order,
    where the message starts, whether the file is in mbox form)."""
    pos = 0
    mbox = data.startswith(b"From ")
    if mbox:
        pos = data.find(b"\n") + 1 or len(data)
    fields: list[tuple[bytes, bytes]] = []
    while pos < len(data):
        end = _field_end(data, pos)
        text = data[pos:end]
        name, colon, value = text.partition(b":")
        name = name.strip().lower()
        known = name in (b"return-path", b"x-envelope-from", b"x-envelope-to",
                         b"x-envelope-to-blocked", b"x-quarantine-id")
        if not colon or not (known or _SKIPPED.match(text)):
            break
        fields.append((name, re.sub(rb"\r?\n[ \t]+", b" ", value).strip()))
        pos = end
    return fields, pos, mbox


def _field_end(data: bytes, pos: int) -> int:
    """Where the header field starting at ``pos`` ends (after its continuation lines)."""
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return len(data)
        pos = nl + 1
        if pos >= len(data) or data[pos:pos + 1] not in (b" ", b"\t"):
            return pos


def _all(fields: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Every field ``name``'s value joined (None: no such field)."""
    values = [v.decode("utf-8", "surrogateescape") for n, v in fields if n == name]
    return ", ".join(values) if values else None


def _one(fields: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first field ``name``'s value ("" without one)."""
    return next((v.decode("utf-8", "surrogateescape") for n, v in fields if n == name), "")


def _addresses(value: str | None) -> list[str]:
    """``<a@x>, <b@y>`` -> ["a@x", "b@y"] (``<>`` is the null sender, "")."""
    if not value:
        return []
    found = _ADDR.findall(value)
    if found:
        return [a.strip() for a in found]
    return [a.strip() for a in value.split(",") if a.strip()]


def _score(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _symbols(status: str) -> list[str]:
    """The rule names of ``X-Spam-Status: ... tests=[BAYES_99=3.5, ...]``."""
    m = _TESTS.search(status)
    if m is None:
        return []
    return [t.split("=", 1)[0].strip() for t in m.group(1).split(",") if t.strip()]


__all__ = ["DEFAULT_DIRECTORY", "AmavisMessage", "ImportResult", "NotHeldMail",
           "amavis_files", "give_to_directory_owner", "import_directory",
           "make_quarantine_directory", "parse_text", "read_message", "store_message"]
