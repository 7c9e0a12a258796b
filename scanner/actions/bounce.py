"""When a BOUNCE destiny (or a policy reject turned into a DSN) may really send a DSN
(amavis's rules).

Never to the null sender, never for spam at or above ``dsn_cutoff_level`` (the
recipient's score, whatever the category that blocked it, when spam checks ran for
that recipient, as amavis compares every bounce with its cutoff), never for viruses
known to fake their sender (every virus except test signatures such as EICAR), never
for mail marked ``Precedence: bulk/list/junk`` that is not clean.
"""

from __future__ import annotations

import re

from scanner.policy.decide import is_bulk
from scanner.task import Task, Verdict, virus_names

NON_FAKING = re.compile(r"^(eicar|.*test[-_.]?file|joke\.|junk\.)", re.IGNORECASE)


def bounce_allowed(task: Task, verdict: Verdict) -> bool:
    if not task.envelope.sender:
        return False
    if is_bulk(task) and verdict.category != "CLEAN":
        return False
    if verdict.spam_scanned and verdict.score >= verdict.policy.dsn_cutoff_level:
        return False
    names = virus_names(task.hits)  # amavis: for every recipient, bypassing or not
    if names:
        return all(NON_FAKING.match(n) for n in names)
    return verdict.category != "VIRUS"  # a virus without a name: assume a faked sender
