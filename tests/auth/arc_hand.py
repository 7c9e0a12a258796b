"""A small ARC sealer written from RFC 8617 (not dkimpy), for tests that need an ARC set
dkimpy's ``arc_sign`` cannot make: an ARC-Message-Signature with any ``c=``, or none at
all (RFC 8617 4.1.2 gives the AMS the DKIM-Signature's semantics, whose ``c=`` default
is simple/simple, RFC 6376 3.5). rsa-sha256, lines that end in CRLF."""

from __future__ import annotations

import base64
import hashlib
import re

from tests.auth.dkim_hand import canon_body, canon_field, rsa_sign, signed_fields

AMS_SIGNED = [b"from", b"to", b"subject", b"date"]


def hand_sealed(message: bytes, pem: bytes, relay: str, ams_c: str | None,
                cv: str = "none", canon: str = "") -> bytes:
    """``message`` with the next ARC set of ``relay`` (d=, s=arc): its AAR, an AMS with
    the tag ``c=ams_c`` (none when None) canonicalised as ``canon`` (default: as its
    ``c=`` says, simple/simple without one), and an ARC-Seal over every set, the new one
    included (relaxed, RFC 8617 5.1.1)."""
    head, _, body = message.partition(b"\r\n\r\n")
    sets = _existing_sets(head)
    instance = len(sets) + 1
    aar = (f"ARC-Authentication-Results: i={instance}; mx.{relay}; "
           f"spf=pass smtp.mailfrom=good.test\r\n").encode()
    canon = canon or ams_c or "simple/simple"
    header_relaxed, body_relaxed = (part == "relaxed" for part in canon.split("/"))
    names = AMS_SIGNED
    bh = base64.b64encode(hashlib.sha256(canon_body(body, body_relaxed)).digest()).decode()
    c_tag = f"c={ams_c}; " if ams_c else ""
    ams_tags = (f"i={instance}; a=rsa-sha256; {c_tag}d={relay}; s=arc; "
                f"h={':'.join(n.decode() for n in names)}; bh={bh}; b=").encode()
    data = signed_fields(head, names, header_relaxed)
    data += canon_field(b"ARC-Message-Signature: " + ams_tags + b"\r\n", header_relaxed)[:-2]
    ams = b"ARC-Message-Signature: " + ams_tags + rsa_sign(data, pem) + b"\r\n"
    seal_tags = f"i={instance}; cv={cv}; a=rsa-sha256; d={relay}; s=arc; b=".encode()
    sealed = b"".join(canon_field(f, True) for s in sets for f in s) + \
        canon_field(aar, True) + canon_field(ams, True)
    sealed += canon_field(b"ARC-Seal: " + seal_tags + b"\r\n", True)[:-2]
    seal = b"ARC-Seal: " + seal_tags + rsa_sign(sealed, pem) + b"\r\n"
    return seal + ams + aar + message


def _existing_sets(head: bytes) -> list[list[bytes]]:
    """The ARC sets already in ``head`` in instance order, each as AAR, AMS, AS (with
    their CRLF)."""
    found: dict[int, dict[str, bytes]] = {}
    for field in re.split(rb"\r\n(?![ \t])", head):
        name = field.split(b":", 1)[0].strip().lower().decode()
        if name in ("arc-authentication-results", "arc-message-signature", "arc-seal"):
            instance = int(re.search(rb"\bi\s*=\s*([0-9]+)", field).group(1))  # type: ignore[union-attr]
            found.setdefault(instance, {})[name] = field + b"\r\n"
    order = ("arc-authentication-results", "arc-message-signature", "arc-seal")
    return [[found[i][n] for n in order] for i in sorted(found)]
