"""Split a SpamAssassin rule's delimited regex: ``/re/flags`` or ``m{re}flags``.

Any ``m`` delimiter works (``m!..!``, ``m#..#``, bracket pairs nest); an escaped
delimiter inside the pattern is unescaped when it is not ``/``, as Perl does.
"""

from __future__ import annotations

FLAG_CHARS = frozenset("imsxnpogcadlu")


def split_delimited(text: str) -> tuple[str, str, str]:
    """``/re/flags`` or ``m{re}flags`` -> (pattern, flags, rest of the line).

    Raises ValueError when the text is not a delimited regex.
    """
    text = text.lstrip()
    if not text:
        raise ValueError("missing regular expression")
    i = 0
    if text[0] == "m" and len(text) > 1 and not text[1].isalnum() and not text[1].isspace():
        i = 1
    elif text[0] != "/":
        raise ValueError(f"expected /pattern/ or m{{pattern}}, got {text[:20]!r}")
    opener = text[i]
    closer = {"{": "}", "(": ")", "[": "]", "<": ">"}.get(opener, opener)
    depth = 0
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            j += 2
            continue
        if closer != opener and c == opener:
            depth += 1
        elif c == closer:
            if depth == 0:
                break
            depth -= 1
        j += 1
    else:
        raise ValueError("unterminated regular expression")
    pattern = text[i + 1:j]
    if closer == opener and opener != "/":
        pattern = pattern.replace("\\" + opener, opener)
    k = j + 1
    while k < len(text) and text[k].isalpha():
        k += 1
    flags = text[j + 1:k]
    bad = set(flags) - FLAG_CHARS
    if bad:
        raise ValueError(f"unknown regex modifier {''.join(sorted(bad))!r}")
    return pattern, flags, text[k:]
