"""request=AM.PDP on our AM.PDP socket, as amavisd-milter sends it: a message file written
by the test (bare LF, as the milter writes it), a real Processor with fake checks, a real
quarantine, the test sink as next hop (DSNs, delivery_care_of=server). The answers are
compared with amavis's (Amavis::In::AMPDP): header edits as milter operations, delrcpt,
return_value and exit_code, and the summary log line."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scanner import config as cfgmod
from scanner.pipeline.processor import Processor
from scanner.quarantine.ampdp import start_ampdp_server
from scanner.quarantine.store import Quarantine
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.serve.pdp_scan import PdpScanner
from scanner.task import Hit, Task
from scanner.testing.sink import Sink
from tests.quarantine.util import LoopThread, ampdp

MAIL = ("Received: from mx.example.org (mx.example.org [192.0.2.7])\n"
        "\tby mail.example.test (amavisd-milter) with ESMTP id 4QxYz1AbcD;\n"
        "\tSun, 6 Dec 2026 10:00:00 +0000\n\t(envelope-from <alice@example.org>)\n"
        "From: Alice <alice@example.org>\nTo: bob@example.test\nSubject: lunch\n"
        "Message-ID: <lunch@example.org>\nX-Spam-Flag: NO\nX-Spam-Status: No, forged\n"
        "\nsee you at noon\n")
BAYES = Hit("BAYES_99", source="bayes")  # 5.5 points
EICAR = Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")


class FakeCheck:
    """A check reporting fixed hits, or raising."""

    def __init__(self, name: str, kind: str, hits: list[Hit], fail: bool = False,
                 hang: bool = False) -> None:
        self.name, self.kind, self._hits, self._fail, self._hang = name, kind, hits, fail, hang

    async def run(self, task: Task) -> list[Hit]:
        if self._fail:
            raise RuntimeError("backend gone")
        if self._hang:
            await asyncio.Event().wait()  # never answers
        return [h for h in self._hits if h.source == self.name]


class Scanner:
    """Our AM.PDP server with a Processor behind it, in a background loop."""

    def __init__(self, tmp: Path, sink: Sink, policy: str = "", hits: list[Hit] = (),
                 fail: bool = False, hang: bool = False, server: str = "",
                 quarantine: str = "",
                 sock_dir: Path | None = None) -> None:
        self.tmp, self.path = tmp, (sock_dir or tmp) / "scanner.sock"
        text = f"""
[server]
hostname = "scanner.test"
{server}
[reinject]
port = {sink.port}
timeout = 3
connect_timeout = 2
[checks]
enabled = []
[quarantine]
directory = "{tmp / 'q'}"
ampdp_socket = "{self.path}"
{quarantine}
[policy]
local_domains = ["example.test"]
{policy}"""
        self.config = cfgmod.loads(text, "t.toml")
        self.quarantine = Quarantine(self.config.quarantine)
        checks = [FakeCheck("bayes", "spam", list(hits), fail, hang),
                  FakeCheck("clamav", "virus", list(hits))]

        async def inline(func: Any, *args: Any) -> Any:
            return func(*args)

        hop = NextHop("127.0.0.1", sink.port, False, 2, 5, "scanner.test", True)
        self.processor = Processor(self.config, checks, load_scores(), hop, "scanner.test",
                                   run_cpu=inline, quarantine=self.quarantine)
        scanner = PdpScanner(self.processor, self.config.server.max_message_size)
        self.loop = LoopThread()
        self.server = self.loop.run(start_ampdp_server(str(self.path), self.quarantine,
                                                       self.config, scan=scanner.answer))

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.processor._pool.close()
        self.loop.run(stop())
        self.loop.stop()

    def scan(self, mail: str | bytes | None = MAIL, rcpts: tuple[str, ...] = ("bob@example.test",),
             **extra: str) -> dict[str, list[str]]:
        """Write the mail file as amavisd-milter does and send its request; the answer
        by attribute name, values in order."""
        work = self.tmp / f"af{len(os.listdir(self.tmp))}"
        work.mkdir()
        mail_file = work / "email.txt"
        if mail is not None:
            mail_file.write_bytes(mail.encode() if isinstance(mail, str) else mail)
        attrs = {"request": "AM.PDP", "queue_id": "4QxYz1AbcD", "protocol_name": "ESMTP",
                 "sender": "<alice@example.org>", "tempdir": str(work),
                 "tempdir_removed_by": "client", "mail_file": str(mail_file),
                 "delivery_care_of": "client", "client_address": "192.0.2.7",
                 "client_name": "mx.example.org", "helo_name": "mx.example.org"}
        attrs.update(extra)
        request = [("request", attrs.pop("request"))]
        request += [(k, v) for k, v in attrs.items() if k != "sender"]
        request.insert(1, ("sender", attrs["sender"]))
        request += [("recipient", f"<{r}>") for r in rcpts]
        [answer] = ampdp(self.path, request)
        out: dict[str, list[str]] = {}
        for name, value in answer:
            out.setdefault(name, []).append(value)
        self.work = work
        return out


@pytest.fixture
def start(tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="scanner")
    running: list[Scanner] = []

    def make(**kw: Any) -> Scanner:
        scanner = Scanner(tmp_path, sink, **kw)
        running.append(scanner)
        return scanner

    yield make
    for scanner in running:
        scanner.close()


def summary(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [r.getMessage() for r in caplog.records
              if "mail_id:" in r.getMessage() and "Queue-ID" in r.getMessage()]
    return line


def test_clean_message_continues_with_our_headers(start, sink: Sink, caplog):
    scanner = start(policy="tag_level = -999\n")
    answer = scanner.scan()
    assert answer["version_server"] == ["2"]
    assert answer["return_value"] == ["continue"] and answer["exit_code"] == ["0"]
    assert answer["setreply"][0].startswith("250 2.5.0 Ok, id=")
    assert answer["setreply"][0].endswith(", continue delivery")
    added = [v.split(" ", 2) for v in answer["insheader"]]
    assert all(idx == "0" for idx, _, _ in added)
    names = [name for _, name, _ in added]
    # inserted at the top one by one, bottom one first: the message reads top-down as
    # the SMTP path would write it (X-Spam-Flag above X-Spam-Score ...)
    assert names[::-1] == ["X-Virus-Scanned", "X-Spam-Flag", "X-Spam-Score", "X-Spam-Level",
                           "X-Spam-Status"]
    assert dict((n, v) for _, n, v in added)["X-Spam-Flag"] == "NO"
    assert "\r" not in "".join(answer["insheader"])  # folded with LF for the milter
    # the arriving X-Spam-* fields are removed (remove_existing_spam_headers)
    assert sorted(answer["delheader"]) == ["1 X-Spam-Flag", "1 X-Spam-Status"]
    assert "delrcpt" not in answer and "chgheader" not in answer
    assert sink.received == []  # nothing reinjected: the MTA keeps the message
    line = summary(caplog)
    assert "Passed CLEAN {AcceptedInbound}" in line, line
    assert "Queue-ID: 4QxYz1AbcD" in line and "<alice@example.org> -> <bob@example.test>" in line
    assert os.path.exists(scanner.work / "email.txt")  # the milter's file: the milter's job


def test_spam_is_tagged_with_subject_edit(start, caplog):
    scanner = start(hits=[BAYES], policy="tag2_level = 5.0\nkill_level = 9.0\n")
    answer = scanner.scan()
    assert answer["return_value"] == ["continue"]
    assert answer["chgheader"] == ["1 Subject ***SPAM*** lunch"]
    flags = {v.split(" ", 2)[1]: v.split(" ", 2)[2] for v in answer["insheader"]}
    assert flags["X-Spam-Flag"] == "YES" and flags["X-Spam-Score"] == "5.500"
    assert "BAYES_99=5.5" in flags["X-Spam-Status"]
    assert "Passed SPAMMY {AcceptedInbound}" in summary(caplog)


def test_no_subject_gets_one_inserted(start):
    mail = MAIL.replace("Subject: lunch\n", "")
    answer = start(hits=[BAYES], policy="tag2_level = 5.0\nkill_level = 9.0\n").scan(mail)
    assert "chgheader" not in answer
    assert answer["insheader"][0] == "0 Subject ***SPAM***"


def test_spam_rejected_for_all_is_a_reject(start, caplog):
    scanner = start(hits=[BAYES], policy="kill_level = 5.0\nspam_destiny = 'reject'\n"
                    "quarantine = ['spam']\n")
    answer = scanner.scan()
    assert answer["return_value"] == ["reject"] and answer["exit_code"] == ["69"]
    assert answer["setreply"][0].startswith("554 5.7.0 Reject, id=")
    assert "insheader" not in answer and "delrcpt" not in answer
    line = summary(caplog)
    assert "Blocked SPAM {RejectedInbound,Quarantined}" in line, line
    mail_id = line.split("mail_id: ")[1].split(",")[0]
    record = scanner.quarantine.get(mail_id)
    assert list(record.recipients) == ["bob@example.test"] and record.category == "SPAM"


def test_virus_is_discarded_and_quarantined(start, sink: Sink, caplog):
    scanner = start(hits=[EICAR])
    answer = scanner.scan()
    assert answer["return_value"] == ["discard"] and answer["exit_code"] == ["99"]
    line = summary(caplog)
    assert "Blocked INFECTED (Eicar-Signature) {DiscardedInbound,Quarantined}" in line, line
    mail_id = line.split("mail_id: ")[1].split(",")[0]
    assert b"see you at noon\r\n" in scanner.quarantine.read(mail_id)
    assert sink.received == []  # discarded, no DSN, nothing reinjected


def test_mixed_recipients_delrcpt_the_blocked(start, sink: Sink, caplog):
    policy = ('spam_destiny = "discard"\nkill_level = 5.0\n'
              '[policy.recipients."lover@example.test"]\nspam_lover = true\n')
    answer = start(hits=[BAYES], policy=policy).scan(
        rcpts=("bob@example.test", "lover@example.test"))
    assert answer["return_value"] == ["continue"] and answer["exit_code"] == ["0"]
    assert answer["delrcpt"] == ["<bob@example.test>"]
    assert "insheader" in answer
    assert sink.received == []  # discarded: no DSN


def test_address_extension_is_delrcpt_addrcpt(start):
    policy = 'tag2_level = 5.0\nkill_level = 9.0\naddr_extension_spam = "spam"\n' \
             'recipient_delimiter = "+"\n'
    answer = start(hits=[BAYES], policy=policy).scan()
    assert answer["delrcpt"] == ["<bob@example.test>"]
    assert answer["addrcpt"] == ["<bob+spam@example.test>"]


@pytest.mark.parametrize("problem", ["missing", "directory", "symlink"])
def test_unreadable_mail_file_is_a_tempfail_naming_it(start, problem, caplog):
    scanner = start()
    if problem == "missing":
        answer = scanner.scan(None)
    elif problem == "directory":
        answer = scanner.scan(None, mail_file=str(scanner.tmp))
    else:  # amavis too takes only a plain file, not a link to one
        target = scanner.tmp / "elsewhere.txt"
        target.write_text(MAIL)
        link = scanner.tmp / "link.txt"
        link.symlink_to(target)
        answer = scanner.scan(None, mail_file=str(link))
    assert answer["return_value"] == ["tempfail"] and answer["exit_code"] == ["75"]
    [reply] = answer["setreply"]
    assert reply.startswith("451 4.5.0 Error in processing") and "mail_file /" in reply
    assert ("does not exist" if problem == "missing" else "not a plain file") in reply
    assert "Passed" not in caplog.text and "Blocked" not in caplog.text  # not scanned


def test_failing_check_tempfails(start, caplog):
    answer = start(fail=True).scan()
    assert answer["return_value"] == ["tempfail"] and answer["exit_code"] == ["75"]
    assert answer["setreply"][0].startswith("451 4.5.0 Error in processing")
    assert "insheader" not in answer


def test_failing_check_passes_unchecked_when_configured(start, caplog):
    answer = start(fail=True, policy='on_check_failure = "unchecked"\n').scan()
    assert answer["return_value"] == ["continue"]
    assert "Passed UNCHECKED {AcceptedInbound}" in summary(caplog)


class BrokenQuarantine:
    def store(self, **kw: Any) -> Any:
        raise OSError(28, "No space left on device")

    def delete(self, mail_id: str) -> None:
        pass


def test_quarantine_failure_tempfails(start, caplog):
    scanner = start(hits=[EICAR])
    scanner.processor._quarantine = BrokenQuarantine()
    answer = scanner.scan()
    assert answer["return_value"] == ["tempfail"] and answer["exit_code"] == ["75"]
    assert answer["setreply"][0].startswith("451 4.5.0 Error in processing, id=")
    assert answer["setreply"][0].endswith("quarantine failed")
    assert "Blocked INFECTED (Eicar-Signature) {TempFailedInbound}" in summary(caplog)


def test_internal_error_tempfails(start, caplog):
    scanner = start()

    async def broken(*args: Any, **kw: Any) -> None:
        raise KeyError("bug")

    scanner.processor.analyse = broken  # type: ignore[method-assign]
    answer = scanner.scan()
    assert answer["return_value"] == ["tempfail"] and answer["exit_code"] == ["75"]
    assert answer["setreply"][0].startswith("451 4.5.0 Error in processing, id=")
    assert "error in processing" in caplog.text


def test_message_timeout_tempfails(start, caplog):
    """A check that never answers: server.message_timeout (5 s, its minimum) ends it."""
    answer = start(hang=True, server="message_timeout = 5\n").scan()
    assert answer["return_value"] == ["tempfail"] and answer["exit_code"] == ["75"]
    assert answer["setreply"][0].endswith("timed out")


def test_size_limit(start, caplog):
    scanner = start(server="max_message_size = 2048\n")
    answer = scanner.scan(MAIL + "x" * 2048 + "\n")
    assert answer["return_value"] == ["reject"] and answer["exit_code"] == ["69"]
    assert answer["setreply"] == ["552 5.3.4 Message size exceeds fixed limit"]
    # at the limit it is scanned (the limit counts CRLF line ends, as over SMTP)
    small = MAIL + "x" * (2048 - len(MAIL) - MAIL.count("\n") - 2) + "\n"
    assert scanner.scan(small)["return_value"] == ["continue"]


def test_bad_requests_tempfail(start):
    scanner = start()
    answer = scanner.scan(rcpts=())
    assert answer["return_value"] == ["tempfail"] and "no recipient" in answer["setreply"][0]
    answer = scanner.scan(delivery_care_of="elsewhere")
    assert answer["return_value"] == ["tempfail"] and "delivery_care_of" in answer["setreply"][0]


def test_tempdir_removed_by_server_removes_the_file(start):
    scanner = start()
    assert scanner.scan(tempdir_removed_by="server")["return_value"] == ["continue"]
    assert not scanner.work.exists()


def test_delivery_care_of_server_reinjects_and_discards(start, sink: Sink, caplog):
    answer = start(policy="tag_level = -999\n").scan(delivery_care_of="server")
    assert answer["return_value"] == ["discard"] and answer["exit_code"] == ["99"]
    [got] = sink.wait_for(1)
    assert got.recipients == ["bob@example.test"]
    assert b"X-Spam-Flag: NO" in got.data and b"see you at noon\r\n" in got.data
    assert "Passed CLEAN {RelayedInbound}" in summary(caplog)


def test_policy_banks_from_the_request(start, caplog):
    policy = '[policy_banks.CUSTOMER]\nspam_destiny = "reject"\nkill_level = 5.0\n'
    scanner = start(hits=[BAYES], policy=policy.replace("[policy_banks", "\n[policy_banks"))
    answer = scanner.scan(policy_bank="SMTP_AUTH,CUSTOMER")
    assert answer["return_value"] == ["reject"]
    line = summary(caplog)
    assert "CUSTOMER [192.0.2.7]" in line and "SMTP_AUTH" not in line  # unknown: left out


def test_peer_not_allowed_is_refused(start, tmp_path: Path):
    """The release socket's peer check (allowed_uids) guards scans too."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    public = Path(tempfile.mkdtemp(prefix="scanner-pdp-", dir="/tmp"))
    public.chmod(0o755)
    try:
        start(sock_dir=public, quarantine="socket_mode = 0o666\n")
        assert "permission%20denied:%20uid%2065534" in _as_nobody(public / "scanner.sock")
        (public / "scanner.sock").unlink()
        start(sock_dir=public, quarantine="socket_mode = 0o666\nallowed_uids = [65534]\n")
        # allowed: the scan runs, and the file named does not exist
        assert "mail_file%20/nonexistent/email.txt%20does%20not%20exist" in \
            _as_nobody(public / "scanner.sock")
    finally:
        shutil.rmtree(public)


CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"request=AM.PDP\\nsender=<a@example.org>\\nrecipient=<b@example.test>\\n"
          b"mail_file=/nonexistent/email.txt\\n\\n")
s.shutdown(socket.SHUT_WR)
print(s.makefile("rb").read().decode())
"""


def _as_nobody(path: Path) -> str:
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    out = subprocess.run([python, "-c", CLIENT, str(path)], capture_output=True,
                         text=True, user=65534, group=65534, timeout=20, cwd="/")
    return out.stdout + out.stderr


def test_defang_before_queue_passes_the_copy_as_it_is_and_says_so(start, caplog):
    """A milter can change header fields only: policy.defang cannot wrap the message the
    MTA keeps; the lover still gets it (with the alert header), and the log says why."""
    answer = start(hits=[EICAR], policy="virus_lover = true\ndefang = ['virus']\n").scan()
    assert answer["return_value"] == ["continue"]
    assert any("X-Amavis-Alert" in v for v in answer["insheader"])
    assert "policy.defang cannot wrap a message the MTA keeps" in caplog.text
