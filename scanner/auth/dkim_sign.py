"""DKIM signing (RFC 6376) of outgoing mail with dkimpy: keys, header lists, signature.

Signatures are relaxed/relaxed, rsa-sha256 or ed25519-sha256 (RFC 8463) after the key
file. The header fields that carry meaning are signed once per occurrence, and those in
the *oversign* list once more, so that nobody can add another instance (a second From,
a Subject where there was none) without breaking the signature.

Key files: RSA as PEM (PKCS#1 ``BEGIN RSA PRIVATE KEY`` or PKCS#8 ``BEGIN PRIVATE
KEY``); Ed25519 as PKCS#8 PEM (``openssl genpkey -algorithm ed25519``, ``scanner dkim
genkey --type ed25519``) or as the bare base64 seed dkimpy's ``dknewkey`` writes.
RFC 8463 asks Ed25519 signers to sign with RSA as well, because verifiers without
Ed25519 ignore such a signature: configure two keys for the domain and both sign.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from scanner.auth.dkim_keys import dkimpy_message
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


RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A signing key in the form dkimpy takes: PKCS#1 PEM for RSA, the base64 seed for
    Ed25519, with the signature algorithm (a=) it makes."""

    algorithm: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with the d= and s= it signs as."""

    domain: str
    selector: str
    key: PrivateKey
    subdomains: bool = True
    path: str = ""

    def covers(self, domain: str) -> bool:
        return domain == self.domain or (self.subdomains and domain.endswith("." + self.domain))


def load_key(path: str) -> PrivateKey:
    """The RSA or Ed25519 private key in ``path``; ValueError saying what is wrong when
    it is neither (or encrypted: the filter cannot ask for a passphrase)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN" not in data:
        return _ed25519_seed(path, data)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a usable private key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        return PrivateKey(ED25519, base64.b64encode(seed))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: a {type(key).__name__}; DKIM signs with RSA or Ed25519")
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    try:
        parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: not an RSA private key dkimpy can use ({exc})") from None
    return PrivateKey(RSA, pem)


def _ed25519_seed(path: str, data: bytes) -> PrivateKey:
    """dkimpy's own Ed25519 key file: the 32-byte seed in base64 on one line."""
    try:
        seed = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{path}: neither a PEM private key nor a base64 Ed25519 seed "
                         "(32 bytes)")
    return PrivateKey(ED25519, base64.b64encode(seed))


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
    """The ``DKIM-Signature`` header (name, folded value) for ``data``; raises
    ``dkim.MessageFormatError`` when its header section cannot be read. A field written
    ``Subject  : text`` (obsolete syntax) is read as the verifier reads it
    (:func:`scanner.auth.dkim_keys.split_message`) and signed relaxed, without that
    white space."""
    signer = dkimpy_message(dkim.DKIM, data, logger=QUIET_LOG,
                            signature_algorithm=key.key.algorithm.encode("ascii"))
    names = [n.lower().decode("ascii", "replace") for n, _ in signer.headers]
    include = header_list(names, sign_headers, oversign)
    if "from" not in include:
        include.insert(0, "from")
    line = signer.sign(key.selector.encode("ascii"), key.domain.encode("ascii"), key.key.data,
                       canonicalize=(b"relaxed", b"relaxed"),
                       include_headers=[h.encode("ascii") for h in include])
    name, _, value = line.decode("ascii").partition(":")
    return name, value.strip(" \r\n")
