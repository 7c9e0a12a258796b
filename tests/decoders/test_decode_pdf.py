"""PDF flags (JavaScript, OpenAction, Launch, embedded files) and embedded file extraction."""

from __future__ import annotations

import base64
import zlib

import pytest

from decoders import pdf as pdfmod
from decoders import unpack
from tests.decoders.builders import message, pe_exe
from tests.helpers import CallCounter


def pdf(*objects: bytes) -> bytes:
    body = b"%PDF-1.7\n"
    for n, obj in enumerate(objects, 1):
        body += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    return body + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def stream(head: bytes, data: bytes) -> bytes:
    return b"<< " + head + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def test_plain_pdf_has_no_flags() -> None:
    with unpack(
        message(("a.pdf", pdf(b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages >>")))
    ) as r:
        assert r.parts[2].detected_type == "pdf"
        assert not r.parts[2].flags
        assert r.parts[2].is_leaf


def test_javascript_openaction_launch_and_obfuscated_names() -> None:
    doc = pdf(
        b"<< /Type /Catalog /OpenAction 2 0 R >>",
        b"<< /S /J#61vaScript /JS (app.alert(1)) >>",
        b"<< /S /Launch /F (cmd.exe) >>",
    )
    with unpack(message(("a.pdf", doc))) as r:
        assert r.parts[2].flags >= {"pdf_javascript", "pdf_openaction", "pdf_launch"}


def test_embedded_file_is_extracted_with_its_name() -> None:
    payload = pe_exe()
    doc = pdf(
        b"<< /Type /Catalog /Names << /EmbeddedFiles 2 0 R >> >>",
        b"<< /Type /Filespec /F (update.exe) /EF << /F 3 0 R >> >>",
        stream(b"/Type /EmbeddedFile /Filter /FlateDecode", zlib.compress(payload)),
    )
    with unpack(message(("a.pdf", doc))) as r:
        assert "pdf_embedded" in r.parts[2].flags
        child = r.parts[3]
        assert child.data() == payload and child.name == "update.exe"
        assert child.path_string().startswith("P=p004,L=1/2/1,T=exe-ms,N=update.exe")


def test_javascript_hidden_in_object_stream() -> None:
    inner = zlib.compress(b"1 0 << /S /JavaScript /JS (x) >>")
    doc = pdf(stream(b"/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode", inner))
    with unpack(message(("a.pdf", doc))) as r:
        assert "pdf_javascript" in r.parts[2].flags


def _run_length(data: bytes) -> bytes:
    out = b""
    for i in range(0, len(data), 100):
        chunk = data[i : i + 100]
        out += bytes([len(chunk) - 1]) + chunk
    return out + b"\x80"


@pytest.mark.parametrize("filters", ["[/ASCII85Decode /FlateDecode]", "[/A85 /Fl]",
                                     "/RunLengthDecode", "[/AHx /FlateDecode]"])
def test_embedded_file_behind_a_filter_chain(filters: str) -> None:
    # only one filter was undone, and ASCII85 and RunLength not at all: a PE behind
    # [/ASCII85Decode /FlateDecode] came out as text and was not banned as exe-ms
    payload = pe_exe()
    encode = {"[/ASCII85Decode /FlateDecode]": lambda d: base64.a85encode(zlib.compress(d)) + b"~>",
              "[/A85 /Fl]": lambda d: base64.a85encode(zlib.compress(d), wrapcol=60) + b"~>",
              "/RunLengthDecode": _run_length,
              "[/AHx /FlateDecode]": lambda d: zlib.compress(d).hex().encode() + b">"}[filters]
    doc = pdf(
        b"<< /Type /Catalog /Names << /EmbeddedFiles 2 0 R >> >>",
        b"<< /Type /Filespec /F (report.pdf) /EF << /F 3 0 R >> >>",
        stream(b"/Type /EmbeddedFile /Filter " + filters.encode(), encode(payload)),
    )
    with unpack(message(("a.pdf", doc))) as r:
        assert r.parts[3].data() == payload
        assert r.parts[3].detected_type == "exe-ms"


def test_lzw_filter_example_of_the_pdf_reference() -> None:
    from decoders.pdf import _unfilter

    encoded = bytes.fromhex("800B6050220C0C8501")
    assert _unfilter(b"/Filter /LZWDecode", encoded, 100) == b"-----A---B"


def test_lzw_time_is_linear_in_the_stream() -> None:
    # the bit buffer was never trimmed, so every code cost time in proportion to the
    # bytes read so far: 2 MB of codes took minutes instead of a fraction of a second
    import time

    from decoders.pdf import _unfilter

    began = time.monotonic()
    out = _unfilter(b"/Filter /LZW", b"\x80" + b"\0" * 2_000_000, 50_000_000)
    assert len(out) > 1_000_000
    assert time.monotonic() - began < 10


def test_unclosed_ef_dictionaries_are_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``/EF <<`` repeated without ``>``: each one ran to the end (263 KB: 29 s)."""
    counting = CallCounter(pdfmod._EF_REF, "match")
    monkeypatch.setattr(pdfmod, "_EF_REF", counting)
    head = b"/EF <<" * 20000
    assert list(pdfmod.ef_refs(head)) == []
    assert counting.calls == 1
    head = b"<< /EF << /F 7 0 R >> /F (a.exe) /EF << /UF 8 0 R >>"
    assert [m.group(1) for m in pdfmod.ef_refs(head)] == [b"7", b"8"]
    assert [m.group(1) for m in pdfmod.ef_refs(head)] == [
        m.group(1) for m in counting.pattern.finditer(head)]


@pytest.mark.parametrize("head, name", [
    (b"/F (a.exe) " + b"/F (" * 20000, b"a.exe"),
    (b"/F (a\\) b.exe) /F (x\\)", b"a\\) b.exe"),
    (b"/F (a\\\\) b.exe) /F (x\\)", b"a\\\\"),
    (b"/F (" * 20000, None),
])
def test_file_name_search_stops_at_the_last_string_end(
        monkeypatch: pytest.MonkeyPatch, head: bytes, name: bytes | None) -> None:
    """A ``/F (`` that no ``)`` ends ran to the end from each start (quadratic); the
    search now ends at the last ``)`` that ends a string, and finds the same name."""
    short = head[:200]
    expected = pdfmod._FNAME.search(short)
    assert (expected.group(1) if expected else None) == (name if b"a" in short else None)
    counting = CallCounter(pdfmod._FNAME, "search")
    monkeypatch.setattr(pdfmod, "_FNAME", counting)
    m = pdfmod.file_name(head)
    assert (m.group(1) if m else None) == name
    assert counting.calls == (0 if name is None else 1)


def test_object_numbers_are_not_retried_inside_digit_runs() -> None:
    data = b"7 0 obj\n<< >>\nstream\n" + b"41" * 50000 + b"\nendstream\nendobj\n8 0 obj"
    assert [m.group(1) for m in pdfmod._OBJ.finditer(data)] == [b"7", b"8"]
    assert pdfmod._OBJ.pattern.startswith(rb"(?<!\d)(\d++)")  # whole runs only


def test_unclosed_filter_arrays_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CallCounter(pdfmod._FILTER_VALUE, "match")
    monkeypatch.setattr(pdfmod, "_FILTER_VALUE", counting)
    assert pdfmod.filters(b"/Filter [" * 20000) == []
    assert counting.calls == 0
    assert pdfmod.filters(b"/Filter [/AHx /Fl] /Filter [") == [b"/AHx", b"/Fl"]


def test_long_filter_chains_are_not_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setitem(pdfmod._FILTERS, b"/AHx", lambda data, limit: calls.append(1) or data)
    chain = b"/Filter [" + b"/AHx " * (pdfmod.MAX_FILTERS + 1) + b"]"
    assert pdfmod._unfilter(chain, b"41", 100) == b"41" and calls == []
    chain = b"/Filter [" + b"/AHx " * pdfmod.MAX_FILTERS + b"]"
    pdfmod._unfilter(chain, b"41", 100)
    assert len(calls) == pdfmod.MAX_FILTERS


def test_object_streams_share_one_inflation_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each object stream used to get MAX_OBJSTM of its own: a small PDF of many
    doubly deflated streams inflated gigabytes."""
    monkeypatch.setattr(pdfmod, "MAX_OBJSTM", 1 << 20)
    inflated: list[int] = []
    flate = pdfmod._flate

    def counting(data: bytes, limit: int) -> bytes:
        out = flate(data, limit)
        inflated.append(len(out))
        return out

    monkeypatch.setitem(pdfmod._FILTERS, b"/FlateDecode", counting)
    inner = zlib.compress(zlib.compress(b"\0" * (512 << 10)))
    head = b"/Type /ObjStm /Filter [/FlateDecode /FlateDecode]"
    doc = pdf(*[stream(head, inner)] * 40)
    with unpack(message(("a.pdf", doc))) as r:
        assert "DECODE_LIMIT_QUOTA" in r.symbols()
    outer = inflated[1::2]  # the second inflation of each stream is its content
    assert sum(outer) <= (1 << 20) + 1
    assert len(outer) <= 3  # two streams fit, the third is over the budget
