"""yEnc blocks in plain text bodies (built at test time) come out as named parts."""

from __future__ import annotations

import os

import pytest

from decoders import unpack
from tests.decoders.builders import pe_exe


def yenc(data: bytes, name: str, line: int = 128, part: bool = False) -> bytes:
    """A yEnc block as news and mail encoders write it (NUL, LF, CR and = escaped)."""
    out = bytearray()
    for byte in data:
        c = (byte + 42) % 256
        out += b"=" + bytes([(c + 64) % 256]) if c in (0, 10, 13, 61) else bytes([c])
    lines = b"\r\n".join(bytes(out[i : i + line]) for i in range(0, len(out), line))
    head = b"=ybegin part=1 line=%d size=%d name=%s\r\n" % (line, len(data), name.encode())
    if part:
        head += b"=ypart begin=1 end=%d\r\n" % len(data)
    return head + lines + b"\r\n=yend size=%d\r\n" % len(data)


def mail(body: bytes) -> bytes:
    return (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n"
            b"Content-Type: text/plain; charset=x-user-defined\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\nsee below\r\n\r\n" + body)


def test_every_byte_value_round_trips() -> None:
    from decoders.yenc import decode_block

    data = bytes(range(256)) * 3
    assert decode_block(yenc(data, "x").split(b"\r\n", 1)[1].rsplit(b"=yend", 1)[0]) == data


@pytest.mark.parametrize("payload", [b"WScript.Echo(1)\n", pe_exe(os.urandom(3000))],
                         ids=["text-like body", "binary body"])
@pytest.mark.parametrize("part", [False, True], ids=["single", "ypart"])
def test_yenc_attachment_in_a_text_body_is_a_part(payload: bytes, part: bool) -> None:
    # a text body carrying yEnc used to stay one text leaf: Thunderbird shows the block
    # as an attachment, our banned rules never saw its name or type
    with unpack(mail(yenc(payload, "invoice.js", part=part))) as result:
        found = [p for p in result.parts if p.name == "invoice.js"]
        assert found and found[0].data() == payload
