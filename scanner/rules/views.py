"""The texts rules look at, built once per message: SpamAssassin's views of a message.

- ``header``: :mod:`scanner.rules.headers` values, pseudo-headers ``ALL``, ``ToCc``,
  ``EnvelopeFrom``, ``MESSAGEID`` (and this engine's ``FromReplyTo``: the first From
  and Reply-To addresses, space-separated; and ``LinkMismatch``: one value per HTML
  link whose text shows a web address (``http://``, ``https://`` or ``www.``) in
  another registered domain than the link leads to, as "SHOWN TARGET" registered
  domains), SpamAssassin's ``X-Spam-Relays-Trusted``, ``-Untrusted``, ``-Internal`` and
  ``-External`` and ``ALL-TRUSTED``, ``ALL-UNTRUSTED``, ``ALL-INTERNAL``,
  ``ALL-EXTERNAL`` (:func:`scanner.auth.received.pseudo_headers`: the Task's Received chain
  when the rules check hands it over, else this message's own Received headers with
  private addresses trusted, as SpamAssassin guesses when no trusted_networks are
  configured), and the ``:raw``, ``:addr``, ``:name``, ``:first``, ``:last`` modifiers;
- ``body``: the Subject as first line, then every text/plain and text/html part (HTML
  rendered; every other text/* type but text/calendar and text/x-vcard counts as
  text/plain, and so does a multipart no delimiter splits, as Python's ``email`` shows
  it), each cut at ``body_part_scan_size``; blank lines separate
  paragraphs, other white space runs (Unicode white space, as Perl sees it) become
  one space, and lines longer than 2,048 bytes are split at a space;
- ``rawbody``: every text and message part (a part named ``*.html`` is text/html), and
  no text/calendar one, transfer-decoded but not rendered, cut at
  ``rawbody_part_scan_size`` and split into pieces of 2,048-4,096 bytes;
- ``full``: the message as received (LF line ends);
- ``uri``: see :mod:`scanner.rules.uris`.

Text parts come from :mod:`scanner.rules.textparts` (the decoders' part tree when the
pipeline built one, else a small MIME walk of the raw bytes). ``body`` text is
characters, handed to the rules as UTF-8, as SpamAssassin 4 with its default
``normalize_charset 1`` does: each part's octets are decoded by
:func:`scanner.rules.charsets.normalize` (valid UTF-8 first, then the declared charset,
then Windows-1252; UTF-7, UTF-16 and UTF-32 parts, whose octets hide ASCII words, are
decoded as declared, a BOM-less ``UTF-16`` in the byte order the module explains); a
body of ASCII parts only stays octets (see :meth:`MessageView.body`). ``rawbody`` and
``full`` stay octets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import regex

from scanner.auth.psl import known_org_domain
from scanner.auth.received import (
    ORIGINATING_IP_HEADERS,
    RelayChain,
    find_chain,
    originating_ips,
    pseudo_headers,
)
from scanner.dns.blocked import Network
from scanner.dns.reverse import NOT_PUBLIC
from scanner.rules import addrparse
from scanner.rules import headers as hdr
from scanner.rules.charsets import normalize
from scanner.rules.html import Rendered, render
from scanner.rules.textparts import TextPart, leaves_from_parts, leaves_from_raw
from scanner.rules.uris import UriFinder, canonicalize, from_html, from_text
from scanner.task import ClientInfo

MAX_LINE = 2048
# Perl's \s on characters (Python's \s also takes \x1c-\x1f, which Perl's does not)
_PERL_SPACE = r"[\t\n\x0b\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_WS = re.compile(_PERL_SPACE + "+")
_PARA = re.compile(r"\n+" + _PERL_SPACE + r"*\n+")
_ASCII_WS = re.compile(r"[ \t\n\r\f\x0b]+")
_ASCII_PARA = re.compile(r"\n+[ \t\n\r\f\x0b]*\n+")
_WIDE = re.compile(r"[^\x00-\xff]")
_RAW_FOLD = re.compile(rb"\r?\n\s+")
_ENVELOPE_ADDR = re.compile(rb"<?([^\s<>]*@[^\s<>]+|)>?")
_RENDER_MEMO = "rules.render"  # key of the rendered HTML in a decoders' part's memo
_ALL_RANGES = {"ALL-TRUSTED": ("trusted", False), "ALL-UNTRUSTED": ("trusted", True),
               "ALL-INTERNAL": ("internal", False), "ALL-EXTERNAL": ("internal", True)}
_RELAY_HEADERS = {n.lower(): n for n in ("X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted",
                                         "X-Spam-Relays-Internal", "X-Spam-Relays-External")}


@dataclass(frozen=True, slots=True)
class ViewLimits:
    """Size limits of the body views and the URI list."""

    body_part_scan_size: int = 50000
    rawbody_part_scan_size: int = 500000
    max_uris: int = 10000


@dataclass
class MessageView:
    """Lazily built views of one message."""

    raw: bytes
    parts: Sequence[Any] = ()
    envelope_from: str | None = None
    limits: ViewLimits = field(default_factory=ViewLimits)
    uri_finder: UriFinder | None = None
    redirectors: Sequence[regex.Pattern] = ()
    valid_host: Callable[[str], bool] | None = None
    chain: RelayChain | None = None
    """The Task's Received chain; None: worked out from the headers."""

    @cached_property
    def headers(self) -> hdr.HeaderBlock:
        return hdr.parse_block(hdr.header_part(self.raw))

    @cached_property
    def full(self) -> bytes:
        head, body = hdr.split_header(self.raw)
        return head + body

    @cached_property
    def leaves(self) -> list[TextPart]:
        return leaves_from_parts(self.parts) if self.parts else leaves_from_raw(self.raw)

    # -- header values ---------------------------------------------------------------
    def header(self, spec: str) -> list[bytes]:
        """Values for a header spec like ``Subject``, ``From:addr``, ``ALL:raw``."""
        name, *mods = spec.split(":")
        raw = "raw" in mods
        block = self.headers
        if name == "ALL":
            if raw:
                return [n.encode("latin-1") + b":" + v for n, v in block.order]
            return block.all_decoded()
        if name in _ALL_RANGES:
            return self._all_range(name, raw)
        if name.lower() == "envelopefrom":
            values = [self.envelope_from.encode("utf-8", "replace")] if self.envelope_from \
                else self._envelope_guess()
        elif name.lower() == "tocc":
            values = self._get("To", raw) + self._get("Cc", raw)
        elif name == "FromReplyTo":
            values = self._from_reply_to()
        elif name == "LinkMismatch":
            values = self._link_mismatch
        elif name.lower() in _RELAY_HEADERS:
            values = [self._relay_headers[_RELAY_HEADERS[name.lower()]].encode("latin-1")]
        elif name == "MESSAGEID":
            values = [v for h in ("X-Message-Id", "Resent-Message-Id", "X-Original-Message-ID",
                                  "Message-Id") for v in self._get(h, raw) if v]
        else:
            need_raw = raw or "addr" in mods or "name" in mods
            values = self._get(name, need_raw)
        if values and "first" in mods:
            values = values[:1]
        elif values and "last" in mods:
            values = values[-1:]
        if "addr" in mods or "name" in mods:
            out: list[bytes] = []
            for value in values:
                for phrase, address in addrparse.entries(value):
                    if "addr" in mods:
                        if address is not None:
                            out.append(address.encode("latin-1"))
                    elif phrase is not None:
                        out.append(phrase.encode("latin-1") if raw else hdr.name_of(phrase))
            values = out
        return values

    def _from_reply_to(self) -> list[bytes]:
        """This engine's pseudo-header: "<From address> <Reply-To address>"."""
        sender = self.header("From:addr:first")
        reply = self.header("Reply-To:addr:first")
        if not sender or not reply:
            return []
        return [sender[0] + b" " + reply[0]]

    @cached_property
    def _link_mismatch(self) -> list[bytes]:
        """This engine's pseudo-header: "SHOWN TARGET" per deceptive HTML link."""
        out = []
        for href, text in self._rendered[2]:
            pair = link_mismatch(href, text)
            if pair is not None:
                out.append(f"{pair[0]} {pair[1]}".encode("ascii"))
        return out

    @property
    def relays_unparseable(self) -> int:
        """Received headers no known format reads (SpamAssassin's
        num_relays_unparseable)."""
        return self._chain.unparseable

    @cached_property
    def _chain(self) -> RelayChain:
        return self.chain if self.chain is not None else headers_chain(self.headers)

    @cached_property
    def _relay_headers(self) -> Mapping[str, str]:
        return pseudo_headers(self._chain)

    def _all_range(self, name: str, raw: bool) -> list[bytes]:
        """SpamAssassin's ALL-TRUSTED, ALL-INTERNAL (every header line down to the
        first untrusted / external Received header, inclusive) and ALL-UNTRUSTED,
        ALL-EXTERNAL (from that Received header to the end)."""
        part, first_outside = _ALL_RANGES[name]
        index = (self._chain.last_trusted_index if part == "trusted"
                 else self._chain.last_internal_index) + 1
        order = self.headers.order
        received = [i for i, (n, _) in enumerate(order) if n.lower() == "received"]
        cut = received[index] if index < len(received) else None
        if first_outside:
            chosen = order[cut:] if cut is not None else []
        else:
            chosen = order[:cut + 1] if cut is not None else order
        if raw:
            return [n.encode("latin-1") + b":" + v for n, v in chosen]
        return [n.encode("latin-1") + b": " + hdr.decode_value(v, n) + b"\n"
                for n, v in chosen]

    def _get(self, name: str, raw: bool) -> list[bytes]:
        if raw:
            return [_RAW_FOLD.sub(b" ", v) for v in self.headers.raw(name)]
        return self.headers.decoded(name)

    def _envelope_guess(self) -> list[bytes]:
        for name in ("X-Envelope-From", "Envelope-Sender", "Return-Path"):
            for value in self.headers.raw(name):
                m = _ENVELOPE_ADDR.search(value.strip())
                if m is not None:
                    return [m.group(1) + b"\n"]
        return []

    def header_text(self, spec: str, unset: bytes | None) -> bytes | None:
        """The string a header rule matches: values joined, or ``unset``/None if none."""
        values = self.header(spec)
        if not values:
            return unset
        joiner = b"" if values[0].endswith(b"\n") else b"\n"
        return joiner.join(values)

    # -- body views ------------------------------------------------------------------
    @cached_property
    def subject(self) -> bytes:
        values = self.headers.decoded("Subject")
        return values[-1] if values else b"\n"

    @cached_property
    def _rendered(self) -> tuple[list[tuple[str, bool]], list[str], list[tuple[str, str]]]:
        pieces: list[tuple[str, bool]] = []  # (text, is it characters: see body)
        links: list[str] = []
        anchors: list[tuple[str, str]] = []
        for part in self.leaves:
            kind = part.effective_type
            if kind not in ("text/plain", "text/html"):
                continue
            is_html = kind == "text/html"
            text, chars = normalize(part.data, part.charset)
            if is_html and text:
                rendered = _render(text, part.source)
                text = rendered.text
                chars = chars or _WIDE.search(text) is not None
                links.extend(from_html(rendered.links, self.limits.max_uris, rendered.base))
                anchors.extend(rendered.anchors)
            text = _truncate(text, self.limits.body_part_scan_size, " ")
            pieces.append((text, chars))
        return pieces, links, anchors

    @cached_property
    def body(self) -> list[bytes]:
        """SpamAssassin's body text. Perl keeps a string as octets until it is given
        decoded characters or a character above U+00FF: a body whose every part was
        ASCII (HTML entities such as ``&copy;`` or ``&#150;`` included) stays Latin-1
        octets with ASCII white space; any decoded part makes all of it UTF-8, with
        Unicode white space."""
        pieces = self._rendered[0]
        chars = any(c for _, c in pieces)
        text = "\n".join(t for t, _ in pieces)
        text = (_PARA if chars else _ASCII_PARA).sub("\x00", text)
        text = (_WS if chars else _ASCII_WS).sub(" ", text).replace("\x00", "\n")
        data = text.encode("utf-8" if chars else "latin-1", "replace")
        return _short_lines(self.subject + data)

    @cached_property
    def body_joined(self) -> bytes:
        return b"\n".join(self.body)

    @cached_property
    def rawbody(self) -> list[bytes]:
        out: list[bytes] = []
        for part in self.leaves:
            # by the effective type: a part named *.html is text/html (SpamAssassin)
            ctype = part.effective_type
            if not (ctype.startswith("text") or ctype.startswith("message")) \
                    or part.ctype == "text/calendar":
                continue
            data = _truncate_bytes(part.data, self.limits.rawbody_part_scan_size)
            out.extend(_short_paragraphs(data))
        return out

    @cached_property
    def rawbody_joined(self) -> bytes:
        return b"\n".join(self.rawbody)

    @cached_property
    def uris(self) -> list[bytes]:
        limit = self.limits.max_uris
        found: list[str] = []
        if self.uri_finder is not None:
            for uri in from_text(self.body, self.uri_finder, limit):
                if self.valid_host is None or self.valid_host(uri):
                    found.append(uri)
        found.extend(self._rendered[1][:limit])
        return [_uri_octets(u) for u in canonicalize(found, self.redirectors, limit)]

    @cached_property
    def uris_joined(self) -> bytes:
        return b"\n".join(self.uris)


def headers_chain(headers: hdr.HeaderBlock, msa: Sequence[Network] = ()) -> RelayChain:
    """The Received chain of a header block without a Task: no XFORWARD client, the
    private and reserved ranges trusted and internal (SpamAssassin's guess), ``msa``
    networks as SpamAssassin's msa_networks."""
    received = [v.decode("latin-1") for v in headers.raw("Received")]
    values = [v.decode("latin-1") for name in ORIGINATING_IP_HEADERS
              for v in headers.raw(name)]
    return find_chain(received, ClientInfo(), NOT_PUBLIC, NOT_PUBLIC,
                      originating=originating_ips(values), msa=msa)


def _uri_octets(uri: str) -> bytes:
    """A URI as the rules see it: Latin-1 octets, UTF-8 if it has a character above
    U+00FF (exactly the ones Latin-1 cannot encode)."""
    try:
        return uri.encode("latin-1")
    except UnicodeEncodeError:
        return uri.encode("utf-8", "replace")


def _truncate(text: str, size: int, sep: str) -> str:
    if not size or len(text) <= size:
        return text
    for mark in ("\n", sep):
        idx = text.find(mark, size)
        if idx >= 0 and idx - size <= 1024:
            return text[:idx + 1]
    return text[:size]


def _truncate_bytes(data: bytes, size: int) -> bytes:
    if not size or len(data) <= size:
        return data
    for mark in (b"\n", b">", b" "):
        idx = data.find(mark, size)
        if idx >= 0 and idx - size <= 1024:
            return data[:idx + 1]
    return data[:size]


def _short_lines(text: bytes) -> list[bytes]:
    out: list[bytes] = []
    for line in text.splitlines(keepends=True):
        while len(line) > MAX_LINE:
            cut = line.rfind(b" ", 0, MAX_LINE + 1) + 1 or MAX_LINE
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _short_paragraphs(data: bytes) -> list[bytes]:
    if len(data) <= MAX_LINE:
        return [data]
    out: list[bytes] = []
    ofs = 0
    n = len(data)
    while n - ofs > 2 * MAX_LINE:
        j = -1
        for mark in (b"\n", b">", b" "):
            j = data.find(mark, ofs + MAX_LINE)
            if j >= 0 and j - ofs + 1 <= 2 * MAX_LINE:
                break
            j = -1
        if j < 0:
            j = ofs + MAX_LINE
        out.append(data[ofs:j + 1])
        ofs = j + 1
    if ofs < n:
        out.append(data[ofs:])
    return out


def _render(text: str, source: Any) -> Rendered:
    """``render(text)``, kept in the decoders' part's ``memo`` (by the text rendered) when
    there is one, so that the rules and :func:`html_text` (the URI blocklist check)
    render a leaf's HTML only once when they read it as the same string."""
    memo = getattr(source, "memo", None)
    if memo is None:
        return render(text)
    renders = memo.setdefault(_RENDER_MEMO, {})
    rendered = renders.get(text)
    if rendered is None:
        rendered = renders[text] = render(text)
    return rendered


def html_text(part: Any) -> str:
    """The visible text of one HTML leaf of the decoders' part tree (``part.html``, decoded
    by its declared charset), rendered as the body rules render HTML. Where the rules
    decode the bytes to the same string (most parts: both read the declared charset;
    they differ for a part that is valid UTF-8 but declared otherwise, or not valid in
    its declared charset) both share one render; else they are rendered apart."""
    html = part.html or ""
    return _render(html, part).text if html else ""


_SHOWN_ADDRESS = re.compile(r"(?:https?://|www\.)([^\s/:?#<>\"'@]+)(?:[/:?#]|\s|$)", re.I)
_USERINFO = re.compile(r"^(?:https?://)?[^\s/]*@", re.I)


def link_mismatch(href: str, text: str) -> tuple[str, str] | None:
    """(shown, target) registered domains when a link's text shows a web address in
    another registered domain than its http(s) target; None otherwise.

    Only text that starts with ``http://``, ``https://`` or ``www.`` counts as showing an
    address ("click here" shows none), and its domain must end in a known public suffix
    ("www.example.o" split by a line break does not). Registered domains come from the
    public suffix list, so ``www.example.co.uk`` and ``mail.example.co.uk`` agree.
    """
    shown = text.strip()
    m = _SHOWN_ADDRESS.match(shown)
    if m is None or _USERINFO.match(shown):
        return None
    try:
        target = urlsplit(href.strip())
        target_host = target.hostname
    except ValueError:
        return None
    if target.scheme.lower() not in ("http", "https") or not target_host:
        return None
    shown_org = _registered(m.group(1))
    target_org = _registered(target_host)
    if not shown_org or not target_org or shown_org == target_org:
        return None
    return shown_org, target_org


def _registered(host: str) -> str:
    """An IPv4 address as it is, a name as its registered domain ("" if unknown)."""
    name = host.strip().rstrip(".")
    return name if _IPV4.match(name) else known_org_domain(name)


_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
