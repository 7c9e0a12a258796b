"""Single-message learning (``scanner learn``) and safe model replacement.

Every writer of a model file holds an exclusive ``fcntl`` lock on ``<model>.lock`` while
it reads, updates and writes the model, and writes through a temporary file renamed over
the old one. Concurrent ``learn`` runs therefore serialise instead of losing updates, and
a reader (``scanner serve`` reloading) sees either the old or the new complete file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator

from scanner.ml.errors import ModelError
from scanner.ml.model import Model, load_model, save_model

DEFAULT_LOCK_TIMEOUT = 120.0


def lock_path(model_path: str | os.PathLike[str]) -> str:
    """The lock file that guards a model file."""
    return os.fspath(model_path) + ".lock"


def _shared_mode(model_path: str | os.PathLike[str]) -> int:
    """The lock file's mode: whoever may write the model may take its lock (the model's
    read/write bits; 0644 for a new model)."""
    try:
        return os.stat(model_path).st_mode & 0o666
    except OSError:
        return 0o644


@contextlib.contextmanager
def model_lock(model_path: str | os.PathLike[str],
               timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the exclusive writer lock of a model file (waits up to ``timeout`` seconds)."""
    path = lock_path(model_path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    mode = _shared_mode(model_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    except OSError as exc:
        raise ModelError(f"{path}: cannot open lock file ({exc.strerror})") from exc
    with contextlib.suppress(OSError):  # the umask must not lock out the model's group
        if os.fstat(fd).st_uid == os.geteuid() and os.fstat(fd).st_mode & 0o666 != mode:
            os.fchmod(fd, mode)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise ModelError(f"{path}: cannot lock ({exc.strerror})") from exc
                if time.monotonic() >= deadline:
                    raise ModelError(f"{path}: timed out after {timeout:g}s waiting for "
                                     "another process to finish updating the model") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def learn_message(model_path: str | os.PathLike[str], raw: bytes, spam: bool,
                  timeout: float = DEFAULT_LOCK_TIMEOUT) -> str:
    """Learn one message into the model file; returns the :meth:`Model.learn` outcome."""
    with model_lock(model_path, timeout):
        model = load_model(model_path)
        outcome = model.learn(raw, spam)
        if outcome != "duplicate":
            save_model(model, model_path)
    return outcome


def replace_model(model: Model, model_path: str | os.PathLike[str],
                  timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
    """Save a model over ``model_path`` under the writer lock."""
    with model_lock(model_path, timeout):
        save_model(model, model_path)
