"""TNEF (winmail.dat) built at test time: attachments come out with their names."""

from __future__ import annotations

import struct

import pytest

from decoders import unpack
from tests.decoders.builders import message

SIGNATURE = 0x223E9F78


def attribute(level: int, attr_id: int, data: bytes) -> bytes:
    return (struct.pack("<BII", level, attr_id, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def winmail(name: str, data: bytes, *, codepage: bool) -> bytes:
    out = struct.pack("<IH", SIGNATURE, 0x0001)
    out += attribute(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    if codepage:
        out += attribute(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += attribute(1, 0x00078008, b"IPM.Microsoft Mail.Note\0")  # attMessageClass
    out += attribute(2, 0x00069002, b"\0" * 14)  # attAttachRendData: an attachment starts
    out += attribute(2, 0x00018010, name.encode() + b"\0")  # attAttachTitle
    out += attribute(2, 0x0006800F, data)  # attAttachData
    return out


@pytest.mark.parametrize("codepage", [True, False])
def test_attachment_comes_out_with_its_name(codepage: bool) -> None:
    # without attOemCodepage tnefparse raised TypeError (str.decode(None)): the
    # attachment was never extracted, so invoice.js inside was not banned
    payload = b"WScript.Echo(1)\n"
    with unpack(message(("winmail.dat", winmail("invoice.js", payload, codepage=codepage)))) as r:
        assert r.parts[2].detected_type == "tnef"
        got = [(p.name, p.data()) for p in r.parts[3:]]
        assert ("invoice.js", payload) in got
        assert not r.symbols() & {"DECODE_CORRUPT", "DECODE_FAIL"}, r.hits
