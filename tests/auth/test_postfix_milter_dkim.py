"""DKIM signing before queue: Postfix's submission-like smtpd marks mail ORIGINATING
(``milter_macro_daemon_name``, passed on by ``amavisd-milter -B`` as the policy bank),
scanner signs it in its AM.PDP answer (an ``insheader``), and the message Postfix
delivers, with Postfix's own Received header and the milter's edits, verifies against
the test DNS. Needs root, postfix, amavisd-milter and nsd (skipped with the reason)."""

from __future__ import annotations

import asyncio

import pytest

from scanner.auth.dkim_verify import verify_all
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.testing.dns_server import DnsServer
from tests.auth.conftest import Keys, run_inline
from tests.postfix_stack import require_postfix, split_delivered
from tests.test_postfix_milter import AMAVISD_MILTER, MilterStack, _delivered, _send

pytestmark = pytest.mark.postfix

MESSAGE = (b"From: Carol <carol@mail.signer.test>\r\nTo: bob@example.test\r\n"
           b"Subject: minutes\r\nMessage-ID: <signed@example.org>\r\n\r\nAttached.\r\n")


def test_originating_mail_is_signed_through_the_milter(dkim_keys: Keys,
                                                       dns_server: DnsServer) -> None:
    require_postfix()
    if AMAVISD_MILTER is None:
        pytest.skip("amavisd-milter not installed (apt-get install amavisd-milter)")
    keys = (f'\n[checks.settings.dkim_sign]\nkeys = [{{domain = "signer.test", '
            f'selector = "s1", key_file = "{dkim_keys.files["k1"]}"}}]\n')
    stack = MilterStack(filter_extra=keys,
                        postfix_extra={"milter_macro_daemon_name": "ORIGINATING"}).start()
    try:
        code, reply = _send(stack, "carol@signer.test", MESSAGE)
        assert code == 250, (code, reply, stack.logs())
        delivered = stack.postfix.wait_delivered(1, 30, "bob")
        [path] = [p for p in delivered if p in _delivered(stack, "signed")]
        raw = path.read_bytes()
        lines = [ln for ln in stack.filter.summary_lines() if "<signed@example.org>" in ln]
    finally:
        stack.remove()
    head, body = split_delivered(raw)
    assert head.count(b"DKIM-Signature:") == 1 and b"d=signer.test" in head
    assert len(lines) == 1 and "ORIGINATING" in lines[0], lines
    assert "dkim_new=s1:signer.test" in lines[0]
    data = raw.replace(b"\n", b"\r\n")  # as Postfix would send it on
    client = get_client(DnsSettings(resolvers=(dns_server.resolver,), cache_size=0))

    async def check() -> list:
        return await verify_all(data, lambda n, t: client.query(n, t, Deadline(5)),
                                run_inline)

    [result] = asyncio.run(check())
    assert (result.result, result.domain) == ("pass", "signer.test"), result
