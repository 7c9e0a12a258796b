"""Per-recipient policy from LDAP (policy.ldap_lookup) against a real slapd: amavis's
lookup keys and "first entry by key wins, per attribute", the attributes mapped onto
[policy] keys, the merge with policy SQL rows and the configuration file (SQL, then
LDAP, then static), and a directory that cannot be read deferring the message."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.config import PolicyConfig, loads
from scanner.policy import ldap as ldapmod
from scanner.policy.ldap import LdapLookupError, LdapPolicy
from scanner.task import Envelope, Recipient, Task
from scanner.testing.sink import Sink
from tests.helpers import handle_at_sink, message
from tests.slapd import PEOPLE, SUFFIX, Slapd, amavis_schema, private_slapd


def _config(url: str, extra: str = "", base: str = PEOPLE) -> Any:
    return loads(f'[policy]\nldap_lookup = "{url}"\nldap_base = "{base}"\n{extra}'
                 '[quarantine]\ndirectory = "/var/lib/scanner/quarantine"\n', "t.toml")


def _task(*rcpts: str, sender: str = "a@example.org") -> Task:
    return Task(mail_id="abcdefghijkl", log_id="00001-01", raw=message("ldap"),
                envelope=Envelope(sender, tuple(Recipient(r) for r in rcpts)))


def _policies(config: Any, *rcpts: str) -> dict[str, PolicyConfig]:
    """Each recipient's effective policy, through a real Processor."""
    from scanner.pipeline.processor import Listener, Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.testing.postfix import free_port

    proc = Processor(config, [], load_scores(),
                     NextHop("127.0.0.1", free_port(), False, 1, 1, "t", True), "scanner.test")
    task = _task(*rcpts)
    asyncio.run(proc.analyse(task, Listener(10024, "ESMTP", "")))
    return {r: task.verdicts[r].policy for r in rcpts}


def test_user_domain_and_catch_all_entries_merge_attribute_by_attribute(slapd: Slapd):
    """Each attribute comes from the entry of the most specific key that has it
    (amavis's lookup_ldap_attr), whatever order the server returns them in (added in an
    order that is neither the most specific first nor last)."""
    slapd.account("subdomains", "@.example.test", amavisSpamTag2Level="4.0",
                  amavisSpamTagLevel="1.0", amavisSpamKillLevel="30")
    slapd.account("u", "u@example.test", amavisSpamLover="TRUE", amavisSpamKillLevel="9")
    slapd.account("everyone", "@.", amavisSpamKillLevel="20", amavisBypassVirusChecks="TRUE")
    slapd.account("domain", "@example.test", amavisSpamTag2Level="5.0",
                  amavisSpamKillLevel="8")
    got = _policies(_config(slapd.url), "u@example.test", "v@sub.example.test",
                    "w@other.test")
    u, v, w = got["u@example.test"], got["v@sub.example.test"], got["w@other.test"]
    assert (u.spam_lover, u.kill_level, u.tag2_level, u.tag_level, u.bypass_virus_checks) \
        == (True, 9.0, 5.0, 1.0, True)
    assert (v.spam_lover, v.tag2_level, v.kill_level, v.tag_level) == (False, 4.0, 30.0, 1.0)
    default = PolicyConfig()
    assert (w.tag2_level, w.kill_level, w.tag_level, w.bypass_virus_checks) \
        == (default.tag2_level, 20.0, default.tag_level, True)


def test_address_extensions_and_bare_users(slapd: Slapd):
    """user+ext@dom before user@dom; a bare user@ entry only for local recipients, as
    amavis's make_query_keys with is_local."""
    slapd.account("ext", "u+lists@example.test", amavisSpamTag2Level="3.0")
    slapd.account("u", "u@example.test", amavisSpamTag2Level="4.0", amavisSpamLover="TRUE")
    slapd.account("bare", "bob@", amavisVirusLover="TRUE")
    config = _config(slapd.url, 'local_domains = ["example.test"]\n')
    got = _policies(config, "u+lists@example.test", "bob@example.test", "bob@other.test")
    assert (got["u+lists@example.test"].tag2_level,
            got["u+lists@example.test"].spam_lover) == (3.0, True)
    assert got["bob@example.test"].virus_lover is True
    assert got["bob@other.test"].virus_lover is False


def test_every_mapped_attribute_sets_its_key(slapd: Slapd, tmp_path: Path):
    values = {"amavisSpamTagLevel": "1.5", "amavisSpamTag2Level": "4.5",
              "amavisSpamKillLevel": "9", "amavisSpamDsnCutoffLevel": "15",
              "amavisSpamQuarantineCutoffLevel": "25", "amavisMessageSizeLimit": "1000000",
              "amavisSpamSubjectTag": "[maybe] ", "amavisSpamSubjectTag2": "[SPAM] ",
              "amavisAddrExtensionVirus": "virus", "amavisAddrExtensionSpam": "spam",
              "amavisAddrExtensionBanned": "banned",
              "amavisAddrExtensionBadHeader": "badh",
              "amavisArchiveQuarantineTo": "archive@example.test",
              "amavisWhitelistSender": ["@friends.example", "boss@example.org"],
              "amavisBlacklistSender": ["@spammy.example"]}
    flags = {name: "TRUE" for name, (_, kind) in ldapmod.ATTRIBUTES.items() if kind == "flag"}
    assert set(values) | set(flags) == set(ldapmod.ATTRIBUTES)
    slapd.account("u", "u@example.test", **values, **flags)
    p = _policies(_config(slapd.url), "u@example.test")["u@example.test"]
    assert (p.tag_level, p.tag2_level, p.kill_level, p.dsn_cutoff_level,
            p.spam_quarantine_cutoff_level, p.oversized_size) == (1.5, 4.5, 9.0, 15.0,
                                                                   25.0, 1000000)
    assert (p.subject_tag, p.subject_tag2, p.addr_extension_virus, p.addr_extension_spam,
            p.addr_extension_banned, p.addr_extension_bad_header, p.archive_to) == (
        "[maybe] ", "[SPAM] ", "virus", "spam", "banned", "badh", "archive@example.test")
    assert sorted(p.allow_senders) == ["@friends.example", "boss@example.org"]
    assert p.block_senders == ("@spammy.example",)
    for name, (key, kind) in ldapmod.ATTRIBUTES.items():
        if kind == "flag":
            assert getattr(p, key) is True, name


def test_a_bad_value_is_logged_and_the_next_entry_s_applies(slapd: Slapd, caplog):
    """A value the configuration file would refuse counts as absent (as a bad SQL key)."""
    slapd.account("u", "u@example.test", amavisSpamTag2Level="high",
                  amavisArchiveQuarantineTo="archive-quarantine", amavisSpamLover="TRUE")
    slapd.account("domain", "@example.test", amavisSpamTag2Level="5.0",
                  amavisArchiveQuarantineTo="copies@example.test")
    p = _policies(_config(slapd.url), "u@example.test")["u@example.test"]
    assert (p.tag2_level, p.archive_to, p.spam_lover) == (5.0, "copies@example.test", True)
    dn = f"cn=u,{PEOPLE}"
    assert f"policy LDAP entry '{dn}': attribute amavisSpamTag2Level ignored: " \
        "'high' is not a number" in caplog.text
    assert f"policy LDAP entry '{dn}': attribute amavisArchiveQuarantineTo ignored" \
        in caplog.text


@pytest.fixture
def amavis_slapd() -> Iterator[Slapd]:
    """A slapd with amavis's own amavis.schema instead of the project's."""
    schema = amavis_schema()
    if schema is None:
        pytest.skip("amavis.schema not found: run scripts/quickstart.sh (it unpacks the "
                    "amavisd-new package) or set AMAVISD_RELEASE")
    with private_slapd(schema=schema) as server:
        yield server


def test_an_attribute_without_equivalent_is_logged_once(amavis_slapd: Slapd, caplog,
                                                        monkeypatch):
    """Against amavis's own schema (entries written for amavis need no change): its
    attributes scanner has no equivalent for are logged once and ignored."""
    slapd = amavis_slapd
    monkeypatch.setattr(ldapmod, "_logged_ignored", set())
    slapd.account("u", "u@example.test", amavisSpamTag3Level="20", amavisSpamLover="TRUE")
    slapd.account("v", "v@example.test", amavisSpamTag3Level="30")
    config = _config(slapd.url)
    for rcpt in ("u@example.test", "v@example.test"):
        assert _policies(config, rcpt)[rcpt].spam_lover is (rcpt == "u@example.test")
    assert caplog.text.count("attribute amavisSpamTag3Level has no equivalent in scanner") \
        == 1


def test_sql_rows_then_ldap_entries_then_the_configuration_file(slapd: Slapd,
                                                                 tmp_path: Path):
    """amavis's order: the SQL field lookups, then the LDAP attribute lookups, then the
    static tables; a key a source does not set falls through to the next one."""
    db = tmp_path / "p.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE scanner_policy (pattern TEXT PRIMARY KEY, settings)")
        conn.execute("INSERT INTO scanner_policy VALUES (?, ?)",
                     ("@example.test", '{"tag2_level": 3.0}'))
    conn.close()
    slapd.account("u", "u@example.test", amavisSpamTag2Level="5.0", amavisSpamLover="TRUE",
                  amavisSpamKillLevel="7.0")
    config = _config(slapd.url, f'sql_lookup = "sqlite:{db}"\ndsn_cutoff_level = 30.0\n'
                     '[policy.recipients."u@example.test"]\nkill_level = 9.0\n'
                     'bypass_banned_checks = true\n')
    p = _policies(config, "u@example.test")["u@example.test"]
    assert (p.tag2_level, p.spam_lover, p.kill_level, p.bypass_banned_checks,
            p.dsn_cutoff_level) == (3.0, True, 7.0, True, 30.0)


def test_recipients_of_one_message_get_their_own_entries(slapd: Slapd, sink: Sink):
    """One message, two recipients: the one whose entry blocks the sender does not get
    it (spam, discarded), the other does; both were looked up with one search."""
    slapd.account("u", "u@example.test", amavisBlacklistSender="@spammer.example")
    slapd.account("v", "v@example.test", amavisSpamLover="TRUE")
    config = _config(slapd.url, 'spam_destiny = "discard"\nquarantine = []\n')
    searches: list[str] = []
    real = LdapPolicy._search

    def search(self: LdapPolicy, conn: Any, base: str, keys: list[str]) -> Any:
        searches.append(base)
        return real(self, conn, base, keys)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LdapPolicy, "_search", search)
        replies = handle_at_sink(config, [], _task("u@example.test", "v@example.test",
                                                   sender="x@spammer.example"), sink.port)
    assert [r[:3] for r in replies] == ["250", "250"], replies
    assert [m.recipients for m in sink.received] == [["v@example.test"]]
    assert searches == [PEOPLE]


def test_entries_are_kept_a_minute_and_read_anew_after_sighup(slapd: Slapd, caplog):
    """The SQL rows' cache (scanner.policy.sources): a changed entry applies after the
    TTL or at once after SIGHUP (reload)."""
    caplog.set_level(logging.INFO, "scanner.policy")
    slapd.account("u", "u@example.test", amavisSpamTag2Level="4.0")
    policy = LdapPolicy(_config(slapd.url))
    assert policy.override_for("u@example.test").tag2_level == 4.0
    slapd.replace(f"cn=u,{PEOPLE}", amavisSpamTag2Level="5.0")
    assert policy.override_for("u@example.test").tag2_level == 4.0
    policy.reload()
    assert "SIGHUP: policy LDAP entries are read anew" in caplog.text
    assert policy.override_for("u@example.test").tag2_level == 5.0


def test_a_base_with_the_domain(slapd: Slapd):
    """%d in ldap_base is the recipient's domain; a domain without a subtree has no
    entries (amavis: no such object is no match, not a failure)."""
    slapd.add(f"ou=example.test,{SUFFIX}", objectClass="organizationalUnit",
              ou="example.test")
    slapd.add(f"cn=d,ou=example.test,{SUFFIX}", objectClass=["inetOrgPerson", "amavisAccount"],
              cn="d", sn="d", mail="@.", amavisSpamLover="TRUE")
    config = _config(slapd.url, base=f"ou=%d,{SUFFIX}")
    got = _policies(config, "u@example.test", "u@other.test")
    assert got["u@example.test"].spam_lover is True
    assert got["u@other.test"].spam_lover is False


def test_a_server_that_is_down_defers_the_message(slapd: Slapd, sink: Sink, caplog):
    slapd.account("u", "u@example.test", amavisSpamLover="TRUE")
    config = _config(slapd.url)
    slapd.stop()
    replies = handle_at_sink(config, [], _task("u@example.test"), sink.port)
    assert replies == ["451 4.5.0 Error in processing, id=00001-01"]
    assert sink.received == []
    assert "policy LDAP lookup for <u@example.test> failed" in caplog.text
    assert "the message is deferred" in caplog.text


def test_a_refused_bind_defers_without_showing_the_password(slapd: Slapd, sink: Sink,
                                                              caplog):
    from tests.slapd import ADMIN

    secret = "not-the-password-42"
    config = _config(slapd.url, f'ldap_bind_dn = "{ADMIN}"\n'
                     f'ldap_bind_password = "{secret}"\n')
    replies = handle_at_sink(config, [], _task("u@example.test"), sink.port)
    assert replies == ["451 4.5.0 Error in processing, id=00001-01"]
    assert sink.received == []
    assert f"bind as '{ADMIN}' failed: invalidCredentials" in caplog.text
    assert secret not in caplog.text


def test_a_bound_lookup_reads_the_entries(slapd: Slapd):
    from tests.slapd import ADMIN, PASSWORD

    slapd.account("u", "u@example.test", amavisSpamLover="TRUE")
    config = _config(slapd.url, f'ldap_bind_dn = "{ADMIN}"\n'
                     f'ldap_bind_password = "{PASSWORD}"\n')
    assert _policies(config, "u@example.test")["u@example.test"].spam_lover is True


def test_a_server_that_does_not_answer_defers_within_the_timeout(sink: Sink):
    """A server that takes the connection and never answers: the lookup fails after
    ldap_timeout, not after the message timeout."""
    pytest.importorskip("ldap3")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever reads them
        config = _config(f"ldap://127.0.0.1:{silent.getsockname()[1]}",
                         "ldap_timeout = 1.0\n")
        policy = LdapPolicy(config)
        started = time.monotonic()
        with pytest.raises(LdapLookupError):
            policy.override_for("u@example.test")
        assert time.monotonic() - started < 5  # connect and search: 1 s each at most
