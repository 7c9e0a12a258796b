"""Who handed the message to our site: XFORWARD, else the Received chain.

SpamAssassin's model: ``trusted_networks`` are hosts whose Received headers tell the
truth; ``internal_networks`` (always trusted too) are our own MX and relays. Walking the
chain from the top (newest) header, a header written by a trusted host is believed, so
the walk goes on while the host it names is trusted. The first host that is not is the
*first untrusted relay*: the client SPF, HELO and DNSBL checks look at. The first host
outside ``internal_networks`` is the *last external relay* (for lists of dynamic
address space). Every hop below the first untrusted one is *untrusted* too (a claim
nobody we trust vouches for): :class:`RelayChain` keeps them all, as SpamAssassin's
X-Spam-Relays-Untrusted does, for the DNSBL check's ``all-untrusted`` scope and for
rules. As in SpamAssassin, a hop with authentication (``with ESMTPA``) recorded by a
trusted host is trusted, and (unlike SpamAssassin, which judges each by its address)
so is every Received hop below it: our own user's side of the submission.

Other deliberate differences from SpamAssassin: a hop without an address (a local
submission, ``from userid 1000``) met in the trusted part ends the search for the
*client* (the message started inside: ``ALL_TRUSTED``, no SPF or DNSBL look-up), though
the chain and its pseudo-headers go on below it as SpamAssassin's do; and with no
networks configured SpamAssassin guesses them (private addresses trusted), while here
the callers' defaults (``[policy] mynetworks``) apply. A mail fetcher's header
(``with POP3``/``IMAP``) in the trusted part restarts the chain, as in SpamAssassin; an
unparseable header is skipped and counted (``unparseable``, for UNPARSEABLE_RELAY),
never taken for a local submission. A trusted hop from ``msa_networks`` passes its
marks to every hop below it.
The pseudo-headers of :func:`pseudo_headers` follow SpamAssassin's format field by
field.

With XFORWARD the first hop is what Postfix saw (``task.client``); Postfix's own
Received header, which says the same, gives its ``by``, ``id`` and ``auth``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.message import Message
from typing import Any, NamedTuple, Protocol

from scanner.auth.received_line import FETCHED, UNPARSEABLE, Relay, parse_received, plain_ip
from scanner.config.schema import opt
from scanner.dns.blocked import Network, parse_networks
from scanner.errors import ConfigError
from scanner.task import ClientInfo, Task

__all__ = ["ChainNetworks", "Origin", "Relay", "RelayChain", "chain_networks", "find_chain",
           "find_origin", "originating_ips", "parse_received", "plain_ip", "pseudo_headers",
           "task_chain", "task_origin", "task_received"]
# SpamAssassin's originating_ip_headers (10_default_prefs.cf): a webmail client's
# address, appended below the Received chain as one more hop
ORIGINATING_IP_HEADERS = ("X-Yahoo-Post-IP", "X-Originating-IP", "X-Apparently-From",
                          "X-SenderIP", "X-AOL-IP",
                          "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp")
_ORIGINATING_IP = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:"
                             r"[0-9A-Fa-f:.]*)(?![\w.:])")
MAX_HOPS = 100  # Received headers walked; SpamAssassin reads them all, but a longer
# chain is a forgery or a loop, and the rules see no more than the first hundred


@dataclass(frozen=True, slots=True)
class ChainHop:
    """One relay of the chain with SpamAssassin's marks."""

    relay: Relay
    trusted: bool
    internal: bool
    msa: bool = False
    originating: bool = False  # from an originating_ip_header, not a Received header

    def as_string(self) -> str:
        return self.relay.as_string(self.internal, self.msa)


@dataclass(frozen=True, slots=True)
class RelayChain:
    """Every parsed hop, newest first, marked trusted/internal as SpamAssassin marks them."""

    hops: tuple[ChainHop, ...]
    source: str  # "xforward", "received" or "none"
    # hops before the first one without an address met in the trusted part (a local
    # submission): the relays that can be the client; None: all of them
    local_at: int | None = None
    # SpamAssassin's last_trusted_relay_index and last_internal_relay_index: how many
    # Received headers from the top (less one) are trusted (internal), for ALL-TRUSTED,
    # ALL-UNTRUSTED, ALL-INTERNAL and ALL-EXTERNAL
    last_trusted_index: int = -1
    last_internal_index: int = -1
    # Received headers no known format reads (SpamAssassin's num_relays_unparseable)
    unparseable: int = 0

    @property
    def trusted(self) -> list[Relay]:
        return [h.relay for h in self.hops if h.trusted]

    @property
    def untrusted(self) -> list[Relay]:
        return [h.relay for h in self.hops if not h.trusted]

    @property
    def external(self) -> list[Relay]:
        return [h.relay for h in self.hops if not h.internal]

    def origin(self) -> Origin:
        """The first untrusted and the last external relay (Received chain only: a
        webmail client's address from X-Originating-IP is no SMTP client)."""
        hops = self.hops[:self.local_at]
        untrusted = [h.relay for h in hops if not h.trusted and not h.originating]
        if not untrusted:
            return Origin(None, None, self.source)
        external = [h.relay for h in hops if not h.internal and not h.originating]
        return Origin(untrusted[0], external[0] if external else None, self.source)


@dataclass(frozen=True, slots=True)
class Origin:
    """The result of the walk."""

    first_untrusted: Relay | None
    last_external: Relay | None
    source: str  # "xforward", "received" or "none"

    @property
    def all_trusted(self) -> bool:
        """No untrusted host touched the message (or none could be found)."""
        return self.first_untrusted is None


def pseudo_headers(chain: RelayChain) -> dict[str, str]:
    """SpamAssassin's X-Spam-Relays-{Trusted,Untrusted,Internal,External} values."""
    def joined(keep: object) -> str:
        return " ".join(h.as_string() for h in chain.hops if keep(h))  # type: ignore[operator]
    return {"X-Spam-Relays-Trusted": joined(lambda h: h.trusted),
            "X-Spam-Relays-Untrusted": joined(lambda h: not h.trusted),
            "X-Spam-Relays-Internal": joined(lambda h: h.internal),
            "X-Spam-Relays-External": joined(lambda h: not h.internal)}


def in_networks(ip: str, networks: Sequence[Network]) -> bool:
    addr = _address(ip)
    return addr is not None and any(addr.version == n.version and addr in n
                                    for n in networks)


@functools.lru_cache(maxsize=1024)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def find_chain(received: Sequence[str], client: ClientInfo, trusted: Sequence[Network],
               internal: Sequence[Network], trust_authenticated: bool = True,
               originating: Sequence[str] = (), msa: Sequence[Network] = ()) -> RelayChain:
    """Walk XFORWARD and the Received headers (newest first), marking each hop trusted
    and internal as SpamAssassin does.

    ``internal`` networks are trusted as well. With ``trust_authenticated``, a hop a
    trusted host recorded as authenticated (``with ESMTPA``) is trusted, and so is
    every Received hop below it (our own user's side of the submission; SpamAssassin
    judges each of those by its address). ``originating`` addresses
    (:func:`originating_ips`) follow the Received hops and are judged by their address,
    as in SpamAssassin. A trusted hop from ``msa`` networks (SpamAssassin's
    ``msa_networks``: a submission server that accepts only our own users) is marked
    ``msa=1``, and every hop below it, originating addresses included, keeps its trusted
    and internal marks (SpamAssassin's ``found_msa``); an ``msa`` address outside the
    trusted networks is no MSA (SpamAssassin's lint drops such an entry).
    """
    hops, source = _hops(received[:MAX_HOPS], client)
    synthetic = len(hops) - min(len(received), MAX_HOPS)  # XFORWARD's hop, no header
    first_originating = len(hops)
    hops += [Relay(ip=ip) for ip in originating]
    trusted_all = [*trusted, *internal]
    in_trusted = in_internal = True
    submitted = found_msa = False
    local_at: int | None = None
    last = [-1, -1]  # SpamAssassin's last trusted and last internal Received index
    unparseable = 0
    out: list[ChainHop] = []
    for n, hop in enumerate(hops):
        is_header = synthetic <= n < first_originating
        if hop is UNPARSEABLE:  # skipped, as SpamAssassin does, and counted; not local
            unparseable += 1
            last = [last[0] + in_trusted, last[1] + in_internal]
            continue
        if hop is FETCHED or hop is None:
            last = [last[0] + in_trusted, last[1] + in_internal] if is_header else last
            if hop is FETCHED and in_trusted:  # our own fetchmail: the chain starts again
                out.clear()
                local_at = None
            elif hop is None and in_trusted and local_at is None:  # a local submission
                local_at = len(out)
            continue
        is_msa = False
        if in_trusted and not found_msa:
            if not submitted or n >= first_originating:
                in_trusted, in_internal, submitted = _judge(
                    hop, in_internal, trusted_all, internal, trust_authenticated)
            is_msa = found_msa = in_trusted and _is_msa(hop.ip, msa, trusted_all)
        out.append(ChainHop(hop, in_trusted, in_internal, msa=is_msa,
                            originating=n >= first_originating))
        if is_header:
            last = [last[0] + in_trusted, last[1] + in_internal]
    return RelayChain(tuple(out), source if first_originating else "none", local_at,
                      last[0], last[1], unparseable)


def _judge(hop: Relay, in_internal: bool, trusted: Sequence[Network],
           internal: Sequence[Network], trust_authenticated: bool) -> tuple[bool, bool, bool]:
    """(trusted, internal, authenticated) of a hop met in the trusted part of the chain."""
    auth = trust_authenticated and hop.authenticated
    if not auth and not in_networks(hop.ip, trusted):
        return False, False, False
    return True, in_internal and (auth or in_networks(hop.ip, internal)), auth


def _is_msa(ip: str, msa: Sequence[Network], trusted: Sequence[Network]) -> bool:
    """A trusted hop from ``msa_networks`` (which count only inside the trusted ones)."""
    return bool(msa) and in_networks(ip, msa) and in_networks(ip, trusted)


def originating_ips(values: Sequence[str]) -> list[str]:
    """The first address in each originating_ip_header value (SpamAssassin's order:
    by header name, then as they appear)."""
    out: list[str] = []
    for value in values:
        for candidate in _ORIGINATING_IP.findall(value):
            addr = _address(candidate)
            if addr is not None:
                out.append(plain_ip(addr))
                break
    return out


def find_origin(received: Sequence[str], client: ClientInfo, trusted: Sequence[Network],
                internal: Sequence[Network], trust_authenticated: bool = True) -> Origin:
    """The first untrusted and the last external relay of :func:`find_chain`."""
    return find_chain(received, client, trusted, internal, trust_authenticated).origin()


def _hops(received: Sequence[str], client: ClientInfo) -> tuple[list[Relay | None], str]:
    parsed = [parse_received(v) for v in received]
    if not client.addr:
        return parsed, "received"
    addr = _address(client.addr)
    # a mapped XFORWARD/milter address: the lists and the Received headers know the IPv4
    ip = plain_ip(addr) if addr is not None else client.addr
    name = client.name if client.name and client.name.lower() != "unknown" else ""
    first = Relay(ip=ip, rdns=name, helo=client.helo or "")
    if parsed and parsed[0] is not None and parsed[0].ip == ip:
        # Postfix's own header: SpamAssassin in amavis reads this one
        head = parsed[0]
        first = replace(head, rdns=head.rdns or first.rdns, helo=head.helo or first.helo)
        parsed = parsed[1:]
    return [first, *parsed], "xforward"


def networks_setting(values: Sequence[str], default: Sequence[str], key: str, source: str
                     ) -> tuple[Network, ...]:
    """Parse a ``*_networks`` setting (``default`` when empty); ConfigError naming the key."""
    try:
        return parse_networks(values or default)
    except ValueError as exc:
        raise ConfigError(f"{source}: '{key}': {exc}") from None


def msa_networks_option() -> Any:
    """The ``msa_networks`` setting of a check that reads the chain (auth, dnsbl, rules):
    one definition for the three settings tables."""
    return opt([], "MSAs (submission servers that accept only our own, authenticated "
               "users; within trusted_networks): every hop before one is trusted, as "
               "SpamAssassin's msa_networks")


class NetworkSettings(Protocol):
    """The ``*_networks`` keys of a check that reads the chain (auth, dnsbl, rules)."""

    trusted_networks: tuple[str, ...]
    internal_networks: tuple[str, ...]
    msa_networks: tuple[str, ...]


class ChainNetworks(NamedTuple):
    """A check's trusted, internal and MSA networks, parsed."""

    trusted: tuple[Network, ...]
    internal: tuple[Network, ...]
    msa: tuple[Network, ...]


def chain_networks(settings: NetworkSettings, mynetworks: Sequence[str], where: str,
                   source: str) -> ChainNetworks:
    """A check's networks: trusted (default ``[policy] mynetworks``), internal (default
    the trusted ones) and MSA (default none), as SpamAssassin's three settings."""
    trusted = settings.trusted_networks
    return ChainNetworks(
        networks_setting(trusted, mynetworks, f"{where}.trusted_networks", source),
        networks_setting(settings.internal_networks, trusted or mynetworks,
                         f"{where}.internal_networks", source),
        networks_setting(settings.msa_networks, (), f"{where}.msa_networks", source))


def task_chain(task: Task, trusted: Sequence[Network], internal: Sequence[Network],
               trust_authenticated: bool = True, msa: Sequence[Network] = ()) -> RelayChain:
    """:func:`find_chain` for a Task (its XFORWARD client and Received headers), computed
    once per Task and set of networks: the auth, dnsbl and rules checks share it."""
    key = (tuple(trusted), tuple(internal), trust_authenticated, tuple(msa))
    chain = task.relay_chains.get(key)
    if chain is None:
        received, *originating = _values_by_name(task.message,
                                                 ("Received", *ORIGINATING_IP_HEADERS))
        chain = task.relay_chains[key] = find_chain(
            received, task.client, trusted, internal, trust_authenticated,
            originating_ips([v for values in originating for v in values]), msa)
    return chain


def _values_by_name(msg: Message | None, names: Sequence[str]) -> list[list[str]]:
    """Per name, ``[str(v) for v in msg.get_all(name, [])]``, in one pass over the fields
    (``get_all`` walks them all for each name)."""
    index = {name.lower(): i for i, name in enumerate(names)}
    out: list[list[str]] = [[] for _ in names]
    for key, value in msg.raw_items() if msg is not None else ():
        i = index.get(key.lower())
        if i is not None:
            out[i].append(str(msg.policy.header_fetch_parse(key, value)))  # as get_all
    return out


def task_received(task: Task) -> list[str]:
    """The values of the Task's Received headers, newest first."""
    msg = task.message
    return [str(v) for v in msg.get_all("Received", [])] if msg is not None else []


def task_origin(task: Task, trusted: Sequence[Network], internal: Sequence[Network],
                trust_authenticated: bool = True, msa: Sequence[Network] = ()) -> Origin:
    """The first untrusted and last external relay of the Task's :func:`task_chain`."""
    return task_chain(task, trusted, internal, trust_authenticated, msa).origin()
