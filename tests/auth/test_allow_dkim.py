"""allow_senders_dkim: a From address on the list is allowed only when a signature the
real auth check verified (against the test NSD's key records) comes from its domain or
a parent domain; a forged From, a third party's signature or a broken one allow
nothing."""

from __future__ import annotations

from scanner.checks.auth import Auth
from scanner.config import loads
from scanner.policy.decide import decide
from scanner.policy.effective import message_policy, recipient_policy
from scanner.scores import load_scores
from scanner.testing.dns_server import DnsServer
from scanner.testing.tasks import task_from_bytes
from tests.auth.conftest import Keys, run
from tests.auth.test_auth_check import BAD, GOOD, check_for, mail, signed

SCORES = load_scores()
POLICY = "[policy]\nallow_senders_dkim = ['@.good.test', 'x@nodmarc.test']\n"


def _allowed(check: Auth, raw: bytes, sender: str, client=GOOD) -> list[str]:
    """The sender-list symbols of bob@ours.test's verdict once the auth check has run."""
    config = loads(POLICY, "t.toml")
    with task_from_bytes(raw, sender=sender, client=client,
                         recipients=("bob@ours.test",)) as task:
        task.hits.extend(run(check.run(task)))
        policy = recipient_policy(message_policy(config, []), "bob@ours.test")
        verdict = decide(task, "bob@ours.test", policy, SCORES, {})
    return [h.symbol for h in verdict.hits if h.symbol.startswith("SENDER_")]


def test_a_signature_of_the_from_domain_or_its_parent_allows(dns_server: DnsServer,
                                                             dkim_keys: Keys) -> None:
    check = check_for(dns_server)
    raw = signed(dkim_keys, mail("news@good.test"), "good.test")
    assert _allowed(check, raw, "bounce-1@esp.example") == ["SENDER_ALLOWLISTED_DKIM"]
    sub = signed(dkim_keys, mail("news@mail.good.test"), "good.test")
    assert _allowed(check, sub, "bounce-1@esp.example") == ["SENDER_ALLOWLISTED_DKIM"]


def test_nothing_vouches_for_a_forged_or_third_party_from(dns_server: DnsServer,
                                                          dkim_keys: Keys) -> None:
    check = check_for(dns_server)
    assert _allowed(check, mail("news@good.test"), "news@good.test", BAD) == []
    third = signed(dkim_keys, mail("x@nodmarc.test"), "good.test")
    assert _allowed(check, third, "x@nodmarc.test", BAD) == []
    broken = signed(dkim_keys, mail("news@good.test"), "good.test").replace(
        b"Hello there.", b"Hello world.")
    assert _allowed(check, broken, "bounce-1@esp.example") == []
    # the signer is allowed, but this From address is not on the list
    other = signed(dkim_keys, mail("y@nodmarc.test"), "nodmarc.test")
    assert _allowed(check, other, "y@nodmarc.test") == []
    own = signed(dkim_keys, mail("x@nodmarc.test"), "nodmarc.test")
    assert _allowed(check, own, "x@nodmarc.test") == ["SENDER_ALLOWLISTED_DKIM"]


def test_only_a_parent_within_the_registered_domain_vouches() -> None:
    from scanner.policy.decide import _vouches
    assert _vouches("example.co.uk", "news.example.co.uk")
    assert _vouches("example.co.uk", "example.co.uk")
    assert not _vouches("co.uk", "shop.co.uk")              # a public suffix
    assert not _vouches("news.example.co.uk", "example.co.uk")  # a child for its parent
    assert not _vouches("ample.co.uk", "example.co.uk")     # not a parent, only a tail
