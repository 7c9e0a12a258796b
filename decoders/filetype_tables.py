"""Data tables for file typing: libmagic description -> short type, and what names and
declared MIME types are consistent with each short type (for the mismatch symbols).

The short types follow amavis's ``$map_full_type_to_short_type_re`` spirit; the
patterns and table entries are this project's own.
"""

from __future__ import annotations

import re

# First match wins; matched case-insensitively against libmagic's long description.
MAGIC_TO_SHORT: tuple[tuple[str, str], ...] = (
    (r"^empty$", "empty"),
    (r"PE32\+? executable|MS-DOS executable|MS Windows .*executable|COM executable", "exe-ms"),
    (r"^ELF ", "exe-unix"),
    (r"Mach-O", "exe-mac"),
    (r"Microsoft Word 2007\+", "docx"),
    (r"Microsoft Excel 2007\+", "xlsx"),
    (r"Microsoft PowerPoint 2007\+", "pptx"),
    (r"Microsoft OOXML", "ooxml"),
    (r"OpenDocument Text", "odt"),
    (r"OpenDocument Spreadsheet", "ods"),
    (r"OpenDocument Presentation", "odp"),
    (r"Java archive", "jar"),
    (r"(?<![-\w])zip archive", "zip"),
    (r"7-zip archive", "7z"),
    (r"RAR archive|RAR self-extracting", "rar"),
    (r"gzip compressed", "gz"),
    (r"bzip2 compressed", "bz2"),
    (r"XZ compressed", "xz"),
    (r"LZMA compressed", "lzma"),
    (r"Zstandard compressed", "zst"),
    (r"compress'd data", "Z"),
    (r"tar archive", "tar"),
    (r"cpio archive", "cpio"),
    (r"Microsoft Cabinet", "cab"),
    (r"ISO 9660", "iso"),
    (r"^DOS/MBR boot sector|^DOS floppy", "img"),  # raw disk or FAT volume image
    (r"^RPM ", "rpm"),
    (r"Debian binary package", "deb"),
    (r"current ar archive|^ar archive", "ar"),
    (r"ARJ archive", "arj"),
    (r"LHa|LHarc|LZH", "lha"),
    (r"xar archive", "xar"),
    (r"Zoo archive", "zoo"),
    (r"^ARC archive", "arc"),
    (r"Transport Neutral Encapsulation", "tnef"),
    (r"PDF document", "pdf"),
    (r"Composite Document File|CDFV2", "ole"),
    (r"Rich Text Format", "rtf"),
    (r"MS Windows HtmlHelp", "chm"),
    (r"MS Compress archive data, SZDD", "szdd"),
    (r"MS Compress archive data, KWAJ", "kwaj"),
    (r"Symbian installation", "sis"),
    (r"uuencoded|xxencoded", "uue"),
    (r"BinHex", "hqx"),
    (r"news or mail|RFC 822 mail|SMTP mail|^mail\b|MIME entity", "mail"),
    (r"HTML document", "html"),
    (r"XML", "xml"),
    (r"JPEG image", "jpg"),
    (r"PNG image", "png"),
    (r"GIF image", "gif"),
    (r"TIFF image", "tif"),
    (r"PC bitmap", "bmp"),
    (r"SVG Scalable", "svg"),
    (r"PostScript", "ps"),
    (r"Macromedia Flash|Adobe Flash", "swf"),
    (r"MS Windows shortcut", "lnk"),
    (r"RIFF .*WAVE", "wav"),
    (r"RIFF .*AVI", "avi"),
    (r"MPEG|ISO Media", "mpeg"),
    (r"Ogg data", "ogg"),
    (r"shell script|Bourne-Again|POSIX shell", "sh"),
    (r"Python script", "py"),
    (r"Perl script", "pl"),
    (r"text", "asc"),
    (r"^data$", "dat"),
)

# Formats libmagic 5.44 does not name (it calls a OneNote section "Non-ISO extended-ASCII
# text"): leading bytes -> short type and the description reported in their place
# the OneNote section file type GUID {7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}, on disk
ONENOTE_SECTION = bytes.fromhex("e4525c7b8cd8a74daeb15378d02996d3")
VHD_COOKIE = b"conectix"  # a VHD's footer; a dynamic VHD also starts with a copy of it
LEADING_BYTES: tuple[tuple[bytes, str, str], ...] = (
    (ONENOTE_SECTION, "one", "Microsoft OneNote section"),
    (b"vhdxfile", "vhdx", "Microsoft VHDX disk image"),  # its file type identifier
    (VHD_COOKIE, "vhd", "Microsoft VHD disk image (dynamic)"),
)

COMPILED = tuple((re.compile(p, re.I), t) for p, t in MAGIC_TO_SHORT)

ZIP_FAMILY = frozenset(
    {"zip", "jar", "docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "ooxml", "odt", "ods", "odp"}
)
OLE_FAMILY = frozenset({"ole", "doc", "xls", "ppt", "msi", "msg"})
TEXT_FAMILY = frozenset(
    {"asc", "html", "xml", "mail", "uue", "hqx", "rtf", "sh", "py", "pl", "svg"}
)

# name extension -> short types a file with that extension may legitimately have
EXT_TYPES: dict[str, frozenset[str]] = {
    "exe": frozenset({"exe-ms", "zip", "rar", "7z", "cab"}),
    "dll": frozenset({"exe-ms"}),
    "scr": frozenset({"exe-ms"}),
    "zip": ZIP_FAMILY,
    "jar": ZIP_FAMILY,
    "7z": frozenset({"7z"}),
    "rar": frozenset({"rar"}),
    "gz": frozenset({"gz"}),
    "tgz": frozenset({"gz"}),
    "bz2": frozenset({"bz2"}),
    "xz": frozenset({"xz"}),
    "zst": frozenset({"zst"}),
    "tar": frozenset({"tar"}),
    "cab": frozenset({"cab"}),
    "iso": frozenset({"iso"}),
    "one": frozenset({"one"}),
    "pdf": frozenset({"pdf"}),
    "doc": OLE_FAMILY | {"rtf", "html", "xml", "docx", "docm"},
    "xls": OLE_FAMILY | {"html", "xml", "asc", "xlsx", "xlsm"},
    "ppt": OLE_FAMILY | {"pptx", "pptm"},
    "docx": frozenset({"docx", "docm", "ooxml", "zip", "ole"}),
    "docm": frozenset({"docm", "docx", "ooxml", "zip", "ole"}),
    "xlsx": frozenset({"xlsx", "xlsm", "ooxml", "zip", "ole"}),
    "xlsm": frozenset({"xlsm", "xlsx", "ooxml", "zip", "ole"}),
    "pptx": frozenset({"pptx", "pptm", "ooxml", "zip", "ole"}),
    "rtf": frozenset({"rtf", "asc"}),
    "jpg": frozenset({"jpg"}),
    "jpeg": frozenset({"jpg"}),
    "png": frozenset({"png"}),
    "gif": frozenset({"gif"}),
    "txt": TEXT_FAMILY | {"empty"},
    "htm": TEXT_FAMILY,
    "html": TEXT_FAMILY,
}

# declared MIME type -> short types consistent with it
MIME_TYPES: dict[str, frozenset[str]] = {
    "application/pdf": frozenset({"pdf"}),
    "application/zip": ZIP_FAMILY,
    "application/x-zip-compressed": ZIP_FAMILY,
    "application/x-7z-compressed": frozenset({"7z"}),
    "application/gzip": frozenset({"gz"}),
    "application/x-gzip": frozenset({"gz"}),
    "application/x-rar-compressed": frozenset({"rar"}),
    "application/vnd.rar": frozenset({"rar"}),
    "application/msword": OLE_FAMILY | {"rtf", "docx", "docm", "html", "xml"},
    "application/vnd.ms-excel": OLE_FAMILY | {"xlsx", "xlsm", "html", "xml", "asc"},
    "application/vnd.ms-powerpoint": OLE_FAMILY | {"pptx", "pptm"},
    "application/rtf": frozenset({"rtf", "asc"}),
    "image/jpeg": frozenset({"jpg"}),
    "image/png": frozenset({"png"}),
    "image/gif": frozenset({"gif"}),
    "message/rfc822": frozenset({"mail", "asc", "html", "empty"}),
    "text/plain": TEXT_FAMILY | {"empty", "dat"},
    "text/html": TEXT_FAMILY | {"empty", "dat"},
}
OOXML_MIME_PREFIX = "application/vnd.openxmlformats-officedocument."
