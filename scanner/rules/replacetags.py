"""The ReplaceTags plugin's template expansion for the rules named in ``replace_rules``.

In a listed rule's pattern, ``<NAME>`` (with the configured start and end strings) is
replaced by the ``replace_tag`` text; ``<pre X>``, ``<post X>`` and ``<inter X>``
markers put the named ``replace_pre`` text before every tag, the ``replace_post``
text after every tag and the ``replace_inter`` text between two adjacent tags.
Expansion repeats (at most 5 more times) while a replacement introduces new tags.
"""

from __future__ import annotations

import re

from scanner.rules.model import ParsedConfig

MAX_PASSES = 6


def expand(pattern: str, cfg: ParsedConfig) -> str:
    """``pattern`` with the configured tags replaced."""
    start, end = re.escape(cfg.replace_start), re.escape(cfg.replace_end)
    marker = {kind: re.compile(f"{start}{kind} (.+?){end}") for kind in ("pre", "post", "inter")}
    tag = re.compile(f"({start}[^<>]+?{end})")
    name_of = re.compile(f"{start}(.+?){end}")
    text = pattern
    for _ in range(MAX_PASSES):
        names: dict[str, str | None] = {}
        for kind, rx in marker.items():
            m = rx.search(text)
            names[kind] = m.group(1) if m else None
            if m:
                text = text[:m.start()] + text[m.end():]
        pieces = tag.split(text)
        pre = cfg.replace_pre.get(names["pre"] or "", "")
        post = cfg.replace_post.get(names["post"] or "", "")
        inter = cfg.replace_inter.get(names["inter"] or "", "")
        again = False
        out: list[str] = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                # text between two tags: empty means the tags are adjacent
                if piece == "" and inter and 0 < i < len(pieces) - 1:
                    out.append(inter)
                else:
                    out.append(piece)
                continue
            m = name_of.fullmatch(piece)
            replacement = cfg.replace_tags.get(m.group(1)) if m else None
            if replacement is None:
                out.append(pre + piece + post if (pre or post) else piece)
                continue
            again = again or bool(re.search(f"{start}[^{end}]+{end}", replacement))
            out.append(pre + replacement + post)
        text = "".join(out)
        if not again:
            break
    return text
