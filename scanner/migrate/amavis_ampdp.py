"""from-amavis: amavis's AM.PDP over TCP, the port web front ends release through.

``$interface_policy{'9998'} = 'AM.PDP-INET'`` with ``$policy_bank{'AM.PDP-INET'} =
{ protocol => 'AM.PDP', inet_acl => [qw( 127.0.0.1 [::1] )] }`` (Modoboa's and
iRedMail's set-up) becomes ``[quarantine] ampdp_inet`` and ``ampdp_inet_networks``
instead of a mail listener.
"""

from __future__ import annotations

import re
from typing import Any

from scanner.migrate.perlconf import Statement

_AM_PDP = re.compile(r"""protocol\s*=>\s*['"]AM\.PDP['"]""")
_INET_ACL = re.compile(r"inet_acl\s*=>\s*\[\s*qw\s*(?:\(([^)]*)\)|\{([^}]*)\}|/([^/]*)/)")


def ampdp_port(last: dict[str, Statement], conv: Any, handled: set[str],
                interface: Statement, address: str, port: int) -> bool:
    """amavis's AM.PDP over TCP (``$interface_policy{'9998'} = 'AM.PDP-INET'`` and a
    bank with ``protocol => 'AM.PDP'``, which web front ends release through) becomes
    ``quarantine.ampdp_inet``, its ``inet_acl`` ``ampdp_inet_networks``; not a mail
    listener. False: the port's bank is another kind."""
    bank = last.get(f"$policy_bank{{{interface.value}}}")
    if bank is None or not isinstance(interface.value, str) or not _AM_PDP.search(bank.text):
        return False
    handled.update(t for t in (interface.target, bank.target) if t)
    host = address.strip("[]")
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if conv.sections.get("quarantine", {}).get("ampdp_inet"):
        conv.note(interface, "scanner serves AM.PDP over TCP on one address and port "
                             "(quarantine.ampdp_inet): this one is not converted")
        return True
    conv.set("quarantine", "ampdp_inet", where,
             f"{interface.target} ({interface.where}): the {interface.value} bank speaks "
             "AM.PDP (release requests of a web front end); each must carry the "
             "secret_id")
    acl = _INET_ACL.search(bank.text)
    if acl:
        words = next(g for g in acl.groups() if g is not None).split()
        nets = [a.strip("[]") for a in words if not a.startswith("!")]
        if len(nets) < len(words):
            conv.note(bank, "inet_acl's '!' exclusions are not converted: "
                            "ampdp_inet_networks lists allowed networks only")
        conv.set("quarantine", "ampdp_inet_networks", nets,
                 f"inet_acl of {bank.target} ({bank.where})")
    return True
