"""DKIM signing (RFC 6376) of outgoing mail with dkimpy: keys, header lists, signature.

Signatures are relaxed/relaxed rsa-sha256. The header fields that carry meaning are
signed once per occurrence, and those in the *oversign* list once more, so that nobody
can add another instance (a second From, a Subject where there was none) without
breaking the signature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from scanner.auth.dkim_keys import header_section
from scanner.auth.dkim_verify import QUIET_LOG

SIGN_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "content-id",
    "content-description", "in-reply-to", "references", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-message-id", "list-id", "list-help",
    "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post",
    "list-owner", "list-archive", "disposition-notification-to", "autocrypt",
    "openpgp")
OVERSIGN_HEADERS = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding", "in-reply-to",
    "references", "list-id", "list-unsubscribe", "list-unsubscribe-post")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with the d= and s= it signs as."""

    domain: str
    selector: str
    pem: bytes
    subdomains: bool = True
    path: str = ""

    def covers(self, domain: str) -> bool:
        return domain == self.domain or (self.subdomains and domain.endswith("." + self.domain))


def load_key(path: str) -> bytes:
    """The PEM text of an RSA private key file; ValueError when dkimpy cannot use it."""
    with open(path, "rb") as fh:
        pem = fh.read()
    try:
        parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not an RSA private key dkimpy can use ({exc})") from None
    return pem


def choose_keys(keys: Sequence[SigningKey], domains: Iterable[str]) -> list[SigningKey]:
    """The keys for the first domain (From first, then envelope sender) any key covers;
    the most specific key domain wins; several keys of that domain all sign (rollover)."""
    for domain in domains:
        matching = [k for k in keys if domain and k.covers(domain)]
        if matching:
            best = max(len(k.domain) for k in matching)
            return [k for k in matching if len(k.domain) == best]
    return []


def header_list(present: Iterable[str], sign: Sequence[str], oversign: Sequence[str]
                ) -> list[str]:
    """h= for a message with these header names: each occurrence, plus one for oversigning."""
    counts = Counter(name.lower() for name in present)
    extra = {h.lower() for h in oversign}
    out: list[str] = []
    for name in dict.fromkeys(h.lower() for h in sign):
        out.extend([name] * (counts[name] + (1 if name in extra else 0)))
    return out


def sign(data: bytes, key: SigningKey, sign_headers: Sequence[str] = SIGN_HEADERS,
         oversign: Sequence[str] = OVERSIGN_HEADERS) -> tuple[str, str]:
    """The ``DKIM-Signature`` header (name, folded value) for ``data``."""
    headers, _ = dkim.rfc822_parse(header_section(data))
    names = [n.decode("ascii", "replace") for n, _ in headers]
    include = header_list(names, sign_headers, oversign)
    if "from" not in include:
        include.insert(0, "from")
    line = dkim.sign(data, key.selector.encode("ascii"), key.domain.encode("ascii"), key.pem,
                     canonicalize=(b"relaxed", b"relaxed"),
                     include_headers=[h.encode("ascii") for h in include], logger=QUIET_LOG)
    name, _, value = line.decode("ascii").partition(":")
    return name, value.strip(" \r\n")
