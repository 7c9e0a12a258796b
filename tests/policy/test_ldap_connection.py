"""How the policy LDAP lookup reaches its directory, against real slapd servers: TLS
(ldaps:// and StartTLS) verified against ``ldap_ca_file``, a client certificate for a
server that demands one, a list of servers tried in turn, and one connection kept per
worker, opened anew when the server dropped it."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanner.config import loads
from scanner.policy.ldap import LdapLookupError, LdapPolicy
from scanner.testing.postfix import free_port
from tests.slapd import PEOPLE, Slapd, make_pki, private_slapd, slapd_missing


def _config(url: str, extra: str = "") -> Any:
    return loads(f'[policy]\nldap_lookup = "{url}"\nldap_base = "{PEOPLE}"\n{extra}'
                 '[quarantine]\ndirectory = "/var/lib/scanner/quarantine"\n', "t.toml")


@pytest.fixture(scope="module")
def pki() -> Iterator[dict[str, Path]]:
    if slapd_missing() or not shutil.which("openssl"):
        pytest.skip(slapd_missing() or "the openssl command is missing")
    base = Path(tempfile.mkdtemp(prefix="scanner-pki-", dir="/tmp"))
    try:
        yield make_pki(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _server(pki: dict[str, Path], verify_client: str = "never") -> Iterator[Slapd]:
    with private_slapd(tls=pki, verify_client=verify_client) as server:
        server.account("u", "u@example.test", amavisSpamLover="TRUE")
        yield server


@pytest.fixture(scope="module")
def tls_slapd(pki: dict[str, Path]) -> Iterator[Slapd]:
    """A slapd with the test CA's server certificate for 127.0.0.1."""
    yield from _server(pki)


@pytest.fixture
def demanding_slapd(pki: dict[str, Path]) -> Iterator[Slapd]:
    """A slapd that takes only clients showing a certificate of the test CA."""
    yield from _server(pki, "demand")


def _spam_lover(config: Any, address: str = "u@example.test") -> Any:
    override = LdapPolicy(config).override_for(address)
    return None if override is None else override.spam_lover


def test_ldaps_verified_against_the_ca_file(tls_slapd: Slapd, pki: dict[str, Path]):
    config = _config(tls_slapd.tls_url, f'ldap_ca_file = "{pki["ca"]}"\n')
    assert _spam_lover(config) is True


def test_ldaps_refuses_a_certificate_the_system_cas_do_not_sign(tls_slapd: Slapd):
    with pytest.raises(LdapLookupError, match="certificate verify failed"):
        _spam_lover(_config(tls_slapd.tls_url))


def test_the_certificate_must_name_the_server(tls_slapd: Slapd, pki: dict[str, Path]):
    """The server's certificate names 127.0.0.1 only: reached as localhost, refused."""
    config = _config(f"ldaps://localhost:{tls_slapd.tls_port}", f'ldap_ca_file = "{pki["ca"]}"\n')
    with pytest.raises(LdapLookupError, match="doesn't match"):
        _spam_lover(config)


def test_starttls_verified_against_the_ca_file(tls_slapd: Slapd, pki: dict[str, Path]):
    config = _config(tls_slapd.url, f'ldap_tls = true\nldap_ca_file = "{pki["ca"]}"\n')
    assert _spam_lover(config) is True
    with pytest.raises(LdapLookupError, match="certificate verify failed"):
        _spam_lover(_config(tls_slapd.url, "ldap_tls = true\n"))


def test_a_client_certificate_for_a_server_that_demands_one(demanding_slapd: Slapd,
                                                            pki: dict[str, Path]):
    ca = f'ldap_ca_file = "{pki["ca"]}"\n'
    with pytest.raises(LdapLookupError):
        _spam_lover(_config(demanding_slapd.tls_url, ca))
    config = _config(demanding_slapd.tls_url, ca + f'ldap_client_cert = "{pki["client"]}"\n'
                     f'ldap_client_key = "{pki["client_key"]}"\n')
    assert _spam_lover(config) is True


def test_the_next_server_of_the_list_when_the_first_is_down(tls_slapd: Slapd, caplog):
    down = f"ldap://127.0.0.1:{free_port()}"
    config = _config(f"{down} {tls_slapd.url}")
    with caplog.at_level(logging.INFO, "scanner.policy"):
        assert _spam_lover(config) is True
    assert f"policy LDAP server {down} cannot be used" in caplog.text
    assert f"policy LDAP: connected to {tls_slapd.url}" in caplog.text


def test_every_server_down_names_each(tls_slapd: Slapd):
    first, second = (f"ldap://127.0.0.1:{free_port()}" for _ in range(2))
    with pytest.raises(LdapLookupError) as failed:
        _spam_lover(_config(f"{first} {second}"))
    assert f"{first}: " in str(failed.value) and f"{second}: " in str(failed.value)


def test_one_connection_serves_the_lookups_of_a_worker(tls_slapd: Slapd):
    tls_slapd.account("v", "v@example.test", amavisBypassSpamChecks="TRUE")
    policy = LdapPolicy(_config(tls_slapd.url))
    before = tls_slapd.connections()
    assert policy.override_for("u@example.test").spam_lover is True
    assert policy.override_for("v@example.test").bypass_spam_checks is True
    policy.reload()  # cache forgotten: a third read; and the connection is renewed
    assert policy.override_for("u@example.test").spam_lover is True
    policy.close()
    assert tls_slapd.connections() - before == 2


def test_a_connection_the_server_dropped_is_opened_anew(pki: dict[str, Path], caplog):
    server = next(gen := _server(pki))
    try:
        server.account("v", "v@example.test", amavisBypassSpamChecks="TRUE")
        policy = LdapPolicy(_config(server.url))
        assert policy.override_for("u@example.test").spam_lover is True
        server.restart()  # the kept connection now leads nowhere
        with caplog.at_level(logging.WARNING, "scanner.policy"):
            assert policy.override_for("v@example.test").bypass_spam_checks is True
        assert "policy LDAP connection lost" in caplog.text
        policy.close()
    finally:
        gen.close()
