"""Reading amavis's Perl assignments without Perl (scanner/migrate/perlconf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.migrate.perlconf import UNREAD, Constant, read_files, split_statements


def _read(tmp_path: Path, text: str, **predefined: str) -> dict[str, object]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    return {s.target: s.value for s in read_files([path], predefined) if s.target}


def test_statements_end_at_top_level_semicolons_only() -> None:
    text = ("use strict;\n$a = 'x;y'; # a comment; with semicolons\n"
            "@b = (1,\n  2); $re = new_RE(qr'a;b'i, qr{c;d});\n1;\n")
    assert list(split_statements(text)) == [
        (1, "use strict"), (2, "$a = 'x;y'"), (3, "@b = (1,\n  2)"),
        (4, "$re = new_RE(qr'a;b'i, qr{c;d})"), (5, "1")]


@pytest.mark.parametrize(("text", "target", "expected"), [
    ("$n = 2.5;", "$n", 2.5),
    ("$n = 300*1024*1024;", "$n", 300 * 1024 * 1024),
    ("$n = 8*60 + 1_000;", "$n", 1480),
    ("$n = -3;", "$n", -3),
    ("$s = '***SPAM*** ';", "$s", "***SPAM*** "),
    ("$s = 'it\\'s';", "$s", "it's"),
    ("$d = D_DISCARD;", "$d", Constant("D_DISCARD")),
    ("$u = undef;", "$u", None),
    ("@l = ( '.example.com', \"example.net\", );", "@l", [".example.com", "example.net"]),
    ("@l = qw(a b c);", "@l", ["a", "b", "c"]),
    ("@l = (1);", "@l", [1]),
    ("$p = [10024, 10026];", "$p", [10024, 10026]),
    ("$interface_policy{'10026'} = 'ORIGINATING';", "$interface_policy{10026}",
     "ORIGINATING"),
])
def test_plain_values_are_read(tmp_path: Path, text: str, target: str,
                               expected: object) -> None:
    assert _read(tmp_path, text)[target] == expected


def test_double_quoted_strings_interpolate_known_scalars(tmp_path: Path) -> None:
    values = _read(tmp_path, '$mydomain = "example.com";\n'
                             '$virus_admin = "postmaster\\@$mydomain";\n'
                             '$x = "${mydomain}/x" . \'.y\';\n')
    assert values["$virus_admin"] == "postmaster@example.com"
    assert values["$x"] == "example.com/x.y"


def test_predefined_scalars_stand_in_for_unknown_ones(tmp_path: Path) -> None:
    values = _read(tmp_path, '@local_domains_acl = ( ".$mydomain" );', mydomain="ex.org")
    assert values["@local_domains_acl"] == [".ex.org"]


def test_a_hash_of_plain_values_is_read(tmp_path: Path) -> None:
    """amavis's $default_ldap: barewords before => are strings, as in Perl."""
    values = _read(tmp_path, "$default_ldap = { hostname => 'ldap.ex.org', port => 389,\n"
                             "  bind_dn => \"cn=a,$mydomain\", tls => 0, };", mydomain="ex.org")
    assert values["$default_ldap"] == {"hostname": "ldap.ex.org", "port": 389,
                                       "bind_dn": "cn=a,ex.org", "tls": 0}


def test_the_debian_mailname_idiom_reads_the_first_line(tmp_path: Path) -> None:
    (tmp_path / "mailname").write_text("mail.example.org\nsecond\n")
    values = _read(tmp_path, f"chomp($mydomain = `head -n 1 {tmp_path / 'mailname'}`);\n"
                             '$a = "x@$mydomain";')
    assert values["$mydomain"] == "mail.example.org"


@pytest.mark.parametrize(("text", "reason"), [
    ("$x = $nobody_set_this;", "uses $nobody_set_this"),
    ("$x = `rm -rf /tmp/nothing`;", "runs the command"),
    ("$re = new_RE(qr'\\.exe$'i);", "calls new_RE()"),
    ("$h = { a => qr/x/ };", "calls qr()"),
    ("$h = { a => 1, 2 };", "do not pair up"),
    ('$s = "mail@example.com";', "interpolates an array"),
    ("@maps = (\\%bypass_virus_checks);", "cannot read"),
])
def test_anything_else_is_left_unread_with_a_reason(tmp_path: Path, text: str,
                                                    reason: str) -> None:
    path = tmp_path / "amavisd.conf"
    path.write_text(text)
    [statement] = read_files([path])
    assert statement.value is UNREAD and reason in statement.reason
    assert statement.where == f"{path}:1"


def test_commands_in_backticks_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _read(tmp_path, f"$x = `touch {marker}`;")
    assert not marker.exists()
