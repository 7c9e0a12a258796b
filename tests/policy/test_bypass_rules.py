"""bypass_spam_checks and bypass_header_checks with the real rules check.

The rules check emits two kinds of hits: SpamAssassin-style rule hits (spam scores) and
amavis's BAD-HEADER findings. amavis does not call SpamAssassin at all for a recipient
with ``bypass_spam_checks``, and does not check the header section for one with
``bypass_header_checks``; each flag must drop exactly its half for that recipient only,
in one message with several recipients. (The policy tests elsewhere use stand-in checks
that declare their kind; this one runs the shipped check, so a check that forgets to
declare its kind is caught.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from decoders.registry import load_decoders
from scanner import config as cfgmod
from scanner.checks.base import CheckContext
from scanner.mailid import new_mail_id
from scanner.pipeline.processor import Listener, Processor
from scanner.registry import build_checks
from scanner.reinject.deliver import NextHop
from scanner.scores import load_scores
from scanner.task import Envelope, Recipient, Task

# A control character in the Subject (BAD-HEADER) and no Date or Message-ID (rule hits)
RAW = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: free \x01 money\r\n\r\n"
       b"Buy now!!! Click here http://example.com/\r\n")
RCPTS = ("spam@example.test", "head@example.test", "plain@example.test")


def _verdicts(tmp_path: Path) -> dict[str, Any]:
    text = (f'[checks]\nenabled = ["rules"]\n[quarantine]\ndirectory = "{tmp_path / "q"}"\n'
            'ampdp_socket = ""\n'
            '[policy.recipients."spam@example.test"]\nbypass_spam_checks = true\n'
            '[policy.recipients."head@example.test"]\nbypass_header_checks = true\n')
    config = cfgmod.loads(text, str(tmp_path / "scanner.toml"))

    async def run_cpu(func: Any, *args: Any) -> Any:  # CPU stages inline
        return func(*args)

    checks = build_checks(config, CheckContext(config=config, run_cpu=run_cpu))
    processor = Processor(config, checks, load_scores(config.checks.score_files),
                          NextHop.from_config(config.reinject, "localhost"), "localhost",
                          run_cpu=run_cpu, decoders=load_decoders())
    task = Task(mail_id=new_mail_id(), raw=RAW, log_id="t",
                envelope=Envelope("a@example.org", tuple(Recipient(a) for a in RCPTS)))
    unpacked = asyncio.run(processor.analyse(task, Listener(0, "ESMTP", "")))
    if unpacked is not None:
        unpacked.close()
    return task.verdicts


def test_each_bypass_flag_drops_its_own_half_of_the_rules_check(tmp_path: Path) -> None:
    verdicts = _verdicts(tmp_path)
    plain = verdicts["plain@example.test"]
    rule_hits = {h.symbol for h in plain.hits if h.source == "rules"}
    assert rule_hits, "the message should hit some rule for this test to mean anything"
    assert "BAD-HEADER" in plain.categories

    spam = verdicts["spam@example.test"]  # no rule hits, no score from them
    assert not {h.symbol for h in spam.hits} & rule_hits
    assert spam.score < plain.score
    assert "BAD-HEADER" in spam.categories  # header checks still ran for this one

    head = verdicts["head@example.test"]  # rule hits kept, BAD-HEADER gone
    assert rule_hits <= {h.symbol for h in head.hits}
    assert "BAD-HEADER" not in head.categories
    assert head.score == plain.score
