"""Extract a corpus tarball for the benchmarks, on any Python 3.11.

``TarFile.extractall(filter="data")`` (PEP 706) arrived in Python 3.11.4; Debian 12's
``python3`` is 3.11.2. Where the filter exists it is used; elsewhere only directories
and regular files with relative paths that stay inside ``dest`` are extracted (links,
devices and absolute or ``..`` paths are skipped), which is what the benchmarks' corpora
hold.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath


def extract_data(tar: tarfile.TarFile, dest: str | Path) -> None:
    """Extract ``tar``'s plain files and directories into ``dest``."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar:
        path = PurePosixPath(member.name)
        if (not (member.isfile() or member.isdir()) or path.is_absolute()
                or ".." in path.parts):
            continue
        tar.extract(member, dest, set_attrs=False)
