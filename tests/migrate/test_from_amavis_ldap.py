"""``from-amavis``: $enable_ldap and $default_ldap become the policy.ldap_* keys."""

from __future__ import annotations

from pathlib import Path

from scanner import config as cfgmod
from scanner.migrate.amavis import convert_to_toml

LDAP_CONF = r"""
$mydomain = 'example.com';
$enable_ldap = 1;
$default_ldap = {
  hostname      => 'ldap.example.com',
  port          => 3389,
  base          => "ou=People,dc=example,dc=com",
  scope         => 'one',
  query_filter  => '(&(objectClass=amavisAccount)(|(mail=%m)(mailAlias=%m)))',
  bind_dn       => "cn=amavis,dc=example,dc=com",
  bind_password => 'hunter2',
  timeout       => 10,
  tls           => 1,
  sasl          => 1,
};
1;
"""


def _convert(tmp_path: Path, text: str) -> tuple[cfgmod.Config, str, list]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    toml, conv = convert_to_toml([path])
    return cfgmod.loads(toml, "converted"), toml, conv.notes


def test_default_ldap_becomes_the_ldap_keys(tmp_path: Path) -> None:
    config, _, notes = _convert(tmp_path, LDAP_CONF)
    p = config.policy
    assert (p.ldap_lookup, p.ldap_base, p.ldap_scope, p.ldap_bind_dn, p.ldap_bind_password,
            p.ldap_timeout, p.ldap_tls) == (
        "ldap://ldap.example.com:3389", "ou=People,dc=example,dc=com", "one",
        "cn=amavis,dc=example,dc=com", "hunter2", 10.0, True)
    assert p.ldap_query_filter == "(&(objectClass=amavisAccount)(|(mail=%m)(mailAlias=%m)))"
    assert any("not converted: sasl" in n.reason for n in notes)


def test_an_ldaps_url_and_amavis_s_long_timeout(tmp_path: Path) -> None:
    text = LDAP_CONF.replace("'ldap.example.com'", "'ldaps://ldap.example.com'") \
        .replace("timeout       => 10", "timeout       => 120").replace("tls           => 1",
                                                                          "tls => 0")
    config, _, _ = _convert(tmp_path, text)
    assert (config.policy.ldap_lookup, config.policy.ldap_timeout, config.policy.ldap_tls) \
        == ("ldaps://ldap.example.com:3389", 60.0, False)


def test_ldap_off_or_without_base_is_noted_not_converted(tmp_path: Path) -> None:
    config, _, notes = _convert(tmp_path, LDAP_CONF.replace("$enable_ldap = 1",
                                                            "$enable_ldap = 0"))
    assert config.policy.ldap_lookup == ""
    assert any("LDAP lookups are off" in n.reason for n in notes)
    no_base = LDAP_CONF.replace('  base          => "ou=People,dc=example,dc=com",\n', "")
    config, _, notes = _convert(tmp_path, no_base)
    assert config.policy.ldap_lookup == ""
    assert any("it names no base" in n.reason for n in notes)


def test_a_list_of_servers_and_the_tls_files(tmp_path: Path) -> None:
    """amavis's hostname list becomes ldap_lookup's URLs (tried in turn); cafile,
    clientcert and clientkey that exist here become the ldap_* files; one that does
    not is noted, as is a file given with TLS off."""
    ca = tmp_path / "ca.pem"
    ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    text = LDAP_CONF.replace("'ldap.example.com'", "['ldap1.example.com', 'ldap://ldap2/']") \
        .replace("  sasl          => 1,\n", f"  cafile => '{ca}',\n  clientcert => "
                 f"'{tmp_path}/missing.pem',\n")
    config, _, notes = _convert(tmp_path, text)
    assert config.policy.ldap_lookup == "ldap://ldap1.example.com:3389 ldap://ldap2:3389"
    assert config.policy.ldap_ca_file == str(ca)
    assert config.policy.ldap_client_cert == ""
    assert any(f"clientcert '{tmp_path}/missing.pem' is not a file here" in n.reason
               for n in notes)
    off = text.replace("tls           => 1", "tls => 0")
    config, _, notes = _convert(tmp_path, off)
    assert config.policy.ldap_ca_file == ""
    assert any("cafile" in n.reason and "no connection uses TLS" in n.reason for n in notes)
