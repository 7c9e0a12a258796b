"""Make a DKIM key pair and the DNS TXT record that publishes it (``scanner dkim genkey``).

Keys are RSA (2048 bits by default), written as PKCS#1 PEM, the form dkimpy and
OpenDKIM both read, or Ed25519 (RFC 8463), written as PKCS#8 PEM (OpenSSL's form);
the Ed25519 record publishes the raw 32-byte public key, as RFC 8463 defines. The
record is printed in zone-file syntax, split into quoted strings of at most 255
characters as TXT records require.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def generate(bits: int = 2048) -> tuple[bytes, str]:
    """(private key PEM, base64 of the DER public key for p=)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, base64.b64encode(der).decode("ascii")


def generate_ed25519() -> tuple[bytes, str]:
    """(private key PEM, base64 of the raw 32-byte public key for p=)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return pem, base64.b64encode(raw).decode("ascii")


def record_text(public_b64: str, testing: bool = False, key_type: str = "rsa") -> str:
    """The TXT record's text: ``v=DKIM1; k=rsa; p=...`` (``t=y`` while testing;
    ``k=ed25519`` for an Ed25519 key)."""
    return f"v=DKIM1; k={key_type}; {'t=y; ' if testing else ''}p={public_b64}"


def zone_line(domain: str, selector: str, text: str) -> str:
    """``SELECTOR._domainkey.DOMAIN. IN TXT ( "..." "..." )`` in chunks of 255."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
    quoted = "\n\t".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain.rstrip('.')}. 3600 IN TXT (\n\t{quoted} )"


def write_private(path: Path, pem: bytes, force: bool = False) -> None:
    """Write the key readable by its owner only; refuse to overwrite unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
