"""Per-recipient policy: lookups, banks, verdicts, tagging and bounce rules."""

from __future__ import annotations

from scanner.actions.bounce import bounce_allowed
from scanner.actions.headers import prefix_subject
from scanner.actions.tagging import edits_for, extend
from scanner.config import loads
from scanner.policy.decide import decide
from scanner.policy.effective import bank_names, message_policy, recipient_policy
from scanner.policy.lookup import candidates, listed, lookup
from scanner.scores import load_scores
from scanner.task import ClientInfo, Destiny, Envelope, Hit, Recipient, Task

SCORES = load_scores()


def _task(hits: list[Hit], sender: str = "a@example.org", raw: bytes = b"Subject: hi\r\n\r\nx\r\n",
          rcpts: tuple[str, ...] = ("bob@example.test",)) -> Task:
    t = Task(mail_id="abcdefghijkl", raw=raw,
             envelope=Envelope(sender, tuple(Recipient(r) for r in rcpts)), log_id="1-1")
    t.hits.extend(hits)
    return t


def _verdict(config_text: str, hits: list[Hit], rcpt: str = "bob@example.test",
             bank: str = "", sender: str = "a@example.org", client: str | None = None):
    config = loads(config_text, "t.toml")
    task = _task(hits, sender)
    task.client = ClientInfo(addr=client)
    base = message_policy(config, bank_names(config, bank, client))
    return decide(task, rcpt, recipient_policy(base, rcpt), SCORES, {"clamav": "virus"}), task


def test_lookup_order_is_most_specific_first():
    assert candidates("User+ext@Mail.Example.COM") == [
        "user+ext@mail.example.com", "user@mail.example.com", "user+ext@", "user@",
        "@mail.example.com", "@.mail.example.com", "@.example.com", "@.com", "@."]
    table = {"@.example.com": 1, "user@mail.example.com": 2, "@.": 0}
    assert lookup(table, "user+x@mail.example.com") == 2
    assert lookup(table, "other@deep.sub.example.com") == 1
    assert lookup(table, "x@elsewhere.net") == 0
    assert listed(["@.example.org"], "a@lists.example.org")
    assert not listed(["@example.org"], "a@lists.example.org")
    assert listed(["<>"], "") and not listed(["@."], "")


def test_lookups_compare_idn_domains_in_a_label_form_and_fold_ascii_only():
    """As amavis's make_query_keys: the domain in A-label form (a table written with
    either form finds mail to the other), the local part with only ASCII letters
    lower-cased (Unicode folding would make two UTF-8 mailboxes one)."""
    assert candidates("Δοκιμή+X@Пример.РФ")[:4] == [
        "Δοκιμή+x@xn--e1afmkfd.xn--p1ai", "Δοκιμή@xn--e1afmkfd.xn--p1ai", "Δοκιμή+x@",
        "Δοκιμή@"]
    table = {"@.пример.рф": "u", "user@example.xn--p1ai": "a"}
    assert lookup(table, "x@mail.xn--e1afmkfd.xn--p1ai") == "u"
    assert lookup(table, "USER@Example.рф") == "a"
    assert listed(["@.xn--e1afmkfd.xn--p1ai"], "spammer@пример.рф")
    assert listed(["@пример.рф"], "spammer@xn--e1afmkfd.xn--p1ai")
    assert listed(["δοκιμή@example.com"], "δοκιμή@Example.COM")
    assert not listed(["δοκιμή@example.com"], "ΔΟΚΙΜΉ@example.com")
    assert not listed(["@fass.de"], "a@faß.de")  # IDNA 2008: another domain


def test_virus_is_discarded_and_quarantined_by_default():
    v, _ = _verdict("", [Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")])
    assert (v.category, v.destiny, v.quarantine) == ("VIRUS", Destiny.DISCARD, True)


def test_levels_make_spammy_and_spam():
    v, _ = _verdict("[policy]\nblock_senders = ['@example.org']\nspam_destiny='reject'\n", [])
    assert (v.category, v.destiny, v.quarantine) == ("SPAM", Destiny.REJECT, True)
    v, _ = _verdict("[policy]\nallow_senders = ['a@']\n", [])
    assert v.category == "CLEAN" and v.score == -100


def test_per_recipient_override_and_lovers():
    cfg = """
[policy]
spam_destiny = "discard"
block_senders = ["@example.org"]
[policy.recipients."@friends.test"]
spam_lover = true
"""
    v, _ = _verdict(cfg, [], rcpt="x@friends.test")
    assert v.category == "SPAM" and v.destiny is Destiny.PASS and v.lover
    v, _ = _verdict(cfg, [], rcpt="x@other.test")
    assert v.destiny is Destiny.DISCARD


def test_originating_bank_bypasses_spam_but_not_viruses():
    hits = [Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")]
    cfg = "[policy]\nblock_senders = ['@example.org']\n"
    v, _ = _verdict(cfg, [], bank="ORIGINATING")
    assert v.category == "CLEAN" and not v.spam_scanned
    v, _ = _verdict(cfg, hits, bank="ORIGINATING")
    assert v.category == "VIRUS"


def test_mynets_bank_applies_by_client_network():
    cfg = "[policy_banks.MYNETS]\nvirus_lover = true\n"
    hits = [Hit("CLAMAV_VIRUS", options=("X",), source="clamav")]
    v, _ = _verdict(cfg, hits, client="127.0.0.5")
    assert v.lover and v.destiny is Destiny.PASS
    v, _ = _verdict(cfg, hits, client="192.0.2.1")
    assert v.destiny is Destiny.DISCARD


def test_tempfail_symbol_and_crashed_check():
    v, _ = _verdict("", [Hit("CLAMAV_FAIL", source="clamav")])
    assert v.destiny is Destiny.TEMPFAIL and "CLAMAV_FAIL" in v.reason
    config = loads("[policy]\non_check_failure='unchecked'\n", "t")
    task = _task([Hit("X_FAIL", source="x")])
    task.failed_checks.append("x")
    v = decide(task, "bob@example.test", config.policy, SCORES, {})
    assert v.category == "UNCHECKED" and v.destiny is Destiny.PASS


def test_spam_headers_subject_tag_and_extension_for_local_recipients():
    cfg = "[policy]\nblock_senders=['@example.org']\nlocal_domains=['example.test']\n" \
          "addr_extension_spam='spam'\n"
    v, task = _verdict(cfg, [])
    e = edits_for(task, "bob@example.test", v, SCORES, "mx.test", virus_scanned=True)
    names = dict(e.headers)
    assert names["X-Spam-Flag"] == "YES" and names["X-Spam-Score"] == "100.000"
    assert names["X-Spam-Level"] == "*" * 64
    assert "tests=[SENDER_BLOCKLISTED=100]" in names["X-Spam-Status"]
    assert names["X-Virus-Scanned"] == "scanner at mx.test"
    assert e.subject_prefix == "***SPAM*** " and e.address == "bob+spam@example.test"
    v, task = _verdict(cfg, [], rcpt="carol@remote.test")
    e = edits_for(task, "carol@remote.test", v, SCORES, "mx.test", virus_scanned=False)
    assert e.headers == () and e.subject_prefix == "" and e.address == "carol@remote.test"


def test_spam_report_lists_each_symbol_with_points_and_description():
    cfg = ("[policy]\nlocal_domains=['example.test']\nblock_senders=['@example.org']\n"
           "spam_report=true\n")
    hits = [Hit("BAYES_99", source="bayes")]
    v, task = _verdict(cfg, hits)
    names = dict(edits_for(task, "bob@example.test", v, SCORES, "mx.test", False).headers)
    lines = names["X-Spam-Report"].split("\r\n\t")
    assert lines[0].startswith("* 100.0 SENDER_BLOCKLISTED "), lines
    assert "*   5.5 BAYES_99 Spam probability 99 to 100%" in lines, lines
    assert lines.index("*   5.5 BAYES_99 Spam probability 99 to 100%") > 1  # wrapped above
    assert all(len(ln) <= 78 and ln.isascii() for ln in lines)
    v, task = _verdict(cfg.replace("spam_report=true", "spam_report=false"), hits)
    names = dict(edits_for(task, "bob@example.test", v, SCORES, "mx.test", False).headers)
    assert "X-Spam-Report" not in names and names["X-Spam-Flag"] == "YES"
    v, task = _verdict("[policy]\nlocal_domains=['example.test']\nspam_report=true\n", hits)
    names = dict(edits_for(task, "bob@example.test", v, SCORES, "mx.test", False).headers)
    assert names["X-Spam-Flag"] == "NO" and "X-Spam-Report" not in names  # spam only


def test_prefix_subject_keeps_everything_else():
    raw = b"From: a\r\nSubject:  =?utf-8?q?caf=C3=A9?=\r\n\tcontinued\r\n\r\nSubject: body\r\n"
    assert prefix_subject(raw, "***SPAM*** ") == (
        b"From: a\r\nSubject:  ***SPAM*** =?utf-8?q?caf=C3=A9?=\r\n\tcontinued\r\n\r\n"
        b"Subject: body\r\n")
    assert prefix_subject(b"From: a\r\n\r\nb", "T ").startswith(b"Subject: T\r\nFrom: a")
    assert extend("u@d.test", "spam", "+") == "u+spam@d.test"


def test_bounce_rules():
    cfg = "[policy]\nvirus_destiny='bounce'\n"
    eicar = [Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")]
    worm = [Hit("CLAMAV_VIRUS", options=("Win.Worm.Mydoom",), source="clamav")]
    v, task = _verdict(cfg, eicar)
    task.message = None
    assert bounce_allowed(task, v)
    v, task = _verdict(cfg, worm)
    assert not bounce_allowed(task, v)  # such viruses fake their senders
    v, task = _verdict(cfg, eicar, sender="")
    assert not bounce_allowed(task, v)
    v, task = _verdict("[policy]\nblock_senders=['@example.org']\nspam_destiny='bounce'\n", [])
    assert v.score >= v.policy.dsn_cutoff_level and not bounce_allowed(task, v)


def test_no_dsn_to_mailing_lists_and_auto_responders_as_amavis_is_bulk():
    """amavis suppresses the DSN of blocked bulk mail, and its is_bulk covers mailing
    lists and auto-responses (RFC 3834), not only Precedence: a bounce to a list's
    -bounces address or to an autoresponder is backscatter or a mail loop."""
    from scanner.pipeline.parse import parse_headers

    cfg = "[policy]\nvirus_destiny='bounce'\n"
    eicar = [Hit("CLAMAV_VIRUS", options=("Eicar-Signature",), source="clamav")]
    bulk = [("a@example.org", "List-Id: <users.lists.example.org>"),
            ("a@example.org", "List-Unsubscribe: <mailto:leave@example.org>"),
            ("a@example.org", "Auto-Submitted: auto-replied (vacation)"),
            ("a@example.org", "Precedence: auto_reply"),
            ("a@example.org", "Precedence: Bulk"),
            ("users-bounces@lists.example.org", "X-Other: 1"),
            ("owner-users@example.org", "X-Other: 1"),
            ("MAILER-DAEMON@example.org", "X-Other: 1"),
            ("a@example.org", "From: Postmaster <postmaster@example.org>")]
    for sender, field in bulk + [("a@example.org", "Auto-Submitted: no")]:
        v, task = _verdict(cfg, eicar, sender=sender)
        task.message = parse_headers(f"{field}\r\nSubject: hi\r\n\r\nx\r\n".encode())
        assert bounce_allowed(task, v) is ((sender, field) not in bulk), (sender, field)


def test_sql_policy_rows_override_by_specificity(tmp_path, caplog):
    import sqlite3

    from scanner.policy.sql import SqlPolicy

    db = tmp_path / "policy.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings TEXT)")
        conn.executemany("INSERT INTO scanner_policy VALUES (?, ?)", [
            ("@example.test", '{"spam_destiny": "discard"}'),
            ("Boss@Example.test", '{"spam_lover": true}'),
            ("@broken.test", '{"spam_destiny": "explode"}'),
        ])
    sql = SqlPolicy(f"sqlite:{db}", loads("", "t.toml"))
    assert sql.override_for("x@example.test").spam_destiny == "discard"
    assert sql.override_for("boss@example.test").spam_lover is True
    assert sql.override_for("x@broken.test").spam_destiny is None  # the bad key is left out
    assert "ignored" in caplog.text
    assert sql.override_for("x@elsewhere.test") is None


def test_site_score_files_override_and_add(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[symbols.SENDER_BLOCKLISTED]\nweight = 50.0\n'
                    '[symbols.RCVD_IN_MYLIST]\nweight = 3.0\ndescription = "ours"\n')
    table = load_scores((str(site),))
    assert table.get("SENDER_BLOCKLISTED").weight == 50.0
    assert table.get("RCVD_IN_MYLIST").weight == 3.0
    assert table.get("SENDER_ALLOWLISTED").weight == -100.0  # shipped entries stay


def test_recipient_tables_match_an_idn_in_either_form():
    table = {"@bücher.example": 1, "boss@xn--bcher-kva.example": 2}
    assert lookup(table, "u@xn--bcher-kva.example") == 1
    assert lookup(table, "Boss@Bücher.example") == 2
    assert lookup(table, "u@b\u00fccher..example") is None  # not an IDN: as given only
