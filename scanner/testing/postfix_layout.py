"""Files and standard services of a private Postfix instance (see scanner.testing.postfix)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from scanner.postfix_config import master_entry


def standard_services() -> list[str]:
    """The Postfix services every instance needs, none chrooted."""
    return [
        master_entry("pickup", "unix", "pickup", private="n", wakeup="60", maxproc=1),
        master_entry("cleanup", "unix", "cleanup", private="n", maxproc=0),
        master_entry("qmgr", "unix", "qmgr", private="n", wakeup="300", maxproc=1),
        master_entry("tlsmgr", "unix", "tlsmgr", wakeup="1000?", maxproc=1),
        master_entry("rewrite", "unix", "trivial-rewrite"),
        master_entry("bounce", "unix", "bounce", maxproc=0),
        master_entry("defer", "unix", "bounce", maxproc=0),
        master_entry("trace", "unix", "bounce", maxproc=0),
        master_entry("verify", "unix", "verify", maxproc=1),
        master_entry("flush", "unix", "flush", private="n", wakeup="1000?", maxproc=0),
        master_entry("proxymap", "unix", "proxymap"),
        master_entry("proxywrite", "unix", "proxymap", maxproc=1),
        master_entry("smtp", "unix", "smtp"),
        master_entry("relay", "unix", "smtp"),
        master_entry("showq", "unix", "showq", private="n"),
        master_entry("error", "unix", "error"),
        master_entry("retry", "unix", "error"),
        master_entry("discard", "unix", "discard"),
        master_entry("local", "unix", "local", unpriv="n"),
        master_entry("virtual", "unix", "virtual", unpriv="n"),
        master_entry("lmtp", "unix", "lmtp"),
        master_entry("anvil", "unix", "anvil", maxproc=1),
        master_entry("scache", "unix", "scache", maxproc=1),
        master_entry("postlog", "unix-dgram", "postlogd", private="n", maxproc=1),
    ]


def make_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)


def write_config_file(path: Path, text: str) -> None:
    """Write a root-owned configuration file dated a few seconds back.

    Postfix re-reads a configuration file for up to two seconds while its mtime is
    not yet in the past (it guards against half-written files), which would add two
    seconds to every postmap, postconf and postfix command right after writing it.
    """
    path.write_text(text, encoding="utf-8")
    os.chown(path, 0, 0)
    path.chmod(0o644)
    past = time.time() - 10
    os.utime(path, (past, past))
