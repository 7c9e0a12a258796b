"""OneNote sections (.one): typing, the embedded files, names, damage and the limits."""

from __future__ import annotations

import time

import pytest

from decoders import unpack
from decoders.base import LimitExceeded, Limits
from decoders.context import Blob, DecodeContext
from decoders.filetype import detect
from decoders.onenote import OneNoteDecoder
from decoders.part import Part
from scanner.banned import build_rules, find_banned
from tests.decoders.builders import (
    lnk_bytes,
    message,
    onenote_object,
    onenote_reference,
    onenote_section,
    onenote_with_named,
    pe_exe,
)

HTA = (b'<html><head><HTA:APPLICATION id="x"/><script language="VBScript">'
       b'CreateObject("WScript.Shell").Run "powershell -enc AAAA"</script></head></html>\n')
EXE = pe_exe(b"payload")


def _one_parts(raw: bytes, **limits: object):
    return unpack(message(("Invoice.one", raw)), limits=Limits(**limits))  # type: ignore[arg-type]


def _children(result, name: str = "Invoice.one") -> list:
    one = next(p for p in result.parts if p.name == name)
    return [p for p in result.parts if p.parent == one.index]


def test_a_onenote_section_is_typed_one() -> None:
    raw = onenote_section([])
    assert detect(Blob(len(raw), "", data=raw))[0] == "one"
    with _one_parts(raw) as result:
        assert result.parts[2].detected_type == "one"
        assert not result.unchecked and _children(result) == []


def test_an_embedded_hta_comes_out_under_its_stored_extension_and_is_banned() -> None:
    raw = onenote_with_named([(HTA, ".hta"), (b"plain note text\n", ".txt")])
    with _one_parts(raw) as result:
        kids = _children(result)
        assert [(k.name, k.data()) for k in kids] == [("embedded-1.hta", HTA),
                                                       ("embedded-2.txt", b"plain note text\n")]
        assert not result.unchecked and result.symbols() == set()
        banned = find_banned(result.parts)
        assert [h.options[0] for h in banned] == [kids[0].path_string()]


def test_an_embedded_exe_without_a_stored_extension_is_named_and_banned_by_its_type() -> None:
    raw = onenote_section([onenote_object(EXE), onenote_object(b"meeting notes\n")])
    with _one_parts(raw) as result:
        exe, text = _children(result)
        assert (exe.name, exe.detected_type, exe.data()) == ("embedded-1.exe", "exe-ms", EXE)
        assert (text.name, text.detected_type) == ("embedded-2", "asc")
        assert [h.options[0] for h in find_banned(result.parts)] == [exe.path_string()]


def test_an_embedded_shortcut_without_a_stored_extension_is_banned_as_a_lnk() -> None:
    raw = onenote_section([onenote_object(lnk_bytes())])
    with _one_parts(raw) as result:
        (kid,) = _children(result)
        assert (kid.name, kid.detected_type) == ("embedded-1.lnk", "lnk")
        assert [h.options[0] for h in find_banned(result.parts)] == [kid.path_string()]


def test_a_site_can_ban_onenote_sections_by_type() -> None:
    rules = build_rules([{"match": "type", "regex": "^one$", "action": "ban"}])
    with _one_parts(onenote_section([])) as result:
        assert find_banned(result.parts) == []
        assert [h.options[0] for h in find_banned(result.parts, rules)] == [
            result.parts[2].path_string()]


def test_an_extension_whose_reference_points_elsewhere_is_not_taken() -> None:
    trailer = onenote_reference("00000001-AAAA-4BBB-8CCC-DDDDDDDDDDDD", 1032, ".hta")
    raw = onenote_section([onenote_object(HTA)], trailer)
    with _one_parts(raw) as result:
        assert [k.name for k in _children(result)] == ["embedded-1.html"]  # its type


@pytest.mark.parametrize("length, footer, why", [
    (1 << 40, True, "runs past the end"),
    (len(HTA) + 4096, False, "runs past the end"),
    (len(HTA) - 16, True, "no footer"),
    ((1 << 64) - 1, True, "runs past the end"),
])
def test_a_length_that_lies_keeps_what_is_there_and_is_corrupt(
        length: int, footer: bool, why: str) -> None:
    raw = onenote_section([onenote_object(HTA, length=length, footer=footer)])
    with _one_parts(raw) as result:
        kids = _children(result)
        assert kids and "corrupt" in kids[0].flags
        assert kids[0].data() == raw[1024 + 36 : 1024 + 36 + length]  # never past the end
        corrupt = [h for h in result.hits if h.symbol == "DECODE_CORRUPT"]
        assert len(corrupt) == 1 and why in corrupt[0].options[1]
        assert result.unchecked and "DECODE_FAIL" not in result.symbols()


def test_an_object_inside_a_lying_one_is_still_found() -> None:
    inner = onenote_object(EXE)
    raw = onenote_section([onenote_object(b"x" * 8, length=len(inner) + 200, footer=False)
                           + inner])
    with _one_parts(raw) as result:
        assert any(k.data() == EXE for k in _children(result))
        assert "DECODE_CORRUPT" in result.symbols()


def test_a_header_cut_short_is_corrupt() -> None:
    raw = onenote_section([onenote_object(HTA)[:20]])
    with _one_parts(raw) as result:
        assert _children(result) == [] and "DECODE_CORRUPT" in result.symbols()


def test_the_quota_counts_embedded_bytes() -> None:
    raw = onenote_section([onenote_object(EXE + b"\0" * 300_000)])
    with _one_parts(raw, min_quota=1000, min_factor=1, max_factor=1) as result:
        assert "DECODE_LIMIT_QUOTA" in result.symbols() and result.unchecked


def test_the_files_limit_stops_a_section_of_many_objects() -> None:
    raw = onenote_section([onenote_object(b"note %d\n" % i) for i in range(20)])
    with _one_parts(raw, max_parts=10) as result:
        assert len(result.parts) == 10 and "DECODE_LIMIT_FILES" in result.symbols()


def test_the_depth_limit_applies() -> None:
    raw = onenote_section([onenote_object(HTA)])
    with _one_parts(raw, max_depth=2) as result:
        assert _children(result) == [] and "DECODE_LIMIT_DEPTH" in result.symbols()


def test_the_time_budget_is_checked_between_objects() -> None:
    raw = onenote_section([onenote_object(HTA), onenote_object(EXE)])
    ctx = DecodeContext(Limits(), len(raw))
    part = Part(index=1, level=(1,), blob=Blob(len(raw), "", data=raw), detected_type="one")
    children = OneNoteDecoder().decode(part, ctx)
    assert next(children).blob.read() == HTA
    ctx.deadline = time.monotonic() - 1  # the budget runs out while the section is read
    with pytest.raises(LimitExceeded) as caught:
        next(children)
    assert caught.value.kind == "time"


def test_lying_lengths_yield_no_more_bytes_than_the_section_holds() -> None:
    """Each object claims a gigabyte: its bytes end at the next object header, so 4,000
    of them give the section's bytes once (before, each gave the rest of the section:
    quadratic, until the quota stopped it)."""
    liar = onenote_object(b"", length=10**9, footer=False)[:36]
    raw = onenote_section([liar] * 4000)
    with _one_parts(raw) as result:
        kids = _children(result)
        assert len(kids) == 1497  # the files limit: 1500 parts with the message's three
        assert sum(k.size for k in kids) == 0
        assert "DECODE_LIMIT_FILES" in result.symbols() and all("corrupt" in k.flags for k in kids)
        assert "DECODE_LIMIT_QUOTA" not in result.symbols()
