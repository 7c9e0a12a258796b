"""File typing: libmagic's long description mapped to amavis-like short types.

``detect()`` returns ``(short_type, magic_description)``. A few types are refined beyond
what libmagic says: OLE compound files become doc/xls/ppt/msi/msg by their streams,
OOXML zips become docm/xlsm/pptm when they carry a VBA project, and text that starts
like an RFC 5322 header block (or an mbox ``From`` line) becomes ``mail``, and text,
data or media that ends like a zip (junk prepended to an archive, or a zip appended
to a picture, which 7-Zip still opens) becomes ``zip`` (:data:`ZIP_MAY_TRAIL`).
Formats libmagic 5.44 does not know are typed by their leading bytes
(:data:`decoders.filetype_tables.LEADING_BYTES`): a OneNote section is ``one``, a VHDX
disk image ``vhdx``, a VHD ``vhd`` (a fixed VHD by the footer that ends it), and a raw
disk or FAT volume image (libmagic's "DOS/MBR boot sector") ``img``.

``mismatch_hits()`` compares the detected type with the declared MIME type and the name
extension and yields ``MIME_TYPE_MISMATCH`` / ``MIME_EXT_MISMATCH`` hits naming the part.
"""

from __future__ import annotations

import functools
import re
import zipfile
from typing import TYPE_CHECKING

from decoders.filetype_tables import (
    COMPILED,
    EXT_TYPES,
    LEADING_BYTES,
    MIME_TYPES,
    OOXML_MIME_PREFIX,
    VHD_COOKIE,
)
from scanner.task import Hit

if TYPE_CHECKING:
    import magic as magic_module

    from decoders.context import Blob
    from decoders.part import Part

HEAD = 1024 * 1024
NO_CHECK_SOFT = 0x004000  # libmagic MAGIC_NO_CHECK_SOFT
BINHEX_MARK = b"(This file must be converted with BinHex"
_UUE = re.compile(rb"^begin [0-7]{3,4} \S", re.M)
_HTML = re.compile(rb"<(!doctype html|html|head|body|meta|title|table|div|font|center|p|br|a )")
_HTML_ANY = re.compile(rb"<(html|body|table|div|font|br|p)[\s>]")
_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,76}:[ \t]?.*$")
# Header fields that only a message (or a news article) starts with; not Date, which
# many other "Key: value" text formats have.
_MAIL_HEADERS = frozenset({
    b"from", b"to", b"cc", b"subject", b"received", b"return-path", b"message-id",
    b"mime-version", b"content-type", b"sender", b"reply-to", b"delivered-to",
    b"x-mailer", b"in-reply-to", b"references", b"relay-version", b"path", b"xref",
    b"newsgroups", b"x-original-to", b"envelope-to", b"dkim-signature", b"arc-seal",
    b"authentication-results",
})
_EOCD = b"PK\x05\x06"
ZIP_MAY_TRAIL = frozenset({"asc", "dat", "jpg", "png", "gif", "tif", "bmp", "wav", "avi",
                           "mpeg", "ogg"})
"""Types no decoder opens that are still typed ``zip`` when a zip ends them: text or
data in front of a zip (junk prepended), and media a zip is appended to (a JPEG/ZIP or
GIF/ZIP polyglot, or junk that libmagic happens to read as an MPEG frame). 7-Zip and
WinRAR open all of these as the zip; typed by their head, the zip went unseen."""
_EOCD_SEARCH = 22 + 65535 + 4  # the record plus the longest zip comment
_OOXML_MACRO = {"docx": "docm", "xlsx": "xlsm", "pptx": "pptm", "ooxml": "ooxml"}


@functools.lru_cache(maxsize=2)
def _magic(soft: bool = True) -> magic_module.Magic | None:
    try:
        import magic

        m = magic.Magic()
        if not soft:
            magic.magic_setflags(m.cookie, NO_CHECK_SOFT)
        return m
    except Exception:  # libmagic missing or broken: types fall back to "dat"
        return None


def describe(head: bytes, soft: bool = True) -> str:
    """libmagic's long description of ``head`` ("data" when libmagic is unavailable).

    ``soft=False`` skips libmagic's pattern database (about 60 times faster): it still
    tells text from binary, compressed data, tar and ELF, but names no other format.
    """
    m = _magic(soft)
    if m is None or not head:
        return "empty" if not head else "data"
    try:
        return m.from_buffer(head)
    except Exception:
        return "data"


def classify_text(head: bytes) -> str | None:
    """Short type of a text part from its first bytes, or None to ask full libmagic."""
    start = head[:2048].lstrip()
    lower = start[:1024].lower()
    if b"begin " in head[:65536] and _UUE.search(head[:65536]):
        return "uue"  # (the test first: re tries a "^" pattern at every position)
    if BINHEX_MARK in head[:4096]:
        return "hqx"
    if _HTML.match(lower) or (lower.startswith(b"<") and _HTML_ANY.search(lower)):
        return "html"
    if looks_like_mail(head):
        return "mail"
    if start[:1] in (b"%", b"{", b"<", b"#", b"@") or start[:4] == b"0707":
        return None  # pdf, rtf, xml, postscript, scripts, text tar/cpio: full libmagic
    return "asc"


def short_type(description: str) -> str:
    for pattern, short in COMPILED:
        if pattern.search(description):
            return short
    return "dat"


def looks_like_mail(head: bytes) -> bool:
    """True when ``head`` starts with a header section (after an optional mbox From line).

    A header section here is two or more header-shaped lines of which at least one is a
    message header (``From``, ``Received``, ``Subject``, ...): text that merely starts
    with ``Key: value`` lines (an RSS item's ``URL:``/``Date:``, a form, a log) stays
    text, as file(1) leaves it.
    """
    lines = head[:4096].split(b"\n", 12)
    if lines and lines[0].startswith(b"From "):
        lines = lines[1:]
    fields = 0
    known = False
    for line in lines[:10]:
        line = line.rstrip(b"\r")
        if not line:
            break
        if line[:1] in (b" ", b"\t") and fields:
            continue
        if not _HEADER_LINE.match(line):
            return False
        fields += 1
        known = known or line.split(b":", 1)[0].strip().lower() in _MAIL_HEADERS
    return fields >= 2 and known


def _refine_ole(blob: Blob) -> str:
    try:
        import olefile

        with blob.open() as fh, olefile.OleFileIO(fh) as ole:
            names = {"/".join(p).lower() for p in ole.listdir()}
    except Exception:
        return "ole"
    if "worddocument" in names:
        return "doc"
    if "workbook" in names or "book" in names:
        return "xls"
    if "powerpoint document" in names:
        return "ppt"
    if any(n.startswith("__substg1.0_") for n in names):
        return "msg"
    if "\x05summaryinformation" in names and any(len(n) > 0 and ord(n[0]) > 0x3800 for n in names):
        return "msi"
    return "ole"


def _refine_zip(blob: Blob, short: str) -> str:
    try:
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:
            names = zf.namelist()
    except Exception:
        return short
    lowered = [n.lower() for n in names]
    if "[content_types].xml" not in lowered:
        return short
    if short in ("zip", "ooxml"):
        if any(n.startswith("word/") for n in lowered):
            short = "docx"
        elif any(n.startswith("xl/") for n in lowered):
            short = "xlsx"
        elif any(n.startswith("ppt/") for n in lowered):
            short = "pptx"
    if any(n.endswith("vbaproject.bin") for n in lowered):
        return _OOXML_MACRO.get(short, short)
    return short


def zip_at_end(blob: Blob) -> bool:
    """True when ``blob`` ends like a zip (an end-of-central-directory record) although
    it does not start like one: 7-Zip, WinRAR and Python open a zip behind any
    prepended junk, so text or data in front must not hide it."""
    if blob.size < 22:
        return False
    with blob.open() as fh:
        fh.seek(max(0, blob.size - _EOCD_SEARCH))
        if _EOCD not in fh.read():
            return False
        try:
            return zipfile.is_zipfile(fh)
        except (OSError, ValueError):
            return False


def fixed_vhd(blob: Blob) -> bool:
    """True when ``blob`` ends with a VHD footer (a fixed VHD: the raw disk, then the
    512-byte footer; disks made before Virtual PC 2004 have a 511-byte one)."""
    if blob.size < 511:
        return False
    with blob.open() as fh:
        fh.seek(blob.size - 512 if blob.size >= 512 else 0)
        tail = fh.read()
    return tail.startswith(VHD_COOKIE) or tail[1:].startswith(VHD_COOKIE)


def detect(blob: Blob) -> tuple[str, str]:
    """The short type and libmagic description of ``blob``."""
    with blob.open() as fh:
        head = fh.read(HEAD)
    for lead, short, description in LEADING_BYTES:
        if head.startswith(lead):
            return short, description
    quick = describe(head, soft=False)
    if "text" in quick and b"\0" not in head[:65536] and head[257:262] != b"ustar":
        short_text = classify_text(head)
        if short_text is not None:
            if short_text == "asc" and zip_at_end(blob):
                return "zip", quick
            return short_text, quick
    description = describe(head)
    short = short_type(description)
    if short == "ole":
        short = _refine_ole(blob)
    elif short in ("zip", "docx", "xlsx", "pptx", "ooxml"):
        short = _refine_zip(blob, short)
    elif short in ("asc", "dat") and looks_like_mail(head):
        short = "mail"
    elif short in ZIP_MAY_TRAIL and zip_at_end(blob):
        short = "zip"
    elif short in ("dat", "img") and fixed_vhd(blob):
        short, description = "vhd", "Microsoft VHD disk image (fixed)"
    return short, description


def extension(name: str | None) -> str | None:
    if not name or "." not in name:
        return None
    ext = name.rsplit(".", 1)[1].strip().lower()
    return ext or None


def _expected_for_mime(declared: str) -> frozenset[str] | None:
    if declared in MIME_TYPES:
        return MIME_TYPES[declared]
    if declared.startswith(OOXML_MIME_PREFIX):
        return frozenset({"docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "ooxml", "zip", "ole"})
    return None


def mismatch_hits(part: Part) -> list[Hit]:
    """MIME_TYPE_MISMATCH / MIME_EXT_MISMATCH when declared type or extension disagree."""
    hits: list[Hit] = []
    detected = part.detected_type
    if not detected or detected == "empty" or part.size == 0:
        return hits
    path = part.path_string()
    declared = (part.declared_type or "").lower()
    expected = _expected_for_mime(declared) if declared else None
    if expected is not None and detected not in expected:
        hits.append(Hit("MIME_TYPE_MISMATCH", options=(declared, detected), part=path))
    ext = extension(part.name)
    allowed = EXT_TYPES.get(ext) if ext else None
    if allowed is not None and detected not in allowed:
        hits.append(Hit("MIME_EXT_MISMATCH", options=(ext or "", detected), part=path))
    return hits
