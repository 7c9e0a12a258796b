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
