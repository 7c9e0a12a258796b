"""Trusted ARC sealers (``arc_trusted_sealers``): a DMARC failure caused by a mailing
list that changed the message is overridden only for a valid chain sealed last by a
trusted domain that saw DMARC pass. Chains are sealed at test time with dkimpy; the
From domain good.test (p=reject) and the sealers' keys are served by the tests' NSD."""

from __future__ import annotations

import dkim
import pytest

from scanner.auth.arc import ArcResult
from scanner.auth.arc_trust import trusted_override
from scanner.auth.authres import read_results
from scanner.errors import ConfigError
from scanner.scores import load_scores
from scanner.task import ClientInfo
from scanner.testing.dns_server import DnsServer
from tests.auth.conftest import Keys
from tests.auth.test_auth_check import check_for, mail, scan, signed

LIST = ClientInfo(addr="192.0.2.1", name="mail.arc.test", helo="mail.arc.test")
BOUNCES = "list-bounces@arc.test"  # SPF passes, but does not align with good.test
UPSTREAM = "dkim=pass header.d=good.test; dmarc=pass header.from=good.test"
OVERRIDE = ("dmarc=fail (p=reject dis=none; local_policy override: trusted ARC sealer {}) "
            "header.from=good.test;")
# The properties IANA's Email Authentication Methods registry has for the methods we
# report (RFC 8601, RFC 6008, RFC 7489, RFC 8617 section 10)
REGISTERED = {("spf", "smtp.mailfrom"), ("spf", "smtp.helo"), ("dkim", "header.d"),
              ("dkim", "header.i"), ("dkim", "header.b"), ("dkim", "header.a"),
              ("dkim", "header.s"), ("dmarc", "header.from"), ("dmarc", "policy.dmarc"),
              ("arc", "smtp.remote-ip"), ("arc", "header.oldest-pass")}


def seal(keys: Keys, raw: bytes, sealer: str, results: str = UPSTREAM, cv: str = "",
         tag: bool = False) -> bytes:
    """``raw`` as the list host ``sealer`` sends it on: its Authentication-Results
    (``results``, and ``arc=cv`` when given), the Subject tagged when ``tag``, then its
    ARC set."""
    server = f"mx.{sealer}"
    arc = f"; arc={cv}" if cv else ""
    stamped = f"Authentication-Results: {server}; {results}{arc}\r\n".encode() + raw
    if tag:
        stamped = stamped.replace(b"Subject: hello", b"Subject: [list] hello", 1)
        assert b"[list]" in stamped
    fields = dkim.arc_sign(stamped, b"arc", sealer.encode(), keys.files["k2"].read_bytes(),
                           server.encode())
    assert fields, f"dkimpy did not seal for {sealer}"
    return b"".join(fields) + stamped


def listed(keys: Keys, sealer: str = "arc.test", results: str = UPSTREAM) -> bytes:
    """Alice's DKIM-signed mail after a list at ``sealer`` tagged its Subject."""
    return seal(keys, signed(keys, mail("alice@good.test"), "good.test"), sealer, results,
                tag=True)


def test_trusted_valid_chain_overrides(dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = listed(dkim_keys)
    hits, headers = scan(check_for(dns_server), raw, BOUNCES, LIST)
    assert {"DMARC_REJECT", "ARC_VALID", "DKIM_INVALID"} <= set(hits)  # not trusted yet
    hits, headers = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw,
                         BOUNCES, LIST)
    assert {"DMARC_ARC_OVERRIDE", "ARC_VALID", "DKIM_INVALID"} <= set(hits)
    assert "DMARC_REJECT" not in hits
    assert hits["DMARC_ARC_OVERRIDE"].options == ("good.test", "arc.test")
    assert OVERRIDE.format("arc.test") in headers[0][1]


def test_override_is_written_with_registered_names_only(dns_server: DnsServer,
                                                        dkim_keys: Keys) -> None:
    """Our header said ``policy.override=arc``: no such dmarc property is registered
    (IANA's Email Authentication Methods: dmarc has header.from and policy.dmarc) and
    "arc" is no DMARC override reason (RFC 7489 appendix C; RFC 8617 7.2 reports an
    ARC-based override as local_policy). The override is in the comment."""
    hits, headers = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]),
                         listed(dkim_keys), BOUNCES, LIST)
    assert "DMARC_ARC_OVERRIDE" in hits
    items = read_results(headers[0][1].encode())
    assert {i.method for i in items} == {"spf", "dkim", "dmarc", "arc"}
    assert [(i.method, k) for i in items for k, _ in i.props
            if (i.method, k) not in REGISTERED] == []
    assert load_scores().get("DMARC_ARC_OVERRIDE").weight <= 0


def test_subdomain_of_a_trusted_domain_is_trusted(dns_server: DnsServer,
                                                  dkim_keys: Keys) -> None:
    raw = listed(dkim_keys, "lists.arc.test")
    hits, headers = scan(check_for(dns_server, arc_trusted_sealers=["ARC.test."]), raw,
                         BOUNCES, LIST)
    assert "DMARC_ARC_OVERRIDE" in hits and "DMARC_REJECT" not in hits
    assert OVERRIDE.format("lists.arc.test") in headers[0][1]
    hits, _ = scan(check_for(dns_server, arc_trusted_sealers=["other.arc.test"]), raw,
                   BOUNCES, LIST)
    assert "DMARC_REJECT" in hits and "DMARC_ARC_OVERRIDE" not in hits


def test_untrusted_sealer_leaves_the_failure(dns_server: DnsServer, dkim_keys: Keys
                                              ) -> None:
    raw = listed(dkim_keys, "untrusted.test")
    hits, headers = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw,
                         BOUNCES, LIST)
    assert {"DMARC_REJECT", "ARC_VALID"} <= set(hits) and "DMARC_ARC_OVERRIDE" not in hits
    assert "dmarc=fail (p=reject dis=reject) header.from=good.test;" in headers[0][1]


def test_trusted_sealer_with_a_broken_chain_leaves_the_failure(
        dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = listed(dkim_keys).replace(b"Hello there.", b"Hello there, changed after sealing.")
    hits, _ = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw, BOUNCES,
                   LIST)
    assert {"DMARC_REJECT", "ARC_INVALID"} <= set(hits) and "DMARC_ARC_OVERRIDE" not in hits


def test_only_the_latest_seal_counts(dns_server: DnsServer, dkim_keys: Keys) -> None:
    """The trusted list sealed i=1, an untrusted hop sealed i=2 last: the failure stands
    (that hop could have changed anything). The other way round it is overridden."""
    check = check_for(dns_server, arc_trusted_sealers=["arc.test"])
    later = seal(dkim_keys, listed(dkim_keys), "untrusted.test", cv="pass")
    assert b"ARC-Seal: i=2;" in later
    hits, _ = scan(check, later, BOUNCES, LIST)
    assert {"DMARC_REJECT", "ARC_VALID"} <= set(hits) and "DMARC_ARC_OVERRIDE" not in hits
    earlier = seal(dkim_keys, listed(dkim_keys, "untrusted.test"), "arc.test", cv="pass")
    hits, headers = scan(check, earlier, BOUNCES, LIST)
    assert {"DMARC_ARC_OVERRIDE", "ARC_VALID"} <= set(hits) and "DMARC_REJECT" not in hits
    assert "arc=pass (i=2)" in headers[0][1]


@pytest.mark.parametrize("upstream", [
    "dkim=fail header.d=good.test; dmarc=fail header.from=good.test",
    "dkim=pass header.d=good.test; dmarc=pass header.from=other.test",
    "spf=pass smtp.mailfrom=good.test",  # no dmarc, no aligned DKIM pass
    "dkim=pass header.d=other.test",
])
def test_trusted_sealer_that_did_not_see_a_pass(dns_server: DnsServer, dkim_keys: Keys,
                                                upstream: str) -> None:
    raw = listed(dkim_keys, results=upstream)
    hits, _ = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw, BOUNCES,
                   LIST)
    assert {"DMARC_REJECT", "ARC_VALID"} <= set(hits) and "DMARC_ARC_OVERRIDE" not in hits


def test_aligned_dkim_pass_counts_when_the_sealer_records_no_dmarc(
        dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = listed(dkim_keys, results="dkim=pass (good) header.d=mail.good.test")
    hits, _ = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw, BOUNCES,
                   LIST)
    assert "DMARC_ARC_OVERRIDE" in hits and "DMARC_REJECT" not in hits


def test_dmarc_pass_gets_no_override(dns_server: DnsServer, dkim_keys: Keys) -> None:
    raw = seal(dkim_keys, signed(dkim_keys, mail("alice@good.test"), "good.test"),
               "arc.test")  # the list left the message alone: DKIM still verifies
    hits, headers = scan(check_for(dns_server, arc_trusted_sealers=["arc.test"]), raw,
                         BOUNCES, LIST)
    assert {"DMARC_PASS", "ARC_VALID"} <= set(hits) and "DMARC_ARC_OVERRIDE" not in hits
    assert "override" not in headers[0][1]


@pytest.mark.parametrize("value", ["not a domain", "[192.0.2.1]", "", "localhost", 7])
def test_an_entry_that_is_no_domain_is_a_config_error(dns_server: DnsServer,
                                                      value: object) -> None:
    with pytest.raises(ConfigError) as err:
        check_for(dns_server, arc_trusted_sealers=["lists.example.org", value])
    assert "checks.settings.auth.arc_trusted_sealers" in str(err.value)


def test_read_results_of_an_arc_authentication_results_value() -> None:
    items = read_results(b' mx.lists.test 1; spf = pass (ok) smtp.mailfrom=a@good.test;'
                         b'\r\n dkim=pass header.d="good.test" header.s=s1; DMARC=Pass '
                         b'header.from=Good.Test; none')
    assert [(i.method, i.result) for i in items] == [("spf", "pass"), ("dkim", "pass"),
                                                     ("dmarc", "pass")]
    assert items[1].props == [("header.d", "good.test"), ("header.s", "s1")]
    assert read_results(b"") == [] and read_results(b";;; =;(x") == []


def test_override_needs_a_passing_chain() -> None:
    """The rule on its own: a chain that is not arc=pass or sealed by nobody trusted."""
    aar = b"i=1; mx.arc.test; dmarc=pass header.from=good.test"
    good = ArcResult("pass", 1, "success", "arc.test", aar)
    assert trusted_override(good, "good.test", ("arc.test",)) == "arc.test"
    for result in ("fail", "temperror", "none"):
        assert trusted_override(ArcResult(result, 1, "", "arc.test", aar), "good.test",
                                ("arc.test",)) == ""
    assert trusted_override(good, "good.test", ()) == ""
    assert trusted_override(good, "good.test", ("rc.test",)) == ""  # not a label boundary
    assert trusted_override(None, "good.test", ("arc.test",)) == ""


@pytest.mark.parametrize("aar", [b"", b"i=1", b"i=1; mx.arc.test; none",
                                 b"i=1; mx.arc.test; dmarc=pass header.from=\xff\xfe.test",
                                 b"i=1; (unclosed; dmarc=pass", b"\x00" * 100])
def test_unreadable_sealer_results_trust_nothing(aar: bytes) -> None:
    """Hostile or empty ARC-Authentication-Results never crash and never override."""
    arc = ArcResult("pass", 1, "success", "arc.test", aar)
    assert trusted_override(arc, "good.test", ("arc.test",)) == ""


@pytest.mark.parametrize("aar", [
    b'i=1; mx.arc.test; spf=fail reason="see; dkim=pass header.d=good.test"',
    b'i=1; mx.arc.test; spf=fail (x (y (z (w; dkim=pass header.d=good.test)))) ;'
    b" spf=none",
    b'(i=2; x) i=1; mx.arc.test; dmarc=fail reason="a; dmarc=pass" header.from=good.test'])
def test_results_inside_quotes_or_comments_trust_nothing(aar: bytes) -> None:
    """A ``dkim=pass`` or ``dmarc=pass`` that stands inside a quoted string or a comment
    of the sealer's ARC-Authentication-Results (text a sender may control, such as an
    SPF explanation) is no result: the quoted one was read as an item and overrode."""
    arc = ArcResult("pass", 1, "success", "arc.test", aar)
    assert trusted_override(arc, "good.test", ("arc.test",)) == ""
    real = aar.replace(b"spf=fail", b"dkim=pass header.d=good.test; spf=fail")
    real = real.replace(b"dmarc=fail", b"dmarc=pass")
    assert trusted_override(ArcResult("pass", 1, "success", "arc.test", real), "good.test",
                            ("arc.test",)) == "arc.test", real
