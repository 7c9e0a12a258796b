"""Discrete tokens from headers, the Received chain, URLs, parts and HTML markup.

Each token is a short string with a family prefix (``from:dom=example.com``); the feature
extractor hashes them. Only a whitelist of headers is read, so headers that mailbox
tools, old spam filters or corpus collectors add (``X-Spam-*``, ``X-Keywords``,
``Delivered-To``, ``Status``) never become features. Dates are never tokenised.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.utils import parsedate_tz
from functools import lru_cache
from urllib.parse import urlsplit

from scanner.addresses import parse_address
from scanner.ml.received import (
    Hop,
    external_hops,
    is_private_addr,
    looks_dynamic,
    registered_domain,
)
from scanner.ml.text import MessageText

_WORD = re.compile(r"[^\W\d_]{2,20}")
_MAILER_WORD = re.compile(r"[^\W\d_]{2,20}")
_PATH_WORD = re.compile(r"[A-Za-z]{3,20}")
_IPV4_HOST = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_MAX_RELAYS = 4
_VERP = re.compile(r"bounce|return|errors|-\d{3,}|\d{5,}|[=+]")
_SUBJ_REPLY = re.compile(r"(?i)\s*(re|aw|sv)\s*:")
_SUBJ_FORWARD = re.compile(r"(?i)\s*(fw|fwd|wg)\s*:")
_DOUBLE_EXT = re.compile(r"\.[a-z0-9]{2,4}\.[a-z0-9]{2,4}$")
_OUTLOOK_FORM = re.compile(r"^\s*<[0-9a-f]{12}\$[0-9a-f]{8}\$[0-9a-f]{8}\$?@", re.I)
_OUTLOOK_CLOCK = re.compile(r"^\s*<[0-9a-f]{4}01[b-e]", re.I)
_OUTLOOK_MAILER = re.compile(r"^\s*Microsoft (?:Office )?Outlook(?: Express)?(?:,? Build)? \d")
_MICROSOFT_MID = re.compile(r"@(?:[^\s>]+\.)?(?:hotmail|msn|live|outlook)\.com>", re.I)
_DATE_NO_ZONE = re.compile(r"\d:\d\d(?::\d\d)?\s*(?:\([^)]*\)\s*)?$")


@lru_cache(maxsize=512)
def parseaddr(value: str) -> tuple[str, str]:
    """``email.utils.parseaddr`` with a small cache (From is read several times);
    ``("", "")`` for a header it cannot parse (hundreds of nested comments). Always the
    lenient reading (the first of several addresses), whatever the Python: the shipped
    model was trained on one without the CVE-2023-27043 fix, and a token must mean the
    same in training and scoring (scanner.addresses.parse_address)."""
    return parse_address(value, strict=False)


def bucket_count(value: int) -> str:
    """A coarse size class for counts: 0, 1, 2, 3-4, 5-8, 9-16, ..."""
    if value <= 2:
        return str(value)
    return f"le{1 << (value - 1).bit_length()}"


def address_tokens(prefix: str, value: str) -> Iterator[str]:
    """Tokens for one address header: domain, registered domain, display-name words."""
    name, addr = parseaddr(value)
    addr = addr.lower()
    local, _, domain = addr.rpartition("@")
    if domain:
        yield f"{prefix}:dom={domain}"
        yield f"{prefix}:rdom={registered_domain(domain)}"
        if _IPV4_HOST.match(domain.strip("[]")):
            yield f"{prefix}:ip_domain"
    else:
        yield f"{prefix}:no_domain"
    if local:
        digits = sum(c.isdigit() for c in local)
        yield f"{prefix}:local_digits={bucket_count(digits)}"
        yield f"{prefix}:local_len={bucket_count(len(local))}"
    if name:
        if "@" in name:
            yield f"{prefix}:name_has_addr"
        for word in _WORD.findall(name.lower()):
            yield f"{prefix}:name={word}"
        if name.isupper():
            yield f"{prefix}:name_upper"
    else:
        yield f"{prefix}:no_name"


def header_tokens(mt: MessageText, sender: str | None = None) -> Iterator[str]:
    """Tokens from the whitelisted headers (not Subject, not Received)."""
    from_value = mt.header("from")
    yield from address_tokens("from", from_value) if from_value else iter(["from:missing"])
    from_domain = parseaddr(from_value)[1].rpartition("@")[2].lower()
    reply_to = mt.header("reply-to")
    if reply_to:
        yield from address_tokens("rt", reply_to)
        rt_domain = parseaddr(reply_to)[1].rpartition("@")[2].lower()
        if registered_domain(rt_domain) != registered_domain(from_domain):
            yield "rt:differs_from"
    return_path = mt.header("return-path") or (f"<{sender}>" if sender is not None else "")
    if return_path:
        rp_addr = parseaddr(return_path)[1].lower()
        if not rp_addr:
            yield "rp:null"
        else:
            rp_domain = rp_addr.rpartition("@")[2]
            yield f"rp:rdom={registered_domain(rp_domain)}"
            if registered_domain(rp_domain) != registered_domain(from_domain):
                yield "rp:differs_from"
    yield from _recipient_tokens(mt)
    yield from _misc_header_tokens(mt, from_domain)


def _recipient_tokens(mt: MessageText) -> Iterator[str]:
    to_values = mt.header_all("to")
    cc_values = mt.header_all("cc")
    if not to_values:
        yield "to:missing"
    recipients = sum(value.count("@") for value in to_values + cc_values)
    yield f"to:count={bucket_count(recipients)}"
    if cc_values:
        yield "cc:present"
    joined = " ".join(to_values).lower()
    if "undisclosed" in joined or "recipient list suppressed" in joined:
        yield "to:undisclosed"


def _misc_header_tokens(mt: MessageText, from_domain: str) -> Iterator[str]:
    message_id = mt.header("message-id")
    if not message_id:
        yield "mid:missing"
    else:
        mid_domain = message_id.strip().strip("<>").rpartition("@")[2].lower()
        if not mid_domain or "@" not in message_id:
            yield "mid:no_domain"
        else:
            yield f"mid:rdom={registered_domain(mid_domain)}"
            if registered_domain(mid_domain) == registered_domain(from_domain):
                yield "mid:matches_from"
    yield from _made_by_tokens(mt, message_id)
    date = mt.header("date")
    if not date:
        yield "date:missing"
    elif parsedate_tz(date) is None:
        yield "date:unparsable"
    elif _DATE_NO_ZONE.search(date.strip()):
        yield "date:no_zone"
    if mt.header("in-reply-to") or mt.header("references"):
        yield "thread:reply"
    mailer = mt.header("x-mailer") or mt.header("user-agent")
    if mailer:
        for word in _MAILER_WORD.findall(mailer.lower())[:6]:
            yield f"mailer:{word}"
    else:
        yield "mailer:none"
    for name in ("x-priority", "x-msmail-priority", "importance"):
        value = mt.header(name)
        if value:
            yield f"{name}={value.strip()[:1].lower()}"
    if not mt.header("mime-version"):
        yield "mime:no_version"


def _made_by_tokens(mt: MessageText, message_id: str) -> Iterator[str]:
    """What wrote the Message-ID: Outlook's form (and whether its clock digits are
    possible), and an X-Mailer that claims Outlook over a Message-ID Outlook did not
    write (the rule SC_FORGED_OUTLOOK reads the same facts)."""
    outlook_form = bool(_OUTLOOK_FORM.match(message_id))
    genuine = outlook_form and bool(_OUTLOOK_CLOCK.match(message_id))
    if outlook_form:
        yield "mid:outlook_form" if genuine else "mid:outlook_form_bad_clock"
    if _OUTLOOK_MAILER.match(mt.header("x-mailer")) and not genuine \
            and not _MICROSOFT_MID.search(message_id) and not mt.header("thread-index"):
        yield "mailer:outlook_forged"


def subject_tokens(subject: str) -> Iterator[str]:
    """Word and shape tokens of the Subject (its character n-grams are added elsewhere)."""
    if not subject:
        yield "subj:missing"
        return
    lower = subject.lower()
    for word in _WORD.findall(lower):
        yield f"subj:w={word}"
    if _SUBJ_REPLY.match(subject):
        yield "subj:reply"
    if _SUBJ_FORWARD.match(subject):
        yield "subj:forward"
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 6 and sum(c.isupper() for c in letters) > 0.7 * len(letters):
        yield "subj:mostly_upper"
    if "!" in subject:
        yield "subj:exclaim"
    if "$" in subject or "%" in subject:
        yield "subj:money_or_percent"
    if any(ord(c) > 127 for c in subject):
        yield "subj:non_ascii"


def client_and_relays(
    mt: MessageText,
    internal_hosts: tuple[str, ...],
    client_name: str | None,
    client_addr: str | None,
) -> tuple[Hop | None, list[Hop]]:
    """The connecting client (XFORWARD if known, else the first external hop) and relays."""
    hops = external_hops(mt.header_all("received"), internal_hosts)
    if client_addr or client_name:
        name = "" if (client_name or "").lower() in ("", "unknown") else client_name or ""
        addr = client_addr or ""
        if addr.lower().startswith("ipv6:"):
            addr = addr[5:]
        if hops and hops[0].addr == addr:
            hops = hops[1:]
        return Hop(host=name.lower(), addr=addr, helo=""), hops
    if hops:
        return hops[0], hops[1:]
    return None, []


def received_tokens(client: Hop | None, relays: list[Hop]) -> Iterator[str]:
    """Tokens for the connecting client and the relays below it."""
    if client is None:  # no external hop (local submission): say nothing rather than
        return          # learn what a collector's internal mail looks like
    yield from _host_tokens("client", client.host, client.addr)
    for hop in relays[:_MAX_RELAYS]:
        if hop.addr and is_private_addr(hop.addr):
            continue
        yield from _host_tokens("relay", hop.host, hop.addr)


def alignment_tokens(mt: MessageText, client: Hop | None, sender: str | None = None
                     ) -> Iterator[str]:
    """Whether From, Return-Path, Message-ID, URLs and the client agree on a domain.

    Legitimate bulk mail is usually sent from the sender's own infrastructure; spam
    mostly is not. These tokens carry that without naming any particular domain, and
    the conjunctions (``align:n=``) give the linear model what it cannot add up itself.
    """
    from_domain = registered_domain(parseaddr(mt.header("from"))[1].rpartition("@")[2])
    if not from_domain:
        return
    agree = 0
    client_domain = registered_domain(client.host) if client and client.host else ""
    if client_domain:
        agree += client_domain == from_domain
        yield "align:client_from" if client_domain == from_domain else "align:client_not_from"
    return_path = mt.header("return-path") or (f"<{sender}>" if sender else "")
    rp_local, _, rp_domain = parseaddr(return_path)[1].lower().rpartition("@")
    if rp_domain:
        agree += registered_domain(rp_domain) == from_domain
        if client_domain and registered_domain(rp_domain) == client_domain:
            yield "align:rp_client"
        if _VERP.search(rp_local):
            yield "rp:bounce_address"
    mid_domain = mt.header("message-id").strip().strip("<>").rpartition("@")[2].lower()
    if mid_domain:
        agree += registered_domain(mid_domain) == from_domain
    url_domains = set()
    for url in mt.urls[:50]:
        try:
            host = urlsplit(url if "//" in url else "http://" + url).hostname or ""
        except ValueError:
            continue
        if host:
            url_domains.add(registered_domain(host))
    if url_domains:
        agree += from_domain in url_domains
        yield "align:url_from" if from_domain in url_domains else "align:url_not_from"
        if client_domain and client_domain in url_domains:
            yield "align:url_client"
    yield f"align:n={agree}"


def _host_tokens(prefix: str, name: str, addr: str) -> Iterator[str]:
    if name:
        yield f"{prefix}:rdom={registered_domain(name)}"
        if looks_dynamic(name):
            yield f"{prefix}:dynamic"
    else:
        yield f"{prefix}:no_rdns"
    if addr and "." in addr:
        octets = addr.split(".")
        yield f"{prefix}:net16={octets[0]}.{octets[1]}"


def url_tokens(urls: list[str]) -> Iterator[str]:
    """Host, registered domain, TLD and path-word tokens of the URLs in the body."""
    yield f"url:count={bucket_count(len(urls))}"
    seen: set[str] = set()
    for url in urls:
        if url.lower().startswith("www."):
            url = "http://" + url
        if url in seen:
            continue
        seen.add(url)
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            yield "url:unparsable"
            continue
        scheme = parts.scheme.lower()
        if scheme in ("mailto", "cid", "javascript", "tel", "data"):
            yield f"url:scheme={scheme}"
            continue
        if not host:
            continue
        if _IPV4_HOST.match(host):
            yield "url:ip_host"
        else:
            yield f"url:host={host}"
            yield f"url:rdom={registered_domain(host)}"
            yield f"url:tld={host.rsplit('.', 1)[-1]}"
        if port:
            yield "url:port"
        if parts.username:
            yield "url:userinfo"
        for word in _PATH_WORD.findall(parts.path.lower())[:8]:
            yield f"url:path={word}"
        if parts.query:
            yield "url:query"


def part_tokens(mt: MessageText) -> Iterator[str]:
    """Content types, charsets, transfer encodings and attachment names of the parts."""
    yield f"parts:count={bucket_count(len(mt.parts))}"
    for part in mt.parts:
        yield f"ct:{part.content_type}"
        if part.charset:
            yield f"cs:{part.charset}"
        if part.encoding:
            yield f"cte:{part.encoding}"
        if part.filename:
            name = part.filename.lower()
            ext = name.rsplit(".", 1)[-1] if "." in name else ""
            yield f"att:ext={ext[:10]}"
            yield f"att:type={part.content_type}"
            if _DOUBLE_EXT.search(name):
                yield "att:double_ext"
    if mt.has_html and not mt.has_plain:
        yield "body:html_only"
    if mt.has_html and mt.has_plain:
        yield "body:html_and_plain"
    if mt.defects:
        yield "mime:defects"


def html_tokens(tags: list[str]) -> Iterator[str]:
    """One token per HTML start tag (counted; the vector takes the log of the count)."""
    for tag in tags:
        yield f"tag:{tag[:16]}"
