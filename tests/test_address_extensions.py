"""Address extensions read as amavis and Postfix read them (``recipient_delimiter``):
one reading for policy lookups, pen pals and the extension we add to delivered copies."""

from __future__ import annotations

import pytest

from scanner.actions.tagging import extend
from scanner.addresses import split_localpart
from scanner.config import loads
from scanner.errors import ConfigError
from scanner.penpals_store import normalise
from scanner.policy.lookup import lookup


@pytest.mark.parametrize(("local", "delimiter", "expected"), [
    ("user+ext", "+", ("user", "+ext")),
    ("user+a+b", "+", ("user", "+a+b")),
    ("user-ext", "+-", ("user", "-ext")),  # a set of characters, as Postfix 2.11+
    ("a-b+c", "+-", ("a", "-b+c")),
    ("a-b+c", "+", ("a-b", "+c")),
    ("+ext", "+", ("+ext", "")),  # the local part would be empty: not split
    ("postmaster", "+-", ("postmaster", "")),
    ("MAILER-DAEMON", "-", ("MAILER-DAEMON", "")),
    ("owner-list", "-", ("owner-list", "")),
    ("list-request", "-", ("list-request", "")),
    ("owner-list", "+", ("owner-list", "")),
    ("user+ext", "", ("user+ext", "")),
])
def test_split_localpart(local: str, delimiter: str, expected: tuple[str, str]) -> None:
    assert split_localpart(local, delimiter) == expected


def test_extension_added_with_the_first_delimiter_and_none_without_one() -> None:
    assert extend("bob-work@example.test", "spam", "+-") == "bob+spam@example.test"
    assert extend("bob@example.test", "spam", "") == "bob@example.test"  # was bobspam@
    assert extend("+x@example.test", "spam", "+") == "+x+spam@example.test"  # was +spam@


def test_lookups_and_pen_pals_read_the_delimiter_set() -> None:
    table = {"bob@example.test": "bob's"}
    assert lookup(table, "bob-lists@example.test", "+-") == "bob's"
    assert lookup(table, "bob-lists@example.test", "+") is None
    assert normalise("Bob-Lists@Example.TEST", "+-") == "bob@example.test"


@pytest.mark.parametrize("key", ["addr_extension_spam", "addr_extension_virus",
                                 "recipient_delimiter"])
def test_an_extension_that_cannot_be_in_an_address_is_a_config_error(key: str) -> None:
    """'spam box' or 'spam@x' would make every tagged copy a refused RCPT (a bounce)."""
    for bad in ("spam box", "sp@m", '"q"'):
        with pytest.raises(ConfigError, match=f"t.toml: 'policy.{key}' = .* is not part of an"):
            loads(f"[policy]\n{key} = '{bad}'\n", "t.toml")
    assert getattr(loads(f"[policy]\n{key} = '-'\n", "t.toml").policy, key) == "-"
