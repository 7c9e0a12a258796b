"""Test-time builders: messages and archives made with real libraries, nothing stored."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from email.message import EmailMessage


def message(*attachments: tuple[str, bytes], text: str = "see attached") -> bytes:
    """A multipart/mixed message with one text part and base64 attachments."""
    msg = EmailMessage()
    msg["From"] = "sender@example.org"
    msg["To"] = "rcpt@example.net"
    msg["Subject"] = "test"
    msg.set_content(text)
    for name, data in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, **kw: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method, **kw) as zf:  # type: ignore[arg-type]
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def libarchive_bytes(fmt: str, members: dict[str, bytes], **kw: object) -> bytes:
    """An archive written by libarchive in format ``fmt`` (cpio, ar_svr4, iso9660, xar...)."""
    import libarchive

    chunks: list[bytes] = []

    def write(data: bytes) -> int:
        chunks.append(bytes(data))
        return len(data)

    with libarchive.custom_writer(write, fmt, **kw) as archive:  # type: ignore[arg-type]
        for name, data in members.items():
            archive.add_file_from_memory(name, len(data), data)
    return b"".join(chunks)


def pe_exe(extra: bytes = b"") -> bytes:
    """A minimal PE32 header that libmagic calls 'PE32 executable ... for MS Windows'."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    coff = struct.pack("<4sHHIIIHH", b"PE\0\0", 0x14C, 1, 0, 0, 0, 224, 0x0102)
    opt = bytearray(224)
    struct.pack_into("<H", opt, 0, 0x10B)
    struct.pack_into("<H", opt, 68, 2)
    return bytes(dos) + coff + bytes(opt) + b"\0" * 200 + extra


def sevenzip_bytes(members: dict[str, bytes], password: str | None = None, **kw: object) -> bytes:
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password, **kw) as archive:  # type: ignore[arg-type]
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def nested_zip_bomb(levels: int = 5, fanout: int = 16, leaf: int = 4 * 1024 * 1024) -> bytes:
    """A 42.zip-style bomb: ``fanout`` copies of the level below at each level."""
    data = zip_bytes({"0.bin": b"\0" * leaf})
    for level in range(levels):
        data = zip_bytes({f"{level}-{i}.zip": data for i in range(fanout)})
    return data


def gzip_layers(data: bytes, layers: int) -> bytes:
    for _ in range(layers):
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        data = comp.compress(data) + comp.flush()
    return data


def gzip_ratio_bomb() -> bytes:
    """About 258 bytes of gzip-in-gzip-in-gzip expanding to 256 MiB: a ratio over 1:1,000,000."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    first = b"".join(comp.compress(chunk) for _ in range(256)) + comp.flush()
    return gzip_layers(first, 2)


def lying_zip(real: bytes, claimed: int = 10) -> bytes:
    """A zip whose local and central headers claim ``claimed`` uncompressed bytes."""
    data = bytearray(zip_bytes({"small.txt": real}))
    pos = 0
    while True:
        pos = data.find(b"PK\x03\x04", pos)
        if pos < 0:
            break
        struct.pack_into("<I", data, pos + 22, claimed)
        pos += 4
    pos = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, pos + 24, claimed)
    return bytes(data)


def nested_rfc822(depth: int, payload: bytes = b"innermost body\n") -> bytes:
    inner = b"From: a@example.org\nSubject: level %d\n\n" % depth + payload
    for level in range(depth - 1, 0, -1):
        inner = (
            b"From: a@example.org\nSubject: level %d\nMIME-Version: 1.0\n"
            b'Content-Type: multipart/mixed; boundary="b%d"\n\n'
            b"--b%d\nContent-Type: message/rfc822\n\n%s\n--b%d--\n"
        ) % (level, level, level, inner, level)
    return inner


ONENOTE_FILE_FORMAT = "109ADD3F-911B-49F5-A5D0-1791EDC8AED8"  # guidFileFormat of .one


def onenote_object(data: bytes, length: int | None = None, footer: bool = True) -> bytes:
    """A FileDataStoreObject ([MS-ONESTORE] 2.6.13) holding ``data``; ``length`` is the
    cbLength it claims (the true one by default)."""
    import uuid

    head = uuid.UUID("BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC").bytes_le
    cb = len(data) if length is None else length
    body = head + struct.pack("<QIQ", cb, 0, 0) + data + b"\0" * (-len(data) % 8)
    tail = uuid.UUID("71FBA722-0F79-4A0B-BB13-899256426B24").bytes_le if footer else b""
    return body + tail


def _storage_string(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def onenote_reference(guid: str, offset: int, ext: str) -> bytes:
    """What ties an object to its extension: the FileDataStoreObjectReferenceFND (node
    0x094, 8-byte offset, 4-byte size) naming ``guid`` and pointing at ``offset``, and
    the ObjectDeclarationFileData3RefCountFND strings ``<ifndf>{guid}`` and ``ext``."""
    import uuid

    size = 4 + 8 + 4 + 16
    header = 0x094 | size << 10  # stp format 0, cb format 0, base type 0
    node = struct.pack("<IQI", header, offset, 0) + uuid.UUID(guid).bytes_le
    declaration = struct.pack("<IIB", 0, 0x80044, 1)  # oid, jcid, cRef
    return node + declaration + _storage_string(f"<ifndf>{{{guid}}}") + _storage_string(ext)


def onenote_section(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A OneNote section: the 1024-byte header (file type, file and format GUIDs) and
    ``objects`` one after the other, then ``trailer`` (file nodes)."""
    import uuid

    header = bytearray(1024)
    header[0:16] = uuid.UUID("7B5C52E4-D88C-4DA7-AEB1-5378D02996D3").bytes_le
    header[16:32] = uuid.UUID("5A1B6E0C-3F59-4C1F-8E0E-3D8B6F4E2A11").bytes_le
    header[48:64] = uuid.UUID(ONENOTE_FILE_FORMAT).bytes_le
    return bytes(header) + b"".join(objects) + trailer


def onenote_with_named(files: list[tuple[bytes, str]]) -> bytes:
    """A section whose objects carry the extensions ``files`` give them (through file
    nodes after the objects, as OneNote writes them)."""
    objects = [onenote_object(data) for data, _ in files]
    offsets, pos = [], 1024
    for obj in objects:
        offsets.append(pos)
        pos += len(obj)
    guids = [f"{i + 1:08X}-AAAA-4BBB-8CCC-DDDDDDDDDDDD" for i in range(len(files))]
    trailer = b"".join(onenote_reference(g, off, ext)
                       for g, off, (_, ext) in zip(guids, offsets, files, strict=True))
    return onenote_section(objects, trailer)


def lnk_bytes(arguments: str = "-c iex") -> bytes:
    """A Windows shortcut: the ShellLinkHeader ([MS-SHLLINK] 2.1, HasArguments and
    IsUnicode set) and its command-line arguments."""
    import uuid

    header = bytearray(76)
    struct.pack_into("<I", header, 0, 0x4C)
    header[4:20] = uuid.UUID("00021401-0000-0000-C000-000000000046").bytes_le
    struct.pack_into("<I", header, 20, 0x20 | 0x80)
    return bytes(header) + struct.pack("<H", len(arguments)) + arguments.encode("utf-16-le")


def fat12_boot_sector(sectors: int = 64) -> bytes:
    """A blank FAT12 volume image of ``sectors`` 512-byte sectors: its boot sector only."""
    image = bytearray(512 * sectors)
    image[0:11] = b"\xeb\x3c\x90MSDOS5.0"
    struct.pack_into("<HBHBHHBH", image, 11, 512, 1, 1, 2, 224, sectors, 0xF0, 9)
    image[54:62] = b"FAT12   "
    image[510:512] = b"\x55\xaa"
    return bytes(image)


def vhd_footer(disk_size: int, dynamic: bool = False) -> bytes:
    """A VHD footer (the 512-byte "conectix" record) for a disk of ``disk_size`` bytes."""
    footer = bytearray(512)
    footer[0:8] = b"conectix"
    struct.pack_into(">II", footer, 8, 2, 0x00010000)  # features, format version
    struct.pack_into(">Q", footer, 16, 512 if dynamic else 0xFFFFFFFFFFFFFFFF)
    struct.pack_into(">QQ", footer, 40, disk_size, disk_size)
    struct.pack_into(">I", footer, 60, 3 if dynamic else 2)  # disk type
    return bytes(footer)
