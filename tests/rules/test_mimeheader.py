"""mimeheader rules: every leaf's fields, ALL as each leaf's whole header text."""

from __future__ import annotations

from .helpers import message, names, ruleset, run

BODY = ("--XX\nContent-Type: text/plain; charset=utf-8\n\nhello\n"
        "--XX\nContent-Type: application/octet-stream; name=\"a.exe\"\n"
        "Content-Disposition: attachment; filename=\"a.exe\"\n\nMZ\n--XX--\n")


def test_all_rules_read_each_leaf_s_fields() -> None:
    rs = ruleset(r"""
mimeheader M_ALL_EXE   ALL =~ /filename="a\.exe"/
mimeheader M_ALL_UTF8  ALL =~ /charset=utf-8/
mimeheader M_ALL_BOTH  ALL =~ /charset=utf-8.*a\.exe/s
mimeheader M_ALL_NONE  ALL =~ /zzz/
mimeheader M_CT_PLAIN  Content-Type =~ /^text\/plain/
mimeheader M_CD_EXE    Content-Disposition =~ /a\.exe/
""", use_hyperscan=False)
    raw = message(body=BODY, ctype='multipart/mixed; boundary="XX"')
    # BOTH needs one leaf's text to hold both: no leaf does
    assert names(run(rs, raw)) == {"M_ALL_EXE", "M_ALL_UTF8", "M_CT_PLAIN", "M_CD_EXE"}
