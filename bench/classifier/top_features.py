#!/usr/bin/env python3
"""List a model's strongest features with the tokens that hash to them (leak audit).

Hashing is one-way, so tokens are recovered by re-extracting a mail collection and
recording which token produced each bucket. Used to check that no corpus artefact
(collector hosts, mailbox-tool headers, dates) carries weight; see models/README.md.

    .venv/bin/python bench/classifier/top_features.py --model models/default.model \\
        --mail /tmp/sa/ham /tmp/sa/spam [--top 40]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scanner.ml import tokens as tk  # noqa: E402
from scanner.ml.features import _DIGITS, _WORDS, Extractor  # noqa: E402
from scanner.ml.hashing import bucket, hash_char_ngrams, hash_tokens  # noqa: E402
from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.ml.model import load_model  # noqa: E402
from scanner.ml.text import message_text  # noqa: E402


def token_map(ex: Extractor, paths: list[str], limit: int) -> dict[int, Counter[str]]:
    """Bucket -> which readable tokens landed there (and how often)."""
    s = ex.settings
    seen: dict[int, Counter[str]] = defaultdict(Counter)

    def add(block: str, items: list[str], hashes: np.ndarray) -> None:
        for item, b in zip(items, bucket(hashes, s.hash_bits).tolist(), strict=True):
            seen[b][f"{block}:{item}"] += 1

    count = 0
    for path in paths:
        for _, raw in iter_messages(path):
            count += 1
            if count > limit:
                return seen
            mt = message_text(raw, s.limits)
            client, relays = tk.client_and_relays(mt, s.internal_hosts, None, None)
            header_list = ex._keep(list(tk.header_tokens(mt)) + list(tk.part_tokens(mt))
                                   + list(tk.alignment_tokens(mt, client)))
            add("headers", header_list, hash_tokens(header_list, "h"))
            rec = ex._keep(tk.received_tokens(client, relays))
            add("received", rec, hash_tokens(rec, "r"))
            urls = ex._keep(tk.url_tokens(mt.urls))
            add("urls", urls, hash_tokens(urls, "u"))
            subject = " ".join(ex._clean(mt.header("subject")).split()).translate(_DIGITS)
            subj = ex._keep(tk.subject_tokens(subject))
            add("subject", subj, hash_tokens(subj, "s"))
            body = ex._clean(mt.body_text[: s.max_text_chars * 2].lower())
            body = " ".join(body.split())[: s.max_text_chars].translate(_DIGITS)
            words = _WORDS.findall(body)
            add("words", words, hash_tokens(words, "w"))
            grams = [body[i : i + s.char_ngram] for i in range(len(body) - s.char_ngram + 1)]
            add("chars", grams, hash_char_ngrams(body, s.char_ngram, "c"))
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--mail", nargs="+", required=True, help="mail to recover tokens from")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--limit", type=int, default=100000, help="messages to read at most")
    parser.add_argument("--grep", help="only show buckets whose tokens match this regex")
    args = parser.parse_args()
    model = load_model(args.model)
    seen = token_map(model.extractor, args.mail, args.limit)
    order = np.argsort(model.weights)
    pattern = re.compile(args.grep) if args.grep else None
    for title, indices in (("spam", order[::-1]), ("ham", order)):
        print(f"--- strongest {title} features")
        shown = 0
        for index in indices.tolist():
            names = seen.get(index)
            if not names:
                continue
            label = ", ".join(f"{n!r}" for n, _ in names.most_common(3))
            if pattern and not pattern.search(label):
                continue
            print(f"{model.weights[index]:+.3f}  {label}")
            shown += 1
            if shown >= args.top:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
