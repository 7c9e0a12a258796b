"""A part that names itself more than once is banned by any of its names.

Mail readers disagree on which name counts when an entity declares several: Outlook,
Thunderbird and webmail pick Content-Type ``name=`` or Content-Disposition
``filename=``, the plain ``filename=`` or the RFC 2231 ``filename*=``, the first or the
last of a repeated header. Windows drops trailing dots and spaces when it saves a file,
and C readers stop at a NUL. Each message here hides ``invoice.js`` behind a harmless
first name; the banned-file rules must still find it.
"""

from __future__ import annotations

import pytest

from decoders import unpack
from scanner.banned import find_banned

BODY = "dmFyIHM9MTsK"  # base64 of a one-line script


def entity(headers: str) -> bytes:
    return (
        "From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        f"--B\r\n{headers}Content-Transfer-Encoding: base64\r\n\r\n{BODY}\r\n--B--\r\n"
    ).encode()


CASES = {
    "content-type name": 'Content-Type: application/pdf; name="invoice.js"\r\n'
                         'Content-Disposition: attachment; filename="invoice.pdf"\r\n',
    "filename and filename*": "Content-Type: application/pdf\r\n"
                              "Content-Disposition: attachment; filename=\"invoice.pdf\"; "
                              "filename*=utf-8''invoice.js\r\n",
    "repeated header": "Content-Type: application/pdf\r\n"
                       'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
                       'Content-Disposition: attachment; filename="invoice.js"\r\n',
    "repeated parameter": "Content-Type: application/pdf\r\n"
                          'Content-Disposition: attachment; filename="invoice.pdf"; '
                          'filename="invoice.js"\r\n',
    "unparsable mix of 2231 forms": "Content-Type: application/pdf\r\n"
                                    "Content-Disposition: attachment; filename=\"a.pdf\"; "
                                    "filename*=utf-8''invoice.js; filename*0*=utf-8''b\r\n",
    "trailing dot": 'Content-Type: application/pdf\r\n'
                    'Content-Disposition: attachment; filename="invoice.js."\r\n',
    "trailing dots and spaces": 'Content-Type: application/pdf\r\n'
                                'Content-Disposition: attachment; filename="invoice.js. . "\r\n',
    "NUL": "Content-Type: application/pdf\r\n"
           "Content-Disposition: attachment; filename*=utf-8''invoice.js%00.pdf\r\n",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_declared_name_is_checked(case: str) -> None:
    with unpack(entity(CASES[case])) as result:
        hits = find_banned(result.parts)
        assert [h.symbol for h in hits] == ["BANNED_FILE"], (case, result.parts[2].name)


def test_aliases_keep_the_first_name_as_the_part_name() -> None:
    with unpack(entity(CASES["content-type name"])) as result:
        part = result.parts[2]
        assert part.name == "invoice.pdf"
        assert part.aliases == ("invoice.js",)


def test_one_name_declared_twice_is_no_alias() -> None:
    headers = ('Content-Type: application/pdf; name="report.pdf"\r\n'
               'Content-Disposition: attachment; filename="report.pdf"\r\n')
    with unpack(entity(headers)) as result:
        assert result.parts[2].aliases == ()
        assert find_banned(result.parts) == []
