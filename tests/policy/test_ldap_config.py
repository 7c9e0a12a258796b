"""The policy.ldap_* settings: refused when they cannot work (naming the key), ldap3
missing named at start, and the bind password never printed (config show and check,
log lines, error messages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scanner.config import loads, render
from scanner.errors import ConfigError
from tests.slapd import ADMIN, PEOPLE, Slapd

SECRET = "hunter2-ldap"
GOOD = '[policy]\nldap_lookup = "ldap://127.0.0.1:389"\nldap_base = "dc=example,dc=com"\n'


@pytest.mark.parametrize(("extra", "error"), [
    ('ldap_lookup = "ldapx://h"\n', "'policy.ldap_lookup' URL 'ldapx://h': use 'ldap://host"),
    ('ldap_lookup = "ldap://h/dc=example,dc=com"\n', "no user, base or filter in them"),
    ('ldap_lookup = "ldap://a ldap//b"\n', "URL 'ldap//b': use 'ldap://host"),
    (f'ldap_lookup = "ldap://u:{SECRET}@h"\n', "'ldap://u:***@h'"),
    ('ldap_lookup = "ldap://h:99999"\n', "the port is not a number"),
    ('ldap_base = ""\n', "'policy.ldap_base' is empty"),
    ('ldap_query_filter = "(objectClass=amavisAccount)"\n', "has no (ATTR=%m) term"),
    ('ldap_query_filter = "(&(mail=%m)(cn=%m*))"\n', "%m is only understood as a whole"),
    ('ldap_query_filter = "(&(mail=%m)"\n', "parentheses do not match"),
    (f'ldap_bind_password = "{SECRET}"\n', "'policy.ldap_bind_dn' is empty"),
    ('ldap_lookup = "ldaps://h"\nldap_tls = true\n', "use one or the other"),
    ('ldap_lookup = "ldap://a ldaps://b"\nldap_tls = true\n', "use one or the other"),
    ('ldap_ca_file = "/etc/ssl/certs/ca-certificates.crt"\n',
     "'policy.ldap_ca_file' is set but no connection uses TLS"),
    ('ldap_scope = "subtree"\n', "ldap_scope"),
    ('ldap_timeout = 0.1\n', "ldap_timeout"),
])
def test_settings_that_cannot_work_are_refused(extra: str, error: str) -> None:
    text = GOOD.replace('ldap_base = "dc=example,dc=com"\n', "") \
        if extra.startswith("ldap_base") else GOOD
    text = text.replace('ldap_lookup = "ldap://127.0.0.1:389"\n', "") \
        if extra.startswith("ldap_lookup") else text
    with pytest.raises(ConfigError) as refused:
        loads(text + extra, "t.toml")
    assert error in str(refused.value)
    assert SECRET not in str(refused.value)


def test_several_servers_are_taken() -> None:
    config = loads(GOOD.replace("ldap://127.0.0.1:389", "ldap://a:389  ldaps://b"), "t.toml")
    assert config.policy.ldap_lookup == "ldap://a:389  ldaps://b"


def test_tls_files_are_read_at_load(tmp_path: Path) -> None:
    """A CA file or client certificate that TLS cannot load is refused at start, naming
    the key and the file (not at the first message, which would be deferred)."""
    tls = GOOD.replace("ldap://", "ldaps://")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [(f'ldap_ca_file = "{tmp_path}/none.pem"\n', "'policy.ldap_ca_file' = "
              f"'{tmp_path}/none.pem': no such file"),
             (f'ldap_ca_file = "{junk}"\n', f"'policy.ldap_ca_file' = '{junk}': not PEM CA"),
             (f'ldap_client_cert = "{junk}"\n', f"'policy.ldap_client_cert' = '{junk}': not "
              "a PEM certificate with its private key"),
             (f'ldap_client_key = "{junk}"\n', "'policy.ldap_client_cert' is empty")]
    for extra, error in cases:
        with pytest.raises(ConfigError) as refused:
            loads(tls + extra, "t.toml")
        assert error in str(refused.value)
        assert str(refused.value).startswith("t.toml: ")
    system = "/etc/ssl/certs/ca-certificates.crt"
    if Path(system).exists():
        assert loads(tls + f'ldap_ca_file = "{system}"\n', "t.toml").policy.ldap_ca_file \
            == system


def test_ldap_keys_are_no_per_recipient_keys() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        loads(GOOD + '[policy.recipients."@example.com"]\nldap_base = "o=x"\n', "t.toml")


def test_a_missing_ldap3_is_named_at_start(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ldap3", None)  # import ldap3 raises ImportError
    with pytest.raises(ConfigError) as refused:
        loads(GOOD, "t.toml")
    assert "'policy.ldap_lookup' is set but the Python package ldap3 is not installed" \
        in str(refused.value)
    assert loads('[policy]\nldap_base = "o=x"\n', "t.toml").policy.ldap_lookup == ""


def test_render_hides_the_bind_password() -> None:
    shown = render(loads(GOOD + f'ldap_bind_dn = "cn=scanner"\n'
                         f'ldap_bind_password = "{SECRET}"\n', "t.toml"))
    assert 'ldap_bind_password = "***"' in shown and SECRET not in shown
    assert 'ldap_bind_password = ""' in render(loads(GOOD, "t.toml"))


def _scanner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=60)


def test_config_show_and_check_print_no_password(tmp_path: Path, slapd: Slapd) -> None:
    """config check binds (refused: the password is wrong) and says the filter would
    defer mail, without the password; config show prints ***."""
    given = tmp_path / "given.toml"
    given.write_text(f'[policy]\nldap_lookup = "{slapd.url}"\nldap_base = "{PEOPLE}"\n'
                     f'ldap_bind_dn = "{ADMIN}"\nldap_bind_password = "{SECRET}"\n'
                     f'[quarantine]\ndirectory = "{tmp_path}/q"\n')
    show = _scanner("config", "show", str(given))
    assert show.returncode == 0, show.stderr
    assert 'ldap_bind_password = "***"' in show.stdout
    check = _scanner("config", "check", str(given))
    assert "policy LDAP directory cannot be read" in check.stderr, check.stderr
    assert "invalidCredentials" in check.stderr and "defers every message (451)" \
        in check.stderr
    for out in (show, check):
        assert SECRET not in out.stdout + out.stderr
