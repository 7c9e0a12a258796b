"""When a BOUNCE destiny may really send a DSN (amavis's rules).

Never to the null sender, never for spam at or above ``dsn_cutoff_level``, never for
viruses known to fake their sender (every virus except test signatures such as EICAR),
never for mail marked ``Precedence: bulk/list/junk``.
"""

from __future__ import annotations

import re

from scanner.pipeline.parse import header_text
from scanner.task import Task, Verdict, virus_names

NON_FAKING = re.compile(r"^(eicar|.*test[-_.]?file|joke\.|junk\.)", re.IGNORECASE)


def bounce_allowed(task: Task, verdict: Verdict) -> bool:
    if not task.envelope.sender:
        return False
    if header_text(task.message, "Precedence").lower() in ("bulk", "list", "junk"):
        return False
    if verdict.category in ("SPAM", "SPAMMY") and \
            verdict.score >= verdict.policy.dsn_cutoff_level:
        return False
    if verdict.category == "VIRUS":
        names = virus_names(verdict.hits)
        return bool(names) and all(NON_FAKING.match(n) for n in names)
    return True
