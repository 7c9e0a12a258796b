"""The quarantine: held mail kept gzip-compressed on disk, listed in an index, released
through the reinjection path or amavis's AM.PDP socket (see docs/quarantine.md).

Entry points: :class:`~scanner.quarantine.store.Quarantine` (store, list, read, delete,
expire), :func:`~scanner.quarantine.release.release`, and
:func:`~scanner.quarantine.ampdp.start_ampdp_server`.
"""

# The configuration package imports our config module for its [quarantine] section;
# loading it first keeps that cycle harmless whichever module is imported first.
import scanner.config  # noqa: F401, I001
from scanner.quarantine.config import QuarantineConfig
from scanner.quarantine.record import (
    AlreadyReleased,
    BadSecret,
    IndexUnavailable,
    QuarantineError,
    QuarantineRecord,
    UnknownMailId,
)

__all__ = ["AlreadyReleased", "BadSecret", "IndexUnavailable", "QuarantineConfig",
           "QuarantineError", "QuarantineRecord", "UnknownMailId"]
