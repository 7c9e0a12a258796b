"""Summary lines through logwatch's amavis parser (amavis-logwatch, Debian's logwatch
package): it counts scanner's lines for all-passed, all-blocked, mixed and tempfailed
messages as it counts the lines amavis 2.13's default ``$log_templ`` writes for them.

The parser is a real component; the test is skipped, saying why, where it is not
installed (``apt-get install logwatch``)."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.policy.recipient_mix import RAW, run, summaries

PARSER = Path("/usr/share/logwatch/scripts/services/amavis")
DISCARD = "spam_destiny = 'discard'\nblock_senders = ['@spam.example']\n"
LOVER = DISCARD + '[policy.recipients."lover@example.test"]\nspam_lover = true\n'
SIZE = len(RAW)
# What amavis 2.13 logs for the lover/discard message below, written from its default
# $log_templ (Amavis.pm's __DATA__): a Passed line for %D, then a Blocked line for %O,
# the message's blocking category, actions and fields on both, queued_as on the first.
AMAVIS_MIXED = [
    "(04082-01) Passed SPAM {DiscardedInbound,RelayedTaggedInbound,Quarantined}, "
    "[192.0.2.7]:4000 [192.0.2.7] <promo@spam.example> -> <lover@example.test>, "
    "quarantine: a/spam-abcdefghijkl.gz, Message-ID: <mix@spam.example>, "
    f"mail_id: abcdefghijkl, Hits: 100, size: {SIZE}, queued_as: 4ABCDEF12, 12 ms",
    "(04082-01) Blocked SPAM {DiscardedInbound,RelayedTaggedInbound,Quarantined}, "
    "[192.0.2.7]:4000 [192.0.2.7] <promo@spam.example> -> <dave@example.test>, "
    "quarantine: a/spam-abcdefghijkl.gz, Message-ID: <mix@spam.example>, "
    f"mail_id: abcdefghijkl, Hits: 100, size: {SIZE}, 12 ms",
]


@pytest.fixture(autouse=True)
def _log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scanner")


def _report(lines: list[str]) -> str:
    """logwatch's amavis report (standalone mode) for ``lines`` as syslog writes them."""
    if not PARSER.is_file() or shutil.which("perl") is None:
        pytest.skip(f"logwatch's amavis parser ({PARSER}) is not installed: "
                    "apt-get install logwatch")
    text = "".join(f"Dec  6 09:05:07 mx scanner[4082]: {line}\n" for line in lines)
    done = subprocess.run(["perl", str(PARSER), "--syslog_name", "scanner", "--detail", "10"],
                          input=text, capture_output=True, text=True, timeout=60, check=True)
    assert "Unmatched" not in done.stdout, done.stdout
    return done.stdout


def _counts(report: str) -> dict[str, int]:
    """The report's summary counts by label ("Passed", "Spam blocked", ...), bytes left
    out (they add up the size of every line)."""
    found = re.findall(r"^\s+(\d+)\s{2,}(\S.*?)(?: -+)?\s+[\d.]+%$", report, re.M)
    return {label: int(n) for n, label in found}


def _detail(report: str) -> str:
    """The report's detail section: recipients, clients and senders per kind of mail."""
    return report.split("Detail", 1)[1].split("=====", 1)[0]


def test_mixed_lines_are_counted_as_amavis_lines(sink, caplog):
    run(sink, LOVER, [], ["lover@example.test", "dave@example.test"])
    ours = _report(summaries(caplog))
    amavis = _report(AMAVIS_MIXED)
    assert _counts(ours) == _counts(amavis) == {
        "Total messages scanned": 2, "Blocked": 1, "Spam blocked": 1, "Passed": 1,
        "Spam passed": 1}
    assert _detail(ours) == _detail(amavis)
    assert re.search(r"Spam passed -+\n\s+1\s+lover@example\.test\n", ours), ours
    assert re.search(r"Spam blocked -+\n\s+1\s+dave@example\.test\n", ours), ours


@pytest.mark.parametrize(("policy", "protocol", "counts"), [
    # all passed, all blocked: one line, as amavis's
    ("", "ESMTP", {"Passed": 1, "Clean passed": 1}),
    (DISCARD, "ESMTP", {"Blocked": 1, "Spam blocked": 1}),
    # one recipient deferred by the next hop, over LMTP (its own reply): amavis's %D
    # and %O, a Passed and a Blocked line, both MTA-BLOCKED (the message's category)
    ("tempfail", "LMTP", {"Passed": 1, "MTA passed": 1, "Blocked": 1, "MTA blocked": 1}),
    # over SMTP the message is deferred as a whole: every recipient on one Blocked line
    ("tempfail", "ESMTP", {"Blocked": 1, "MTA blocked": 1}),
])
def test_one_outcome_per_line_counts(sink, caplog, policy, protocol, counts):
    if policy == "tempfail":
        sink.behaviour.rcpt_reply = (
            lambda r: "451 4.3.0 try later" if r == "carol@example.test" else "250 2.1.5 Ok")
        policy = ""
    run(sink, policy, [], ["bob@example.test", "carol@example.test"],
        sender="alice@spam.example", protocol=protocol)
    lines = summaries(caplog)
    assert len(lines) == sum(n for k, n in counts.items() if k in ("Passed", "Blocked"))
    got = _counts(_report(lines))
    assert got == {"Total messages scanned": len(lines), **counts}, got
