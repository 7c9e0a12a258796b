"""A real Postfix with the real filter in its content_filter path, for end-to-end tests.

``Stack`` = a private :class:`PostfixInstance` (injection smtpd -> content_filter ->
our filter -> reinjection smtpd -> virtual delivery into Maildirs) plus a
:class:`FilterProcess` running ``scanner serve``; ``ProxyStack`` the same with the
filter before queue (the injection smtpd's ``smtpd_proxy_filter``).
"""

from __future__ import annotations

import email
import re
import shutil
import time
from collections import Counter
from email.policy import compat32

import pytest

from scanner.config import loads
from scanner.postfix_proxy import after_filter_service, proxy_listener, proxy_options
from scanner.testing.filter import FilterProcess
from scanner.testing.postfix import PostfixInstance, free_port, make_base_dir, postfix_available
from tests.helpers import filter_config

FAST_RETRY = {
    "minimal_backoff_time": "2s",
    "maximal_backoff_time": "4s",
    "queue_run_delay": "1s",
}

# The policy of the before-queue stacks (milter, smtpd_proxy_filter): a blocked sender's
# spam is rejected, carol loves it, dave discards it; spam headers on every message.
BEFORE_QUEUE_POLICY = """
[policy]
tag_level = -999.0
block_senders = ["@spam.example"]
spam_destiny = "reject"

[policy.recipients."carol@example.test"]
spam_lover = true

[policy.recipients."dave@example.test"]
spam_destiny = "discard"
"""


def require_postfix() -> None:
    why = postfix_available()
    if why:
        pytest.skip(why)


def plain_postfix(**extra: str) -> PostfixInstance:
    """A started private Postfix with no content filter, ``extra`` main.cf settings (a
    next hop of its own for reinjection tests); the caller removes it."""
    require_postfix()
    postfix = PostfixInstance(base=make_base_dir(), smtpd_port=free_port(),
                              reinject_port=free_port(), filter=None, extra_main=extra)
    postfix.start()
    return postfix


class Stack:
    """Postfix + filter, both private, loopback only."""

    def __init__(self, *, extra: str = "", workers: int = 2, protocol: str = "smtp",
                 maxproc: int = 20, server_extra: str = "",
                 listener_protocol: str | None = None,
                 domains: tuple[str, ...] = ("example.test",)) -> None:
        """``protocol``: Postfix's filter transport and the filter's listener;
        ``listener_protocol`` gives the listener another one (a misconfiguration);
        ``domains``: the domains with Maildirs."""
        listener_protocol = listener_protocol or protocol
        self.base = make_base_dir("scanner-e2e-")
        self.filter_port = free_port()
        self.postfix = PostfixInstance(
            base=self.base / "postfix", smtpd_port=free_port(), reinject_port=free_port(),
            filter=f"scanner:[127.0.0.1]:{self.filter_port}", filter_protocol=protocol,
            filter_maxproc=maxproc, filter_timeout=120, extra_main=dict(FAST_RETRY),
            domains=domains)
        listener_extra = f'\n[[listeners]]\nport = {self.filter_port}\nprotocol = "lmtp"\n' \
            if listener_protocol == "lmtp" else ""
        text = filter_config(self.filter_port, self.postfix.reinject_port, workers=workers,
                             log_file=self.base / "filter" / "scanner.log", extra=extra,
                             server_extra=server_extra)
        if listener_protocol == "lmtp":
            text = text.replace(f"[[listeners]]\nport = {self.filter_port}\n", "")
            text += listener_extra
        self.filter = FilterProcess(self.base / "filter", text, [self.filter_port])

    def start(self) -> Stack:
        self.postfix.start()
        self.filter.start()
        return self

    def stop(self) -> None:
        self.filter.stop()
        self.postfix.stop()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def set_reinjection(self, up: bool) -> None:
        """Take the reinjection smtpd out of master.cf (or put it back) and reload."""
        master = self.postfix.conf_dir / "master.cf"
        text = master.read_text()
        marker = f"127.0.0.1:{self.postfix.reinject_port} "
        lines = text.splitlines()
        out, skipping = [], False
        for line in lines:
            if line.startswith(marker) or line.startswith("#OFF#" + marker):
                skipping = True
            elif not line.startswith((" ", "\t", "#OFF#  ", "#OFF#\t")):
                skipping = False
            if skipping:
                bare = line[5:] if line.startswith("#OFF#") else line
                line = bare if up else "#OFF#" + bare
            out.append(line)
        master.write_text("\n".join(out) + "\n")
        self.postfix._postfix("reload")


class ProxyStack(Stack):
    """Client -> Postfix's public smtpd (``smtpd_proxy_filter``, the settings of
    ``scanner postfix-config --proxy``) -> the filter -> the after-filter smtpd ->
    Maildir: the filter before queue; everything private, loopback only."""

    def __init__(self, *, extra: str = "", workers: int = 2,
                 server_extra: str = "", unix_socket: bool = False) -> None:
        """``unix_socket``: the public smtpd reaches the filter through an SMTP listener
        on a Unix socket (``smtpd_proxy_filter = unix:PATH``), listed first."""
        self.base = make_base_dir("scanner-proxy-")
        self.filter_port = free_port()
        reinject_port = free_port()
        text = filter_config(self.filter_port, reinject_port, workers=workers,
                             log_file=self.base / "filter" / "scanner.log", extra=extra,
                             server_extra=server_extra)
        self.socket = self.base / "filter" / "smtp.sock"
        if unix_socket:  # before the TCP listener (which the harness waits for)
            text = text.replace("[[listeners]]", f'[[listeners]]\npath = "{self.socket}"\n'
                                'socket_group = "postfix"\n\n[[listeners]]', 1)
        config = loads(text, "proxy-test.toml")
        self.postfix = PostfixInstance(
            base=self.base / "postfix", smtpd_port=free_port(), reinject_port=reinject_port,
            filter=None, smtpd_maxproc=config.server.concurrency,
            smtpd_options=proxy_options(proxy_listener(config), config.server.message_timeout,
                                        config.server.concurrency),
            reinject_builder=after_filter_service)
        self.filter = FilterProcess(self.base / "filter", text, [self.filter_port])

def summary_line(stack: Stack, mid: str, timeout: float = 30) -> str:
    """The filter's last summary line for the message whose Message-ID is
    ``<MID@example.org>``, waiting for it up to ``timeout`` seconds."""
    return summary_lines(stack, mid, 1, timeout)[-1]


def summary_lines(stack: Stack, mid: str, count: int, timeout: float = 30) -> list[str]:
    """The filter's summary lines for the message whose Message-ID is
    ``<MID@example.org>``, once there are ``count`` of them (a message with passed and
    blocked recipients has two), waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [ln for ln in stack.filter.summary_lines() if f"<{mid}@example.org>" in ln]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no log line for {mid}:\n" + "\n".join(stack.filter.log_lines()[-10:]))


def delivered_ids(stack: Stack, user: str | None = None) -> Counter:
    """Message-IDs of delivered mail, with their counts (a count > 1 is a duplicate)."""
    ids: Counter = Counter()
    for path in stack.postfix.maildir_messages(user):
        msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
        ids[str(msg.get("Message-ID", "")).strip()] += 1
    return ids


def wait_ids(stack: Stack, wanted: set[str], timeout: float, flush_every: float = 3.0,
             copies: int = 1) -> Counter:
    """Wait until every Message-ID in ``wanted`` was delivered ``copies`` times, counted
    over every mailbox (flushing the queue); a message to several local users lands in
    each of their mailboxes one after the other."""
    deadline = time.monotonic() + timeout
    next_flush = time.monotonic() + flush_every
    while True:
        ids = delivered_ids(stack)
        if all(ids[w] >= copies for w in wanted):
            return ids
        if time.monotonic() > deadline:
            missing = sorted(wanted - set(ids))
            raise AssertionError(
                f"{len(missing)} of {len(wanted)} never delivered (e.g. {missing[:3]})\n"
                f"queue: {stack.postfix.queue()}\n--- postfix log ---\n"
                f"{stack.postfix.log_tail(30)}\n--- filter log ---\n"
                + "\n".join(stack.filter.log_lines()[-20:]))
        if time.monotonic() > next_flush:
            stack.postfix.flush()
            next_flush = time.monotonic() + flush_every
        time.sleep(0.1)


def connections_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port (from /proc/net/tcp)."""
    count = 0
    hexport = f"{port:04X}"
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if local.endswith(":" + hexport) and state == "01":
                count += 1
    return count


def split_delivered(raw: bytes) -> tuple[bytes, bytes]:
    """Header block and body of a delivered (LF) message."""
    head, _, body = raw.partition(b"\n\n")
    return head, body


MID = re.compile(rb"^Message-ID: (.*)$", re.M | re.I)
