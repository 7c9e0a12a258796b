"""Archive formats built at test time with real libraries, decoded back to their members."""

from __future__ import annotations

import bz2
import io
import lzma
import os
import random
import struct
import tarfile
import zipfile

import pytest

from decoders import unpack
from decoders.unpack import Unpacked
from tests.decoders.builders import (
    libarchive_bytes,
    message,
    pe_exe,
    sevenzip_bytes,
    tar_bytes,
    zip_bytes,
)

PAYLOAD = {"docs/readme.txt": b"plain words\n" * 20, "bin/blob.dat": os.urandom(3000)}


def members(result: Unpacked) -> dict[str, bytes]:
    return {p.name: p.data() for p in result.parts if p.name in PAYLOAD}


def check(name: str, data: bytes, container_type: str) -> Unpacked:
    result = unpack(message((name, data)))
    assert result.parts[2].detected_type == container_type
    assert members(result) == PAYLOAD, [p.path_string() for p in result.parts]
    assert not result.unchecked
    return result


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_zip_methods(method: int) -> None:
    check("a.zip", zip_bytes(PAYLOAD, method), "zip").close()


def test_zip64() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in PAYLOAD.items():
            with zf.open(name, "w", force_zip64=True) as fh:
                fh.write(data)
    check("z64.zip", buf.getvalue(), "zip").close()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_family(mode: str) -> None:
    with check("a.tar", tar_bytes(PAYLOAD, mode), "tar" if mode == "w" else mode[2:]) as r:
        if mode != "w":
            assert r.parts[3].detected_type == "tar"


def test_tar_zstd() -> None:
    import zstandard

    data = zstandard.ZstdCompressor().compress(tar_bytes(PAYLOAD))
    with check("a.tar.zst", data, "zst") as result:
        assert result.parts[3].name == "a.tar"


@pytest.mark.parametrize(
    ("suffix", "compress", "short"),
    [
        (".bz2", bz2.compress, "bz2"),
        (".xz", lzma.compress, "xz"),
        (".lzma", lambda d: lzma.compress(d, lzma.FORMAT_ALONE), "lzma"),
    ],
)
def test_plain_compressors(suffix: str, compress: object, short: str) -> None:
    data = b"compressible text " * 500
    with unpack(message(("notes.txt" + suffix, compress(data)))) as result:  # type: ignore[operator]
        assert result.parts[2].detected_type == short
        assert result.parts[3].data() == data
        assert result.parts[3].name == "notes.txt"


def test_7z() -> None:
    check("a.7z", sevenzip_bytes(PAYLOAD), "7z").close()


@pytest.mark.parametrize("header_encryption", [False, True])
def test_7z_encrypted(header_encryption: bool) -> None:
    data = sevenzip_bytes(PAYLOAD, password="secret", header_encryption=header_encryption)
    with unpack(message(("locked.7z", data))) as result:
        assert result.encrypted and result.unchecked
        assert "DECODE_ENCRYPTED" in result.symbols()
        assert "encrypted" in result.parts[2].flags
        # readable headers: the members' names come out as empty parts; else a leaf
        names = {p.name for p in result.parts[3:]}
        assert names == (set() if header_encryption else set(PAYLOAD))
        assert all(p.size == 0 and "encrypted-member" in p.flags for p in result.parts[3:])


@pytest.mark.parametrize("kind", ["zipcrypto", "7z"])
def test_banned_name_inside_an_encrypted_archive_is_banned(kind: str) -> None:
    # the names of an encrypted zip's or 7z's members are readable: a setup.exe there
    # was only UNCHECKED (passed, tagged, by default), never BANNED
    from scanner.banned import find_banned

    members = {"setup.exe": pe_exe(), "readme.txt": b"see setup\n"}
    data = (libarchive_bytes("zip", members, options="encryption=zipcrypt", passphrase="pw")
            if kind == "zipcrypto" else sevenzip_bytes(members, password="pw"))
    with unpack(message(("locked.bin", data))) as result:
        assert "DECODE_ENCRYPTED" in result.symbols()
        hits = find_banned(result.parts)
        assert [h.part.rsplit("N=", 1)[-1] for h in hits] == ["setup.exe"]


def test_zip_encrypted_member() -> None:
    data = libarchive_bytes("zip", PAYLOAD, options="encryption=zipcrypt", passphrase="pw")
    with unpack(message(("locked.zip", data))) as result:
        assert result.encrypted
        hit = next(h for h in result.hits if h.symbol == "DECODE_ENCRYPTED")
        assert set(hit.options) == set(PAYLOAD)


@pytest.mark.parametrize(
    ("fmt", "name", "short"),
    [
        ("cpio", "a.cpio", "cpio"),
        ("cpio_newc", "b.cpio", "cpio"),
        ("ar_svr4", "c.a", "ar"),
        ("iso9660", "d.iso", "iso"),
    ],
)
def test_libarchive_formats(fmt: str, name: str, short: str) -> None:
    payload = (
        {k.replace("/", "_"): v for k, v in PAYLOAD.items()} if fmt.startswith("ar") else PAYLOAD
    )
    with unpack(message((name, libarchive_bytes(fmt, payload)))) as result:
        assert result.parts[2].detected_type == short
        got = {p.name.rsplit("/", 1)[-1]: p.data() for p in result.parts[3:]}
        assert {k.rsplit("/", 1)[-1].rsplit("_", 1)[-1]: v for k, v in payload.items()}.items() <= {
            k.rsplit("_", 1)[-1]: v for k, v in got.items()
        }.items()


def test_corrupt_zip_member_is_reported_and_rest_decoded() -> None:
    data = bytearray(zip_bytes({"good.txt": b"fine " * 100, "bad.txt": os.urandom(2000)}))
    start = data.find(b"bad.txt") + len("bad.txt") + 10
    data[start : start + 50] = b"\xff" * 50
    with unpack(message(("mixed.zip", bytes(data)))) as result:
        assert any(p.name == "good.txt" for p in result.parts)
        hit = next(h for h in result.hits if h.symbol == "DECODE_CORRUPT")
        assert hit.options[0].startswith("P=p003")
        assert "corrupt" in result.parts[2].flags


def test_truncated_gzip_keeps_partial_output() -> None:
    import gzip

    data = gzip.compress(os.urandom(100_000))[:50_000]
    with unpack(message(("cut.gz", data))) as result:
        assert result.parts[3].size > 0
        assert "DECODE_CORRUPT" in result.symbols()


def test_ooxml_macro_flag() -> None:
    parts = {
        "[Content_Types].xml": b"<Types/>",
        "word/document.xml": b"<w:document/>",
        "word/vbaProject.bin": b"\xd0\xcf\x11\xe0" + b"\0" * 100,
    }
    with unpack(message(("invoice.docm", zip_bytes(parts)))) as result:
        doc = result.parts[2]
        assert doc.detected_type == "docm"
        assert "macro" in doc.flags


def test_plain_docx_has_no_macro_flag() -> None:
    parts = {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}
    with unpack(message(("letter.docx", zip_bytes(parts)))) as result:
        assert result.parts[2].detected_type == "docx"
        assert "macro" not in result.parts[2].flags


def _zip_with(name: str, data: bytes) -> tuple[bytearray, int]:
    """A one-member deflated zip and the offset of its central directory entry."""
    raw = bytearray(zip_bytes({name: data}))
    return raw, raw.rfind(b"PK\x01\x02")


def test_zip_member_with_bad_crc_keeps_its_bytes_and_name() -> None:
    # 7-Zip and unzip extract such a member with a warning; it used to be dropped,
    # name and all, so a setup.exe in it was neither banned nor scanned by us
    exe = pe_exe()
    raw, cd = _zip_with("setup.exe", exe)
    raw[14:18] = raw[cd + 16 : cd + 20] = b"\0\0\0\0"
    with unpack(message(("a.zip", bytes(raw)))) as result:
        member = result.parts[3]
        assert (member.name, member.data(), member.detected_type) == ("setup.exe", exe, "exe-ms")
        assert "corrupt" in member.flags and "DECODE_CORRUPT" in result.symbols()


def test_zip_member_whose_sizes_lie_is_inflated_to_its_end() -> None:
    exe = pe_exe(b"x" * 500)
    raw, cd = _zip_with("report.pdf", exe)
    raw[22:26] = raw[cd + 24 : cd + 28] = struct.pack("<I", 4)  # "4 bytes uncompressed"
    with unpack(message(("a.zip", bytes(raw)))) as result:
        assert result.parts[3].data() == exe
        assert result.parts[3].detected_type == "exe-ms"


def test_zip_local_header_name_differing_from_central_directory_is_an_alias() -> None:
    raw, cd = _zip_with("invoice.js", b"WScript.Echo(1)\n")
    raw[30:40] = b"invoice.tx"  # local header: another name of the same length
    with unpack(message(("a.zip", bytes(raw)))) as result:
        member = result.parts[3]
        assert member.data() == b"WScript.Echo(1)\n"
        assert {member.name, *member.aliases} == {"invoice.js", "invoice.tx"}


def test_truncated_tar_member_keeps_what_was_there() -> None:
    exe = pe_exe(os.urandom(20_000))
    data = tar_bytes({"setup.exe": exe})[: 512 + 10_000]
    with unpack(message(("a.tar", data))) as result:
        member = result.parts[3]
        assert member.name == "setup.exe" and member.data() == exe[:10_000]
        assert "corrupt" in member.flags and "DECODE_CORRUPT" in result.symbols()


@pytest.mark.parametrize("what", ["zip cut in its first member", "7z cut short", "tgz cut short"])
def test_truncated_archive_is_unchecked_not_clean(what: str) -> None:
    # a damaged container hides whatever lies past the damage: it used to be
    # DECODE_CORRUPT with no category, i.e. a CLEAN message
    from scanner.scores import load_scores

    exe = pe_exe(os.urandom(4000))
    whole = {"zip cut in its first member": zip_bytes({"setup.exe": exe}, zipfile.ZIP_STORED),
             "7z cut short": sevenzip_bytes({"setup.exe": exe}),
             "tgz cut short": tar_bytes({"setup.exe": exe}, "w:gz")}[what]
    with unpack(message(("files.bin", whole[: len(whole) // 3]))) as result:
        assert result.unchecked, result.hits
        categories = {load_scores().get(h.symbol).category for h in result.hits}
        assert "UNCHECKED" in categories, result.hits


_RANDOM = random.Random(7)  # fixed: os.urandom gave libmagic an MPEG frame 1 time in 1000


@pytest.mark.parametrize("junk", [
    b"hello world\n" * 300,
    _RANDOM.randbytes(3000).replace(b"PK", b"pk"),
    (b"\xff\xfb\x90\x64" + bytes(413)) * 6,  # an MPEG audio frame header, repeated
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + _RANDOM.randbytes(2000).replace(b"PK", b"pk") + b"\xff\xd9",  # a JPEG/ZIP polyglot
    b"GIF89a\x10\x00\x10\x00\x80\x00\x00" + bytes(100) + b";",
], ids=["text", "binary", "mpeg", "jpeg", "gif"])
def test_zip_behind_prepended_junk_is_decoded(junk: bytes) -> None:
    # 7-Zip, WinRAR and Python's zipfile open it; libmagic called it text, data, an MPEG
    # frame or a picture, so an invoice.js inside was never seen
    data = junk + zip_bytes({"invoice.js": b"WScript.Echo(1)\n"})
    with unpack(message(("files.zip", data))) as result:
        assert result.parts[2].detected_type == "zip"
        assert [p.name for p in result.parts[3:]] == ["invoice.js"]


def test_zip_directory_entry_holding_data_is_decoded() -> None:
    # an entry named like a folder ("setup.exe/") but holding bytes used to be skipped,
    # so an executable stored under it was neither typed nor banned by us
    exe = pe_exe()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("docs/", b"")  # a real, empty directory entry
        zf.writestr("setup.exe/", exe)
    with unpack(message(("files.zip", buf.getvalue()))) as result:
        members = [(p.name, p.detected_type) for p in result.parts[3:]]
        assert members == [("setup.exe", "exe-ms")], members
        assert result.parts[3].data() == exe


def test_tar_member_of_an_unknown_type_is_decoded_as_a_file() -> None:
    # GNU tar ("Unknown file type 'Q', extracted as normal file") and libarchive extract
    # such a member as a file; it used to be skipped, so setup.exe was never banned
    exe = pe_exe()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("setup.exe")
        info.size, info.type = len(exe), b"Q"
        tf.addfile(info, io.BytesIO(exe))
        tf.addfile(tarfile.TarInfo("notes.txt"), io.BytesIO(b""))
    with unpack(message(("files.tar", buf.getvalue()))) as result:
        assert [(p.name, p.detected_type) for p in result.parts[3:4]] == [("setup.exe", "exe-ms")]
        assert result.parts[3].data() == exe


def _newc(name: str, data: bytes, mode: int) -> bytes:
    """One cpio "newc" entry with the mode bits as given (the format does not check)."""
    encoded = name.encode() + b"\0"
    fields = [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    out = b"070701" + b"".join(b"%08X" % v for v in fields) + encoded
    out += b"\0" * (-len(out) % 4)
    return out + data + b"\0" * (-len(data) % 4)


@pytest.mark.parametrize("mode", [0o000644, 0o030644, 0o070644, 0o040755],
                         ids=["type-0", "type-3", "type-7", "dir-with-data"])
def test_libarchive_entry_of_no_file_type_holding_data_is_decoded(mode: int) -> None:
    # libarchive reads a cpio (or rar) entry's type from the mode bits as written; one
    # that names no type is written as a regular file by libarchive's extractors
    # (bsdtar, Windows Explorer), and a "directory" with data is data all the same: both
    # used to be skipped, so a setup.exe there was neither typed nor banned
    exe = pe_exe()
    data = (_newc("setup.exe" + ("/" if mode == 0o040755 else ""), exe, mode)
            + _newc("docs", b"", 0o040755) + _newc("TRAILER!!!", b"", 0))
    with unpack(message(("files.cpio", data))) as result:
        assert result.parts[2].detected_type == "cpio"
        assert [(p.name, p.detected_type) for p in result.parts[3:]] == [("setup.exe", "exe-ms")]
        assert result.parts[3].data() == exe
