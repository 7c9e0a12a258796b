"""One Received header, read as SpamAssassin 4.0 reads it (``parse_received_line`` in
Mail::SpamAssassin::Message::Metadata::Received).

The result, a :class:`Relay`, is the connecting host as the receiving host recorded
it: address, reverse DNS name (``rdns``, empty when the MTA wrote ``unknown`` or none),
HELO name, the receiving host (``by``), ident, envelope sender, queue id and the
authentication method (``auth``: ``ESMTPA``, ``Postfix``, ...). Field values keep the
case they were written in; :meth:`Relay.as_string` gives SpamAssassin's
``[ ip=... rdns=... helo=... by=... ident= envfrom= intl=0 id=... auth= msa=0 ]`` form.

Headers SpamAssassin ignores (no ``from``, local deliveries, handovers that log no
address) give ``None``, a mail fetcher's :data:`FETCHED`, and a header SpamAssassin
cannot parse either (no address, or an unknown format without ``by``)
:data:`UNPARSEABLE`. SpamAssassin knows some hundred MTA formats;
this module covers the common ones (Postfix, Sendmail, Exim, qmail, Microsoft, the
bracket and parenthesis shapes most others share): ``scripts/relays_differential.py``
measures how far the two agree.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

_IP = r"(?:IPv6:)?[0-9A-Fa-f]*:[0-9A-Fa-f:.]+|\d{1,3}(?:\.\d{1,3}){3}"
_DATE = re.compile(r"[\s;]+(?:(?:Mon|T(?:ue|hu)|Wed|Fri|S(?:at|un)), )?\d+ (?:J(?:an|u[nl])|Feb|"
                   r"Ma[ry]|A(?:pr|ug)|Sep|Oct|Nov|Dec) \d+ \d+:\d+(?::\d+)? \S+$")
_ID = re.compile(r" id <?([^\s<>;]{3,})")
_HELO_EQ = re.compile(r"\bhelo=([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_HELO_CMD = re.compile(r"\b(?:HELO|EHLO) ([-A-Za-z0-9.^+_&:=?!@%*$\\/]+)")
_BY = re.compile(r" by (\S+)(?:[^-A-Za-z0-9;.]|$)")
_AUTH_WITH = re.compile(r"(?i) with ((?:ES|L|UTF8S|UTF8L)MTPS?A|ASMTP|HTTP[SU]?)(?: |;|$)")
_AUTH_POSTFIX = re.compile(r"\) \(Authenticated sender: \S+\) by \S+ \(([^)]+)\) with ")
_AUTH_COURIER = re.compile(r"^from .*?(?:\]\)|\)\]) \(AUTH: (LOGIN|PLAIN|DIGEST-MD5|CRAM-MD5) "
                           r"\S+(?:, .*?)?\) by ")
_WEBMAIL = re.compile(rf"({_IP})\b(?![.-]).{{10,80}}by (\S+) with HTTP")
_AUTH_SENDMAIL = re.compile(r"^from .*?(?:\](?: \([^)]*\))?\)|\)\]) .*?\(.*?authenticated.*?\)"
                            r".*? by")
# "(?i)(?:return-path:? |envelope-(?:sender|from)[ =])(\S+)\b" with its letter case
# spelled out (the long s U+017F is an S under IGNORECASE) and one class of first
# letters ahead, so re jumps to candidate positions instead of trying both at each one
_ENVFROM = re.compile(r"[EeRr](?:(?<=[Rr])[Ee][Tt][Uu][Rr][Nn]-[Pp][Aa][Tt][Hh]:? |"
                      r"(?<=[Ee])[Nn][Vv][Ee][Ll][Oo][Pp][Ee]-"
                      "(?:[Ss\u017f][Ee][Nn][Dd][Ee][Rr]|[Ff][Rr][Oo][Mm])[ =])(\\S+)\\b")
_STRIP = re.compile(r"[\s\x00#\[\]()<>|]")
_SHAPES: tuple[tuple[re.Pattern, tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), fields) for pattern, fields in (
        # Postfix, Sendmail: from helo (rdns [ip]) by ... ("[ip] (may be forged))" too)
        (rf"^(\S+) \(([^\s()]*[^\s()@]) ?\[({_IP})\]", ("helo", "rdns", "ip")),
        # from (helo [ip]) by ...
        (rf"^\((\S+) \[({_IP})\]\) by ", ("helo", "ip")),
        # qmail: from rdns (HELO name) (ident@[ip]) (envelope-sender <a>) by x with SMTP
        # (without HELO: it equalled the rDNS); not Microsoft's SMTPSVC (HELO only)
        # (Yahoo's authenticated SMTP: "(user@ip with login)")
        (rf"^(?!.* SMTPSVC)(\S+)(?: \((?:HELO|EHLO) ([^ ()]*)\))? \((\S+@)?\[?({_IP})\]?"
         r"(?: with (?:login|plain))?\)"
         r"(?: \(envelope-sender <\S+>\))? by \S+(?: \(.+\))* with (?:.* )?(?:SMTP|QMQP)"
         r"(?! id )", ("rdns", "helo?", "ident@", "ip")),
        # Exim: from rdns ([ip] helo=name ident=x) by ... (helo defaults to rdns)
        (rf"^(\S+) \(\[({_IP})\](?::\d+)?(.*?)\) by ", ("rdns+helo", "ip", "sub")),
        # Exim: from [ip] (helo=name) by ...
        (rf"^\[({_IP})\](?::\d+)? \((.*?)\) by ", ("ip", "sub")),
        # qmail: from rdns (HELO name) (user@[ip]) by ...
        (rf"^(\S+) \((?:HELO|EHLO) ([^)]*)\) \((\S*@)?\[?({_IP})\]?\)",
         ("rdns", "helo", "ident@", "ip")),
        # Sendmail, Microsoft: from helo ([ip]) by ...
        (rf"^(\S+) \(\[({_IP})\]\)", ("helo", "ip")),
        # Sendmail: from helo (ident@[ip]) by host (...
        (rf"^(\S+) \((\S*@)\[({_IP})\].*\) by \S+ \(", ("helo", "ident@", "ip")),
        # qmail: from rdns (ident@ip) by ... (qmail drops a HELO equal to the rDNS);
        # Microsoft: from helo (ip) by ... with Microsoft SMTP Server
        # (not "from name (ip) by host" and no more: SpamAssassin cannot read that)
        (rf"^(\S+) \((\S*@)?\[?({_IP})\]?\)(?! by \S+$)", ("rdns+helo", "ident@", "ip")),
        # TIS smap, csmap: from rdns(ip, HELO name) by ... / from rdns(ip) by ...
        (rf"^(\S+)\(({_IP}), (?:HELO|EHLO) (\S*)\) by \S+ via smap ", ("rdns", "ip", "helo")),
        (rf"^(\S+)\(({_IP})\) by \S+ ", ("rdns", "ip")),
        # from ip (HELO name) by host (ip) with SMTP
        (rf"^({_IP}) \((?:HELO|EHLO) ([^)\s]*)\) by ", ("ip", "helo")),
        # from rdns(ip), claiming to be "helo" via SMTP by ...
        (rf'^(\S+)\(({_IP})\), claiming to be "([^"]*)" via SMTP by ([^\s,]+)',
         ("rdns", "ip", "helo", "by")),
        # webmail: from ip ( [ip]) as user name by ... (no HELO)
        (rf"^(\S+) \( \[({_IP})\]\).*? by \S+ ", ("-", "ip")),
        # from rdns [ip] by ...
        (rf"^(\S+) \[({_IP})\](?::\d+)? by ", ("rdns+helo", "ip")),
        # from [ip] by ... / from (ip) by ...
        (rf"^\(?\[?({_IP})\]?\)? by ", ("ip",)),
    ))
_LOCALHOST = r"(?:localhost(?:\.localdomain)?|(?<!:)\b127\.0\.0\.1\b|(?:IPv6:)?::1\b)"
# SpamAssassin's "return 0" cases met when no format gave an address (headers it
# skips on purpose: local handovers, MTAs that log no address); any other header
# without an address is unparseable (UNPARSEABLE_RELAY)
_SKIPPED = re.compile("|".join(f"(?:{p})" for p in (
    r"^mail pickup service by \S+ with Microsoft SMTPSVC$",
    r"^\S+ by \S+ with BSMTP",
    r"^\S+ \(\S+\) by \S+ \(Content Technologies ",
    rf"^\S+ \([^\s@]+@{_LOCALHOST}\) by \S+ \(",
    r"^\S+ \S+ by \S+ with local-e?smtp ",
    r"^127\.0\.0\.1 \(AVG SMTP \S+ \[\S+\]\)",
    r"^\S+@\S+ by \S+ ",
    r"^Unknown/Local \(",
    rf"^{_LOCALHOST} \((?:\S+@)?{_LOCALHOST}[)\[]",
    rf"^\S+ \((?:\S+@)?{_LOCALHOST}\) ",
    rf"^\S+ \(\S+@\S+ \[{_LOCALHOST}\]\) ",
    r"^\(AUTH: \S+\) by \S+ with ",
    r"^localhost \(localhost \[\[UNIX: localhost\]\]\) by ",
    r"^\S+\.amazon\.com by \S+\.amazon\.com with ESMTP \(peer crosscheck: ",
    r"^[^.]+ by \S+ with Novell_GroupWise",
    r"^no\.name\.available by \S+ via smtpd \(for ",
    r"^\S+ by \S+ \(.{0,100}\) with qmail-scanner",
    r"^\S+ \(\[unix socket\]\) by \S+ \(Cyrus v[0-9]*?\.[0-9]*?\.[0-9]*?\) with LMTPA",
    r"^\S+ by \S+ (?:with|via|for|\()",
    r"^\S+ (?:(?:with|via|for) \S+|\(unverified\)) by\b",
    r"^\S+ \(unknown\) by \S+ \(SG\) with \b",
    r"^\S+ \(\S+ \[local\]\) by \S+ \(OpenSMTPD\) with \b",
    r"\(LSMTP for",
    rf"^\(\[{_LOCALHOST}\]\) with MailEnable ",
    r"^facebook\.com \([^)]+\) by facebook\.com with Thrift id \S+$",
    r"^\S+ named \S+ by gmailapi\.google\.com with HTTPREST$",
    r"^\S+ id \S+$",
    r"^\[<.*? \(Jetsend",
    # "(from user@localhost) by", jqueuemail's "(from user@domain) by"
    r"^\S+@localhost\) by \S+ ",
    r"^[^\s@]+@[^)]+\) by \S+\(jqueuemail\) id [^\s;]+",
)))
_ANY_BRACKET = re.compile(rf"\[({_IP})\]")
_HELO_GUESS = re.compile(r"^(\S+)[^-A-Za-z0-9.]")
_COMMUNIGATE = re.compile(r"CommuniGate Pro (?:HTTP|SMTP|XIMSS|IMAP)")
_TRAILING_SEMICOLON = re.compile(r"\s?;$")
_FROM = re.compile(r"(?i)^\(?from ")
_LOCAL = re.compile(r"\bwith local(?:-\S+)? ")
_FROM_BY_ONLY = re.compile(r"(?i)from (\S+) by [^\s;]+ ?;")
_BRACKET_V4 = re.compile(r"\[[\d.]+\]")
_WEBMAIL_USER = re.compile(r" \((?:SquirrelMail|NaSMail) authenticated user ")
_SUB_HELO = re.compile(r"helo=(\S+)")
_SUB_IDENT = re.compile(r"ident=(\S*)")
_IPV6_PREFIX = re.compile(r"(?i)^ipv6:")


@dataclass(frozen=True, slots=True)
class Relay:
    """One hop: the host that connected, as the receiving host recorded it."""

    ip: str
    rdns: str = ""
    helo: str = ""
    by: str = ""
    ident: str = ""
    envfrom: str = ""
    id: str = ""
    auth: str = ""

    @property
    def authenticated(self) -> bool:
        return bool(self.auth)

    def as_string(self, internal: bool = False, msa: bool = False) -> str:
        """SpamAssassin's text form of the relay (``make_relay_as_string``)."""
        f = {k: _STRIP.sub("!", getattr(self, k)) for k in
             ("ip", "rdns", "helo", "by", "ident", "envfrom")}
        return (f"[ ip={f['ip']} rdns={f['rdns']} helo={f['helo']} by={f['by']} "
                f"ident={f['ident']} envfrom={f['envfrom']} intl={int(internal)} "
                f"id={self.id} auth={self.auth} msa={int(msa)} ]")


FETCHED = Relay(ip="")
"""What :func:`parse_received` returns for a mail fetcher's header (``with POP3``,
``with IMAP``): SpamAssassin restarts the chain there while it is still trusted."""

UNPARSEABLE = Relay(ip="")
"""What :func:`parse_received` returns for a header SpamAssassin cannot parse either:
no known format gives its address and it is none of those SpamAssassin skips
(``num_relays_unparseable``, the UNPARSEABLE_RELAY rule)."""


@functools.lru_cache(maxsize=1024)  # the auth, dnsbl and rules checks read the same headers
def parse_received(value: str) -> Relay | None:
    """The connecting host of one Received header; None when it is one SpamAssassin
    ignores; :data:`FETCHED` for a mail fetcher's header; :data:`UNPARSEABLE` when it
    names no address SpamAssassin could read either."""
    text = _TRAILING_SEMICOLON.sub("", " ".join(value.split()))
    if not _FROM.match(text) or ("with local" in text and _LOCAL.search(text)):
        return None
    m = _FROM_BY_ONLY.match(text)
    if m and not _BRACKET_V4.fullmatch(m.group(1)):
        return None
    text = _DATE.sub("", text).replace(")by ", ") by ")
    if "with POP3" in text or "with IMAP" in text:
        return FETCHED  # a mail fetcher's handover
    fields = _common_fields(text)
    rest = _FROM.sub("", text, count=1)
    webmail = " authenticated user " in rest and _WEBMAIL_USER.search(rest) and \
        _WEBMAIL.search(rest)
    shape = {"ip": webmail.group(1), "by": webmail.group(2)} if webmail else _shape(rest)
    if "skip" in shape:
        return None
    fields.update({k: v for k, v in shape.items() if v or k not in fields})
    ip = _clean_ip(fields.get("ip", ""))
    if not ip or ("fallback" in fields and not fields.get("by")):
        return UNPARSEABLE
    if not fields.get("helo"):
        fields["helo"] = fields.get("guessed_helo", "")
    rdns = fields.get("rdns", "").rstrip(".")
    if "@" in rdns:  # Sendmail: from helo (IDENT:ident@rdns [ip])
        ident, _, rdns = rdns.partition("@")
        ident = ident.removeprefix("IDENT:")
        fields.setdefault("ident", ident)
        fields["ident"] = fields["ident"] or ident
    if rdns.lower() == "unknown" or rdns.startswith("["):
        rdns = ""
    return Relay(ip=ip, rdns=rdns, helo=fields.get("helo", ""), by=fields.get("by", ""),
                 ident=fields.get("ident", ""), envfrom=fields.get("envfrom", ""),
                 id=fields.get("id", ""), auth=fields.get("auth", ""))


def _common_fields(text: str) -> dict[str, str]:
    """The fields SpamAssassin reads before it looks at the MTA's format."""
    out: dict[str, str] = {}
    if m := _ID.search(text):
        out["id"] = m.group(1)
    # each pattern's literal tested first: re tries a pattern starting with \b at every
    # position of the header
    if m := (("helo=" in text and _HELO_EQ.search(text))
             or (("HELO " in text or "EHLO " in text) and _HELO_CMD.search(text))):
        out["helo"] = m.group(1)
    if m := _BY.search(text):
        out["by"] = m.group(1).rstrip(";")
    out["auth"] = _auth(text)
    if text[:5].lower() == "from " and (m := _ENVFROM.search(text[5:])):
        out["envfrom"] = m.group(1).lstrip("<").rstrip(">")
    return out


def _auth(text: str) -> str:
    if " by " in text and (m := _AUTH_WITH.search(text)):
        return m.group(1)
    if "(AUTH: " in text and (m := _AUTH_COURIER.search(text)):
        return m.group(1)
    if m := _AUTH_POSTFIX.search(text):
        return "Postfix" if m.group(1) == "Postfix" else f"Postfix ({m.group(1)})"
    if "authenticated" in text and _AUTH_SENDMAIL.search(text):
        return "Sendmail"
    if " (account " in text and _COMMUNIGATE.search(text):
        return "Communigate"
    return ""


def _shape(rest: str) -> dict[str, str]:
    """Address, rDNS and HELO by the shape of the ``from`` clause."""
    for pattern, names in _SHAPES:
        m = pattern.match(rest)
        if m is None:
            continue
        out: dict[str, str] = {}
        for name, value in zip(names, m.groups(), strict=True):
            if name == "rdns+helo":
                out["rdns"] = out["helo"] = value
            elif name == "sub":
                out["sub"] = value
                if h := _SUB_HELO.search(value):
                    out["helo"] = h.group(1)
                if i := _SUB_IDENT.search(value):
                    out["ident"] = i.group(1)
            elif name == "helo?":
                out["helo"] = value if value is not None else out["rdns"]
            elif name == "ident@":
                if value:
                    out["ident"] = value[:-1]
            elif name != "-":
                out[name] = value
        if names[0] == "rdns+helo" and _helo_only(names, rest) and \
                "helo=" not in out.get("sub", ""):
            del out["rdns"]  # other MTAs name the HELO there
        out.pop("sub", None)
        return out
    return _fallback(rest)


def _fallback(rest: str) -> dict[str, str]:
    """SpamAssassin's last resort for a format it does not know: a header it skips on
    purpose gives ``skip``; else the first bracketed address, the first word as the
    HELO name (when none was found) and ``fallback`` (the result needs a ``by``)."""
    if _SKIPPED.search(rest):
        return {"skip": "1"}
    out = {"fallback": "1"}
    if m := _HELO_GUESS.match(rest):
        out["guessed_helo"] = m.group(1)
    if m := _ANY_BRACKET.search(rest):
        out["ip"] = m.group(1)
    return out


def _helo_only(names: tuple[str, ...], rest: str) -> bool:
    """Whether the first name of an Exim or qmail shape is only the HELO name."""
    if names[1] == "ident@":
        return " with Microsoft SMTP Server" in rest or " (Microsoft Exchange" in rest
    return "Exim" not in rest


@functools.lru_cache(maxsize=1024)  # the same relays' addresses come back in most mail
def _clean_ip(text: str) -> str:
    """The address as SpamAssassin keeps it (``IPv6:`` prefix, zone and ``::ffff:`` of an
    IPv4-mapped address removed); "" if it is none."""
    candidate = _IPV6_PREFIX.sub("", text.strip("[]")).split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        return ""
    return plain_ip(addr)


def plain_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as text, an IPv4-mapped IPv6 one (``::ffff:192.0.2.1``, as a
    dual-stack socket reports IPv4 peers) as the IPv4 address it is."""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)
