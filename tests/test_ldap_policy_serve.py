"""Policy from LDAP in a running ``scanner serve`` (as its users run it): recipients of
one message get their own entries' settings, a directory that cannot be read defers the
message (451) and is named at start, never delivering with the file's policy alone."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from scanner.testing.sink import Sink
from tests.helpers import message, smtp, start_filter
from tests.slapd import PEOPLE, Slapd


def _extra(slapd: Slapd) -> str:
    return (f'[policy]\nldap_lookup = "{slapd.url}"\nldap_base = "{PEOPLE}"\n'
            'subject_tag = "[tagged] "\n')


def test_each_recipient_gets_its_entry_and_a_dead_server_defers(tmp_path: Path,
                                                                slapd: Slapd, sink: Sink):
    slapd.account("u", "u@example.test", amavisSpamTagLevel="-999")
    proc, port = start_filter(tmp_path, sink.port, extra=_extra(slapd))
    try:
        s = smtp(port)
        assert s.sendmail("a@example.org", ["u@example.test", "v@example.test"],
                          message("one")) == {}
        s.quit()
        received = sink.wait_for(2)
        subjects = {m.recipients[0]: m.data.split(b"\r\nSubject: ")[1].split(b"\r\n")[0]
                    for m in received}
        assert subjects == {"u@example.test": b"[tagged] one", "v@example.test": b"one"}
        slapd.stop()
        s = smtp(port)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("a@example.org", ["w@example.test"], message("deferred"))
        assert refused.value.smtp_code == 451
        s.quit()
        assert len(sink.received) == 2
        assert any("policy LDAP lookup for <w@example.test> failed" in line
                   for line in proc.log_lines())
    finally:
        proc.stop()


def test_serve_warns_at_start_when_the_directory_cannot_be_read(tmp_path: Path,
                                                                 slapd: Slapd, sink: Sink):
    slapd.stop()
    proc, port = start_filter(tmp_path, sink.port, extra=_extra(slapd))
    try:
        lines = [ln for ln in proc.log_lines() if "policy LDAP directory cannot be read" in ln]
        assert lines and "defers every message (451)" in lines[0], proc.log_lines()[-5:]
        s = smtp(port)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("a@example.org", ["u@example.test"], message("deferred"))
        assert refused.value.smtp_code == 451
        s.quit()
    finally:
        proc.stop()
    assert sink.received == []
