"""Differential check of body text: what the rules' body view reads against what Python's
``email`` (policy.default) renders of the same message's text parts.

For each message, "ours" is the body view of :class:`scanner.rules.views.MessageView`
over the decoders' part tree (what body rules, URIBL's host finder and the rule-based
checks read), without its first line (the Subject). The reference walks the message with
``email.message_from_bytes(policy=policy.default)`` and takes every part that is not a
multipart container and whose main type is ``text`` (or a ``multipart/*`` Python could
not split, whose body Python keeps as text), skipping ``Content-Disposition:
attachment``; HTML is rendered with :func:`decoders.html_text.html_to_text` so both sides
use one renderer's idea of visible text. Both texts are compared as counts of words
(runs of letters and digits).

A message counts as

- ``empty``: ours has no word while the reference has at least ``--min-words``;
- ``short``: ours has less than ``--ratio`` of the reference's words (and the reference
  at least ``--min-words``).

Usage: python scripts/text_differential.py [--ratio 0.5] [--min-words 20] [--show N]
       PATH [PATH ...]
A PATH is a directory (read recursively) or a file. Prints the counts and the first N
offenders of each kind with both word counts. Exit status 0 always (a measurement).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import sys
from email.message import EmailMessage

from sa_corpus import messages

from decoders.html_text import html_to_text
from decoders.unpack import unpack
from scanner.rules.views import MessageView

_WORD = re.compile(r"\w+")


def our_words(raw: bytes) -> int:
    """Words in the rules' body view (Subject line left out)."""
    with unpack(raw) as result:
        view = MessageView(raw, result.parts)
        body = b"".join(view.body[1:]).decode("utf-8", "replace")
    return len(_WORD.findall(body))


def _part_text(part: EmailMessage) -> str:
    """The text Python's email gives for one leaf, HTML rendered; '' when none."""
    try:
        text = part.get_content()
    except (KeyError, LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        text = payload.decode("latin-1") if isinstance(payload, bytes) else ""
    if not isinstance(text, str):
        return ""
    return html_to_text(text) if part.get_content_subtype() == "html" else text


def reference_words(raw: bytes) -> int:
    """Words in Python email's (policy.default) rendering of the text parts."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        words = 0
        for part in msg.walk():
            if part.is_multipart():
                continue
            if part.get_content_maintype() not in ("text", "multipart"):
                continue
            if part.get_content_disposition() == "attachment":
                continue
            words += len(_WORD.findall(_part_text(part)))
        return words
    except Exception:  # Python's parser gave up: no reference for this one
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--min-words", type=int, default=20)
    ap.add_argument("--show", type=int, default=20)
    args = ap.parse_args(argv)
    total = 0
    empty: list[tuple[str, int, int]] = []
    short: list[tuple[str, int, int]] = []
    for path in messages(args.paths):
        raw = path.read_bytes()
        total += 1
        ref = reference_words(raw)
        if ref < args.min_words:
            continue
        ours = our_words(raw)
        if ours == 0:
            empty.append((str(path), ours, ref))
        elif ours < args.ratio * ref:
            short.append((str(path), ours, ref))
    print(f"messages: {total}; body text empty: {len(empty)}; "
          f"shorter than {args.ratio:g} x the reference: {len(short)}")
    for label, rows in (("empty", empty), ("short", short)):
        for name, ours, ref in rows[: args.show]:
            print(f"{label}\tours={ours}\treference={ref}\t{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
