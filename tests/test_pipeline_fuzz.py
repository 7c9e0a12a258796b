"""Mangled messages through the whole analysis: no check may crash on bad input.

A check that raises becomes ``<NAME>_FAIL``, and the shipped policy answers that with
451 (``on_check_failure = "tempfail"``): a message some check cannot digest would sit
in Postfix's queue until it expires. So the checks must never raise on malformed
mail. Hypothesis takes the project's own edge-case messages (``corpora/``) and mangles
them: bytes overwritten, cut, and nasty pieces spliced in (empty or repeated
boundaries, unknown charsets, broken encoded words, impossible Received hops and
dates, broken DKIM-Signature and ARC headers, URLs and HTML that parsers choke on,
NULs). Each mangled message runs through parse, unpack, every check and the policy
in-process (``Processor.analyse``); it must come out with no ``_FAIL`` symbol and
verdicts for its recipient.

The DNS-using checks (SPF, DKIM, DMARC, ARC, DNSBL, URIBL) run against a private NSD
that answers NXDOMAIN for every name, so their parsing is exercised too; without
``nsd`` installed they are left out (and the test says so). ClamAV is left out: it
sends bytes to clamd and parses nothing of the message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoders.registry import load_decoders
from scanner import config as cfgmod
from scanner.checks.base import CheckContext
from scanner.pipeline.processor import Listener, Processor
from scanner.registry import build_checks
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.task import ClientInfo, Envelope, Recipient, Task
from scanner.testing.dns_server import DNS_CHECKS, dns_checks_toml, find_nsd, nxdomain_server
from tests.helpers import REPO

SEEDS = sorted((REPO / "corpora").rglob("*.eml"))
NASTY = [
    b"\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n",
    b"\r\nContent-Type: multipart/alternative; boundary=a; boundary=b\r\n",
    b"\r\nContent-Transfer-Encoding: base64\r\n", b"\r\nContent-Transfer-Encoding: x-uue\r\n",
    b"\r\nContent-Type: text/html; charset=\"x-\xff\xfe\"\r\n",
    b"\r\nContent-Type: text/plain; charset=utf-7\r\n+AGEAYgBj-",
    b"\r\nContent-Disposition: attachment; filename*=utf-8''%ff%fe%00.exe\r\n",
    b"\r\nContent-Type: message/rfc822\r\n\r\n", b"\r\n--", b"\r\n\r\n--a--\r\n",
    b"=?utf-8?B?////?=", b"=?x-unknown?Q?=ZZ=?=", b"=?utf-8?q?", b"=?iso-2022-jp?B?GyRC?=",
    b"\r\nReceived: from [300.1.1.1] (helo=) by ([::1]\r\n",
    b"\r\nReceived: from x (unknown [IPv6:zz::1]) by y; Mon, 99 Foo 20002 99:99:99 +9999\r\n",
    b"\r\nDKIM-Signature: v=1; a=rsa-sha256; d=; s=; h=from; bh=; b=\r\n",
    b"\r\nDKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=s; h=; bh=!!; b=@@\r\n",
    b"\r\nARC-Seal: i=0; cv=none\r\nARC-Message-Signature: i=99\r\n",
    b"\r\nAuthentication-Results: ;;;\r\n", b"\r\nFrom: <<@>>, \"\r\n", b"\r\nFrom:\r\n",
    b"\r\nReply-To: =?utf-8?b?\xff?= <@>\r\n", b"\r\nMessage-ID: <>\r\n", b"\r\nTo: ;\r\n",
    b"\r\nDate: Mon, 99 Foo 20002 99:99:99 +9999\r\n", b"\r\nSubject: \xff\xfe\x00\r\n",
    b"<a href=\"http://[::1\">x</a>", b"http://%%%/", b"https://\xe2\x80\xae.com/",
    b"<a href='https://xn--/'>", b"<img src=cid:>", b"&#xFFFFFFFF;", b"&#0;", b"&#x110000;",
    b"<style>", b"<!--", b"<script>", b"<base href=\"::\">", b"<form action=>",
    b"<input type=password>", b"\x00", b"\r\n\r\n", b"begin 644 x\r\n", b"%PDF-1.4\r\n",
    b"\r\n\t\r\n", b"\r\n : no name\r\n", b"\xef\xbb\xbf", b"\xe2\x80\x8b" * 5,
]
ALWAYS_OFF = ["clamav"]


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[Processor, asyncio.AbstractEventLoop]]:
    tmp = tmp_path_factory.mktemp("pipeline-fuzz")
    dns = nxdomain_server() if find_nsd() else None
    disabled = ALWAYS_OFF + ([] if dns else list(DNS_CHECKS))
    text = (f'[checks]\nenabled = ["*", "dnsbl", "uribl"]\n'  # those two are off by default
            f"disabled = {json.dumps(disabled)}\n"
            f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    if dns is not None:
        dns.start()
        text += dns_checks_toml(dns.resolver)
    path = tmp / "scanner.toml"
    path.write_text(text)
    config = cfgmod.load(str(path))

    async def run_cpu(func, *args):  # type: ignore[no-untyped-def]
        return func(*args)

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    names = {c.name for c in checks}
    assert {"rules", "bayes", "banned"} <= names
    if dns is not None:
        assert set(DNS_CHECKS) <= names
    loop = asyncio.new_event_loop()  # one loop for every example, as in a worker
    try:
        yield Processor(config, checks, load_scores(()),
                        NextHop.from_config(config.reinject, "localhost"), "scanner.test",
                        run_cpu=run_cpu, decoders=load_decoders()), loop
    finally:
        loop.close()
        if dns is not None:
            dns.stop()


def test_the_dns_checks_are_fuzzed_too(analysis) -> None:
    """The DNS checks of the fixture really run (an SPF result needs its DNS answer)."""
    if find_nsd() is None:
        pytest.skip("nsd is not installed: the mangled messages skip SPF/DKIM/DMARC/ARC, "
                    "DNSBL and URIBL (apt-get install nsd)")
    processor, loop = analysis
    task = Task(mail_id="fuzzfuzzfuzz", log_id="fuzz", raw=SEEDS[0].read_bytes(),
                envelope=Envelope("sender@example.org", (Recipient("rcpt@example.test"),)),
                client=ClientInfo(addr="192.0.2.1", name="mx.example.org",
                                  helo="mx.example.org"))
    loop.run_until_complete(processor.analyse(task, Listener(10024, "ESMTP", "")))
    assert "SPF_NONE" in task.symbols()  # every name is NXDOMAIN: no SPF record


_edit = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("splice"), st.integers(0, 1 << 20), st.sampled_from(NASTY)),
    st.tuples(st.just("drop"), st.integers(0, 1 << 20), st.integers(1, 200)),
)


def _mangle(raw: bytes, edits: list[tuple[str, int, object]], cut: int) -> bytes:
    buf = bytearray(raw)
    for kind, pos, what in edits:
        at = pos % (len(buf) + 1)
        if kind == "put":
            assert isinstance(what, bytes)
            buf[at:at + len(what)] = what
        elif kind == "splice":
            assert isinstance(what, bytes)
            buf[at:at] = what
        else:
            assert isinstance(what, int)
            del buf[at:at + what]
    return bytes(buf[: len(buf) - cut % (len(buf) or 1)]) if cut else bytes(buf)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SEEDS), edits=st.lists(_edit, min_size=1, max_size=8),
       cut=st.integers(0, 3000) | st.just(0))
def test_no_check_crashes_on_a_mangled_message(analysis, seed: Path, edits: list,
                                               cut: int) -> None:
    processor, loop = analysis
    raw = _mangle(seed.read_bytes(), edits, cut)
    task = Task(mail_id="fuzzfuzzfuzz", log_id="fuzz", raw=raw,
                envelope=Envelope("sender@example.org", (Recipient("rcpt@example.test"),)))
    loop.run_until_complete(processor.analyse(task, Listener(10024, "ESMTP", "")))
    failed = [h for h in task.hits if h.symbol.endswith("_FAIL")]
    assert not failed, (seed.name, failed, task.failed_checks)
    assert set(task.verdicts) == {"rcpt@example.test"}
    assert any(h.symbol.startswith("BAYES_") for h in task.hits)  # the analysis really ran
