"""Postfix settings for before-queue scanning through ``smtpd_proxy_filter``.

``scanner postfix-config --proxy`` prints them: the public smtpd hands each message
over SMTP to scanner's listener before it queues it (Postfix's SMTPD_PROXY_README); the
listener scans it, passes it to the after-filter smtpd (the reinjection service) and only
then answers the end of DATA, so the sending client itself gets the outcome: ``250``
with the queue ID of the after-filter smtpd, a policy reject as ``5xx`` (no bounce to a
forged sender), any failure as ``4xx`` (the client keeps the message and retries).
Nothing else in scanner changes: the listener is the same one content_filter uses.

Differences from the after-queue wiring of :mod:`scanner.postfix_config`: no
``content_filter``; the public smtpd waits for scanner up to ``smtpd_proxy_timeout``
(above ``server.message_timeout``); ``speed_adjust`` makes Postfix take the whole
message from the client before it connects to scanner, so a slow client does not hold
one of scanner's connections; the smtpd's process limit is ``server.concurrency``
(each of its processes may hold one connection to scanner); and the after-filter
smtpd runs the header/body checks and address mappings, since no cleanup ran before
the filter. The tests' stack (``tests/test_postfix_proxy.py``) is built from these
pieces.
"""

from __future__ import annotations

import math

from scanner.config.model import Config, ListenerConfig
from scanner.errors import ConfigError
from scanner.postfix_config import (
    listener_label,
    listener_nexthop,
    master_entry,
    reinject_maxproc,
    reinject_service,
    service_address,
)

#: Seconds the public smtpd waits for scanner beyond ``server.message_timeout``.
PROXY_MARGIN = 30
#: The longest ``server.message_timeout`` advised here: the sending client waits for
#: the end-of-DATA reply for 10 minutes (RFC 5321 4.5.3.2.6), Postfix's proxy adds
#: its margin, and slow clients need room too.
CLIENT_WAIT_ADVICE = 300
#: master.cf types a public smtpd service has: its own port, or handed over by postscreen
PUBLIC_TYPES = ("inet", "pass")

#: ``receive_override_options`` of the after-filter smtpd in this wiring: nothing has
#: been cleaned up before the filter, so header/body checks and address mappings run
#: here, once (as in Postfix's SMTPD_PROXY_README); scanner already knows the
#: recipients are valid, and the public smtpd ran the milters.
PROXY_RECEIVE_OVERRIDES = "no_unknown_recipient_checks,no_milters"


def proxy_timeout(message_timeout: float) -> int:
    """``smtpd_proxy_timeout``: longer than scanner may take, so that scanner answers
    first (451 when its own time is up)."""
    return math.ceil(message_timeout) + PROXY_MARGIN


def proxy_options(listener: ListenerConfig, message_timeout: float,
                  concurrency: int) -> list[tuple[str, str]]:
    """The ``-o`` overrides of the public smtpd service."""
    return [
        # a Unix socket listener: unix:PATH, which smtpd_proxy_filter takes since
        # Postfix 2.7 (our service is not chrooted, so the path is the real one)
        ("smtpd_proxy_filter", listener_nexthop(listener)),
        ("smtpd_proxy_timeout", f"{proxy_timeout(message_timeout)}s"),
        ("smtpd_proxy_options", "speed_adjust"),
        # one client must not take every connection to the filter (Postfix's example)
        ("smtpd_client_connection_count_limit", str(max(1, concurrency // 2))),
    ]


def proxy_smtpd(service: str, listener: ListenerConfig, message_timeout: float,
                concurrency: int) -> str:
    """The public smtpd ``service`` (``NAME/TYPE``: ``smtp/inet`` in Debian's
    master.cf, ``smtpd/pass`` behind postscreen) with the proxy."""
    name, kind = check_service(service)
    private = "n" if kind == "inet" else "-"  # a pass service is internal (postscreen's)
    return master_entry(name, kind, "smtpd", private=private, maxproc=concurrency,
                        options=proxy_options(listener, message_timeout, concurrency))


def check_service(service: str) -> tuple[str, str]:
    """``NAME/TYPE`` of the public smtpd service as postconf names it; ValueError
    (a usage error) for anything else."""
    name, _, kind = service.partition("/")
    if not name or kind not in PUBLIC_TYPES or any(ch.isspace() or ch in "/'" for ch in name):
        raise ValueError(f"{service!r}: give the public smtpd service as "
                         "NAME/TYPE, TYPE " + " or ".join(PUBLIC_TYPES)
                         + " (smtp/inet; smtpd/pass behind postscreen)")
    return name, kind


def after_filter_service(*, host: str, port: int, maxproc: int) -> str:
    """The reinjection smtpd with the receive overrides of this wiring."""
    return reinject_service(host=host, port=port, maxproc=maxproc,
                            receive_overrides=PROXY_RECEIVE_OVERRIDES)


def proxy_listener(config: Config) -> ListenerConfig:
    """The listener Postfix's public smtpd talks to: the first SMTP one without a
    policy bank, else the first SMTP one; smtpd_proxy_filter speaks SMTP only."""
    smtp = [lst for lst in config.listeners if lst.protocol == "smtp"]
    if not smtp:
        raise ConfigError(f"{config.source}: Postfix's smtpd_proxy_filter speaks SMTP, but "
                          "every listener in 'listeners' speaks LMTP; add one with "
                          "protocol = \"smtp\"")
    return next((lst for lst in smtp if not lst.policy_bank), smtp[0])


def postconf_commands(config: Config, service: str = "smtp/inet") -> list[str]:
    """Shell commands that apply this wiring to an existing master.cf: the public
    ``service`` gets the proxy, the after-filter smtpd its receive overrides, and
    main.cf loses the after-queue settings (``service`` as :func:`check_service`
    accepts it)."""
    listener = proxy_listener(config)
    concurrency = config.server.concurrency
    options = proxy_options(listener, config.server.message_timeout, concurrency)
    after = service_address(config.reinject.host, config.reinject.port) + "/inet"
    return [
        "postconf -X content_filter receive_override_options",
        f"postconf -F '{service}/process_limit={concurrency}'",
        "postconf -P " + " ".join(f"'{service}/{name}={value}'" for name, value in options),
        f"postconf -P '{after}/receive_override_options={PROXY_RECEIVE_OVERRIDES}'",
        "postfix reload",
    ]


def render_proxy(config: Config, service: str = "smtp/inet") -> str:
    """What ``scanner postfix-config --proxy [--service NAME/TYPE]`` prints (ValueError
    for a ``service`` :func:`check_service` refuses)."""
    listener = proxy_listener(config)
    timeout = config.server.message_timeout
    concurrency = config.server.concurrency
    where = listener_label(listener)
    lines = [
        f"# Before-queue scanning with Postfix's smtpd_proxy_filter (from {config.source}).",
        f"# The public smtpd hands every message to scanner's listener {where} before it",
        "# queues it; the client gets scanner's answer (250, 5xx reject, 4xx retry).",
        "# Take content_filter and receive_override_options out of main.cf, or mail is",
        "# scanned twice. At most server.concurrency clients are served at once.",
    ]
    if timeout > CLIENT_WAIT_ADVICE:
        lines += [
            f"# WARNING: server.message_timeout is {timeout:g} s. The sending client waits at",
            "# most 10 minutes for the answer to its end of DATA (RFC 5321) and may give up",
            "# and send again after scanner delivered: set it to"
            f" {CLIENT_WAIT_ADVICE} or less.",
        ]
    lines += [
        "",
        "# --- main.cf " + "-" * 66,
        "# (nothing: no content_filter)",
        "",
        "# --- master.cf " + "-" * 64,
        f"# The public smtpd service, {service} (behind postscreen: --service smtpd/pass):",
        "# maxproc = server.concurrency, and these -o lines:",
        proxy_smtpd(service, listener, timeout, concurrency).rstrip("\n"),
        "#",
        "# The after-filter smtpd: scanned mail (and scanner's DSNs, notices, releases)",
        "# goes back in here; header/body checks and address mappings run here, once.",
        after_filter_service(host=config.reinject.host, port=config.reinject.port,
                             maxproc=reinject_maxproc(concurrency)).rstrip("\n"),
        "#",
        "# The same with postconf, which keeps the services' other columns (as root, once",
        "# 'scanner postfix-config --part master' is in master.cf; it also turns an",
        "# after-queue wiring into this one):",
        *(f"#   {command}" for command in postconf_commands(config, service)),
        "#",
        "# Mail from local programs (sendmail, pickup) does not pass the public smtpd; to",
        "# scan it too, add to the pickup service:",
        f"#     -o content_filter=scanner:{listener_nexthop(listener)}",
        "# and the scanner transport of 'scanner postfix-config --part master'.",
    ]
    return "\n".join(lines) + "\n"
