"""``unpack()``: expand a raw message into its part tree, within the decoding limits.

Part 1 is the whole message; every decoded part follows depth first. Each part is typed
(libmagic), handed to the first decoder for its type, and its children are expanded in
turn. Limits are enforced on bytes actually produced: hitting one stops that branch,
records a ``DECODE_LIMIT_*`` hit and marks the message unchecked. Decoder errors become
``DECODE_CORRUPT`` (damaged part) or ``DECODE_FAIL`` (unexpected error), which mark the
message unchecked too (what the part holds past the damage was never looked at), and
decoding goes on with the rest. A temporary directory that does not take a part (disk
full) stops decoding with ``DECODE_SPOOL_FAIL``, which defers the message. ``unpack``
never raises; the result owns a private temporary directory that ``close()`` (or
leaving its ``with`` block) removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from decoders.base import (
    LIMIT_SYMBOLS,
    Child,
    CorruptPart,
    Decoder,
    LimitExceeded,
    Limits,
    SpoolFailed,
    Unsupported,
)
from decoders.context import Blob, DecodeContext
from decoders.filetype import detect, mismatch_hits
from decoders.mimeutil import KnownHeader
from decoders.part import Part
from decoders.registry import candidates, load_decoders
from scanner.task import Hit

log = logging.getLogger(__name__)


@dataclass
class Unpacked:
    """The outcome of :func:`unpack`: parts, hits and the UNCHECKED/ENCRYPTED verdicts."""

    parts: list[Part] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    unchecked: bool = False
    encrypted: bool = False
    ctx: DecodeContext | None = None

    def symbols(self) -> set[str]:
        return {h.symbol for h in self.hits}

    def leaves(self) -> list[Part]:
        return [p for p in self.parts if p.is_leaf]

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.cleanup()

    def __enter__(self) -> Unpacked:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Expander:
    def __init__(self, ctx: DecodeContext, decoders: Sequence[Decoder], out: Unpacked) -> None:
        self.ctx = ctx
        self.decoders = decoders
        self.out = out
        self._seen: set[tuple[str, str]] = set()

    def hit(self, symbol: str, part: Part, *options: str) -> None:
        key = (symbol, part.path_string())
        if key in self._seen:
            return
        self._seen.add(key)
        self.out.hits.append(Hit(symbol, options=tuple(options), part=key[1]))

    def limit(self, exc: LimitExceeded, part: Part) -> None:
        self.out.unchecked = True
        self.hit(LIMIT_SYMBOLS[exc.kind], part, exc.detail or exc.kind)

    def add(self, child: Child, parent: Part, position: int) -> Part:
        if len(self.out.parts) >= self.ctx.limits.max_parts:
            raise LimitExceeded("files", str(self.ctx.limits.max_parts))
        part = Part(
            index=len(self.out.parts) + 1,
            level=(*parent.level, position),
            blob=child.blob,
            declared_type=child.declared_type,
            name=child.name,
            aliases=child.aliases,
            parent=parent.index,
            flags=set(child.flags),
            plain_text=child.text,
            html=child.html,
            headers=child.headers,
        )
        self.type_part(part, child.detected_type)
        self.out.parts.append(part)
        for h in mismatch_hits(part):
            self.out.hits.append(h)
        return part

    def type_part(self, part: Part, forced: str | None) -> None:
        try:
            short, description = detect(part.blob)
        except Exception:
            short, description = "dat", "data"
        part.magic = description
        part.detected_type = forced or short

    def choose(self, part: Part) -> Decoder | None:
        """The first decoder for the part's type whose ``wants`` (if any) accepts it."""
        for decoder in candidates(self.decoders, part.detected_type):
            wants = getattr(decoder, "wants", None)
            try:
                if wants is None or wants(part):
                    return decoder
            except Exception:
                continue
        return None

    def expand(self, part: Part) -> None:
        decoder = self.choose(part)
        if decoder is None:
            return
        try:
            self.ctx.check_time()
            if part.depth >= self.ctx.limits.max_depth:
                raise LimitExceeded("depth", str(self.ctx.limits.max_depth))
        except LimitExceeded as exc:
            self.limit(exc, part)
            return
        part.decoder = decoder.name
        position = 0
        children = iter(decoder.decode(part, self.ctx))
        try:
            while True:
                try:
                    child = next(children)
                except StopIteration:
                    break
                position += 1
                sub = self.add(child, part, position)
                part.is_leaf = False
                self.expand(sub)
        except LimitExceeded as exc:
            self.limit(exc, part)
        except Unsupported as exc:
            self.hit("DECODE_UNSUPPORTED", part, str(exc)[:200])
        except CorruptPart as exc:  # what lies past the damage was not checked
            part.flags.add("corrupt")
            self.out.unchecked = True
            self.hit("DECODE_CORRUPT", part, part.path_string(), str(exc)[:200])
        except Exception as exc:  # a decoder bug or a library choking on hostile input
            log.debug("decoder %s failed on %s", decoder.name, part.path_string(), exc_info=True)
            part.flags.add("corrupt")
            self.out.unchecked = True
            self.hit("DECODE_FAIL", part, decoder.name, f"{type(exc).__name__}: {exc}"[:200])
        finally:
            close = getattr(children, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        if "ambiguous" in part.flags:
            self.out.unchecked = True
            self.hit("MIME_AMBIGUOUS", part, self.ctx.ambiguities.pop(part.index, "ambiguous"))
        if "encrypted" in part.flags:
            self.out.encrypted = True
            self.out.unchecked = True
            self.hit("DECODE_ENCRYPTED", part, *self.ctx.encrypted_names[:10])
            self.ctx.encrypted_names.clear()


def unpack(
    raw: bytes,
    limits: Limits | None = None,
    decoders: Sequence[Decoder] | None = None,
    tmp_root: str | None = None,
    known_header: KnownHeader | None = None,
) -> Unpacked:
    """Decode ``raw`` (a whole message) into parts; never raises. ``known_header``:
    ``raw``'s header section as the caller parsed it already (reused, not parsed again,
    when the MIME decoder would parse the same fields)."""
    limits = limits or Limits()
    ctx = DecodeContext(limits, len(raw), tmp_root)
    ctx.known_header = known_header
    out = Unpacked(ctx=ctx)
    try:
        if decoders is None:
            decoders = load_decoders()
        expander = _Expander(ctx, decoders, out)
        raw = bytes(raw)
        blob = Blob(len(raw), hashlib.sha256(raw).hexdigest(), data=raw)  # input: not counted
        root = Part(index=1, level=(1,), blob=blob)
        expander.type_part(root, "mail")
        out.parts.append(root)
        expander.expand(root)
    except SpoolFailed as exc:  # a full disk is ours: defer, never pass it unchecked
        log.error("decoding stopped: %s; the message is deferred", exc)
        out.unchecked = True
        out.hits.append(Hit("DECODE_SPOOL_FAIL", options=(str(exc)[:200],)))
    except Exception as exc:
        log.exception("unpack failed")
        out.hits.append(
            Hit("DECODE_FAIL", options=("unpack", f"{type(exc).__name__}: {exc}"[:200]))
        )
    return out
