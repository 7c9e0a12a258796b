"""Differential of ``scanner rules test`` against the daemon's rules check.

For every message this compares the symbols, with their points, of

- the command: ``scanner rules test --json FILE`` (run in this process through
  :func:`scanner.cli.main`; the rule set is read once, not once per message): each
  rule hit's score times its count, BAD-HEADER symbols, ``RULES_TIMEOUT``;
- the daemon: the rules check inside a real :class:`~scanner.pipeline.processor.Processor`
  (parse, unpack and check stages of ``scanner serve``, no SMTP), with only the rules
  check enabled: the hits it adds, weighted by the score table.

Both read the same configuration (``--config``; default: the shipped defaults) and the
same bytes; the envelope sender is null unless ``--sender`` gives one (it is passed
to the command as ``--sender`` only then, so an older checkout without that option
runs too); ``--crlf`` turns bare LF line ends into CRLF first, as Postfix hands a
message over.

The inputs are message files and directories (read recursively), and members of
``.tar``/``.tar.xz`` archives: ``--every N`` takes every Nth message file of an
archive (default 20; the ``cmds`` files of the SpamAssassin corpus are not messages).
With no input it reads ``corpora/`` and every 20th message of
``../shared/corpora/spamassassin-public.tar.xz`` (when it exists).

Usage::

    PYTHONPATH=. .venv/bin/python scripts/cli_differential.py [--config F]
        [--sender ADDR] [--crlf] [--every N] [--show N] [PATH...]

The script runs against whichever checkout is on ``PYTHONPATH`` (an older one too), so
counts before and after a change come from the same script. It prints each differing
message (up to ``--show``, default 20) with the symbols only one side has or that score
differently, then the counts. Exit status 1 when a message differs, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sa_corpus, also when imported

from sa_corpus import messages  # noqa: E402

import scanner.cli.rules_cmd as rules_cmd  # noqa: E402
from scanner.checks.base import CheckContext  # noqa: E402
from scanner.cli import main  # noqa: E402
from scanner.config import Config, load  # noqa: E402
from scanner.mailid import new_mail_id  # noqa: E402
from scanner.pipeline.processor import Listener, Processor  # noqa: E402
from scanner.registry import build_checks  # noqa: E402
from scanner.reinject.deliver import NextHop  # noqa: E402
from scanner.scores import ScoreTable, load_scores  # noqa: E402
from scanner.task import Envelope, Recipient, Task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"
Symbols = dict[str, float]
RULES_SOURCES = ("rules", "bad_header")  # the check's hits; BAD-HEADER ones name their own


async def _inline(func: Any, *args: Any) -> Any:
    return func(*args)


class Daemon:
    """The rules check as ``scanner serve`` runs it: a Processor with only that check."""

    def __init__(self, config: Config) -> None:
        checks = dataclasses.replace(config.checks, enabled=("rules",), disabled=())
        self.config = dataclasses.replace(config, checks=checks)
        self.scores: ScoreTable = load_scores(config.checks.score_files)
        built = build_checks(self.config, CheckContext(config=self.config, run_cpu=_inline))
        hop = NextHop.from_config(config.reinject, "localhost")
        self.processor = Processor(self.config, built, self.scores, hop, "localhost",
                                   run_cpu=_inline)
        self.loop = asyncio.new_event_loop()

    def symbols(self, raw: bytes, sender: str = "") -> Symbols:
        task = Task(mail_id=new_mail_id(), raw=raw, log_id="differential",
                    envelope=Envelope(sender, (Recipient("rcpt@example.test"),)))
        self.loop.run_until_complete(
            self.processor.analyse(task, Listener(10024, "ESMTP", "")))
        out: Symbols = {}
        for h in task.hits:
            if h.source in RULES_SOURCES:
                points = self.scores.get(h.symbol).weight * h.factor
                out[h.symbol] = round(out.get(h.symbol, 0.0) + points, 3)
        return out

    def close(self) -> None:
        self.loop.close()


class Command:
    """``scanner rules test --json``, in this process, its rule set read once."""

    def __init__(self, config_path: str, sender: str = "") -> None:
        self.config_path, self.sender = config_path, sender
        self.scores = load_scores(load(config_path).checks.score_files)
        self._read = read = rules_cmd.load_rules
        cache: dict[str, Any] = {}

        def load_once(*args: Any, **kw: Any) -> Any:
            key = repr((args, sorted(kw.items())))
            if key not in cache:
                cache[key] = read(*args, **kw)
            return cache[key]

        rules_cmd.load_rules = load_once  # type: ignore[assignment]

    def close(self) -> None:
        rules_cmd.load_rules = self._read  # type: ignore[assignment]

    def symbols(self, raw: bytes) -> Symbols:
        with tempfile.NamedTemporaryFile(suffix=".eml") as fh:
            fh.write(raw)
            fh.flush()
            argv = ["rules", "test", "--json", "--config", self.config_path, fh.name]
            if self.sender:
                argv += ["--sender", self.sender]
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main(argv)
        if status != 0:
            raise RuntimeError(f"scanner rules test exited {status}")
        data = json.loads(out.getvalue())
        symbols: Symbols = {}
        for h in data["hits"]:
            symbols[h["rule"]] = round(h["score"] * h["count"], 3)
        for b in data["bad_header"]:
            symbols[b["symbol"]] = round(self.scores.get(b["symbol"]).weight, 3)
        if data.get("timed_out"):
            symbols["RULES_TIMEOUT"] = round(self.scores.get("RULES_TIMEOUT").weight, 3)
        return symbols


def difference(command: Symbols, daemon: Symbols) -> list[str]:
    """One line per symbol the two sides disagree on ("" when they agree)."""
    out = []
    for name in sorted(set(command) | set(daemon)):
        a, b = command.get(name), daemon.get(name)
        if a == b:
            continue
        if a is None:
            out.append(f"  daemon only:  {name}={b:g}")
        elif b is None:
            out.append(f"  command only: {name}={a:g}")
        else:
            out.append(f"  scores differ: {name} command {a:g}, daemon {b:g}")
    return out


def inputs(paths: list[str], every: int) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of each message: files, and every ``every``th message file of a
    tar archive."""
    for top in paths:
        if re.search(r"\.tar(\.\w+)?$", top) and Path(top).is_file():
            yield from _tar_sample(top, every)
            continue
        for path in messages([top]):
            yield str(path), path.read_bytes()


def _tar_sample(archive: str, every: int) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(archive) as tf:
        index = 0
        for info in tf:
            if not info.isfile() or info.name.endswith("/cmds"):
                continue
            index += 1
            if (index - 1) % every:
                continue
            fh = tf.extractfile(info)
            if fh is not None:
                yield f"{archive}#{info.name}", fh.read()


def compare(paths: list[str], config_path: str, sender: str = "", crlf: bool = False,
            every: int = 20) -> Iterator[tuple[str, list[str]]]:
    """(name, differences) for each message, in order."""
    command = Command(config_path, sender)
    daemon = Daemon(load(config_path))
    try:
        for name, raw in inputs(paths, every):
            if crlf:
                raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
            yield name, difference(command.symbols(raw), daemon.symbols(raw, sender))
    finally:
        command.close()
        daemon.close()


def run(args: argparse.Namespace) -> int:
    paths = args.paths or [str(ROOT / "corpora")] + ([str(SHARED)] if SHARED.exists() else [])
    with tempfile.TemporaryDirectory() as tmp:
        config_path = args.config
        if config_path is None:
            config_path = str(Path(tmp) / "defaults.toml")
            Path(config_path).write_text("")
        seen = differing = 0
        for name, lines in compare(paths, config_path, args.sender, args.crlf, args.every):
            seen += 1
            if lines:
                differing += 1
                if differing <= args.show:
                    print(name, *lines, sep="\n")
    print(f"{differing} of {seen} messages differ (inputs: {', '.join(paths)})")
    return 1 if differing else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="message files, directories, tar archives")
    p.add_argument("--config", help="configuration both sides read (default: defaults)")
    p.add_argument("--sender", default="", help="envelope sender (default: null)")
    p.add_argument("--crlf", action="store_true", help="bare LF line ends become CRLF")
    p.add_argument("--every", type=int, default=20, help="every Nth member of an archive")
    p.add_argument("--show", type=int, default=20, help="differing messages printed")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse_args()))
