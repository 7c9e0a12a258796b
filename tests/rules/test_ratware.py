"""The forms of the ratware rules (scanner/rules/cf/12_ratware.cf) that one hit and one
miss message per rule (corpora/rules/) do not cover: each branch of SC_FORGED_OUTLOOK
and the exemptions that keep real Outlook mail out of it."""

from __future__ import annotations

import pytest

from scanner.rules.compiler import RuleSet

from .helpers import names, run


def _mail(headers: str, body: str = "Hello Bob,\n\nthe notes of Monday.\n",
          ctype: str | None = "text/plain; charset=us-ascii") -> bytes:
    content = f"Content-Type: {ctype}\n" if ctype else ""
    return ("From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: notes\n"
            f"Date: Tue, 14 Jan 2025 10:21:07 +0100\n{headers}MIME-Version: 1.0\n"
            f"{content}\n{body}").encode()


OUTLOOK_2016 = "<003a01db6675$7f0e2b40$7d2a81c0$@example.org>"
OUTLOOK_EXPRESS = "<005401c1e706$0ecc13c0$147ba8c0@pc1.example.org>"


@pytest.mark.parametrize(("headers", "forged"), [
    # the X-Mailer says Outlook; the Message-ID is not Outlook's
    ("X-Mailer: Microsoft Outlook 16.0\nMessage-ID: <20250114.1234@relay.example.org>\n",
     True),
    ("X-Mailer: Microsoft Office Outlook, Build 11.0.5510\nMessage-ID: <a1@example.org>\n",
     True),
    ("X-Mailer: Microsoft Outlook Express 6.00.2600.0000\n"
     "Message-ID: <000c84d37aae$7338a0a4$3ab55ec5@pc1>\n", True),
    # Outlook's form with digits no clock gives, whatever the X-Mailer (or none)
    ("Message-ID: <000056e43b6b$000071f9$00000b63@example.org>\n", True),
    ("X-Mailer: Mutt\nMessage-ID: <000056e43b6b$000071f9$00000b63@example.org>\n", True),
    # what Outlook writes: old and new forms, upper case hex too
    (f"X-Mailer: Microsoft Outlook 16.0\nMessage-ID: {OUTLOOK_2016}\n", False),
    (f"X-Mailer: Microsoft Outlook Express 6.00.2900.5512\nMessage-ID: {OUTLOOK_EXPRESS}\n",
     False),
    (f"Message-ID: {OUTLOOK_EXPRESS.upper()}\n", False),
    # Microsoft's services and Exchange replace the client's Message-ID
    ("X-Mailer: Microsoft Outlook Express 6.00.2600.0000\n"
     "Message-ID: <DAV32l8aii08N8yxdZj00009342@hotmail.com>\n", False),
    ("X-Mailer: Microsoft Outlook 16.0\n"
     "Message-ID: <AM0PR04MB12345D6F@AM0PR04MB1234.eurprd04.prod.outlook.com>\n",
     False),
    ("X-Mailer: Microsoft Office Outlook 12.0\nThread-Index: AcK8xYZ1234==\n"
     "Message-ID: <5F1C2B3A4D5E@exch01.corp.example.org>\n", False),
    # other Microsoft mailers name themselves otherwise and write other forms
    ("X-Mailer: Microsoft Outlook IMO, Build 9.0.2416 (9.0.2910.0)\n"
     "Message-ID: <BCEFLMCEIJHPCPLGADJIGEEFCAAA.kiall@example.org>\n", False),
    ("X-Mailer: Microsoft-MacOutlook/16.80\nMessage-ID: <B9C1D2E3.1234@example.org>\n",
     False),
])
def test_forged_outlook(shipped: RuleSet, headers: str, forged: bool) -> None:
    assert ("SC_FORGED_OUTLOOK" in names(run(shipped, _mail(headers)))) is forged


@pytest.mark.parametrize(("mailer", "hit"), [
    ("PQvd46nucZ253P8CBPkTFHu7", True),
    ("gzg9vejGQoprgWnUFeU8m716kLGy", True),
    ("Microsoft Outlook 16.0", False),
    ("YahooMailWebService/0.8.203", False),
    ("PHPMailer 6.9.1 (https://github.com/PHPMailer/PHPMailer)", False),
    ("iPhone Mail (21A329)", False),
    ("ZohoMail", False),          # no digit
    ("abcdef123456789", False),   # no capital
])
def test_random_xmailer(shipped: RuleSet, mailer: str, hit: bool) -> None:
    raw = _mail(f"X-Mailer: {mailer}\nMessage-ID: <a1@example.org>\n")
    assert ("SC_XMAILER_RANDOM" in names(run(shipped, raw))) is hit


@pytest.mark.parametrize(("ctype", "body", "hit"), [
    (None, "<html><body>Sale</body></html>\n", True),
    ("text/plain", "\n\n  <FONT SIZE=5>Sale</FONT>\n", True),
    ("text/plain; charset=utf-8", "\ufeff<!DOCTYPE html><p>Sale</p>\n", True),
    ("text/html", "<html><body>Sale</body></html>\n", False),
    ("text/plain", "Look at this: <html> starts the page.\n", False),
    ("text/plain", "<alice@example.org> wrote:\n> hello\n", False),
    ("text/plain", "<pre>-formatted, not HTML: <p is a tag name>\n", False),
])
def test_html_as_text(shipped: RuleSet, ctype: str | None, body: str, hit: bool) -> None:
    raw = _mail("Message-ID: <a1@example.org>\n", body=body, ctype=ctype)
    assert ("SC_HTML_AS_TEXT" in names(run(shipped, raw))) is hit


@pytest.mark.parametrize(("date", "hit"), [
    ("Fri, 23 Aug 2002 19:27:52", True),
    ("Mon, 16 Sep 2002 03:27:38 (GMT)", True),
    ("23 Aug 2002 19:27", True),
    ("Fri, 23 Aug 2002 19:27:52 +0200", False),
    ("Fri, 23 Aug 2002 19:27:52 -0400 (EDT)", False),
    ("Mon, 22 Jul 2002 18:36:01 EDT", False),
    ("Sat, 8 Jun 2002 18:02:43 +0200 (added by postmaster@example.fr)", False),
])
def test_date_without_zone(shipped: RuleSet, date: str, hit: bool) -> None:
    raw = _mail("Message-ID: <a1@example.org>\n").replace(
        b"Tue, 14 Jan 2025 10:21:07 +0100", date.encode())
    assert ("SC_DATE_NO_TZ" in names(run(shipped, raw))) is hit


_RECEIVED = ("Received: from mail.example.org (mail.example.org [192.0.2.20])\n"
             "\tby mx.example.net (Postfix) with ESMTP id 5A1B2C3D4E\n"
             "\tfor <bob@example.net>; {}\n")


@pytest.mark.parametrize(("received", "date", "hit"), [
    # measured from the topmost Received header's date
    ("Tue, 14 Jan 2025 09:02:11 +0100", "Tue, 14 Jan 2025 15:10:00 +0100", True),
    ("Tue, 14 Jan 2025 09:02:11 +0100", "Tue, 14 Jan 2025 14:55:00 +0100", False),
    ("Tue, 14 Jan 2025 09:02:11 +0100", "Tue, 14 Jan 2025 09:00:00 -0400", False),
    ("Tue, 14 Jan 2025 09:02:11 +0100", "Tue, 14 Jan 2025 09:00:00 -0600", True),
    ("Tue, 14 Jan 2025 09:02:11 +0100", "Mon, 13 Jan 2025 09:00:00 +0100", False),
    # no Received header, or none with a date: measured from now
    (None, "Thu, 1 Jan 2099 00:00:00 +0000", True),
    (None, "Tue, 14 Jan 2025 09:00:00 +0100", False),
    ("not a date", "Thu, 1 Jan 2099 00:00:00 +0000", True),
    # an unreadable Date: is SC_DATE_MALFORMED's, not this rule's
    ("Tue, 14 Jan 2025 09:02:11 +0100", "tomorrow", False),
])
def test_date_in_future(shipped: RuleSet, received: str | None, date: str, hit: bool) -> None:
    head = _RECEIVED.format(received) if received is not None else ""
    raw = head.encode() + _mail("Message-ID: <a1@example.org>\n").replace(
        b"Tue, 14 Jan 2025 10:21:07 +0100", date.encode())
    assert ("SC_DATE_IN_FUTURE" in names(run(shipped, raw))) is hit
