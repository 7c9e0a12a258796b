"""Postfix settings for before-queue scanning through amavisd-milter.

``scanner postfix-config --milter`` prints them: Postfix's smtpd hands each message to
``amavisd-milter`` (``smtpd_milters``), which writes it to a file and asks scanner over
the AM.PDP socket (``quarantine.ampdp_socket``, :mod:`scanner.serve.pdp_scan`); the
verdict comes back before Postfix answers the end of DATA. The timeouts are derived
from ``server.message_timeout`` so that neither Postfix nor the milter gives up while
scanner is still working (scanner answers 451 itself when its time is up).

The test stack (``tests/test_postfix_milter.py``) is built from these same pieces.
"""

from __future__ import annotations

import math

from scanner.config.model import Config
from scanner.postfix_config import reinject_maxproc, reinject_service

#: Where amavisd-milter listens for Postfix (amavis's port plan leaves 10023 free).
MILTER_LISTEN = "inet:10023@127.0.0.1"
#: Debian's work directory for amavisd-milter (mode 750, owned by its user).
MILTER_WORKDIR = "/var/lib/amavis/tmp"
#: Seconds the milter waits for scanner beyond ``server.message_timeout``, and Postfix
#: for the milter beyond that.
MILTER_MARGIN = 30


def postfix_milter_address(listen: str) -> str:
    """amavisd-milter's ``inet:PORT@HOST`` as Postfix writes it: ``inet:HOST:PORT``."""
    proto, _, rest = listen.partition(":")
    port, _, host = rest.partition("@")
    return f"{proto}:{host or '127.0.0.1'}:{port}" if proto == "inet" else listen


def amavisd_timeout(message_timeout: float) -> int:
    """amavisd-milter's ``-T``: how long it waits for scanner's answer."""
    return math.ceil(message_timeout) + MILTER_MARGIN


def milter_timeout(message_timeout: float) -> int:
    """amavisd-milter's ``-t`` and Postfix's ``milter_content_timeout``."""
    return amavisd_timeout(message_timeout) + MILTER_MARGIN


def milter_main_settings(milter: str, message_timeout: float) -> dict[str, str]:
    """The main.cf settings: every SMTP message goes through the milter, and a milter
    that cannot be reached is a temporary failure (the client retries), never a pass."""
    return {
        "smtpd_milters": milter,
        "milter_default_action": "tempfail",
        "milter_protocol": "6",
        "milter_connect_macros": "j {client_name} {daemon_name} v",
        "milter_content_timeout": f"{milter_timeout(message_timeout)}s",
    }


def amavisd_milter_argv(socket_path: str, message_timeout: float, concurrency: int,
                        listen: str = MILTER_LISTEN, workdir: str = MILTER_WORKDIR,
                        program: str = "amavisd-milter") -> list[str]:
    """The amavisd-milter command line: ``-m`` keeps its scans to scanner's
    concurrency, ``-B`` passes Postfix's ``{daemon_name}`` as a policy bank name (set
    ``milter_macro_daemon_name=ORIGINATING`` on the submission service)."""
    return [program, "-B", "-s", listen, "-S", socket_path, "-w", workdir,
            "-m", str(concurrency), "-T", str(amavisd_timeout(message_timeout)),
            "-t", str(milter_timeout(message_timeout))]


def render_milter(config: Config) -> str:
    """What ``scanner postfix-config --milter`` prints."""
    timeout = config.server.message_timeout
    socket_path = config.quarantine.ampdp_socket or "/var/lib/scanner/scanner.sock"
    argv = amavisd_milter_argv(socket_path, timeout, config.server.concurrency)
    lines = [
        f"# Before-queue scanning with amavisd-milter (from {config.source}).",
        "# Run amavisd-milter (Debian package amavisd-milter) as its user, e.g. amavis:",
        "#   " + " ".join(argv),
        "# (Debian: AMAVISSOCKET, MILTERSOCKET and EXTRAPARAMS in /etc/default/amavisd-milter.)",
        "# scanner must let that user in (quarantine.allowed_uids or allowed_gids, the socket's",
        "# group) and read its work directory (put scanner's user in its group).",
        "# Take content_filter out of main.cf, or mail is scanned twice.",
        "",
        "# --- main.cf " + "-" * 66,
    ]
    settings = milter_main_settings(postfix_milter_address(MILTER_LISTEN), timeout)
    lines += [f"{key} = {value}" for key, value in settings.items()]
    lines += [
        "#",
        "# Mail of your own users as ORIGINATING (DKIM signing, outbound policy): on the",
        "# submission service in master.cf:",
        "#     -o milter_macro_daemon_name=ORIGINATING",
        "",
        "# --- master.cf " + "-" * 64,
        "# Keep (or add) the reinjection smtpd of 'scanner postfix-config': DSNs for",
        "# recipients refused among passed ones, notices, quarantine releases and",
        "# quarantine_to copies go out through it ([reinject]), past the milter.",
        reinject_service(host=config.reinject.host, port=config.reinject.port,
                         maxproc=reinject_maxproc(config.server.concurrency)).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"
