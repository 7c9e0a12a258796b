"""Reinjection through a real Postfix reinjection smtpd: BDAT, bare line feeds,
XFORWARD of an IPv6 client."""

from __future__ import annotations

import asyncio
import time

import pytest

from scanner.reinject.deliver import NextHop, Outgoing, deliver
from scanner.reinject.pool import ConnectionPool
from scanner.task import ClientInfo, Recipient
from scanner.testing.postfix import PostfixInstance, free_port, make_base_dir
from tests.postfix_stack import require_postfix
from tests.scripted_hop import CONTENT


@pytest.mark.postfix
def test_postfix_reinjection_smtpd_accepts_our_bdat():
    """A real Postfix smtpd: both messages delivered intact, its log counts two BDATs."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None)
    postfix.start()
    try:
        async def main() -> list[list[str]]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True)
            pool = ConnectionPool(hop)
            try:
                return [(await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (),
                    CONTENT.replace(b"Subject: t", f"Subject: bdat{i}".encode()),
                    ClientInfo(addr="192.0.2.1", name="client.example")),
                    all_or_nothing=True)).replies for i in range(2)]
            finally:
                await pool.close()  # QUIT: Postfix logs the command counts

        replies = asyncio.run(main())
        assert all(r[0].startswith("250 2.0.0 from MTA(smtp:") for r in replies), replies
        paths = postfix.wait_delivered(2, 30, user="bob")
        bodies = sorted(p.read_bytes().split(b"\n\n", 1)[1] for p in paths)
        assert bodies == [b".starts with a dot\nlast line without CRLF\n"] * 2
        deadline = time.monotonic() + 10
        while "bdat=2" not in postfix.log_text():
            assert time.monotonic() < deadline, postfix.log_tail(20)
            time.sleep(0.1)
    finally:
        postfix.remove()


@pytest.mark.postfix
@pytest.mark.parametrize("chunking", [True, False], ids=["bdat", "data"])
def test_bare_line_feeds_go_out_as_crlf_to_a_postfix_that_forbids_them(chunking: bool):
    """A message with bare LFs (a file released or scanned, a bare-LF client) goes out
    with CRLF lines by DATA and by BDAT (RFC 3030 wants CRLF in BDAT content), to a
    Postfix that restricts bare LFs (smtpd_forbid_bare_newline; "reject" in 3.9+ refuses
    such content). BDAT sent the content as it was and appended CRLF to its bare-LF end:
    the recipient got an extra empty line at the end of the message."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None, extra_main={
                                  "smtpd_forbid_bare_newline": "yes",  # "normal" from 3.9
                                  "smtpd_forbid_bare_newline_exclusions": ""})
    postfix.start()
    content = b"Subject: bare\n\n.dot line\nsecond\r\nthird\n"
    try:
        async def main() -> list[str]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True, chunking)
            pool = ConnectionPool(hop)
            try:
                return (await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (), content,
                    ClientInfo(addr="192.0.2.1", name="client.example")),
                    all_or_nothing=True)).replies
            finally:
                await pool.close()

        replies = asyncio.run(main())
        assert replies[0].startswith("250 2.0.0 from MTA(smtp:"), replies
        [path] = postfix.wait_delivered(1, 30, user="bob")
        assert path.read_bytes().split(b"\n\n", 1)[1] == b".dot line\nsecond\nthird\n"
    finally:
        postfix.remove()


@pytest.mark.parametrize("protocols", ["all", "ipv4"])
def test_postfix_takes_an_ipv6_client_or_delivers_without_xforward(
        protocols: str, caplog: pytest.LogCaptureFixture):
    """An IPv6 client: Postfix with IPv6 on takes XFORWARD ADDR=IPV6:...; an IPv4-only one
    refuses the address, and the message is still delivered (with a warning) instead of
    being deferred forever."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None,
                              extra_main={"inet_protocols": protocols})
    postfix.start()
    try:
        async def main() -> list[str]:
            hop = NextHop("127.0.0.1", postfix.reinject_port, False, 5, 30, "scanner.test",
                          True)
            pool = ConnectionPool(hop)
            try:
                return (await deliver(pool, Outgoing(
                    "a@example.org", [Recipient("bob@example.test")], (), CONTENT,
                    ClientInfo(addr="2001:db8::25", name="v6.example", port="4711")),
                    all_or_nothing=True)).replies
            finally:
                await pool.close()

        with caplog.at_level("WARNING", logger="scanner"):
            replies = asyncio.run(main())
        assert replies[0].startswith("250 2.0.0 from MTA(smtp:"), replies
        postfix.wait_delivered(1, 30, user="bob")
        refused = "refused XFORWARD, delivering without it" in caplog.text
        if protocols == "all":
            assert not refused, caplog.text
            deadline = time.monotonic() + 10
            while "2001:db8::25" not in postfix.log_text():
                assert time.monotonic() < deadline, postfix.log_tail(20)
                time.sleep(0.1)
        else:
            assert refused and "Bad ADDR syntax" in caplog.text, caplog.text
    finally:
        postfix.remove()
