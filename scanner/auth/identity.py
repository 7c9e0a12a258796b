"""The identities authentication looks at: envelope sender, HELO and From domains."""

from __future__ import annotations

import ipaddress
from email.message import Message

from scanner.addresses import parse_addresses
from scanner.auth.psl import normalise


def address_domain(address: str) -> str:
    """The normalised domain of ``local@domain`` (angle brackets allowed), or ''."""
    addr = address.strip().strip("<>").strip()
    if "@" not in addr:
        return ""
    return normalise(addr.rpartition("@")[2])


def sender_identity(sender: str, helo: str) -> tuple[str, str]:
    """(address, domain) SPF checks for MAIL FROM: ``postmaster@HELO`` for the null sender."""
    addr = sender.strip().strip("<>").strip()
    if addr and "@" in addr:
        return addr, address_domain(addr)
    helo_name = helo_domain(helo)
    return (f"postmaster@{helo_name}", helo_name) if helo_name else ("", "")


def helo_domain(helo: str) -> str:
    """The HELO name if it is a multi-label domain name (not an address literal), else ''."""
    name = (helo or "").strip()
    if not name or name.startswith("["):
        return ""
    try:
        ipaddress.ip_address(name)
        return ""
    except ValueError:
        pass
    name = normalise(name)
    return name if "." in name else ""


def from_domains(msg: Message | None) -> list[str]:
    """The distinct domains of the From header's addresses (RFC 5322.From), in order.

    A domain in raw UTF-8 (RFC 6532, SMTPUTF8 mail) counts in its A-label form; an
    address literal (``a@[192.0.2.1]``), a name with an empty label or one that is not
    valid IDNA has no domain.
    """
    if msg is None:
        return []
    values = [_field_text(v) for k, v in msg.raw_items() if k.lower() == "from"]
    found: list[str] = []
    for _, addr in parse_addresses(values):  # [] for a From it cannot parse
        domain = address_domain(addr)
        if _usable(domain) and domain not in found:
            found.append(domain)
    return found


def _usable(domain: str) -> bool:
    """A name DMARC can look up: not an address literal, no empty label
    (``www..example.com``, ``.example.com`` cannot be in the DNS)."""
    return bool(domain) and not domain.startswith("[") and "" not in domain.split(".")


def _field_text(value: object) -> str:
    """A header value as text, its 8-bit octets (kept by the parser as surrogate
    escapes) read as UTF-8; octets that are not UTF-8 become U+FFFD."""
    text = str(value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def from_header_count(msg: Message | None) -> int:
    return 0 if msg is None else len(msg.get_all("From", []))
