"""Verify the ARC chain (RFC 8617) of a message with dkimpy's ARC support.

Keys of every ARC-Seal and ARC-Message-Signature are fetched first, concurrently and
under the message's DNS budget; dkimpy then validates the chain off the event loop.
Results: ``pass``, ``fail``, ``none`` (no ARC headers) or ``temperror`` (a key lookup
timed out).
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from scanner.auth.dkim_keys import (
    KeyTable,
    Lookup,
    fetch_keys,
    has_header,
    key_name,
    parsed_headers,
    tags,
)
from scanner.auth.dkim_verify import QUIET_LOG
from scanner.pipeline.cpu import RunCpu

ARC_SIGNING = (b"arc-seal", b"arc-message-signature")


@dataclass(frozen=True, slots=True)
class ArcResult:
    """The chain validation status and the number of ARC sets."""

    result: str
    instances: int = 0
    reason: str = ""


async def verify_arc(raw: bytes, lookup: Lookup, run_cpu: RunCpu, minkey: int = 1024
                     ) -> ArcResult:
    if not any(has_header(raw, name) for name in (b"ARC-Seal", b"ARC-Message-Signature")):
        return ArcResult("none")  # no ARC set: skip dkimpy's header parse
    headers = parsed_headers(raw)
    if headers is None:
        if has_header(raw, b"ARC-Seal"):
            return ArcResult("fail", reason="malformed header section")
        return ArcResult("none")
    signing = [tags(v) for n, v in headers if n.lower() in ARC_SIGNING]
    if not signing:
        return ArcResult("none")
    instances = {t.get("i", "") for t in signing if t}
    names = [key_name(t["s"], t["d"]) for t in signing if t and t.get("s") and t.get("d")]
    keys = await fetch_keys(names, lookup)
    if keys.temporary:
        return ArcResult("temperror", len(instances), "key lookup failed")
    return await run_cpu(_verify_sync, raw, keys, len(instances), minkey)


def _verify_sync(raw: bytes, keys: KeyTable, instances: int, minkey: int) -> ArcResult:
    try:
        cv, _, reason = dkim.arc_verify(raw, logger=QUIET_LOG, dnsfunc=keys.dnsfunc,
                                        minkey=minkey)
    except Exception as exc:  # hostile input must not crash the check
        return ArcResult("fail", instances, f"{type(exc).__name__}: {exc}")
    if cv == dkim.CV_Pass:
        return ArcResult("pass", instances, str(reason))
    if cv == dkim.CV_None:
        return ArcResult("none", instances, str(reason))
    return ArcResult("fail", instances, str(reason))
