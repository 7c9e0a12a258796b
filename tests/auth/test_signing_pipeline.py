"""DKIM signing through the real processor: originating mail leaves signed (on the final
bytes, our Received header included) and verifies; other mail is not signed; inbound
mail gets Authentication-Results."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from scanner.auth.dkim_verify import verify_all
from scanner.checks.auth import Auth
from scanner.checks.base import LastGood
from scanner.checks.dkim import DkimSign
from scanner.config import loads
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.errors import ConfigError
from scanner.headerfields import named
from scanner.pipeline.parse import parse_headers
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.dns_server import DnsServer
from scanner.testing.sink import Sink
from tests.auth.conftest import (
    Keys,
    dns_table,
    make_check,
    opendkim_missing,
    opendkim_verifies,
    run_inline,
)
from tests.helpers import handle_at_sink

CONFIG = loads('[server]\nhostname = "scanner.test"\n[checks]\ndisabled = ["clamav"]\n')
MESSAGE = (b"From: Carol <carol@mail.signer.test>\r\nTo: dave@elsewhere.test\r\n"
           b"Subject: minutes\r\nMessage-ID: <c1@signer.test>\r\n\r\nAttached.\r\n")


def signer(keys: Keys, **extra: Any) -> DkimSign:
    table = {"keys": [{"domain": "signer.test", "selector": "s1",
                       "key_file": str(keys.files["k1"])}], **extra}
    return make_check(DkimSign, table, CONFIG)


def deliver(checks: list, sink: Sink, bank: str, client: ClientInfo | None = None,
            raw: bytes = MESSAGE) -> bytes:
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=raw,
                envelope=Envelope("carol@signer.test", (Recipient("dave@elsewhere.test"),)),
                client=client or ClientInfo(addr="127.0.0.1", helo="localhost"),
                policy_bank=bank)
    replies = handle_at_sink(CONFIG, checks, task, sink.port, 10026, bank)
    assert replies[0].startswith("250"), replies
    return sink.wait_for(1)[-1].data


def test_originating_mail_is_signed_and_verifies(dkim_keys: Keys, dns_server: DnsServer,
                                                 sink: Sink) -> None:
    data = deliver([signer(dkim_keys)], sink, "ORIGINATING")
    assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                           b"d=signer.test;")
    assert b"\r\nReceived: from localhost ([127.0.0.1])" in data.split(b"\r\n\r\n")[0]
    settings = DnsSettings(resolvers=(dns_server.resolver,), cache_size=0)
    client = get_client(settings)

    async def check() -> list:
        deadline = Deadline(5)
        return await verify_all(data, lambda n, t: client.query(n, t, deadline), run_inline)

    [result] = asyncio.run(check())
    assert (result.result, result.domain) == ("pass", "signer.test")


def test_rsa_and_ed25519_keys_both_sign(dkim_keys: Keys, dns_server: DnsServer,
                                        sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 8463's dual signing: two keys of the domain, one of each type, both sign; an
    inbound filter then reports both signatures as passing. The log lines name them as
    amavis does: dkim_new= on the signing pass, dkim_sd= on the verifying one."""
    caplog.set_level(logging.INFO, logger="scanner")
    keys = [{"domain": "signer.test", "selector": "s1", "key_file": str(dkim_keys.files["k1"])},
            {"domain": "signer.test", "selector": "ed", "key_file": str(dkim_keys.files["ed"])}]
    data = deliver([make_check(DkimSign, {"keys": keys}, CONFIG)], sink, "ORIGINATING")
    head = data.split(b"\r\n\r\n")[0]
    assert head.count(b"DKIM-Signature:") == 2
    assert b"a=ed25519-sha256" in head and b"a=rsa-sha256" in head
    auth = make_check(Auth, {"dns": dns_table(dns_server), "authserv_id": "scanner.test"},
                      CONFIG)
    task = Task(mail_id="abcdefghijkm", log_id="00001-02", raw=data,
                envelope=Envelope("carol@signer.test", (Recipient("dave@elsewhere.test"),)),
                client=ClientInfo(addr="192.0.2.1", helo="mail.signer.test"))
    assert handle_at_sink(CONFIG, [auth], task, sink.port)[0].startswith("250")
    results = sink.wait_for(2)[-1].data.split(b"\r\n\r\n")[0].decode()
    results = " ".join(results.split())
    assert results.count("dkim=pass") == 2, results
    assert "header.s=ed" in results and "header.s=s1" in results
    lines = [r.getMessage() for r in caplog.records if "mail_id: abcdefghij" in r.getMessage()]
    assert len(lines) == 2, lines
    assert ", dkim_new=s1:signer.test,ed:signer.test, " in lines[0]
    assert "dkim_sd=" not in lines[0]
    assert ", dkim_sd=s1:signer.test,ed:signer.test, " in lines[1]
    assert "dkim_new=" not in lines[1]


def test_other_banks_and_unknown_domains_are_not_signed(dkim_keys: Keys, sink: Sink) -> None:
    assert not deliver([signer(dkim_keys)], sink, "").startswith(b"DKIM-Signature")
    other = make_check(DkimSign, {"keys": [{"domain": "other.test", "selector": "s1",
                                            "key_file": str(dkim_keys.files["k1"])}]}, CONFIG)
    assert not deliver([other], sink, "ORIGINATING").startswith(b"DKIM-Signature")


def test_inbound_mail_gets_authentication_results(dns_server: DnsServer, sink: Sink) -> None:
    auth = make_check(Auth, {"dns": dns_table(dns_server), "authserv_id": "scanner.test"},
                      CONFIG)
    data = deliver([auth], sink, "", ClientInfo(addr="192.0.2.1", helo="mail.signer.test"))
    head = data.split(b"\r\n\r\n")[0].decode()
    assert "\r\nAuthentication-Results: scanner.test;\r\n\tspf=pass" in head
    assert "dmarc=pass (p=reject dis=none) header.from=mail.signer.test" in head


def test_bad_key_settings_stop_start_up(tmp_path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match=r"dkim_sign.keys\[0\].key_file"):
        make_check(DkimSign, {"keys": [{"domain": "x.test", "selector": "s",
                                        "key_file": str(bad)}]})
    with pytest.raises(ConfigError, match=r"dkim_sign.keys\[0\].domain"):
        make_check(DkimSign, {"keys": [{"domain": "nodot", "selector": "s",
                                        "key_file": str(bad)}]})
    with pytest.raises(ConfigError, match="must include From"):
        make_check(DkimSign, {"headers": ["subject"]})


def test_dns_outage_still_delivers_within_the_budget(black_hole, sink: Sink) -> None:
    auth = make_check(Auth, {"dns": {"resolvers": [black_hole.resolver], "timeout": 0.5,
                                     "budget": 1.0}, "authserv_id": "scanner.test"}, CONFIG)
    began = time.monotonic()
    data = deliver([auth], sink, "", ClientInfo(addr="192.0.2.1", helo="mail.signer.test"))
    assert time.monotonic() - began < 3.0
    head = data.split(b"\r\n\r\n")[0].decode()
    assert "spf=temperror" in head and "dmarc=temperror" in head


def test_sighup_reload_keeps_old_keys_on_error(dkim_keys: Keys, tmp_path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(dkim_keys.files["k1"].read_bytes())
    check = make_check(DkimSign, {"keys": [{"domain": "signer.test", "selector": "s1",
                                            "key_file": str(key)}]}, CONFIG)
    key.unlink()
    check.reload()
    task = Task(mail_id="abcdefghijkl", raw=MESSAGE, policy_bank="ORIGINATING",
                envelope=Envelope("carol@signer.test", (Recipient("d@x.test"),)))
    task.message = parse_headers(MESSAGE)
    assert [k.selector for k in check.keys_for(task)] == ["s1"]


def test_a_new_worker_keeps_the_keys_when_a_key_file_broke_after_start(
        dkim_keys: Keys, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """A key file that became unreadable while the filter runs stopped every worker
    started since (a replacement after a crash, max_requests, the watchdog): no mail was
    served. A check built again in the process that read the keys first (the master at
    start-up; workers are forked from it) keeps them, as SIGHUP does."""
    key = tmp_path / "k.key"
    key.write_bytes(dkim_keys.files["k1"].read_bytes())
    settings = {"keys": [{"domain": "signer.test", "selector": "s1", "key_file": str(key)}]}
    kept = LastGood()  # what the master read, handed to the workers it forks
    make_check(DkimSign, settings, CONFIG, kept)  # the master's, at start-up
    key.write_text("not a key")
    with caplog.at_level(logging.ERROR, logger="scanner"):
        again = make_check(DkimSign, settings, CONFIG, kept)  # a replacement worker's
    task = Task(mail_id="abcdefghijkl", raw=MESSAGE, policy_bank="ORIGINATING",
                envelope=Envelope("carol@signer.test", (Recipient("d@x.test"),)))
    task.message = parse_headers(MESSAGE)
    assert [k.selector for k in again.keys_for(task)] == ["s1"]
    assert "DKIM keys read before kept:" in caplog.text and str(key) in caplog.text
    other = {"keys": [{"domain": "other.test", "selector": "s1", "key_file": str(key)}]}
    with pytest.raises(ConfigError):  # nothing read before for these settings
        make_check(DkimSign, other, CONFIG, kept)
    with pytest.raises(ConfigError):  # nothing handed on: refused, as at start-up
        make_check(DkimSign, settings, CONFIG)


# bare LF lines, 8-bit text in a header and the body, a 1,400-character header line,
# trailing white space, a line that starts with a dot, empty lines at the end
AWKWARD = (b"From: Carol <carol@mail.signer.test>\r\nTo: dave@elsewhere.test\r\n"
           + "Subject: Grüße aus Köln\r\n".encode()
           + b"References: " + b" ".join(b"<%d.long.reference@signer.test>" % i
                                         for i in range(45)) + b"\r\n"
           + b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n"  # OpenDKIM requires one
           + b"Message-ID: <c2@signer.test>\r\nMIME-Version: 1.0\r\n"
           + b"Content-Type: text/plain; charset=utf-8\r\n"
           + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
           + "Grüße,\nbare LF line \t \n.dot line\r\n  spaced   out  \r\n".encode()
           + b"\n\r\n\n")


def test_awkward_mail_verifies_with_opendkim_as_the_next_hop_gets_it(
        dkim_keys: Keys, dns_server: DnsServer, sink: Sink, tmp_path) -> None:
    """Both signatures (RSA and Ed25519) of the bytes the next hop received verify with
    OpenDKIM's opendkim-testmsg, an implementation independent of dkimpy."""
    keys = [{"domain": "signer.test", "selector": "s1", "key_file": str(dkim_keys.files["k1"])},
            {"domain": "signer.test", "selector": "ed", "key_file": str(dkim_keys.files["ed"])}]
    data = deliver([make_check(DkimSign, {"keys": keys}, CONFIG)], sink, "ORIGINATING",
                   raw=AWKWARD)
    settings = DnsSettings(resolvers=(dns_server.resolver,), cache_size=0)
    client = get_client(settings)

    async def check() -> list:
        return await verify_all(data, lambda n, t: client.query(n, t, Deadline(5)),
                                run_inline)

    assert [(r.selector, r.result) for r in asyncio.run(check())] == [
        ("s1", "pass"), ("ed", "pass")]
    if missing := opendkim_missing():
        pytest.skip(missing)
    sigs = list(named(data, ("DKIM-Signature",)))
    assert len(sigs) == 2
    for keep, other in ((sigs[0], sigs[1]), (sigs[1], sigs[0])):
        alone = data[:other.start] + data[other.end:]  # one signature: opendkim checks it
        checked = opendkim_verifies(dns_server, alone.replace(b"\r\n", b"\n"),
                                    tmp_path / str(keep.start))
        if "Operation not permitted" in checked.stderr:
            pytest.skip(f"namespaces not available here: {checked.stderr.strip()}")
        assert checked.returncode == 0, (data[keep.start:keep.end], checked.stdout
                                         + checked.stderr)
