#!/usr/bin/env python3
"""Does the classifier judge the words, or the way a message is packaged?

The SpamAssassin corpus is from 2002-2005: its ham is mostly plain 7-bit text, while
much of its spam came as HTML, base64 or in other charsets. Today's mail clients send
UTF-8, often base64 or quoted-printable, usually with an HTML alternative, whoever
writes. A model that learnt the packaging instead of the content will call today's
ham spam. This benchmark measures that directly: it trains on the corpus's older
folders (as ``cross_period.py``), takes the later folders' messages that are a single
``text/plain`` part, and re-packages each one without changing a word:

* ``utf8-base64``: the same text as UTF-8, base64 (what many clients pick for
  non-Latin text),
* ``utf8-qp``: the same text as UTF-8, quoted-printable,
* ``html-alternative``: ``multipart/alternative`` with the text and an HTML version of
  it (paragraphs, links), as mail clients send by default.

``original`` is the same text re-written by the same code as 7-bit ``us-ascii`` (8-bit
UTF-8 when it is not ASCII), so the forms differ only in their packaging.

For each form it prints, over the same messages, the mean spam probability of ham and
of spam, the shares at 0.9 or above, and (1-ROCA)%, next to the original form.

    .venv/bin/python bench/classifier/format_shift.py [--features TOML] [--json OUT]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from cross_period import extract_groups  # noqa: E402
from run import SETTINGS, accuracy, add_common_options, corpus_missing  # noqa: E402

from scanner.ml.config_file import load_settings_file  # noqa: E402
from scanner.ml.corpus import read_corpus  # noqa: E402
from scanner.ml.model import Model  # noqa: E402
from scanner.ml.text import strip_mbox_from  # noqa: E402
from scanner.ml.train import fit_model  # noqa: E402

_URL = re.compile(r"https?://[^\s<>\"']+")
_CONTENT_HEADERS = ("content-type", "content-transfer-encoding", "mime-version",
                    "content-disposition")


def plain_text(raw: bytes) -> tuple[bytes, str] | None:
    """(header block without its MIME fields, text) when the message is one text/plain
    part that decodes cleanly; None otherwise."""
    raw = strip_mbox_from(raw).replace(b"\r\n", b"\n")
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        if msg.is_multipart() or msg.get_content_type() != "text/plain" or msg.defects:
            return None
        text = msg.get_content()
    except Exception:  # noqa: BLE001 - any oddity: the message is simply not used
        return None
    if not isinstance(text, str) or not text.strip():
        return None
    head = raw.split(b"\n\n", 1)[0] + b"\n"
    return _without_mime_fields(head), text


def _without_mime_fields(head: bytes) -> bytes:
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        dropping = name in _CONTENT_HEADERS
        if not dropping:
            kept.append(line)
    return b"".join(kept)


def _with_head(head: bytes, part: EmailMessage) -> bytes:
    """The original header block, then the new part's MIME fields and body."""
    return head + part.as_bytes(policy=policy.default.clone(linesep="\n"))


def utf8(cte: str) -> Callable[[bytes, str], bytes]:
    def transform(head: bytes, text: str) -> bytes:
        part = EmailMessage()
        part.set_content(text, charset="utf-8", cte=cte)
        return _with_head(head, part)
    return transform


def html_alternative(head: bytes, text: str) -> bytes:
    part = EmailMessage()
    part.set_content(text, charset="utf-8", cte="quoted-printable")
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    body = "\n".join(
        "<p>" + _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>',
                         html.escape(p, quote=False)).replace("\n", "<br>\n") + "</p>"
        for p in paragraphs)
    part.add_alternative(f"<html><body>\n{body}\n</body></html>\n", subtype="html",
                         charset="utf-8", cte="quoted-printable")
    return _with_head(head, part)


def original(head: bytes, text: str) -> bytes:
    part = EmailMessage()
    part.set_content(text, charset="us-ascii" if text.isascii() else "utf-8",
                     cte="7bit" if text.isascii() else "8bit")
    return _with_head(head, part)


FORMS: dict[str, Callable[[bytes, str], bytes]] = {
    "original": original,
    "utf8-base64": utf8("base64"),
    "utf8-qp": utf8("quoted-printable"),
    "html-alternative": html_alternative,
}


def _messages(dirs: Sequence[Path]) -> list[bytes]:
    return [p.read_bytes() for d in dirs for p in sorted(d.iterdir())]


def figures(model: Model, ham: list[bytes], spam: list[bytes]) -> dict[str, float]:
    scores = np.array([model.score_message(raw) for raw in ham + spam])
    labels = np.array([0] * len(ham) + [1] * len(spam))
    result = accuracy(labels, scores)
    for name, label in (("ham", 0), ("spam", 1)):
        part = scores[labels == label]
        result[f"{name}_mean"] = float(part.mean())
        result[f"{name}_at_0.9"] = float(np.mean(part >= 0.9) * 100)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser)
    parser.add_argument("--features", type=Path, default=SETTINGS,
                        help="scanner's feature and trainer settings (default: the shipped)")
    args = parser.parse_args(argv)
    if corpus_missing(args):
        return 1
    settings, options = load_settings_file(args.features)
    with tempfile.TemporaryDirectory(prefix="bench-format-shift-") as tmp:
        dirs = extract_groups(Path(args.corpus), Path(tmp) / "corpus")
        started = time.perf_counter()
        corpus = read_corpus([str(dirs["easy_ham"]), str(dirs["hard_ham"])],
                             [str(dirs["spam"])], settings, jobs=args.jobs)
        model = fit_model(corpus, settings, options)
        print(f"trained on {corpus.labels.size} older messages in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
        pools = {"ham": _messages([dirs["easy_ham_2"]]), "spam": _messages([dirs["spam_2"]])}
    usable = {kind: [p for p in map(plain_text, raws) if p is not None]
              for kind, raws in pools.items()}
    results: dict[str, dict[str, float]] = {}
    for form, transform in FORMS.items():
        sets = {kind: [transform(head, text) for head, text in items]
                for kind, items in usable.items()}
        results[form] = figures(model, sets["ham"], sets["spam"])
    print(f"later single-text/plain messages: {len(usable['ham'])} ham of "
          f"{len(pools['ham'])}, {len(usable['spam'])} spam of {len(pools['spam'])}")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


def table(results: dict[str, dict[str, float]]) -> str:
    rows = ["| form | ham mean p | ham >= 0.9 | spam mean p | spam >= 0.9 | (1-ROCA)% |",
            "|---|---:|---:|---:|---:|---:|"]
    for form, f in results.items():
        rows.append(f"| {form} | {f['ham_mean']:.3f} | {f['ham_at_0.9']:.2f}% | "
                    f"{f['spam_mean']:.3f} | {f['spam_at_0.9']:.1f}% | "
                    f"{f['one_minus_roca_pct']:.4f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
