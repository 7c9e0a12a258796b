"""The file archive: a copy of every message in a directory (``policy.archive_directory``),
as amavis's ``$archive_quarantine_method = 'local:archive/%m'`` keeps one.

Each copy is written as a quarantined message is (:func:`scanner.quarantine.files.
write_atomic`: gzip, fsynced, visible under its final name only when complete), with the
same envelope block in front (:mod:`scanner.quarantine.envelope`) naming the recipients
it is archived for, under ``7/archive-7vykgLjHGVrk.gz`` (the quarantine's layout). The
archive has no index: nothing lists, releases or expires it; ``zcat`` reads a copy.
"""

from __future__ import annotations

import time
from pathlib import Path

from scanner.quarantine import envelope, files
from scanner.quarantine.record import QuarantineError, check_mail_id, relative_path

CATEGORY = "ARCHIVE"


def write_copy(directory: str, *, mail_id: str, raw: bytes, sender: str,
               recipients: list[str], subdir_levels: int) -> Path:
    """Write the archive copy; its path. QuarantineError (nothing written) on failure."""
    check_mail_id(mail_id)
    stored = envelope.wrap(raw, sender=sender if sender != "<>" else "",
                           recipients=recipients, mail_id=mail_id, category=CATEGORY,
                           stored_at=time.time())
    rel = relative_path(mail_id, CATEGORY, subdir_levels)
    try:
        return files.write_atomic(Path(directory), rel, stored)
    except QuarantineError as exc:
        raise QuarantineError(f"archive copy: {exc}") from None


def remove_copy(path: Path) -> bool:
    """Remove an archive copy again (the message is deferred, its retry writes a new one)."""
    return files.remove(path)
