"""``from-amavis``: local domains kept in files amavis reads (``read_hash``,
``read_array``) become ``policy.local_domains``, answering as amavis's lookups did."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.config.policy import PolicyConfig
from scanner.migrate.amavis import convert_to_toml
from scanner.policy.effective import is_local

HASH_FILE = """\
# hosted domains (amavis read_hash format)
example.com
.Example.ORG          # and its subdomains
.lists.example.org 0  # but not the list server
boss@partner.test 1
"x y"@partner.test
пример.рф
.shop.test
.eu.shop.test 0
nobody@
"""


def _convert(tmp_path: Path, text: str) -> tuple[cfgmod.Config, str, list]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    toml, conv = convert_to_toml([path])
    return cfgmod.loads(toml, "converted"), toml, conv.notes


def _amavis_hash_lookup(table: dict[str, str], address: str) -> bool | None:
    """amavis's lookup_hash as make_query_keys spells the keys (no recipient
    delimiter): the address, user@, the domain, .domain ... '.'; the first key found
    decides, '0' being false."""
    local, _, domain = address.lower().rpartition("@")
    keys = [address.lower(), f"{local}@", domain]
    labels = domain.split(".")
    keys += ["." + ".".join(labels[i:]) for i in range(len(labels))] + ["."]
    for key in keys:
        if key in table:
            return table[key] != "0"
    return None


def test_a_read_hash_file_answers_as_amavis(tmp_path: Path) -> None:
    domains = tmp_path / "local_domains"
    domains.write_text(HASH_FILE, encoding="utf-8")
    config, _, notes = _convert(tmp_path, "$mydomain = 'mydomain.test';\n"
                                f'@local_domains_maps = ( read_hash("{domains}"), '
                                '[".$mydomain"] );\n')
    entries = config.policy.local_domains
    assert entries[-1] == ".mydomain.test"  # the second map, consulted after the file
    # the file's keys as amavis stores them
    table = {"example.com": "1", ".example.org": "1", ".lists.example.org": "0",
             "boss@partner.test": "1", "x y@partner.test": "1", "xn--e1afmkfd.xn--p1ai": "1",
             ".shop.test": "1", ".eu.shop.test": "0"}
    policy = dataclasses.replace(PolicyConfig(), local_domains=entries)
    for address in ["a@example.com", "a@sub.example.com", "a@example.org",
                    "a@deep.sub.example.org", "a@lists.example.org", "a@x.lists.example.org",
                    "boss@partner.test", "other@partner.test", "x y@partner.test",
                    "a@xn--e1afmkfd.xn--p1ai", "a@shop.test", "a@eu.shop.test",
                    "a@fr.shop.test", "a@x.eu.shop.test", "a@mydomain.test",
                    "a@elsewhere.test"]:
        expected = _amavis_hash_lookup(table, address)
        if expected is None:  # not in the file: the next map, [".mydomain.test"]
            expected = address.endswith("@mydomain.test")
        assert is_local(policy, address) is expected, (address, entries)
    assert any("nobody@: a user name in every domain has no local_domains form" in n.reason
               for n in notes)


def test_a_read_array_file_is_an_acl(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("# ours\n!lists.example.com\n.example.com   # and subdomains\n\n")
    config, _, _ = _convert(tmp_path, f"@local_domains_maps = ( read_array('{acl}') );\n")
    assert config.policy.local_domains == ("!lists.example.com", ".example.com")


def test_a_file_that_cannot_be_read_is_noted(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    config, _, notes = _convert(tmp_path, "@local_domains_acl = ( 'example.com' );\n"
                                f'@local_domains_maps = ( read_hash("{missing}") );\n')
    assert config.policy.local_domains == ("example.com",)  # the ACL, as before
    assert any(f"read_hash() file cannot be read here ({missing}: No such file" in n.reason
               for n in notes)


@pytest.mark.parametrize("value", ['read_hash(\\%local_domains, "/etc/x")', "read_hash()"])
def test_other_calls_stay_unread(tmp_path: Path, value: str) -> None:
    _, toml, notes = _convert(tmp_path, f"@local_domains_maps = ( {value} );\n")
    assert "local_domains =" not in toml.split("# Not converted")[0]
    assert any(n.target == "@local_domains_maps" for n in notes)


def test_sender_white_and_blacklists_become_sender_lists(tmp_path: Path) -> None:
    white = tmp_path / "whitelist"
    white.write_text("# partners\npartner.test\n.friends.test\nceo@vendor.test\n"
                     "noreply@ 1\nspammy.friends.test 0\n")
    config, _, notes = _convert(tmp_path, (
        f"@whitelist_sender_maps = ( read_hash('{white}'), ['boss@example.com', "
        "'!ex@example.com'] );\n"
        "@blacklist_sender_acl = qw( .spam.test promo@shop.test );\n"))
    p = config.policy
    assert p.allow_senders == ("@partner.test", "@.friends.test", "ceo@vendor.test",
                               "noreply@", "boss@example.com")
    assert p.block_senders == ("@.spam.test", "promo@shop.test")
    for entry in ("spammy.friends.test", "ex@example.com"):
        assert any(f"'{entry}' says 'not listed'" in n.reason for n in notes)
    from scanner.policy.lookup import listed
    assert listed(p.allow_senders, "a@partner.test") and listed(p.allow_senders,
                                                                 "a@x.friends.test")
    assert listed(p.allow_senders, "a@friends.test")  # .dom: the domain too, as amavis
    assert not listed(p.allow_senders, "a@x.partner.test")
    assert listed(p.block_senders, "x@a.spam.test") and listed(p.block_senders, "x@spam.test")


def test_sender_lists_that_cannot_be_read_are_noted(tmp_path: Path) -> None:
    config, _, notes = _convert(tmp_path, (
        "@whitelist_sender_maps = ( \\%whitelist_sender, \\@whitelist_sender_acl );\n"
        f"@blacklist_sender_maps = ( read_hash('{tmp_path}/none') );\n"))
    assert config.policy.allow_senders == () and config.policy.block_senders == ()
    assert any(n.target == "@whitelist_sender_maps" and "by hand" in n.reason for n in notes)
    assert any(n.target == "@blacklist_sender_maps" and "cannot be read here" in n.reason
               for n in notes)


def test_lover_and_bypass_files_become_recipient_tables(tmp_path: Path) -> None:
    from scanner.policy.effective import recipient_policy

    lovers = tmp_path / "spam_lovers"
    lovers.write_text('postmaster@example.com\n.example.net\nabuse@  # any domain\n'
                      'boss@example.net 0\n"q\\"x"@example.org\n')
    config, toml, notes = _convert(tmp_path, (
        f"@spam_lovers_maps = ( read_hash('{lovers}') );\n"
        f"@bypass_spam_checks_maps = ( ['list@example.com', '!x@example.com'], "
        f"read_hash('{lovers}') );\n"))
    policy = config.policy

    def effective(address: str):
        return recipient_policy(policy, address)

    assert effective("postmaster@example.com").spam_lover is True
    assert effective("a@sub.example.net").spam_lover is True
    assert effective("boss@example.net").spam_lover is False  # the most specific key
    assert effective("abuse@anywhere.test").spam_lover is True
    assert effective('q"x@example.org').spam_lover is True
    assert effective("other@example.com").spam_lover is False
    assert effective("list@example.com").bypass_spam_checks is True
    assert effective("a@x.example.net").bypass_spam_checks is True
    assert effective("x@example.com").bypass_spam_checks is False
    assert any("'!x@example.com': a negated entry is left out" in n.reason for n in notes)
    assert '[policy.recipients."postmaster@example.com"]' in toml
