"""Shared by the differential scripts (``body_``, ``uri_`` and ``text_differential.py``):
the message files of a corpus, and a Perl helper using SpamAssassin's API run once over
them, one JSON row per message.

Imported by those scripts from their own directory (Python puts a script's directory on
``sys.path``); not part of the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path


def messages(paths: Iterable[str]) -> Iterator[Path]:
    """Every regular file under the given paths (a file stands for itself), sorted per
    directory; README files of the project's corpora are not messages."""
    for top in paths:
        path = Path(top)
        if path.is_file():
            yield path
            continue
        yield from sorted(p for p in path.rglob("*")
                          if p.is_file() and not p.name.startswith("README"))


def perl_rows(perl: str, files: Sequence[Path], args: Sequence[str] = ()) -> Iterator[dict]:
    """Run the Perl program ``perl`` (written to a temporary file) with ``args``, the file
    names on its standard input one per line, and yield the JSON object it prints per
    line. Its standard error is dropped (SpamAssassin warns about much of any corpus)."""
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as script:
        script.write(perl)
    try:
        with tempfile.TemporaryFile("w+") as listing:
            listing.write("".join(f"{f}\n" for f in files))
            listing.seek(0)
            proc = subprocess.Popen(["perl", script.name, *args], stdin=listing,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            assert proc.stdout is not None
            for line in proc.stdout:
                yield json.loads(line.decode("utf-8", "replace"))
            proc.wait()
    finally:
        os.unlink(script.name)
