"""Feature vectors: determinism, header whitelist, redaction, Received and XFORWARD."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from scanner.ml.features import Extractor, FeatureSettings
from scanner.ml.received import external_hops, parse_hop, registered_domain
from scanner.ml.text import message_text
from scanner.ml.tokens import client_and_relays, header_tokens, received_tokens
from tests.ml.conftest import CORPORA, REPO

SETTINGS = FeatureSettings(hash_bits=18)


def vector(raw: bytes, settings: FeatureSettings = SETTINGS, **kw: str) -> tuple:
    return Extractor(settings).vector(raw, **kw)


def same(a: tuple, b: tuple) -> bool:
    return np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])


def test_vector_shape_and_norm() -> None:
    idx, val = vector((CORPORA / "spam-html.eml").read_bytes())
    assert idx.dtype == np.int64 and val.dtype == np.float32
    assert np.all(np.diff(idx) > 0) and idx.max() < 2**18
    assert np.all(np.isfinite(val)) and val.size > 50


def test_same_vector_in_another_process() -> None:
    """Hashing is not salted per process (no use of hash())."""
    raw = (CORPORA / "ham-plain.eml").read_bytes()
    idx, val = vector(raw)
    code = (
        "import sys, numpy as np\n"
        "from scanner.ml.features import Extractor, FeatureSettings\n"
        "i, v = Extractor(FeatureSettings(hash_bits=18)).vector(sys.stdin.buffer.read())\n"
        "print(int(i.sum()), float(v.sum()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True,
                         check=True, cwd=REPO, env={"PYTHONHASHSEED": "123", "PATH": ""})
    total, weight = out.stdout.split()
    assert int(total) == int(idx.sum())
    assert abs(float(weight) - float(val.sum())) < 1e-4


def test_collector_and_filter_headers_are_ignored() -> None:
    raw = (CORPORA / "collector-headers.eml").read_bytes()
    stripped = b"\n".join(
        line for line in raw.split(b"\n")
        if not line.startswith((b"X-Spam", b"X-Keywords", b"Status", b"X-Status", b"X-UID",
                                b"Delivery-Date", b"Delivered-To", b"From sender"))
    )
    assert same(vector(raw), vector(stripped))


def test_date_and_by_clause_do_not_matter() -> None:
    raw = (CORPORA / "ham-plain.eml").read_bytes()
    head, _, body = raw.partition(b"\n\n")
    head = head.replace(b"2025", b"2002").replace(b"mx.example.net", b"relay.collector.test")
    assert same(vector(raw), vector(head + b"\n\n" + body))


def test_redaction_removes_strings_from_text_and_tokens() -> None:
    raw = (CORPORA / "ham-plain.eml").read_bytes()
    clean = raw.replace(b"Alice\n", b"Visit today.\nAlice\n")
    tainted = raw.replace(b"Alice\n", b"Visit Secret-Collector.test today.\nAlice\n")
    tainted = tainted.replace(b"Subject: ", b"Subject: secret-collector.test ")
    settings = FeatureSettings(hash_bits=18, redact=("secret-collector.test",))
    assert same(vector(clean, settings), vector(tainted, settings))
    assert not same(vector(clean), vector(tainted))
    extractor = Extractor(settings)
    assert extractor._keep(["url:host=www.secret-collector.test", "url:tld=test"]) == [
        "url:tld=test"]


def test_received_parsing_and_internal_hops() -> None:
    hop = parse_hop("from helo.example (rdns.example.com [198.51.100.7]) by mx.local with ESMTP")
    assert hop is not None and hop.host == "rdns.example.com" and hop.addr == "198.51.100.7"
    assert parse_hop("(qmail 123 invoked by uid 0); 1 Jan 2025") is None
    received = [
        "from localhost (localhost [127.0.0.1]) by mx.site.test",
        "from mx2.site.test (mx2.site.test [203.0.113.9]) by mx.site.test",
        "from sender.example.com (sender.example.com [198.51.100.20]) by mx2.site.test",
        "from pc (dsl-1-2-3-4.pool.example.net [192.0.2.44]) by sender.example.com",
    ]
    hops = external_hops(received, ("site.test",))
    assert [h.host for h in hops] == ["sender.example.com", "dsl-1-2-3-4.pool.example.net"]
    assert registered_domain("a.b.example.co.uk") == "example.co.uk"


def test_xforward_client_replaces_first_hop() -> None:
    raw = (CORPORA / "ham-plain.eml").read_bytes()
    mt = message_text(raw)
    client, relays = client_and_relays(mt, (), None, None)
    assert client is not None and client.host == "mail.example.org"
    client, relays = client_and_relays(mt, (), "unknown", "203.0.113.5")
    assert client is not None and client.host == "" and relays == []
    tokens = list(received_tokens(client, relays))
    assert "client:no_rdns" in tokens and "client:net16=203.0" in tokens
    assert not same(vector(raw), vector(raw, client_name="unknown", client_addr="203.0.113.5"))


def test_settings_round_trip_and_validation() -> None:
    settings = FeatureSettings(hash_bits=17, internal_hosts=("a.test",), redact=("x",))
    assert FeatureSettings.from_dict(settings.to_dict()) == settings
    for bad in ({"hash_bits": 40}, {"nonsense": 1}, {"block_weights": {"nope": 1.0}},
                {"version": 99}):
        data = settings.to_dict()
        data.update(bad)
        try:
            FeatureSettings.from_dict(data)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def _obfuscated(text: str, subject: str = "Your account") -> bytes:
    return ("From: Service <service@example.com>\nTo: bob@example.net\n"
            f"Subject: {subject}\nMIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            f"{text}\n").encode()


def test_disguised_words_also_yield_the_plain_words() -> None:
    from scanner.ml.hashing import bucket, hash_tokens

    def has_word(vec: tuple, word: str) -> bool:
        return int(bucket(hash_tokens([word], "w"), 18)[0]) in set(vec[0].tolist())

    on = FeatureSettings(hash_bits=18, fold_obfuscation=True)
    tricks = {
        # zero-width spaces and a soft hyphen inside words
        "Dear customer, your pay\u200bpal acc\u200bount is lim\u00adited.": "account",
        # Cyrillic look-alikes inside Latin words
        "Dear customer, your p\u0430yp\u0430l account is limited.": "paypal",
        # styled letters: fullwidth and mathematical bold
        "Dear customer, your \uff50\uff41\uff59\uff50\uff41\uff4c account is limited.":
            "paypal",
        "Verify it for \U0001d41f\U0001d42b\U0001d41e\U0001d41e today.": "free",
    }
    for text, word in tricks.items():
        raw = _obfuscated(text)
        assert has_word(vector(raw, on), word), text
        assert not has_word(vector(raw), word), text
    plain = _obfuscated("Dear customer, your paypal account is limited.")
    assert same(vector(plain), vector(plain, on)), "undisguised text is unchanged"


def test_words_in_one_script_and_ordinary_symbols_are_not_folded() -> None:
    from scanner.ml.deobfuscate import deobfuscate

    text = "Привет, Ivan: 5 μg, ½ cup, café™ — 東京、ありがとう。 Ελλάδα"
    assert deobfuscate(text) == text
    assert deobfuscate("plain ascii") == "plain ascii"
    assert deobfuscate("P\u0430yP\u0430l \u0421\u0430sh") == "PayPal Cash"


def test_the_setting_is_stored_only_when_on() -> None:
    """Model files written before the setting existed (or with it off) are the same."""
    assert "fold_obfuscation" not in FeatureSettings(hash_bits=18).to_dict()
    on = FeatureSettings(hash_bits=18, fold_obfuscation=True)
    assert on.to_dict()["fold_obfuscation"] is True
    assert FeatureSettings.from_dict(on.to_dict()) == on
    assert FeatureSettings.from_dict(FeatureSettings().to_dict()).fold_obfuscation is False


def _made_by(headers: str) -> set[str]:
    raw = ("From: Alice <alice@example.org>\nTo: bob@example.net\nSubject: notes\n"
           f"{headers}\nHello Bob.\n").encode()
    return set(header_tokens(message_text(raw))) & {
        "mid:outlook_form", "mid:outlook_form_bad_clock", "mailer:outlook_forged",
        "date:no_zone"}


def test_made_by_tokens() -> None:
    """How a message was made, as the rules of 12_ratware.cf read it: Outlook's
    Message-ID form and its clock, an X-Mailer claiming Outlook over another form, a Date:
    without zone. A date's value is never a token."""
    genuine = "Message-ID: <003a01db6675$7f0e2b40$7d2a81c0$@example.org>\n"
    assert _made_by("X-Mailer: Microsoft Outlook 16.0\n" + genuine
                    + "Date: Tue, 14 Jan 2025 10:21:07 +0100\n") == {"mid:outlook_form"}
    assert _made_by("Message-ID: <000056e43b6b$000071f9$00000b63@example.org>\n") == {
        "mid:outlook_form_bad_clock"}
    assert _made_by("X-Mailer: Microsoft Outlook Express 6.00.2600.0000\n"
                    "Message-ID: <200208221955.UAA06531@relay.example.org>\n") == {
        "mailer:outlook_forged"}
    assert _made_by("X-Mailer: Microsoft Outlook Express 6.00.2600.0000\n"
                    "Message-ID: <DAV32l8aii08N8yxdZj00009342@hotmail.com>\n") == set()
    assert _made_by("X-Mailer: Microsoft Office Outlook 12.0\nThread-Index: AcK8xY==\n"
                    "Message-ID: <5F1C2B3A@exch01.example.org>\n") == set()
    assert _made_by("Date: Fri, 23 Aug 2002 19:27:52\n") == {"date:no_zone"}
    assert _made_by("Date: Fri, 23 Aug 2002 19:27:52 -0400 (EDT)\n") == set()


def test_address_tokens_do_not_depend_on_the_pythons_parseaddr() -> None:
    """A From with several addresses gives the first one's tokens on every Python:
    Debian 12's 3.11.2 (with the CVE-2023-27043 backport) and upstream 3.11.10+ read it
    strictly as no address at all, older Pythons (the shipped model's training) as the
    first; the classifier asks for the lenient reading everywhere."""
    from scanner.addresses import parse_address

    assert parse_address("WebXperts@one.example, Design@two.example,", strict=False) == (
        "", "WebXperts@one.example")
    raw = (b"From: WebXperts@one.example, Design@two.example,\r\nTo: u@example.test\r\n"
           b"Subject: x\r\n\r\nbody\r\n")
    tokens = set(header_tokens(message_text(raw)))
    assert "from:dom=one.example" in tokens and "from:no_domain" not in tokens
