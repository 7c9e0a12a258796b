"""No mail lost while filter processes and clamd are killed at random (bench/chaos).

Corpus mail flows through a real Postfix and the filter with every check on (private
NSD and clamd) while workers, the master, the whole filter and clamd are killed with
SIGKILL at random and started again, the next hop (Postfix's reinjection smtpd) is
killed mid-transaction, workers and clamd are frozen for seconds, and workers hang
for longer than the watchdog allows (the master must kill them). Every message must
end up in the Maildir. Also with the filter before queue (Postfix's smtpd_proxy_filter),
where a 4xx leaves the message with the sender, which tries again.
Duplicates can only come from SMTP's own window (the next hop had the message, our 250
had not reached Postfix): they are counted and bounded by what was in flight, and
printed (pytest -s) for the record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from scanner.testing.clamd import clamd_binary
from scanner.testing.dns_server import find_nsd
from tests.helpers import REPO

CORPUS = REPO.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"
CONCURRENCY = 20  # the test stack's filter maxproc: transactions in flight at most

pytestmark = [
    pytest.mark.corpora, pytest.mark.postfix, pytest.mark.slow,
    pytest.mark.skipif(not CORPUS.exists(),
                       reason=f"{CORPUS} is missing: the soak reads ../shared/corpora"),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("postfix") or find_nsd() is None,
                       reason="needs root, postfix and nsd"),
]


@pytest.mark.parametrize("protocol, recipients, wiring", [
    ("smtp", 1, "after-queue"), ("lmtp", 3, "after-queue"),
    ("smtp", 1, "before-queue"),  # behind smtpd_proxy_filter: the sender retries a 4xx
])
def test_random_kills_lose_no_message(protocol: str, recipients: int, wiring: str) -> None:
    args = [sys.executable, "bench/chaos/run.py", "-n", "400", "--seconds", "12",
            "--seed", "89", "--drain-timeout", "240", "--protocol", protocol,
            "--recipients", str(recipients), "--wiring", wiring, "--json"]
    if clamd_binary() is None:
        args.append("--no-clamav")
    run = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.stdout.strip(), run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print("chaos soak:", result["events"], "duplicates", result["duplicates"])
    kills = sum(n for what, n in result["events"].items()
                if "killed" in what and not what.startswith("clamd"))
    assert kills >= 3, result["events"]  # the chaos happened
    assert not any("NOT KILLED" in what for what in result["events"]), result["events"]
    assert result["missing"] == [] and result["delivered"] == 400 * recipients, result
    assert run.returncode == 0
    assert result["duplicates"] <= kills * CONCURRENCY, result
    assert sum(result["categories"].values()) >= 400  # every message was analysed
