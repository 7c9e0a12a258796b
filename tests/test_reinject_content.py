"""The octets that go out to the next hop: CRLF lines, dot-stuffing, SIZE and BDAT
counts, a big message written in slices."""

from __future__ import annotations

from scanner.reinject.deliver import Outgoing
from scanner.task import ClientInfo, Recipient
from tests.scripted_hop import Script, bdat_batches, run_script


def test_bdat_content_and_size_count_crlf_lines():
    script = Script()
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (),
                   b"Subject: t\n\nbare\nlines", ClientInfo(addr="192.0.2.1"))
    assert run_script(script, [out])[0][0].startswith("250 ")
    assert script.contents == [b"Subject: t\r\n\r\nbare\r\nlines\r\n"]
    assert f"BDAT {len(script.contents[0])} LAST" in script.commands


def test_a_big_message_arrives_intact_with_bdat_and_with_data():
    """Content above the size that is joined with the commands is written as a piece of
    its own, in slices drained one by one (no extra copy of a big message): the octets
    must not change."""
    from scanner.reinject.client import _SLICE, dot_stuff

    lines = [b"Subject: big\r\n", b"\r\n"]
    size = sum(map(len, lines))
    while size <= 2.5 * _SLICE:  # three slices, the last one short
        n = len(lines)
        lines.append(b"." * (n % 3) + b"line %d of a big message\r\n" % n)
        size += len(lines[-1])
    content = b"".join(lines)
    out = Outgoing("a@example.org", [Recipient("b@example.test")], (), content,
                   ClientInfo(addr="192.0.2.1"))
    bdat = Script()
    assert run_script(bdat, [out])[0][0].startswith("250 ")
    assert bdat_batches(bdat) == 1 and bdat.contents == [content]
    data = Script(chunking=False)
    assert run_script(data, [out], chunking=False)[0][0].startswith("250 ")
    assert "DATA" in data.commands and data.contents == [dot_stuff(content)]


def test_dot_stuffing_makes_every_line_end_crlf_first():
    """A bare LF would end a line for Postfix but not for an RFC-strict next hop; as
    CRLF both read the same lines (found by tests/test_smtp_fuzz.py)."""
    from scanner.reinject.client import dot_stuff
    from scanner.smtp.data import unstuff

    assert dot_stuff(b"a\n.\nb") == b"a\r\n..\r\nb\r\n"
    assert dot_stuff(b".x\r\n.\r\nc\r\n") == b"..x\r\n..\r\nc\r\n"
    assert dot_stuff(b"a\r\n\n.b\r\n") == b"a\r\n\r\n..b\r\n"
    same = b"no bare line feed\r\n.here\r\n"
    assert unstuff(dot_stuff(same)) == same
