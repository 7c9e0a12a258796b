"""The milter header operations of :mod:`scanner.actions.milter`, applied as Postfix
applies them (a field's index counts the fields of that name, case ignored, from 1)."""

from __future__ import annotations

from scanner.actions.milter import deletions
from scanner.headerfields import named


def _apply_deletions(raw: bytes, ops: list[tuple[str, tuple[str, ...]]]) -> bytes:
    """Postfix's delheader: the INDEX-th field called NAME (any case), one op at a time."""
    for op, (index, name) in ops:
        assert op == "delheader"
        found = named(raw, (name,))
        if int(index) <= len(found):
            field = found[int(index) - 1]
            raw = raw[:field.start] + raw[field.end:]
    return raw


def test_deletions_of_fields_whose_names_differ_in_case() -> None:
    raw = (b"X-Spam-Flag: YES\r\nFrom: a@example.org\r\nx-spam-flag: YES\r\n"
           b"Subject: hi\r\n\r\nbody\r\n")
    fields = named(raw, ("X-Spam-Flag",))
    ops = deletions(raw, [(f.start, f.end) for f in fields])
    assert _apply_deletions(raw, ops) == b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def test_deletions_keep_the_fields_not_named() -> None:
    raw = (b"X-Spam-Flag: YES\r\nX-Spam-Flag: NO\r\nX-SPAM-FLAG: MAYBE\r\n"
           b"Subject: hi\r\n\r\nbody\r\n")
    second = named(raw, ("X-Spam-Flag",))[1]
    ops = deletions(raw, [(second.start, second.end)])
    assert _apply_deletions(raw, ops) == (b"X-Spam-Flag: YES\r\nX-SPAM-FLAG: MAYBE\r\n"
                                          b"Subject: hi\r\n\r\nbody\r\n")
