"""The DNS client's answer cache: final answers by (name, type), for their TTL.

It sits in front of dnspython: a hit costs a dictionary look-up instead of a trip through
dnspython's resolution machinery (query objects, name parsing, its own cache), which
costs more CPU than the whole rest of a cached SPF or DNSBL check. It keeps positive
answers for their TTL, NODATA and NXDOMAIN for the negative TTL of RFC 2308 (the SOA's
TTL or MINIMUM, whichever is lower; without an SOA nothing is kept), an NXDOMAIN for
every type of that name; at most :data:`MAX_TTL` and :data:`MAX_NEGATIVE_TTL`, as a
local resolver caps them. Temporary failures are never kept. Bounded: past ``size``
entries the oldest one goes. One instance per DNS client, used only from its process's
event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_TTL = 86400.0
"""The longest an answer is kept, whatever its TTL says (unbound's cache-max-ttl): a
list's delisting or a changed record is seen within a day."""

MAX_NEGATIVE_TTL = 3600.0
"""The longest NXDOMAIN/NODATA is kept (unbound's cache-max-negative-ttl; RFC 2308
section 5 finds one to three hours sensible and over a day problematic): an address
newly put on a list is seen within the hour, as through the local resolver."""

ANY_TYPE = "*"
"""The type under which an NXDOMAIN is kept: the name does not exist for any type."""


class AnswerCache:
    """Bounded, TTL-honouring store of final DNS answers."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, rdtype: str) -> Any:
        """The kept answer for ``name``/``rdtype`` (an NXDOMAIN kept for any type counts),
        or None."""
        now = self._clock()
        for key in ((name, rdtype), (name, ANY_TYPE)):
            entry = self._entries.get(key)
            if entry is not None:
                if entry[0] > now:
                    return entry[1]
                del self._entries[key]
        return None

    def put(self, name: str, rdtype: str, answer: Any, ttl: float) -> None:
        """Keep ``answer`` for ``ttl`` seconds (nothing is kept for ttl <= 0)."""
        if ttl <= 0 or self._size <= 0:
            return
        key = (name, rdtype)
        self._entries.pop(key, None)
        while len(self._entries) >= self._size:
            self._entries.popitem(last=False)  # O(1), unlike a dict's first key
        self._entries[key] = (self._clock() + ttl, answer)


def cache_key(name: str) -> str:
    """The cache's spelling of a name: lowercase, without the final dot."""
    return name.lower().rstrip(".")


def negative_ttl(response: Any) -> float:
    """RFC 2308's negative-caching TTL from a response's SOA (0 without one)."""
    if response is None:
        return 0.0
    for rrset in getattr(response, "authority", ()):
        if rrset.rdtype == 6 and len(rrset):  # SOA
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0
