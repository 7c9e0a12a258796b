"""DNS for checks: dnspython's async resolver behind a small client.

One :class:`~scanner.dns.client.DnsClient` per resolver configuration and process
(:func:`~scanner.dns.client.get_client`) shares a bounded, TTL-honouring answer cache
between every check that uses it. Each query has its own timeout and is also bounded by
the message's :class:`~scanner.dns.budget.Deadline`, so a check's lookups, run
concurrently, end within one time budget. :mod:`scanner.dns.blocked` recognises the
"you may not query this list" answers of public blacklists.
"""

from scanner.dns.budget import Deadline
from scanner.dns.client import Answer, DnsClient, Status, get_client
from scanner.dns.settings import DnsSettings

__all__ = ["Answer", "Deadline", "DnsClient", "DnsSettings", "Status", "get_client"]
