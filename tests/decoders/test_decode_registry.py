"""Decoders are found through entry points; the first decoder for a type wins."""

from __future__ import annotations

from collections.abc import Iterator

from decoders import Child, unpack
from decoders.base import Decoder
from decoders.context import DecodeContext
from decoders.part import Part
from decoders.registry import dispatch, load_decoders
from tests.decoders.builders import message, zip_bytes

BUILT_INS = {
    "mime",
    "zip",
    "7z",
    "libarchive",
    "tar",
    "compress",
    "tnef",
    "ole",
    "rtf",
    "pdf",
    "html",
    "uue",
    "yenc",
    "binhex",
    "mspack",
    "sfx",
    "arj",
    "sis",
    "onenote",
    "diskimage",
}


def test_builtins_are_registered_as_entry_points() -> None:
    decoders = load_decoders()
    assert {d.name for d in decoders} == BUILT_INS
    assert all(isinstance(d, Decoder) for d in decoders)
    assert dispatch(decoders, "zip").name == "zip"
    assert dispatch(decoders, "mail").name == "mime"
    assert dispatch(decoders, "jpg") is None


class Shout:
    name = "shout"
    handles = frozenset({"asc"})
    order = 1

    def wants(self, part: Part) -> bool:
        return part.name == "a.txt"

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        yield Child(blob=ctx.blob(part.data().upper()), name="loud.txt")


class Broken:
    name = "broken"
    handles = frozenset({"zip"})

    def decode(self, part: Part, ctx: DecodeContext) -> Iterator[Child]:
        raise RuntimeError("bug in a plug-in")
        yield  # pragma: no cover


def test_custom_decoder_list_first_match() -> None:
    decoders = [Shout(), *load_decoders()]
    with unpack(message(("a.txt", b"quiet words\n")), decoders=decoders) as result:
        loud = [p for p in result.parts if p.name == "loud.txt"]
        assert len(loud) == 1 and loud[0].data() == b"QUIET WORDS\n"
        assert result.parts[2].decoder == "shout"


def test_decoder_exception_becomes_decode_fail() -> None:
    decoders = [Broken(), *load_decoders()]
    with unpack(message(("a.zip", zip_bytes({"x": b"y"}))), decoders=decoders) as result:
        hit = next(h for h in result.hits if h.symbol == "DECODE_FAIL")
        assert hit.options[0] == "broken" and "bug in a plug-in" in hit.options[1]
        assert hit.part.startswith("P=p003")
        assert "corrupt" in result.parts[2].flags


def test_a_decoder_that_declines_a_part_leaves_it_to_the_next_one() -> None:
    # plain text is handled by uue and yenc; uue's ``wants`` declining a yEnc body
    # must not stop the yEnc decoder from getting it
    from decoders.registry import candidates

    names = [d.name for d in candidates(load_decoders(), "asc")]
    assert names.index("uue") < names.index("yenc")
