"""The name this host goes by in headers, logs and SMTP when ``server.hostname`` is empty.

``socket.getfqdn()`` alone is wrong on many machines: it resolves the host name through
/etc/hosts and returns the first name of the matching line, which on Debian (and in most
containers) is ``localhost`` for 127.0.0.1. Like Postfix and amavis, start from the
kernel's host name and take a resolver's answer only when it qualifies that name.
"""

from __future__ import annotations

import socket


def local_hostname() -> str:
    """The host name, fully qualified when the resolver knows it qualified."""
    name = socket.gethostname() or "localhost"
    if "." in name:
        return name
    try:
        fqdn = socket.getfqdn(name)
    except OSError:  # getfqdn swallows resolver errors itself; kept for safety
        return name
    return fqdn if fqdn.lower().startswith(name.lower() + ".") else name


def configured_hostname(configured: str) -> str:
    """``server.hostname`` when set, else :func:`local_hostname`."""
    return configured or local_hostname()
