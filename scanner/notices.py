"""Site-editable notice texts: one template file per kind of notice.

The texts of admin notices, recipient notices, quarantine digests and the
human-readable part of our DSNs are UTF-8 files, shipped in ``scanner/data/notices/``
and replaceable one by one from ``[notices] templates_dir``: a first line
``Subject: ...``, an empty line, then the body, in Python's :class:`string.Template`
syntax (``$sender``, ``${mail_id}``, ``$$`` for a dollar sign). A body line may begin
with ``[?name]`` (kept only when ``$name`` is not empty) or ``[!name]`` (kept only when
it is empty), as amavis's ``[? %x |...]``.

Files are read and checked at start (:func:`load_templates`): a variable the kind does
not have, a file that is not UTF-8 or has no Subject line is a ConfigError naming the
file and the variable. ``scanner serve`` reads them again on SIGHUP (:class:`Notices`,
as the checks' data): a broken file then keeps the templates in use, and the error is
logged. Rendering (:meth:`NoticeTemplate.render`) never raises: values
lose their control characters (a CR or LF in a value cannot start a header field or a
line), a multi-line value's further lines are aligned under its first one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from scanner.errors import ConfigError

log = logging.getLogger("scanner")

_ADMIN = ("hostname", "category", "blocked", "mail_id", "queue_id", "sender", "recipients",
          "client_addr", "client_name", "subject", "date", "message_id", "symbols",
          "quarantine")
_RECIPIENT = ("hostname", "category", "recipient", "sender", "subject", "date",
              "message_id", "mail_id", "quarantine")
KINDS: dict[str, frozenset[str]] = {
    "admin-virus": frozenset((*_ADMIN, "virus_names")),
    "admin-banned": frozenset((*_ADMIN, "banned_files", "banned_parts")),
    "admin-spam": frozenset((*_ADMIN, "score")),
    "admin-unchecked": frozenset(_ADMIN),
    "admin-bad-header": frozenset((*_ADMIN, "header_problems")),
    "recipient-virus": frozenset((*_RECIPIENT, "virus_names")),
    "recipient-banned": frozenset((*_RECIPIENT, "banned_files", "banned_parts")),
    "recipient-bad-header": frozenset((*_RECIPIENT, "header_problems")),
    "dsn": frozenset(("hostname", "sender", "failed", "mail_id", "subject", "date",
                      "message_id")),
    "digest": frozenset(("hostname", "recipient", "count", "period", "messages",
                         "release_links")),
}
"""Each notice kind (its file is KIND.txt) and the variables its template may use."""

Value = str | tuple[str, ...]
"""A one-line value, or the lines of a multi-line one (``$recipients``, ``$failed``)."""

_CONDITION = re.compile(r"\[([?!])([_a-z][_a-z0-9]*)\]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def clean(text: str) -> str:
    """``text`` with each control character but TAB (CR, LF, NUL...) made a space."""
    return _CONTROL.sub(" ", text)


@dataclass(frozen=True, slots=True)
class Line:
    """One body line: its condition (``?`` or ``!`` and a variable, or none) and text."""

    when: tuple[str, str] | None
    text: Template


@dataclass(frozen=True, slots=True)
class NoticeTemplate:
    """A checked template: its Subject line and its body lines."""

    subject: Template
    lines: tuple[Line, ...]

    def render(self, values: Mapping[str, Value]) -> tuple[str, str]:
        """The Subject (one line) and the body (``\\n`` line ends, ending in one)."""
        subject = clean(_substitute(self.subject, values))
        body = [_substitute(line.text, values) for line in self.lines
                if line.when is None or (line.when[0] == "?") == bool(values.get(line.when[1]))]
        return subject, "".join(f"{line}\n" for line in body)


def _substitute(template: Template, values: Mapping[str, Value]) -> str:
    """``template`` with its variables replaced, never raising (unknown names are
    empty: a template was checked at start); continuation lines of a multi-line value
    are indented to the column of its first line."""
    out: list[str] = []
    text, pos = template.template, 0
    for m in template.pattern.finditer(text):
        out.append(text[pos:m.start()])
        pos = m.end()
        name = m.group("named") or m.group("braced")
        if name is None:  # $$ (or what the check refused: kept as written)
            out.append("$" if m.group("escaped") is not None else m.group(0))
            continue
        value = values.get(name, "")
        lines = [clean(v) for v in value] if isinstance(value, tuple) else [clean(value)]
        column = len("".join(out).rpartition("\n")[2])
        out.append(("\n" + " " * column).join(lines))
    out.append(text[pos:])
    return "".join(out)


def parse(text: str, where: str, allowed: frozenset[str]) -> NoticeTemplate:
    """Check and compile one template file's text; ``where`` names it in errors."""
    first, _, rest = text.partition("\n")
    name, colon, subject = first.rstrip("\r").partition(":")
    if not colon or name.strip().lower() != "subject":
        raise ConfigError(f"{where}: the first line must be 'Subject: ...' (the notice's "
                          "subject), then an empty line and the body")
    body = rest.replace("\r\n", "\n")
    start = 3 if body.startswith("\n") else 2  # the number of the body's first line
    body = body[start - 2:]
    lines = body[:-1].split("\n") if body.endswith("\n") else body.split("\n")
    compiled = []
    for number, line in enumerate(lines, start=start):
        when = None
        m = _CONDITION.match(line)
        if m:
            when, line = (m.group(1), m.group(2)), line[m.end():]
            _check_names(where, number, [m.group(2)], allowed)
        compiled.append(Line(when, _template(clean(line), where, number, allowed)))
    return NoticeTemplate(_template(clean(subject.strip()), where, 1, allowed),
                          tuple(compiled))


def _template(text: str, where: str, number: int, allowed: frozenset[str]) -> Template:
    template = Template(text)
    if not template.is_valid():
        bad = next(m for m in template.pattern.finditer(text) if m.group("invalid") is not None)
        raise ConfigError(f"{where}: line {number}: '$' not followed by a variable name "
                          f"at {text[bad.start():bad.start() + 12]!r}; write $$ for a "
                          "dollar sign")
    _check_names(where, number, template.get_identifiers(), allowed)
    return template


def _check_names(where: str, number: int, names: list[str], allowed: frozenset[str]) -> None:
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{where}: line {number}: unknown variable ${name}; this "
                              f"notice has " + ", ".join(f"${v}" for v in sorted(allowed)))


def _read(path: Path | resources.abc.Traversable, where: str) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # a BOM (a Windows editor's) is no text
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None


def load_templates(templates_dir: str = "") -> dict[str, NoticeTemplate]:
    """Every kind's template: from ``templates_dir`` where it has KIND.txt, else the
    shipped one. Raises ConfigError naming the file for a broken one, or a directory
    that does not exist."""
    if templates_dir and not Path(templates_dir).is_dir():
        raise ConfigError(f"'notices.templates_dir' {templates_dir}: not a directory")
    shipped = resources.files("scanner").joinpath("data/notices")
    out = {}
    for kind, allowed in KINDS.items():
        site = Path(templates_dir, f"{kind}.txt") if templates_dir else None
        if site is not None and site.exists():
            out[kind] = parse(_read(site, str(site)), str(site), allowed)
        else:
            where = f"scanner/data/notices/{kind}.txt"
            out[kind] = parse(_read(shipped.joinpath(f"{kind}.txt"), where), where, allowed)
    return out


def templates_key(templates_dir: str) -> Hashable:
    """The key under which :class:`scanner.checks.base.LastGood` keeps the templates
    read from ``templates_dir`` (``scanner config check`` and ``scanner serve``'s
    master read them at start and again on SIGHUP, for the workers forked later)."""
    return ("notice templates", templates_dir)


class Notices(Mapping[str, NoticeTemplate]):
    """The templates of ``[notices] templates_dir`` a worker uses, by kind: read again
    by :meth:`reload` on SIGHUP (:mod:`scanner.serve.reload`), as the checks' data. A
    broken file then keeps the templates in use, with a log line naming it and its
    line."""

    name = "notice templates"  # reload_checks names it in its log line

    def __init__(self, templates_dir: str = "",
                 templates: Mapping[str, NoticeTemplate] | None = None) -> None:
        """``templates``: those already read from ``templates_dir`` (None: read now)."""
        self._dir = templates_dir
        self._templates = dict(templates) if templates is not None \
            else load_templates(templates_dir)

    def reload(self) -> bool:
        """Read the templates again; False (the old ones stay, logged) when one is
        broken (SIGHUP; runs in the thread pool)."""
        try:
            templates = load_templates(self._dir)
        except ConfigError as exc:
            log.error("keeping the current notice templates: %s", exc)
            return False
        self._templates = templates
        log.info("notice templates reloaded from %s", self._dir or "scanner/data/notices")
        return True

    def __getitem__(self, kind: str) -> NoticeTemplate:
        return self._templates[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._templates)

    def __len__(self) -> int:
        return len(self._templates)


_BUILT_IN: dict[str, NoticeTemplate] = {}


def built_in() -> dict[str, NoticeTemplate]:
    """The shipped templates (read once)."""
    if not _BUILT_IN:
        _BUILT_IN.update(load_templates(""))
    return _BUILT_IN
