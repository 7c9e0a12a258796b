"""Generate the Postfix configuration that puts scanner in the mail flow.

``render_stanzas(config)`` returns the text ``scanner postfix-config`` prints: the main.cf
settings (``content_filter`` and friends) and the two master.cf services an after-queue
filter needs, the ``scanner`` transport that feeds mail to us and the reinjection smtpd
that takes it back.

The lower-level builders (:func:`filter_transport`, :func:`reinject_service`,
:func:`filter_main_settings`, :func:`master_entry`) take explicit values so that the
private Postfix used by the tests and benchmarks (``scanner.testing.postfix``) is built
from exactly the same pieces operators get.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence

from scanner.config.model import Config, ListenerConfig

#: Name of the master.cf transport that carries mail to the filter.
TRANSPORT = "scanner"

#: Seconds added to the filter's own message timeout for Postfix's *_data_done_timeout,
#: so that Postfix never gives up before the filter has answered.
DATA_DONE_MARGIN = 120

#: Overrides of the reinjection smtpd: no second filtering, no checks that already ran
#: before the filter, no limits that could throttle the filter's own connections.
#: ``$loopback`` stands for the loopback networks (IPv6 added for an IPv6 listener).
REINJECT_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("content_filter", ""),
    ("smtpd_delay_reject", "no"),
    ("smtpd_client_restrictions", "permit_mynetworks,reject"),
    ("smtpd_helo_restrictions", ""),
    ("smtpd_sender_restrictions", ""),
    ("smtpd_relay_restrictions", "permit_mynetworks,reject"),
    ("smtpd_recipient_restrictions", "permit_mynetworks,reject"),
    ("smtpd_data_restrictions", "reject_unauth_pipelining"),
    ("smtpd_end_of_data_restrictions", ""),
    ("smtpd_restriction_classes", ""),
    ("mynetworks", "$loopback"),
    ("smtpd_authorized_xforward_hosts", "$loopback"),
    ("receive_override_options",
     "no_header_body_checks,no_unknown_recipient_checks,no_milters"),
    ("smtpd_milters", ""),
    ("local_recipient_maps", ""),
    ("relay_recipient_maps", ""),
    ("local_header_rewrite_clients", ""),
    ("smtpd_error_sleep_time", "0"),
    ("smtpd_soft_error_limit", "1001"),
    ("smtpd_hard_error_limit", "1000"),
    ("smtpd_client_connection_count_limit", "0"),
    ("smtpd_client_connection_rate_limit", "0"),
    ("smtpd_client_message_rate_limit", "0"),
    ("smtpd_client_recipient_rate_limit", "0"),
    ("smtpd_sasl_auth_enable", "no"),
    ("smtpd_tls_security_level", "none"),
)


def data_done_timeout(message_timeout: float) -> int:
    """Postfix's *_data_done_timeout for a filter that may take ``message_timeout`` s."""
    return math.ceil(message_timeout) + DATA_DONE_MARGIN


def reinject_maxproc(filter_maxproc: int) -> int:
    """Process limit of the reinjection smtpd: room for every filter connection, twice.

    The filter may keep idle reinjection connections open while new ones arrive, so
    the limit must never be smaller than the filter transport's.
    """
    return max(2 * filter_maxproc, 20)


def nexthop(address: str, port: int) -> str:
    """A Postfix SMTP/LMTP next hop for an IP literal: ``[addr]:port`` (no MX lookup)."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:  # a wildcard listener is reached over loopback
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    return f"[{ip}]:{port}"


def service_address(host: str, port: int) -> str:
    """The master.cf service name of a TCP listener on ``host:port``."""
    ip = ipaddress.ip_address(host)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def master_entry(
    service: str,
    kind: str,
    command: str,
    *,
    private: str = "-",
    unpriv: str = "-",
    chroot: str = "n",
    wakeup: str = "-",
    maxproc: str | int = "-",
    options: Iterable[tuple[str, str]] = (),
    args: Sequence[str] = (),
) -> str:
    """One master.cf service: the columns, then ``-o name=value`` lines, then arguments."""
    cols = (f"{service:<10}", f"{kind:<5}", f"{private:<7}", f"{unpriv:<7}",
            f"{chroot:<7}", f"{wakeup:<7}", f"{maxproc!s:<7}", command)
    lines = [" ".join(cols).rstrip()]
    for name, value in options:
        _check_option(name, value)
        lines.append(f"  -o {name}={value}")
    lines.extend(f"  {arg}" for arg in args)
    return "\n".join(lines) + "\n"


def _check_option(name: str, value: str) -> None:
    if not name or any(ch.isspace() for ch in name + value):
        raise ValueError(f"master.cf option {name}={value!r} must not contain whitespace")


def filter_transport(
    *, protocol: str, maxproc: int, timeout: int, name: str = TRANSPORT
) -> str:
    """The master.cf transport that delivers mail to the filter over SMTP or LMTP."""
    if protocol not in ("smtp", "lmtp"):
        raise ValueError(f"filter protocol must be smtp or lmtp, not {protocol!r}")
    p = protocol
    options = (
        (f"{p}_send_xforward_command", "yes"),
        (f"{p}_data_done_timeout", str(timeout)),
        ("disable_mime_output_conversion", "yes"),
        (f"{p}_generic_maps", ""),
        (f"{p}_tls_security_level", "none"),
        (f"{p}_sasl_auth_enable", "no"),
        ("max_use", "20"),
    )
    return master_entry(name, "unix", protocol, maxproc=maxproc, options=options)


def reinject_service(*, host: str, port: int, maxproc: int,
                     receive_overrides: str | None = None) -> str:
    """The master.cf smtpd that takes filtered mail back, with no second filtering;
    ``receive_overrides`` replaces its ``receive_override_options`` (the before-queue
    wiring keeps the header/body checks there)."""
    loopback = "127.0.0.0/8"
    if ipaddress.ip_address(host).version == 6:
        loopback += ",[::1]/128"
    options = [(name, value.replace("$loopback", loopback))
               for name, value in REINJECT_OVERRIDES]
    if receive_overrides is not None:
        options = [(name, receive_overrides if name == "receive_override_options" else value)
                   for name, value in options]
    return master_entry(service_address(host, port), "inet", "smtpd", private="n",
                        maxproc=maxproc, options=options)


def filter_main_settings(*, maxproc: int, name: str = TRANSPORT) -> dict[str, str]:
    """main.cf settings for the filter transport (besides ``content_filter``)."""
    return {
        "receive_override_options": "no_address_mappings",
        f"{name}_destination_concurrency_limit": str(maxproc),
    }


def _transport_name(protocol: str, primary: str) -> str:
    return TRANSPORT if protocol == primary else f"{TRANSPORT}_{protocol}"


def _content_filter(listener: ListenerConfig, primary: str) -> str:
    transport = _transport_name(listener.protocol, primary)
    return f"{transport}:{listener_nexthop(listener)}"


def listener_nexthop(listener: ListenerConfig) -> str:
    """How Postfix's client reaches a listener: ``[addr]:port``, or ``unix:PATH`` for a
    Unix socket (which only Postfix's LMTP client can use)."""
    if listener.path:
        return f"unix:{listener.path}"
    return nexthop(listener.address, listener.port)


def listener_label(listener: ListenerConfig) -> str:
    """How comments name a listener: ``127.0.0.1:10024`` or ``unix:PATH``."""
    if listener.path:
        return f"unix:{listener.path}"
    return service_address(listener.address, listener.port)


def _unix_smtp_warning(config: Config) -> list[str]:
    """Postfix's SMTP client cannot reach a Unix socket: say so for such a listener."""
    return [f"# Note: listener unix:{lst.path} speaks smtp, but Postfix's SMTP client "
            "cannot use a Unix socket:\n# set its protocol = \"lmtp\" for content_filter "
            "(an SMTP one on a path serves smtpd_proxy_filter, --proxy)."
            for lst in config.listeners if lst.path and lst.protocol != "lmtp"]


def _main_cf(config: Config, primary: str) -> list[str]:
    default = next((lst for lst in config.listeners if not lst.policy_bank), None)
    lines = ["# --- main.cf " + "-" * 66]
    if default is None:
        lines.append("# No listener without a policy bank: set content_filter per service (below).")
    else:
        lines.append(f"content_filter = {_content_filter(default, primary)}")
    settings: dict[str, str] = {}
    for protocol in _protocols(config, primary):
        settings.update(filter_main_settings(maxproc=_maxproc_each(config, primary),
                                             name=_transport_name(protocol, primary)))
    lines.extend(f"{key} = {value}" for key, value in settings.items())
    lines.extend(_per_service_comments(config, default, primary))
    lines.extend(_unix_smtp_warning(config))
    return lines


def _per_service_comments(
    config: Config, default: ListenerConfig | None, primary: str
) -> list[str]:
    lines: list[str] = []
    for lst in config.listeners:
        if lst is default:
            continue
        bank = lst.policy_bank or "none"
        lines += [
            "#",
            f"# Listener {listener_label(lst)} (policy bank {bank}): "
            "to filter the mail",
            "# of one Postfix service there, override content_filter on it in master.cf, e.g.:",
            "#   submission inet n       -       n       -       -       smtpd",
            f"#     -o content_filter={_content_filter(lst, primary)}",
        ]
    return lines


def _protocols(config: Config, primary: str) -> list[str]:
    others = sorted({lst.protocol for lst in config.listeners} - {primary})
    return [primary, *others]


def _primary_protocol(config: Config) -> str:
    default = next((lst for lst in config.listeners if not lst.policy_bank),
                   config.listeners[0])
    return default.protocol


def _maxproc_each(config: Config, primary: str) -> int:
    """Each filter transport's share of ``server.concurrency``: with an SMTP and an LMTP
    listener there are two transports, and together they must not open more
    connections than the filter serves (the rest would wait in its listen queue)."""
    return max(1, config.server.concurrency // len(_protocols(config, primary)))


def _master_cf(config: Config, primary: str) -> list[str]:
    concurrency = config.server.concurrency
    timeout = data_done_timeout(config.server.message_timeout)
    lines = ["# --- master.cf " + "-" * 64]
    protocols = _protocols(config, primary)
    if len(protocols) > 1:
        lines.append(f"# {len(protocols)} filter transports (one per protocol) share "
                     f"server.concurrency ({concurrency}): {_maxproc_each(config, primary)} "
                     "processes each.")
    for protocol in protocols:
        lines.append(filter_transport(protocol=protocol, maxproc=_maxproc_each(config, primary),
                                      timeout=timeout,
                                      name=_transport_name(protocol, primary)).rstrip("\n"))
    lines.append(reinject_service(host=config.reinject.host, port=config.reinject.port,
                                  maxproc=reinject_maxproc(concurrency)).rstrip("\n"))
    return lines


def render_stanzas(config: Config, part: str = "") -> str:
    """The main.cf lines and master.cf services for ``config``, ready to paste;
    ``part`` "main" or "master" gives that file's settings alone, without comments
    (for scripts: ``postconf -e`` each main.cf line, append the master.cf services)."""
    primary = _primary_protocol(config)
    if part in ("main", "master"):
        lines = _main_cf(config, primary) if part == "main" else _master_cf(config, primary)
        return "\n".join(line for line in lines if not line.startswith("#")) + "\n"
    header = [
        f"# Postfix settings for scanner (from {config.source}).",
        "# Add the main.cf lines to main.cf and the services to master.cf, then run",
        "# 'postfix reload'. The filter transport's data-done timeout exceeds",
        f"# server.message_timeout ({config.server.message_timeout:g} s) by "
        f"{DATA_DONE_MARGIN} s.",
        "",
    ]
    body = _main_cf(config, primary) + [""] + _master_cf(config, primary)
    return "\n".join(header + body) + "\n"
