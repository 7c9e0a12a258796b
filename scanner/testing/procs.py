"""Process helpers for the test instances: is a process alive, wait for it, is it ours."""

from __future__ import annotations

import os
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has exited; False if it is still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def belongs(proc: Path, pgid: int | None, queue_dir: Path) -> bool:
    """Whether /proc/PID is in our master's process group or works inside our queue."""
    try:
        stat = (proc / "stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        if pgid is not None and int(fields[2]) == pgid:
            return True
        cwd = Path(os.readlink(proc / "cwd"))
    except (OSError, ValueError, IndexError):
        return False
    return cwd == queue_dir or queue_dir in cwd.parents
