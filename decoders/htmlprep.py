"""Markup prepared for ``html.parser`` so that crafted tag soup costs linear time.

``html.parser.HTMLParser`` searches for the end of a construct (``<!...>``, ``<?...>``,
``</...>``, an unterminated start tag, ``<!--...-->``) from every place one starts; when
the end is missing it falls back to treating the text as data and tries again at the
next ``<``. A megabyte of ``<!`` with no ``>`` after it was rendered in 6.9 s (quadratic:
every ``<!`` searched the rest of the document twice), ``<!-- >`` repeated likewise.

:func:`prepare` rewrites exactly those ``<`` that the parser would end up reading as
text into ``&lt;``, which the parser reads as the same text without searching:

* every ``<`` after the last ``>``: no construct can end there (each ends with ``>``);
* every ``<`` of a ``<!--`` that no comment end (``--`` then ``>``) follows, up to the
  next ``>``: the parser gives up on it and reads it as text through that ``>`` (an end
  tag ``</...>`` in there is left alone, so that ``</script>`` still ends a script: it
  is the one difference, such an end tag is no longer shown as text);
* every ``<`` that neither a letter nor ``/``, ``!`` or ``?`` follows: always text.

:func:`shorten_charrefs` (applied by :func:`prepare` too) writes a decimal character
reference of eight or more digits as ``&#1114112``, which decodes to the same U+FFFD:
``html.unescape`` turned one of more than 4,300 digits into a ValueError (Python's limit
on integer conversion), which failed the classifier (a tempfail) and stopped the
rules' rendering at that point.

``<![`` followed by a keyword html.parser does not know (``<![foo[``, ``<![ x``) made
it raise AssertionError, and the renderers lost the rest of the document: it is written
``<!_[``, which the parser reads as a comment up to the next ``>``, as browsers read it.

Otherwise the text, links and tags the renderers see are the same
(tests/decoders/test_decode_htmlprep.py compares them on generated markup).
"""

from __future__ import annotations

import re

_COMMENT_OPEN = "<!--"
_COMMENT_CLOSE = re.compile(r"--\s*>")  # html.parser's own comment end
_LONE_LT = re.compile(r"<(?![A-Za-z/!?])")
_NOT_END_TAG = re.compile(r"<(?!/)")
_LONG_DECIMAL_REF = re.compile(r"&#(\d{8,})")
_BEYOND_UNICODE = "1114112"  # 0x110000: decodes to U+FFFD, as any larger number does
# "<![" followed by anything but the marked-section keywords html.parser knows: it raises
# AssertionError there and the renderers lost the rest of the document (its text, links)
_BAD_MARKED_SECTION = re.compile(
    r"<!\[(?!(?:temp|cdata|ignore|include|rcdata|if|else|endif)(?![-_.a-zA-Z0-9]))", re.I)


def shorten_charrefs(html: str) -> str:
    """``html`` with each decimal character reference of 8 or more digits written with
    as few digits as decode to the same character (U+FFFD when its value is beyond
    Unicode, which eight significant digits always are)."""
    if "&#" not in html:
        return html
    return _LONG_DECIMAL_REF.sub(_shorter_ref, html)


def _shorter_ref(m: re.Match[str]) -> str:
    digits = m.group(1).lstrip("0") or "0"
    return "&#" + (digits if len(digits) < 8 else _BEYOND_UNICODE)


def prepare(html: str) -> str:
    """``html`` with the ``<`` the parser would read as text written as ``&lt;``."""
    html = shorten_charrefs(html)
    if "<![" in html:  # a browser reads it as a comment up to the next ">": so do we
        html = _BAD_MARKED_SECTION.sub("<!_[", html)
    last_gt = html.rfind(">")
    head, tail = html[: last_gt + 1], html[last_gt + 1 :]
    head = _unclosed_comments_as_text(head)
    return _LONE_LT.sub("&lt;", head) + tail.replace("<", "&lt;")


def _last_comment_end(html: str) -> int:
    """Where the last comment end starts (-1 if none): a comment opened after it has
    no end. Matches of ``--\\s*>`` cannot overlap, so the last one found is the last."""
    last = -1
    for m in _COMMENT_CLOSE.finditer(html):
        last = m.start()
    return last


def _unclosed_comments_as_text(html: str) -> str:
    """Each ``<!--`` that no comment end follows, through the next ``>``, with its ``<``
    but those of end tags written as ``&lt;`` (``html`` ends with ``>``)."""
    start = html.find(_COMMENT_OPEN)
    if start < 0:
        return html
    last_end = _last_comment_end(html)
    out: list[str] = []
    done = 0
    while start >= 0:
        if start + len(_COMMENT_OPEN) <= last_end:  # a comment end follows: parsed
            start = html.find(_COMMENT_OPEN, max(start + 1, last_end - 3))
            continue
        stop = html.find(">", start + 1) + 1  # always found: html ends with ">"
        out.append(html[done:start])
        out.append(_NOT_END_TAG.sub("&lt;", html[start:stop]))
        done = stop
        start = html.find(_COMMENT_OPEN, stop)
    out.append(html[done:])
    return "".join(out)
