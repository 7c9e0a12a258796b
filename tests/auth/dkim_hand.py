"""A small DKIM signer written from RFC 6376 (not dkimpy), for tests that need a
signature made independently of the verifier: rsa-sha256, simple or relaxed
canonicalisation, lines that end in CRLF only (a bare CR or LF is data)."""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


def canon_body(body: bytes, relaxed: bool) -> bytes:
    """RFC 6376 3.4.3 / 3.4.4: lines end in CRLF only (a bare CR is data)."""
    lines = body.split(b"\r\n")
    ended = body.endswith(b"\r\n")
    if ended:
        lines.pop()
    if relaxed:
        lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in lines]
    while lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return b"" if relaxed else b"\r\n"
    return b"\r\n".join(lines) + b"\r\n"


def canon_field(field: bytes, relaxed: bool) -> bytes:
    """One header field (with its CRLF) in simple or relaxed form (3.4.1, 3.4.2)."""
    if not relaxed:
        return field
    name, _, value = field.partition(b":")
    value = re.sub(rb"[ \t]+", b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def hand_signed(message: bytes, canon: str, signed: list[bytes], pem: bytes,
                domain: str = "good.test", selector: str = "s1") -> bytes:
    """``message`` with a DKIM-Signature (rsa-sha256) made without dkimpy."""
    head, _, body = message.partition(b"\r\n\r\n")
    header_relaxed, body_relaxed = (part == "relaxed" for part in canon.split("/"))
    bh = base64.b64encode(hashlib.sha256(canon_body(body, body_relaxed)).digest())
    tags = (f"v=1; a=rsa-sha256; c={canon}; d={domain}; s={selector}; "
            f"h={':'.join(n.decode() for n in signed)}; bh={bh.decode()}; b=").encode()
    data = signed_fields(head, signed, header_relaxed)
    data += canon_field(b"DKIM-Signature: " + tags + b"\r\n", header_relaxed)[:-2]
    return b"DKIM-Signature: " + tags + rsa_sign(data, pem) + b"\r\n" + message


def signed_fields(head: bytes, signed: list[bytes], relaxed: bool) -> bytes:
    """The header fields ``signed`` names, canonicalised, each name's last instance
    first (RFC 6376 5.4.2)."""
    fields = re.split(rb"\r\n(?![ \t])", head)
    by_name = {n.lower(): [f + b"\r\n" for f in fields
                           if f.split(b":")[0].strip(b" \t").lower() == n.lower()]
               for n in signed}
    data = b""
    for name in signed:
        if by_name[name.lower()]:
            data += canon_field(by_name[name.lower()].pop(), relaxed)
    return data


def rsa_sign(data: bytes, pem: bytes) -> bytes:
    """The base64 rsa-sha256 signature of ``data`` with the key ``pem``."""
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, RSAPrivateKey)
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def hand_verifies(raw: bytes, pem: bytes) -> bool:
    """Does the first DKIM-Signature of ``raw`` (rsa-sha256) verify with the public half
    of ``pem``, checked the same way without dkimpy?"""
    head, _, body = raw.partition(b"\r\n\r\n")
    signature, *fields = re.split(rb"\r\n(?![ \t])", head)
    name, _, value = signature.partition(b":")
    assert name.strip().lower() == b"dkim-signature"
    tags = {}
    for item in re.sub(rb"\s+", b"", value).split(b";"):
        if item:
            key, _, text = item.partition(b"=")
            tags[key.decode()] = text
    header_c, _, body_c = tags.get("c", b"simple").decode().partition("/")
    digest = hashlib.sha256(canon_body(body, body_c == "relaxed")).digest()
    if base64.b64encode(digest) != tags["bh"]:
        return False
    relaxed = header_c == "relaxed"
    unused = [f + b"\r\n" for f in fields]
    data = b""
    for wanted in tags["h"].decode().lower().split(":"):
        for at in range(len(unused) - 1, -1, -1):  # the last unused instance
            if unused[at].split(b":")[0].strip(b" \t").lower().decode() == wanted:
                data += canon_field(unused.pop(at), relaxed)
                break
    empty_b = re.sub(rb"([;\s]b[ \t\r\n]*=)[^;]*", rb"\1", b";" + signature)[1:]
    data += canon_field(empty_b + b"\r\n", relaxed)[:-2]
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, RSAPrivateKey)
    try:
        key.public_key().verify(base64.b64decode(tags["b"]), data, padding.PKCS1v15(),
                                hashes.SHA256())
    except InvalidSignature:
        return False
    return True
