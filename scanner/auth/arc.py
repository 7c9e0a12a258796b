"""Verify the ARC chain (RFC 8617) of a message.

The chain's structure is checked first (:mod:`scanner.auth.arc_chain`); a broken one
fails without a key lookup. Then the keys of the latest ARC-Message-Signature and of
every ARC-Seal are fetched, concurrently and under the message's DNS budget, and
dkimpy's signature verification checks, off the event loop (section 5.2 steps 4 to 6):
the latest ARC-Message-Signature, then each ARC-Seal from the latest to the first, each
over the sets up to its own in instance order. dkimpy's own chain walk is not used: it
needs ``i=N;`` after one space in each ARC-Message-Signature (a field folded or tabbed
before ``i=`` failed) and hashes the sets in the order they stand in the header (a relay
that reorders header fields broke the seals). Nor is its reading of an
ARC-Message-Signature without ``c=`` as relaxed: such a signature is simple/simple, as a
DKIM-Signature without one (section 4.1.2; RFC 6376 3.5; Mail::DKIM and Exim agree).

Results: ``pass``, ``fail``, ``none`` (no ARC headers) or ``temperror`` (a needed key
lookup timed out).
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from scanner.auth.arc_chain import ArcSet, Chain, Field, parse_chain
from scanner.auth.dkim_keys import (
    KeyTable,
    Lookup,
    dkimpy_message,
    fetch_keys,
    has_header,
    key_name,
    parsed_headers,
)
from scanner.auth.dkim_verify import QUIET_LOG, for_dkimpy, key_problem
from scanner.pipeline.cpu import RunCpu

AMS_TAGS = [b"i", b"a", b"b", b"bh", b"d", b"h", b"s"]
SEAL_TAGS = [b"i", b"a", b"b", b"cv", b"d", b"s"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    """The chain validation status and the number of ARC sets."""

    result: str
    instances: int = 0
    reason: str = ""
    sealer: str = ""  # on pass: the d= of the latest ARC-Seal
    sealer_results: bytes = b""  # on pass: the latest ARC-Authentication-Results value


async def verify_arc(raw: bytes, lookup: Lookup, run_cpu: RunCpu, minkey: int = 1024
                     ) -> ArcResult:
    """The chain validation status of ``raw``'s ARC sets; keys come from ``lookup``,
    the signature checks run through ``run_cpu``."""
    if not any(has_header(raw, name) for name in (b"ARC-Seal", b"ARC-Message-Signature")):
        return ArcResult("none")  # no ARC set: skip dkimpy's header parse
    headers = parsed_headers(raw)
    if headers is None:
        if has_header(raw, b"ARC-Seal"):
            return ArcResult("fail", reason="malformed header section")
        return ArcResult("none")
    chain = parse_chain(headers)
    if not chain.instances:
        return ArcResult("none")
    if chain.problem:
        return ArcResult("fail", chain.instances, chain.problem)
    keys = await fetch_keys(chain.key_names(), lookup)
    if keys.temporary:
        return ArcResult("temperror", chain.instances, "key lookup failed")
    return await run_cpu(_verify_sync, raw, chain, keys, minkey)


def _verify_sync(raw: bytes, chain: Chain, keys: KeyTable, minkey: int) -> ArcResult:
    count = chain.instances
    try:
        message = dkimpy_message(dkim.DomainSigner, raw, logger=QUIET_LOG, minkey=minkey)
    except Exception as exc:  # hostile input must not crash the check
        return ArcResult("fail", count, f"unparseable message: {type(exc).__name__}: {exc}")
    latest = chain.sets[-1]
    problem = _ams_problem(message, latest, keys)
    if problem:
        return ArcResult("fail", count, f"the latest ARC-Message-Signature "
                         f"(i={latest.instance}) did not verify: {problem}")
    for arc_set in reversed(chain.sets):
        message.headers, names = _sealed_fields(chain.sets[:arc_set.instance])
        problem = _check(message, arc_set.seal, SEAL_TAGS, keys, names)
        if problem:
            return ArcResult("fail", count,
                             f"ARC-Seal i={arc_set.instance} did not verify: {problem}")
    return ArcResult("pass", count, "success", latest.seal_tags.get("d", "").strip(),
                     latest.aar[1])


def _ams_problem(message: dkim.DomainSigner, latest: ArcSet, keys: KeyTable) -> str:
    signed = [h.strip().lower().encode("ascii", "replace")
              for h in latest.ams_tags.get("h", "").split(":")]
    if b"arc-seal" in signed:
        return "it signs ARC-Seal (h=)"
    return _check(message, latest.ams, AMS_TAGS, keys, signed)


def _sealed_fields(sets: tuple[ArcSet, ...]) -> tuple[list[Field], list[bytes]]:
    """The header fields the last set's ARC-Seal signs (the sets from the first, each
    AAR, AMS, AS, but that seal itself) and their names: the fields in reverse, since
    dkimpy picks repeated names from the bottom of the header up."""
    fields = [f for s in sets for f in s.fields()][:-1]
    return fields[::-1], [name.lower() for name, _ in fields]


def _check(message: dkim.DomainSigner, field: Field, mandatory: list[bytes],
           keys: KeyTable, include: list[bytes]) -> str:
    """Why the ARC signature ``field`` does not verify over ``message.headers`` with
    ``include``, or '' when it does."""
    try:
        sig = parse_tag_value(field[1])
        dkim.validate_signature_fields(sig, mandatory, True)
    except (InvalidTagValueList, dkim.DKIMException, ValueError) as exc:
        return f"malformed: {exc}"
    if field[0].lower() != b"arc-message-signature":
        sig[b"c"] = b"relaxed/relaxed"  # a seal is always relaxed (section 5.1.1)
    # an AMS without c= is simple/simple, as a DKIM-Signature's (section 4.1.2, RFC 6376
    # 3.5), which verify_sig defaults to; dkimpy's own ARC verifier reads it as relaxed
    text = {k.decode("ascii", "replace"): v.decode("utf-8", "replace")
            for k, v in sig.items() if k != b"i"}
    name = key_name(text["s"], text["d"])
    record = keys.records.get(name)
    if not record:
        return f"no key at {name}"
    problem = key_problem(text, record)
    if problem:
        return problem

    def dnsfunc(_name: bytes | str, timeout: float = 5) -> bytes:
        return for_dkimpy(record)

    try:
        ok = message.verify_sig(sig, list(include), field, dnsfunc)
    except dkim.DKIMException as exc:
        return str(exc)
    except Exception as exc:  # dkimpy on hostile input
        return f"{type(exc).__name__}: {exc}"
    return "" if ok else f"signature did not verify (d={text['d'].strip()})"
