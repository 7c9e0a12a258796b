"""The URI list that ``uri`` rules see: links from text and HTML, plus cleaned variants.

Text: what a mail client would turn into a link — ``scheme://...``, ``www.`` and
``ftp.`` hosts, ``mailto:`` and bare e-mail addresses, and bare host names with a
known top-level domain (then prefixed with ``http://``). HTML: every link attribute
(see :mod:`scanner.rules.html`), made absolute against the part's ``<base href>``.

Each URI is kept as found and in cleaned forms, as SpamAssassin does: backslashes to
slashes, percent-decoding, a scheme added when missing, ``&#NN;`` entities decoded,
ideographic and fullwidth dots (U+3002, U+FF0E, U+FF61) in the host made ASCII dots,
user info and trailing ASCII junk dropped from the host (case kept; a name in another
script keeps its last letters; a dotted ASCII name followed by other text is added on
its own), default ports removed, numeric and
hexadecimal IPv4 hosts in dotted-decimal form, and the targets of redirectors
(``redirector_pattern`` rules and any embedded ``http://...``) added as URIs of
their own. The list is capped at ``max_uris`` entries.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import regex

COMMON_TLDS = frozenset([
    "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "aero", "coop",
    "museum", "mobi", "asia", "tel", "travel", "jobs", "cat", "xxx", "post", "arpa", "app", "dev",
    "io", "co", "me", "tv", "cc", "ws", "bz", "online", "site", "top", "xyz", "club", "shop",
    "store", "tech", "space", "website", "live", "life", "world", "today", "email", "link", "click",
    "work", "news", "blog", "cloud", "digital", "agency", "center", "company", "group", "media",
    "network", "solutions", "services", "systems", "ru", "cn", "de", "uk", "jp", "fr", "br", "it",
    "pl", "nl", "au", "in", "es", "ca", "ch", "se", "be", "at", "dk", "cz", "no", "fi", "hu", "gr",
    "pt", "ro", "ie", "nz"
])
MAX_URI_LENGTH = 8192
_END = "><\"`}\\]{[|\\s\\x1b\\xa0"
_SCHEME_RE = (r"(?:(?:https?|ftp)://|(?:www\d{0,2}|ftp)\.)[^" + _END + r"]{1,2048}")
_MAIL_RE = (r"(?:mailto:[^" + _END + r",('\x80-\xff]{1,2048}|[^" + _END
            + r",('\x80-\xff@]{1,251}@[^" + _END + r",('\x80-\xff]{1,251})")
_TRAIL = re.compile(r"[-~!@#^&*()_+=:;'?,.]*$")
_IPV4_PARTS = re.compile(r"^((?:0x[0-9a-f]+|\d+)\.)((?:0x[0-9a-f]+|\d+)\.)"
                         r"((?:0x[0-9a-f]+|\d+)\.)(0x[0-9a-f]+|\d+)$", re.I)
_HTTP = re.compile(r"^(https?://)([^@/?#]*@)?([^/?#:]+)((?::(\d*))?.*)$", re.I | re.S)
# _variants() runs these for every URI: compiled once here.
_RELATIVE = re.compile(r"^(?:[#?&]|/(?!/))")
_MAILTO = re.compile(r"^mailto:", re.I)
_MAIL_LIKE = re.compile(r"^[^:]*@")
_MAIL_QUERY = re.compile(r"^([^@]+@[^?]+)\?")
_MAIL_AMP = re.compile(r"^([^@]+@[^?&]+)&")
_MAIL_SPACES = re.compile(r"^(?:mailto:)?(?:%20)*([^@]+@[^?&%]+)")
_MAIL_ANGLE = re.compile(r"^[^?&]*<([^@>]+@[^>]+)>")
_HTTP_SLASHES = re.compile(r"^(https?:)/*", re.I)  # browsers take any run of slashes
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")
_HAS_SCHEME = re.compile(r"^[-_a-z0-9]+:", re.I)
_QUERY_AFTER_HOST = re.compile(r"^(https?://[^/?#]+)([?#])", re.I)
_DEC_ENTITY = re.compile(r"&#0*(3[3-9]|[4-9]\d|1[01]\d|12[0-6]);")
_HEX_ENTITY = re.compile(r"&#x0*(2[1-9]|[3-6][a-fA-F0-9]|7[0-9a-eA-E]);")
_DOT_ENTITY = re.compile(r"&#(?:x2e|12290|x3002|65294|xff0e|65377|xff61);", re.I)
_CTRL = re.compile(r"[\x00-\x20]")
# ASCII junk only: a non-ASCII character (or a byte of one: text URIs are UTF-8 read
# as Latin-1) may be a letter of a name in another script (.рф)
_TRAILING_JUNK = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+$")
# dots that IDNA maps to ".": U+3002, U+FF0E, U+FF61, and their UTF-8 read as Latin-1
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_UNICODE_DOT = re.compile("[\u3002\uff0e\uff61]|\xe3\x80\x82|\xef\xbc\x8e|\xef\xbd\xa1")
_DEFAULT_HTTP_PORT = re.compile(r"^:80\b")
_DEFAULT_HTTPS_PORT = re.compile(r"^:443\b")
_SINGLE_LABEL = re.compile(r"^(?:www\.)?([^.]+)$")


# Paragraphs up to this size go to the stdlib engine, longer ones to the guarded one.
FAST_MAX = 16384
_GUARD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class UriFinder:
    """The link finder for rendered text: one pattern compiled for two regex engines.

    Python's ``re`` finds the same matches 3-6x faster than the ``regex`` module here
    (corpus paragraphs and adversarial ones alike: `tests/rules/test_uri_precheck.py`),
    but has no timeout. The pattern has no nested repetition (every run is bounded, at
    most 2,048 characters), so its cost grows linearly with the paragraph; short
    paragraphs, the normal case, use ``re``, and anything longer than :data:`FAST_MAX`
    uses ``regex`` with a timeout, so no paragraph can hold the scan up.
    """

    fast: re.Pattern[bytes]
    guarded: regex.Pattern

    def finditer(self, text: bytes) -> Iterator[Any]:
        if len(text) <= FAST_MAX:
            return self.fast.finditer(text)
        return self.guarded.finditer(text, timeout=_GUARD_SECONDS)

    def search(self, text: bytes) -> Any:
        """The first match (tests and tools)."""
        return next(iter(self.finditer(text)), None)


def text_uri_regex(tlds: Iterable[str]) -> UriFinder:
    """The link finder for rendered text, with the given top-level domains."""
    names = sorted({t.lower() for t in tlds} | COMMON_TLDS, key=len, reverse=True)
    tld = "(?:" + "|".join(regex.escape(t) for t in names) + "|[a-z]{2})"
    schemeless = (r"([a-z\d][a-z\d._-]{0,251}\." + tld + r")\.?(?::\d{1,5})?(?:/[^"
                  + _END + r"]{1,2048})?")
    start = r"[!\"#$&'()*+,/:;<=>?@\[\\\]^`{|}~\s\x1b\xa0]"
    pattern = (r"(?:\b|(?<=[><\"'`,{\[(|\s\x1b\xa0]))(?:(" + _SCHEME_RE + r")(?=[" + _END
               + r"]|\Z)|(" + _MAIL_RE + r")(?=[" + _END + r",('\x80-\xff]|\Z)|(?:^|(?<="
               + start + r"))(" + schemeless + r")(?=[" + _END + r"]|\Z))")
    raw = pattern.encode("latin-1")
    return UriFinder(re.compile(raw, re.I | re.A),
                     regex.compile(raw, regex.I | regex.ASCII | regex.VERSION0))


# Every match of the text_uri_regex finder contains one of these: "://", "www" or "ftp"
# (scheme links), "mailto:" or "@" (mail), or a dot between a host character and a
# letter (bare host names: every top-level domain starts with a letter). Paragraphs
# without any are skipped; most prose has none, and this scan is 3x cheaper. Written as
# one class of the alternatives' first characters, a lookbehind then telling which
# follows (the dot one anchored at its dot), the case spelled out: re jumps between
# candidate characters instead of trying the whole IGNORECASE alternation at every
# position ("://|@|www|ftp|mailto:|[a-z0-9._-]\.[a-z]", re.I: same answers, a third of
# the time; tests/rules/test_uri_precheck.py compares them).
_MAYBE_URI = re.compile(rb"[:@wWfFmM.](?:(?<=:)//|(?<=@)|(?<=[wW])[wW][wW]|(?<=[fF])[tT][pP]"
                        rb"|(?<=[mM])[aA][iI][lL][tT][oO]:|(?<=[a-zA-Z0-9._-]\.)[a-zA-Z])")
# Precompiled (a module-level re.match() pays a cache lookup on every call).
_CLOSE_PAREN = re.compile(r"^([^(]*)\).*$", re.S)
_CID = re.compile(r"^[cm]id:", re.I)
_SCHEME_ONLY = re.compile(r"^\w+:/{0,2}$")
_KNOWN_SCHEME = re.compile(r"^(?:https?|ftp|mailto):", re.I)
_FTP_HOST = re.compile(r"^ftp\.", re.I)
_WWW_HOST = re.compile(r"^www\d{0,2}\.", re.I)
_PATH_AT = re.compile(r"/.+@")
_AT_DOT = re.compile(r"@.+?\.")
_MAIL_PREFIX = re.compile(r"^(?:skype|e?-?mail)?:+", re.I)
_ANY_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
_USERINFO = re.compile(r"^[^@]+@")
_EMBEDDED_URL = re.compile(r"(https?:/{0,2}[^&#]+)", re.I)
_OCTAL = re.compile(r"^0+[0-7]+$")
_HEX_HOST = re.compile(r"^0x[0-9a-f]+$", re.I)
_DECIMAL_HOST = re.compile(r"^[0-9]+$")
_BARE_HOST_END = re.compile(r"[/:?#]")


def from_text(paragraphs: Sequence[bytes], finder: UriFinder, limit: int) -> list[str]:
    """Links in rendered text, with a scheme added (SpamAssassin's text URI parser)."""
    out: list[str] = []
    seen: set[str] = set()
    for para in paragraphs:
        if not _MAYBE_URI.search(para):
            continue
        for m in finder.finditer(para):
            raw = (m.group(1) or m.group(2) or m.group(3)).decode("latin-1")
            kind = "scheme" if m.group(1) else "mail" if m.group(2) else "bare"
            raw = _CLOSE_PAREN.sub(r"\1", raw)
            raw = _TRAIL.sub("", raw)
            if raw in seen:
                continue
            seen.add(raw)
            uri = _with_scheme(raw, kind)
            if uri:
                out.append(uri)
                if len(out) >= limit:
                    return out
    return out


def _with_scheme(raw: str, kind: str) -> str | None:
    if kind == "mail" and "@" not in raw:
        return None
    if _CID.match(raw) or _SCHEME_ONLY.match(raw):
        return None
    uri = raw
    if not _KNOWN_SCHEME.match(uri):
        if _FTP_HOST.match(uri):
            uri = "ftp://" + uri
        elif _WWW_HOST.match(uri) or _PATH_AT.search(uri):
            uri = "http://" + uri
        elif "@" in uri:
            if not _AT_DOT.search(uri) or "&nbsp;" in uri:
                return None
            uri = "mailto:" + _MAIL_PREFIX.sub("", uri)
        else:
            # a bare name: "insurance...now" and "users.....er" are ellipses, no names
            if "." not in uri or ".." in _BARE_HOST_END.split(uri, maxsplit=1)[0]:
                return None
            uri = "http://" + uri
    return uri


def from_html(links: Sequence[str], limit: int, base: str = "") -> list[str]:
    """One HTML part's link targets, relative ones made absolute against the part's
    ``<base href>`` (:attr:`scanner.rules.html.Rendered.base`; none: kept as they are,
    and :func:`canonicalize` gives a schemeless ``example.com/x`` its ``http://``)."""
    out: list[str] = []
    for link in links[:limit]:
        link = link.strip()
        if base and link and not _ANY_SCHEME.match(link) and not link.startswith("//"):
            link = _join(base, link)
        out.append(link)
    return out


def _join(base: str, link: str) -> str:
    """``link`` resolved against ``base``; as it is when either does not parse (an
    unclosed IPv6 bracket)."""
    try:
        return urllib.parse.urljoin(base, link)
    except ValueError:
        return link


def canonicalize(uris: Iterable[str], redirectors: Sequence[regex.Pattern],
                 limit: int) -> list[str]:
    """Every URI plus its cleaned variants, each once, in first-seen order."""
    todo = list(uris)
    result: dict[str, None] = {}
    i = 0
    while i < len(todo) and len(result) < limit:
        uri = todo[i]
        i += 1
        for variant in _variants(uri, redirectors, todo):
            if len(variant) > MAX_URI_LENGTH:
                variant = variant[:MAX_URI_LENGTH]
            result.setdefault(variant, None)
    return list(result)[:limit]


def _variants(uri: str, redirectors: Sequence[regex.Pattern], todo: list[str]) -> list[str]:
    uri = uri.replace("\n", "").replace("\r", "").strip()
    if len(uri) <= 1 or _RELATIVE.match(uri):
        return []
    out = [uri]
    if "@" in uri and _MAIL_LIKE.match(uri) or _MAILTO.match(uri):
        for pattern in (_MAIL_QUERY, _MAIL_AMP):
            m = pattern.match(uri)
            if m:
                out.append(m.group(1))
        if "%20" in uri:
            m = _MAIL_SPACES.match(uri)
            if m:
                out.append("mailto:" + m.group(1))
        m = _MAIL_ANGLE.match(uri)
        if m:
            out.append("mailto:" + m.group(1))
        return out
    nuri = uri.replace("\\", "/")
    nuri = _HTTP_SLASHES.sub(r"\1//", nuri)
    if "%" in nuri and _PERCENT.search(nuri):
        nuri = urllib.parse.unquote(nuri, encoding="latin-1")
    if not _HAS_SCHEME.match(nuri):  # "//host" is scheme-relative: "http://host"
        nuri = nuri.lstrip("/")
        nuri = ("ftp://" if nuri.startswith("ftp.") else "http://") + nuri
    nuri = _QUERY_AFTER_HOST.sub(r"\1/\2", nuri)
    if "&#" in nuri:
        nuri = _DEC_ENTITY.sub(lambda m: chr(int(m.group(1))), nuri)
        nuri = _HEX_ENTITY.sub(lambda m: chr(int(m.group(1), 16)), nuri)
        nuri = _DOT_ENTITY.sub(".", nuri)
    if nuri != uri:
        out.append(nuri)
    m = _HTTP.match(nuri)
    if not m:
        return out
    proto, auth, host, rest, port = m.group(1), m.group(2) or "", m.group(3), m.group(4), \
        m.group(5)
    if port is not None and port != "":
        if proto.lower() == "http://" and _DEFAULT_HTTP_PORT.match(rest):
            out.append(proto + host + rest[3:])
        elif _DEFAULT_HTTPS_PORT.match(rest):
            out.append(proto + host + rest[4:])
    stripped = _CTRL.sub("", host)
    if stripped != host:
        host = stripped
        out.append(proto + host + rest)
    target = _redirect_target(proto + host + rest, rest, redirectors)
    if target:
        todo.append(target)
    if "@" in host:
        host = _USERINFO.sub("", host)
        out.append(proto + host + rest)
    if _UNICODE_DOT.search(host):
        host = _UNICODE_DOT.sub(".", host)
        out.append(proto + host + rest)
    trimmed = _TRAILING_JUNK.sub("", host)
    if trimmed != host:
        host = trimmed
        out.append(proto + host + rest)
    if not host.isascii():
        ascii_part = _TRAILING_JUNK.sub("", _NON_ASCII.split(host, maxsplit=1)[0])
        if "." in ascii_part:  # a name followed by other text: "www.example.edu.請"
            out.append(proto + ascii_part + rest)
    ip = _numeric_host(host)
    if ip:
        out.append(proto + ip + rest)
    elif proto.lower() == "http://" and not auth and port in (None, "") and \
            host != "localhost":
        single = _SINGLE_LABEL.match(host)
        if single:
            out.append(f"{proto}www.{single.group(1)}.com{rest}")
    return out


def _redirect_target(url: str, rest: str, redirectors: Sequence[regex.Pattern]) -> str | None:
    data = url.encode("latin-1", "replace")
    for rx in redirectors:
        try:
            m = rx.search(data, timeout=0.1)
        except TimeoutError:
            continue
        if m and m.groups() and m.group(1) and b"." in m.group(1):
            return m.group(1).decode("latin-1")
    m = _EMBEDDED_URL.search(rest)
    if m and "." in m.group(1):
        return m.group(1)
    return None


def _numeric_host(host: str) -> str | None:
    m = _IPV4_PARTS.match(host)
    if m:
        octets = []
        for chunk in m.groups():
            chunk = chunk.rstrip(".")
            if chunk.lower().startswith("0x"):
                octets.append(str(int(chunk, 16)))
            elif _OCTAL.match(chunk):
                octets.append(str(int(chunk, 8)))
            else:
                octets.append(str(int(chunk)) if chunk else "0")
        return ".".join(octets)
    if _HEX_HOST.match(host):
        return _ulong_ip(int(host[-8:] if len(host) > 10 else host[2:], 16))
    if _DECIMAL_HOST.match(host):
        return _ulong_ip(int(host))
    return None


def _ulong_ip(value: int) -> str:
    value &= 0xFFFFFFFF
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))
