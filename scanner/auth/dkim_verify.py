"""Verify every DKIM signature of a message with dkimpy (RFC 6376).

Keys are fetched first (:mod:`scanner.auth.dkim_keys`), then dkimpy verifies each
signature off the event loop. Each signature gets an RFC 8601 result:

- ``pass``: the signature verifies;
- ``fail``: the body hash or the signature does not match (the message was changed);
- ``permerror``: a malformed signature, one whose ``h=`` leaves From out, no key, a
  revoked or unusable key, expired, ``rsa-sha1`` (RFC 8301), or a key record that does
  not allow this signature: its ``h=`` lacks the hash, its ``k=`` is another
  algorithm, its ``s=`` lists no ``email`` (or ``*``), or its ``t=s`` forbids an
  ``i=`` in a subdomain of ``d=`` (RFC 6376 3.6.1, 6.1.2);
- ``temperror``: the key lookup timed out or the DNS server failed.

A result whose key record has ``t=y`` (the domain is testing DKIM) is marked
``testing``: RFC 6376 3.6.1 treats such a message like an unsigned one when its
signature fails, which :mod:`scanner.auth.report` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import dkim

from scanner.auth.dkim_keys import (
    KeyTable,
    Lookup,
    dkimpy_message,
    fetch_keys,
    has_header,
    key_name,
    parsed_headers,
    tags,
)
from scanner.pipeline.cpu import RunCpu

QUIET_LOG = logging.getLogger("scanner.dkimpy")
QUIET_LOG.setLevel(logging.CRITICAL)


@dataclass(frozen=True, slots=True)
class DkimResult:
    """The verdict on one DKIM-Signature header."""

    result: str
    domain: str = ""
    selector: str = ""
    b: str = ""
    reason: str = ""
    testing: bool = False  # the key record says t=y: a failure counts as no signature

    @property
    def header_b(self) -> str:
        """The first 8 characters of b= (RFC 6008), to tell signatures apart."""
        return "".join(self.b.split())[:8]


def signature_tags(raw: bytes) -> list[dict[str, str] | None] | None:
    """The tags of each DKIM-Signature header, in order (None: unparseable); None for
    the whole list when dkimpy cannot parse the header section at all."""
    headers = parsed_headers(raw)
    if headers is None:
        return None
    return [tags(value) for name, value in headers if name.lower() == b"dkim-signature"]


async def verify_all(raw: bytes, lookup: Lookup, run_cpu: RunCpu, max_signatures: int = 10,
                     minkey: int = 1024) -> list[DkimResult]:
    """A result for each of the first ``max_signatures`` signatures ([] when unsigned)."""
    if not has_header(raw, b"DKIM-Signature"):  # unsigned: skip dkimpy's header parse
        return []
    found = signature_tags(raw)
    if found is None:  # signed, but dkimpy cannot parse the header section
        return [DkimResult("permerror", reason="malformed header section")]
    sigs = found[:max_signatures]
    if not sigs:
        return []
    names = [key_name(t["s"], t["d"]) for t in sigs if t and t.get("s") and t.get("d")]
    keys = await fetch_keys(names, lookup)
    return await run_cpu(_verify_sync, raw, sigs, keys, minkey)


def _verify_sync(raw: bytes, sigs: list[dict[str, str] | None], keys: KeyTable,
                 minkey: int) -> list[DkimResult]:
    try:
        verifier = dkimpy_message(dkim.DKIM, raw, logger=QUIET_LOG, minkey=minkey)
    except Exception as exc:  # the body or headers defeat dkimpy's parser
        return [DkimResult("permerror", reason=f"unparseable message: {exc}")] * len(sigs)
    return [_verify_one(verifier, i, t, keys) for i, t in enumerate(sigs)]


def _verify_one(verifier: dkim.DKIM, idx: int, sig: dict[str, str] | None, keys: KeyTable
                ) -> DkimResult:
    if sig is None:
        return DkimResult("permerror", reason="malformed signature")
    domain = sig.get("d", "").strip().lower()
    selector = sig.get("s", "").strip()
    base = {"domain": domain, "selector": selector, "b": sig.get("b", "")}
    if not domain or not selector:
        return DkimResult("permerror", **base, reason="signature without d= or s=")
    if "from" not in _colon_list(sig.get("h", "")):  # RFC 6376 6.1.1; dkimpy skips it
        return DkimResult("permerror", **base, reason="From is not signed (h=)")
    name = key_name(selector, domain)
    if name in keys.temporary:
        return DkimResult("temperror", **base, reason="key lookup failed")
    record = keys.records.get(name)
    if not record:
        return DkimResult("permerror", **base, reason="no key")
    result = _verify_with_key(verifier, idx, sig, name, record, base)
    return replace(result, testing=True) if testing_key(record) else result


def _verify_with_key(verifier: dkim.DKIM, idx: int, sig: dict[str, str], name: str,
                     record: bytes, base: dict[str, str]) -> DkimResult:
    problem = key_problem(sig, record)
    if problem:
        return DkimResult("permerror", **base, reason=problem)
    record = for_dkimpy(record)
    try:
        dkim.evaluate_pk(name, record)
    except dkim.DKIMException as exc:
        return DkimResult("permerror", **base, reason=f"bad key: {exc}")

    def dnsfunc(_name: bytes | str, timeout: float = 5) -> bytes:
        return record

    try:
        ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        verdict = "fail" if "body hash mismatch" in str(exc) else "permerror"
        return DkimResult(verdict, **base, reason=str(exc))
    except dkim.DKIMException as exc:
        return DkimResult("permerror", **base, reason=str(exc))
    except Exception as exc:  # dkimpy on hostile input: never let it crash the check
        return DkimResult("permerror", **base, reason=f"{type(exc).__name__}: {exc}")
    return DkimResult("pass" if ok else "fail", **base,
                      reason="" if ok else "signature did not verify")


def testing_key(record: bytes) -> bool:
    """Does the key record say its domain is testing DKIM (``t=y``, RFC 6376 3.6.1)?"""
    key = tags(record)
    return key is not None and "y" in _colon_list(key.get("t", ""))


def key_problem(sig: dict[str, str], record: bytes) -> str:
    """Why this key record may not verify this signature, or '' (dkimpy checks none of
    these). A key record too broken to read is left to dkimpy to report."""
    algorithm = sig.get("a", "").strip().lower()
    if algorithm == "rsa-sha1":
        return "rsa-sha1 is not accepted (RFC 8301)"
    key = tags(record)
    if key is None:
        return ""
    kind, _, hash_name = algorithm.partition("-")
    if hash_name and "h" in key and hash_name not in _colon_list(key["h"]):
        return f"the key does not allow {hash_name} (h={key['h'].strip()})"
    key_kind = key.get("k", "rsa").strip().lower()
    if kind in ("rsa", "ed25519") and key_kind != kind:
        return f"a k={key_kind} key cannot verify {algorithm}"
    services = _colon_list(key.get("s", "*"))
    if "*" not in services and "email" not in services:
        return f"the key is not for email (s={key['s'].strip()})"
    if "s" in _colon_list(key.get("t", "")):
        domain = sig.get("d", "").strip().lower()
        identity = sig.get("i", f"@{domain}").rpartition("@")[2].strip().lower()
        if identity != domain:
            return f"the key forbids i= in a subdomain of d= (t=s, i={identity})"
    return ""


def for_dkimpy(record: bytes) -> bytes:
    """The key record without its ``s=`` tag once :func:`key_problem` accepted it: dkimpy
    takes only ``s=email`` or ``s=*`` whole, not a list such as ``s=email:tlsrpt``."""
    key = tags(record)
    if key is None or "s" not in key:
        return record
    return "; ".join(f"{k}={v}" for k, v in key.items() if k != "s").encode()


def _colon_list(value: str) -> list[str]:
    return [item.strip().lower() for item in value.split(":")]
