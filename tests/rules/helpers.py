"""Small helpers for the rule engine tests."""

from __future__ import annotations

from scanner.rules.cfparser import read_text
from scanner.rules.compiler import RuleSet, compile_ruleset
from scanner.rules.engine import Result, evaluate
from scanner.rules.model import ParsedConfig
from scanner.rules.uris import text_uri_regex
from scanner.rules.views import MessageView, ViewLimits


def ruleset(text: str, use_hyperscan: bool = True) -> RuleSet:
    """Compile rules given as .cf text."""
    cfg = ParsedConfig()
    read_text(text.encode("utf-8").decode("latin-1"), "test.cf", cfg)  # as files are read
    return compile_ruleset(cfg, use_hyperscan=use_hyperscan)


def run(rs: RuleSet, raw: bytes, budget: float = 5.0, **limits: int) -> Result:
    view = MessageView(raw, uri_finder=text_uri_regex(rs.tlds), redirectors=rs.redirectors,
                       limits=ViewLimits(**limits) if limits else ViewLimits())
    return evaluate(rs, view, budget)


def names(result: Result) -> set[str]:
    return {h.name for h in result.hits}


def message(subject: str = "hello", body: str = "Hello there,\n\nhow are you?\n",
            headers: str = "", ctype: str = "text/plain; charset=us-ascii") -> bytes:
    return (f"From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: {subject}\n"
            f"Date: Tue, 14 Jan 2025 10:21:07 +0100\nMessage-ID: <1@example.org>\n"
            f"Content-Type: {ctype}\n{headers}\n{body}").encode()
