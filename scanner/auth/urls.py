"""Host names of the URLs in a message body, for URI blacklists.

Looks at the decoded leaves' text (plain text, and HTML rendered to text) and at raw
HTML (``href``, ``src``, ``action`` attributes, read as a browser reads them:
character references decoded, tabs and newlines dropped, ``http:\\host`` and
``http:/host`` taken for ``http://host``). Understands ``scheme://`` URLs
(http, https, ftp), bare ``www.`` and ``ftp.`` names, user-info and ports, percent-encoded and
internationalised names, and IP-address hosts (bracketed IPv6, IPv4 as browsers read
it: one or four decimal, octal or hexadecimal parts). A host ends at
the first character a host name cannot have, so trailing punctuation and glued-on
query parameters are not part of it. Deliberately small: a general URI extractor
belongs to the rules engine.
"""

from __future__ import annotations

import html
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scanner.auth.psl import known_suffix, normalise

# The two finders start with a condition on the character before the match (a word
# boundary; no word character, dot, @, slash or hyphen before "www"; word characters
# are ASCII ones, as CJK text runs into a link without a space). Written inside
# the pattern, that condition stops ``re`` from jumping to candidate positions and
# makes it test every position of the text, so it is checked by _after() instead:
# the same matches (tests/auth/test_urls.py compares both forms) in half the time.
#
# The same goes for an IGNORECASE alternation at the start ("(?i)(?:https?|ftp)"): so
# these patterns spell the case out in classes (with the letters re's IGNORECASE also
# takes: U+017F for "s", U+0130 and U+0131 for "i") and start with one class of the
# alternatives' first letters, a lookbehind then telling which alternative follows
# ("[hHfF](?:(?<=[hH])ttps?|(?<=[fF])tp)"); a leading \b is a lookbehind after that
# first letter. Same matches as the (?i) forms kept in tests/auth/test_urls.py,
# about a third of the time on HTML.
_URL = re.compile(r"[hHfF](?:(?<=[hH])[tT][tT][pP][sS\u017f]?|(?<=[fF])[tT][pP])://"
                  r"([^\s/?#<>\"'\\\[\]()|]+|\[[0-9a-fA-F:.]+\])")
_NOT_AFTER_URL = re.compile(r"\w", re.A)
_WWW = re.compile(r"([wWfF](?:(?<=[wW])[wW][wW]\d{0,3}|(?<=[fF])[tT][pP])"
                  r"\.[A-Za-z0-9_\u00a1-\uffff.-]+)")
_NOT_AFTER_WWW = re.compile(r"[\w.@/-]", re.A)
_ATTR = re.compile(r"[hHsS\u017faA](?<!\w.)(?:(?<=[hH])[rR][eE][fF]|(?<=[sS\u017f])[rR][cC]"
                   r"|(?<=[aA])[cC][tT][iI\u0130\u0131][oO][nN])"
                   r"""\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
# The first character of an authority that cannot be part of a host name: punctuation
# after a link ("http://www.example.com, ..."), a query glued on with "&" (a redirect
# target "...?u=http://target.example&id=1"), the port's colon. Letters, digits,
# "-", "." and "_" are host characters; so is anything outside ASCII (IDN and the
# dots U+3002, U+FF0E, U+FF61, which IDNA maps to ".").
_HOST_END = re.compile(r"[\x00-\x2c/:-@\[-\^`{-\x7f]")
_ENCODED_URL = re.compile(r"[hHfF](?:(?<=[hH])[tT][tT][pP][sS\u017f]?|(?<=[fF])[tT][pP])"
                          r"%3[aA]%2[fF]%2[fF]")
# a document type declaration and xmlns attributes (bounded: no quadratic rescans)
_NOT_LINKS = re.compile(r"[<xX](?:(?<=<)![dD][oO][cC][tT][yY][pP][eE][^>]{0,1000}>"
                        r"|(?<!\w.)[mM][lL][nN][sS\u017f](?::[\w.-]{1,40})?\s{0,5}=\s{0,5}"
                        r"""(?:"[^"]{0,1000}"|'[^']{0,1000}'|[^\s>]{1,1000}))""")
_SCHEME_RELATIVE = re.compile(r"^[/\\]{2,}")
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_C0_SPACE = re.compile(r"^[\x00-\x20]+|[\x00-\x20]+$")
_SPECIAL_SCHEME = re.compile(r"(?i)^(https?|ftp):[/\\]*")
# a host whose last label is a number (decimal, or 0x-hexadecimal) is an IPv4 address
_NUMERIC_LAST = re.compile(r"(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)$", re.I)
_HEX = re.compile(r"^[0-9a-f]+$", re.I)
_OCTAL_DIGITS = re.compile(r"^[0-7]+$")
_DECIMAL = re.compile(r"^[0-9]+$")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
MAX_TEXT = 1 << 20


@dataclass(slots=True)
class Found:
    """Distinct host names and IP addresses, in order of appearance."""

    hosts: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    # raw hosts already read, and hosts and ips as sets: a list's "in" made a part full
    # of distinct links quadratic (40,000 names in 1 MB: 8 s)
    seen: set[str] = field(default_factory=set, repr=False, compare=False)
    kept: set[str] = field(default_factory=set, repr=False, compare=False)

    def add(self, host: str) -> None:
        if host in self.seen:  # the same link again: already read
            return
        self.seen.add(host)
        ip = _as_ip(host)
        if ip is not None:
            if ip not in self.kept:
                self.kept.add(ip)
                self.ips.append(ip)
            return
        name = normalise_host(host)
        if not name and not host.isascii():
            # CJK text right after a link, "www.example.com请登录": the ASCII part
            name = normalise_host(_NON_ASCII.split(host, maxsplit=1)[0])
        if name and name not in self.kept:
            self.kept.add(name)
            self.hosts.append(name)


def from_text(text: str, found: Found | None = None) -> Found:
    """Hosts of ``scheme://`` URLs and bare ``www.`` and ``ftp.`` names in plain text
    (mail clients make links of both), and of percent-encoded URLs inside them (the
    target of ``https://www.google.com/url?q=https%3A%2F%2Ftarget.example%2F``)."""
    found = found or Found()
    _scan(text, found)
    if "%3" in text and _ENCODED_URL.search(text):
        _scan(urllib.parse.unquote(text), found)
    return found


def _scan(text: str, found: Found) -> None:
    if "://" in text:
        for m in _after(_URL, _NOT_AFTER_URL, text):
            for host in _authority_hosts(m.group(1)):
                found.add(host)
    for m in _after(_WWW, _NOT_AFTER_WWW, text):
        found.add(m.group(1).rstrip("._-"))


def _after(pattern: re.Pattern[str], excluded: re.Pattern[str], text: str
           ) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for matches not right after a character ``excluded``
    matches: what a lookbehind ``(?<!excluded)`` in front of the pattern finds (a
    refused start is retried one character later, as the regex engine does)."""
    pos = 0
    search = pattern.search
    while (m := search(text, pos)) is not None:
        start = m.start()
        if start and excluded.match(text, start - 1):
            pos = start + 1
            continue
        yield m
        pos = m.end()


def from_html(html: str, found: Found | None = None) -> Found:
    """Hosts of URL attributes and of URLs in the markup's text, but for the document
    type's DTD and XML namespaces (``http://www.w3.org/...``,
    ``http://schemas.microsoft.com/...`` in every Outlook message): names, no links."""
    found = found or Found()
    for m in _ATTR.finditer(html):
        from_text(attribute_url(next(g for g in m.groups() if g is not None)), found)
    if "<!" in html or "xmlns" in html:
        html = _NOT_LINKS.sub(" ", html)
    return from_text(html, found)


def attribute_url(value: str) -> str:
    """A link attribute's value as a browser reads it: character references decoded
    (``&#104;ttp://``, ``&#x2e;``), ASCII tabs and newlines removed, surrounding
    spaces and controls stripped, and for http(s)/ftp any run of slashes and
    backslashes after the scheme read as ``//`` (``http:\\host``, ``https:/host``);
    then percent-decoded, and a scheme-relative ``//host`` (or ``///host``, ``\\\\host``:
    browsers take any run of slashes and backslashes) given ``http:``."""
    value = html.unescape(value) if "&" in value else value
    value = _C0_SPACE.sub("", _TAB_NEWLINE.sub("", value))
    value = _SPECIAL_SCHEME.sub(r"\1://", value)
    value = urllib.parse.unquote(value)
    return _SCHEME_RELATIVE.sub("http://", value)


def from_parts(parts: Iterable[Any], html_text: Callable[[Any], str] | None = None
               ) -> Found:
    """Hosts from every decoded leaf: its text always, raw markup of HTML leaves; and
    from the text of a text part that the decoders read as a mail of its own because
    its first lines look like header fields (``Keywords: x`` followed by an indented
    ``http://...`` line): a mail client shows those lines as text, but they are in no
    leaf.

    The text of an HTML leaf is ``html_text(part)`` when given (the URI blocklist check
    passes :func:`scanner.rules.views.html_text`: the rules' renderer, sharing the
    render the rules make anyway), else the part's own ``.text``.
    """
    found = Found()
    for part in parts:
        if not getattr(part, "is_leaf", True):
            if _text_read_as_mail(part):
                from_text(part.plain_text[:MAX_TEXT], found)
            continue
        if html_text is not None and getattr(part, "html", None) is not None:
            text = html_text(part)
        else:
            text = getattr(part, "text", None)
        if text:
            from_text(text[:MAX_TEXT], found)
        kind = (getattr(part, "declared_type", None) or "").lower()
        if kind == "text/html" or getattr(part, "detected_type", None) == "html":
            try:
                html = part.data()[:MAX_TEXT].decode("utf-8", "replace")
            except OSError:
                continue
            from_html(html, found)
    return found


def _text_read_as_mail(part: Any) -> bool:
    """Whether a container part is text (declared so, or undeclared) that the decoders
    sniffed as a mail message: its "header" lines are visible text."""
    declared = (getattr(part, "declared_type", None) or "text/plain").lower()
    return (getattr(part, "detected_type", None) == "mail" and declared.startswith("text/")
            and isinstance(getattr(part, "plain_text", None), str))


def _authority_hosts(authority: str) -> list[str]:
    """The host of a URL's authority (after the user info), and before it the host of a
    query glued on instead of user info: ``target.example&email=me@mail.example`` is a
    redirector's target followed by another parameter (the redirector goes to
    ``target.example``; the same text as a URL of its own goes to ``mail.example``)."""
    userinfo, at, host = urllib.parse.unquote(authority).rpartition("@")
    if at and "&" in userinfo:
        return [_host_part(userinfo), _host_part(host)]
    return [_host_part(host)]


def _host_part(host: str) -> str:
    """The host name at the start of ``host``: before the port and before any character
    a host name cannot have ('' for an unbracketed IPv6 address, which browsers
    refuse)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") > 1:
        return ""
    end = _HOST_END.search(host)
    return host[:end.start()] if end else host


def _as_ip(host: str) -> str | None:
    """The IP address a browser connects to for this host, or None for a name.

    IPv4 hosts are read as browsers (the WHATWG URL standard) and ``inet_aton`` read
    them: each part decimal, octal (leading ``0``) or hexadecimal (``0x``), one part
    for the whole address (``3232235777``, ``0xC0A80102``) or four (``0300.0250.1.2``;
    ``192.168.010.1`` is 192.168.8.1). Browsers also take two or three parts, the last
    filling the remaining octets (``0x7f.1``), but in mail those are dotted quads cut
    short by a line break (``64.57.207.``), so they give nothing. An IPv4-mapped IPv6
    address gives its IPv4 address.
    """
    text = host.strip().rstrip(".")
    if ":" in text:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
        mapped = getattr(address, "ipv4_mapped", None)
        return str(mapped or address)
    if not _NUMERIC_LAST.search(text):  # a name: its last label is not a number
        return None
    return _ipv4(text.split("."))


def _ipv4(parts: list[str]) -> str | None:
    """Dotted-quad form of a one- or four-part IPv4 host, or None when invalid."""
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    if len(numbers) not in (1, 4) or any(n > 255 for n in numbers[:-1]):
        return None
    last_bits = 8 * (5 - len(numbers))
    if numbers[-1] >= 1 << last_bits:
        return None
    value = 0
    for number in numbers[:-1]:
        value = value << 8 | number
    return str(ipaddress.IPv4Address(value << last_bits | numbers[-1]))


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 host (decimal, 0-octal or 0x-hexadecimal), or None."""
    if not part or len(part) > 34:  # longer ones are too large anyway
        return None
    if part[:2].lower() == "0x":
        digits = part[2:]
        if not digits:
            return 0
        return int(digits, 16) if _HEX.match(digits) else None
    if part.startswith("0") and len(part) > 1:
        return int(part, 8) if _OCTAL_DIGITS.match(part) else None
    return int(part) if _DECIMAL.match(part) else None


def normalise_host(host: str) -> str:
    """Lowercase ASCII host name, or '' when it is not a plausible public name (its
    top-level domain must be one the public suffix list knows, or .test/.example)."""
    name = normalise(host.strip().lstrip("."))
    if not name:
        return ""
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253:
        return ""
    if not all(_LABEL.match(label) for label in labels) or not _TLD.match(labels[-1]) \
            or not known_suffix(name):
        return ""
    return name
