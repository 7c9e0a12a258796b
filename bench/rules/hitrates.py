"""How often each shipped rule hits ham and spam of a labelled corpus, with its score.

A rule that hits ham at least as often as spam but carries a positive score adds to the
score of good mail: this lists every reported rule with its hit rate on each side,
SpamAssassin's S/O ratio (spam rate / (spam rate + ham rate); 1.0 = only spam) and its
shipped score, rarest-S/O first, so such rules stand out. Reads the SpamAssassin public
corpus by default (all of it, about 6 s); any ham and spam folders or mailboxes work.

    .venv/bin/python bench/rules/hitrates.py
    .venv/bin/python bench/rules/hitrates.py --ham ~/Maildir/.Ham --spam ~/Maildir/.Junk
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.rules.engine import evaluate  # noqa: E402
from scanner.rules.loader import load_rules  # noqa: E402
from scanner.rules.uris import text_uri_regex  # noqa: E402
from scanner.rules.views import MessageView  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"


def count_hits(paths: list[str]) -> tuple[int, collections.Counter[str]]:
    """Messages read and, per rule, how many of them it hit."""
    rs = load_rules([], shipped=True)
    finder = text_uri_regex(rs.tlds)
    hits: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for _name, raw in iter_messages(path):
            if raw.startswith(b"From "):  # mbox separator line
                raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
            view = MessageView(raw, uri_finder=finder, redirectors=rs.redirectors)
            hits.update({h.name for h in evaluate(rs, view, 5.0).hits})
            total += 1
    return total, hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ham", nargs="+", default=[f"{CORPUS}#spamassassin-public/ham"])
    ap.add_argument("--spam", nargs="+", default=[f"{CORPUS}#spamassassin-public/spam"])
    args = ap.parse_args()
    n_ham, ham = count_hits(args.ham)
    n_spam, spam = count_hits(args.spam)
    if not n_ham or not n_spam:
        print("no ham or no spam messages read", file=sys.stderr)
        return 1
    scores = load_rules([], shipped=True).scores()
    print(f"{n_ham} ham, {n_spam} spam")
    print(f"{'rule':<28} {'ham %':>7} {'spam %':>7} {'S/O':>6} {'score':>6}")
    rows = []
    for name in sorted(scores):
        h, s = ham[name] / n_ham * 100, spam[name] / n_spam * 100
        rows.append((s / (h + s) if h + s else float("nan"), name, h, s))
    for so, name, h, s in sorted(rows, key=lambda r: (r[0] != r[0], r[0], r[1])):
        print(f"{name:<28} {h:7.2f} {s:7.2f} {so:6.3f} {scores[name]:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
