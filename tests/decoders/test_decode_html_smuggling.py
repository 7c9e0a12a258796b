"""HTML smuggling: large base64/hex script literals a page turns into a download."""

from __future__ import annotations

import base64
import zipfile

import pytest

from decoders import unpack
from decoders.base import Limits
from scanner.banned import find_banned
from tests.decoders.builders import message, pe_exe, zip_bytes

EXE = pe_exe(bytes(range(256)) * 8)  # 2.5 KB: above the 1 KiB floor
ZIP = zip_bytes({"Invoice_0412.exe": EXE}, method=zipfile.ZIP_STORED)
PNG = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + bytes(range(256)) * 8


def _page(literal: str, script: str, extra: str = "") -> bytes:
    return (f"<html><body>{extra}<script>var d = '{literal}';\n{script}\n</script>"
            "</body></html>\n").encode()


BLOB_SAVE = ("var b = atob(d); var u = new Uint8Array(b.length);"
             "for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);"
             "var a = document.createElement('a');"
             "a.href = URL.createObjectURL(new Blob([u]));"
             "a.download = 'Invoice_0412.zip'; a.click();")


def _smuggled(raw_html: bytes, **limits: object):
    return unpack(message(("statement.html", raw_html)),
                  limits=Limits(**limits))  # type: ignore[arg-type]


def _flagged(result) -> list:
    return [p for p in result.parts if "html-smuggled" in p.flags]


def test_a_base64_zip_saved_through_a_blob_comes_out_named_and_its_exe_is_banned() -> None:
    page = _page(base64.b64encode(ZIP).decode(), BLOB_SAVE)
    with _smuggled(page) as result:
        (part,) = _flagged(result)
        assert part.name == "Invoice_0412.zip" and part.detected_type == "zip"
        assert part.data() == ZIP
        inner = [p for p in result.parts if p.parent == part.index]
        assert [p.name for p in inner] == ["Invoice_0412.exe"]
        banned = {h.options[0] for h in find_banned(result.parts)}
        assert inner[0].path_string() in banned and not result.unchecked


def test_a_hex_exe_for_mssaveoropenblob_is_banned_by_name_and_type() -> None:
    script = ("var u = new Uint8Array(d.match(/../g).map(h => parseInt(h, 16)));"
              "navigator.msSaveOrOpenBlob(new Blob([u]), \"update.exe\");")
    with _smuggled(_page(EXE.hex(), script)) as result:
        (part,) = _flagged(result)
        assert (part.name, part.detected_type, part.data()) == ("update.exe", "exe-ms", EXE)
        assert part.path_string() in {h.options[0] for h in find_banned(result.parts)}


def test_a_download_attribute_names_the_payload() -> None:
    script = "location.href = URL.createObjectURL(new Blob([atob(d)]));"
    extra = '<a id="x" download="scan.iso" href="#">open</a>'
    with _smuggled(_page(base64.b64encode(ZIP).decode(), script, extra)) as result:
        assert [p.name for p in _flagged(result)] == ["scan.iso"]


def test_without_a_download_name_the_payload_is_numbered() -> None:
    script = "window.open(URL.createObjectURL(new Blob([atob(d)])));"
    with _smuggled(_page(base64.b64encode(EXE).decode(), script)) as result:
        (part,) = _flagged(result)
        assert part.name == "smuggled-1" and part.detected_type == "exe-ms"


@pytest.mark.parametrize("literal, script", [
    (base64.b64encode(ZIP).decode(), "console.log(d.length);"),  # nothing makes a file
    (base64.b64encode(EXE[:600]).decode(), BLOB_SAVE),  # below the floor
    (base64.b64encode(ZIP).decode()[:-3] + "A", BLOB_SAVE),  # does not decode cleanly
])
def test_literals_that_are_no_smuggled_file_give_nothing(literal: str, script: str) -> None:
    with _smuggled(_page(literal, script)) as result:
        assert _flagged(result) == [] and not result.unchecked


def test_an_inline_image_stays_a_data_uri_only() -> None:
    img = f'<img src="data:image/png;base64,{base64.b64encode(PNG).decode()}">'
    page = _page("short", BLOB_SAVE, img)
    with _smuggled(page) as result:
        assert _flagged(result) == []
        assert [p.name for p in result.parts if p.name and p.name.startswith("data-uri")] == [
            "data-uri-1"]


def test_the_quota_bounds_a_smuggled_payload() -> None:
    big = base64.b64encode(EXE * 200).decode()
    with _smuggled(_page(big, BLOB_SAVE), min_quota=1000, min_factor=1, max_factor=1) as result:
        assert "DECODE_LIMIT_QUOTA" in result.symbols() and result.unchecked


@pytest.mark.parametrize("before, join, after", [
    ("var d = '", "' +\n  '", "';"),  # concatenated
    ("var d = ['", "', '", "'].join('');"),  # an array joined
])
def test_a_payload_split_into_joined_literals_is_put_back_together(
        before: str, join: str, after: str) -> None:
    encoded = base64.b64encode(ZIP).decode()
    chunks = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    page = (f"<html><body><script>{before}{join.join(chunks)}{after}\n{BLOB_SAVE}"
            "</script></body></html>\n").encode()
    with _smuggled(page) as result:
        (part,) = _flagged(result)
        assert part.data() == ZIP and part.name == "Invoice_0412.zip"


@pytest.mark.parametrize("call, found", [
    ("x = ATOB(d);", True), ("x = atob (d);", True), ("atobx(d)", False),
    ("new UINT8ARRAY(n)", True), ("new   Blob([d])", True), ("newblob", False),
    ("blob = 1", False), ("URL.CreateObjectURL(b)", True),
    ("navigator.msSaveBlob(b, 'x')", True), ("navigator.msSaveOrOpenBlob(b)", True),
    ("a.Download = 'x.zip'", True), ("<a download='x.zip'>", True),
    ("download our app today", False), ("downloads = 3", False),
])
def test_each_file_api_is_recognised_in_any_case_alone(call: str, found: bool) -> None:
    """The quick test looks for each call by a word and its context: the same calls the
    pattern names, in any letter case, and nothing that only shares a word."""
    from decoders.html import smuggling
    page = _page(base64.b64encode(ZIP).decode(), call)
    assert smuggling(page) is found
