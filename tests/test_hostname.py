"""The host name used when server.hostname is empty: never /etc/hosts's 'localhost'."""

from __future__ import annotations

import socket

import pytest

from scanner.hostname import configured_hostname, local_hostname


@pytest.mark.parametrize(("kernel", "resolved", "expected"), [
    ("vm", "localhost", "vm"),                    # Debian: 127.0.0.1 localhost, then vm
    ("vm", "vm", "vm"),
    ("mx", "mx.example.org", "mx.example.org"),   # the resolver qualifies the name
    ("MX", "mx.example.org", "mx.example.org"),
    ("mx", "mxfoo.example.org", "mx"),            # not a qualification of our name
    ("mx.example.org", "localhost", "mx.example.org"),
])
def test_local_hostname(monkeypatch, kernel: str, resolved: str, expected: str) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: kernel)
    monkeypatch.setattr(socket, "getfqdn", lambda name="": resolved)
    assert local_hostname() == expected


def test_configured_name_wins(monkeypatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    assert configured_hostname("mail.example.net") == "mail.example.net"
    assert configured_hostname("") == "vm"
