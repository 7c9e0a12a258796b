"""One connection to a policy source kept per worker process, as amavis keeps one per child.

The policy LDAP and PostgreSQL lookups use it. A lookup takes the connection (one at
a time: lookups run in the worker's thread pool), and opens it when there is none. A
lookup that fails on a connection kept from before, in a way that says the connection
is gone (the server restarted, or closed it while it was idle), is logged and tried
once more on a new connection; on a new connection a failure is the lookup's failure
(the message is deferred). A connection inherited over fork is left to the parent
(``scanner serve``'s probe at start closes its own before the workers fork); SIGHUP
has the next lookup open a new one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("scanner.policy")
T = TypeVar("T")


class KeptConnection:
    """The connection of one source: ``connect()`` opens one (raises when it cannot),
    ``close(conn)`` closes one without raising, ``lost(conn, exc)`` says whether a
    failure means the connection itself is gone; ``what`` names the source in log
    lines; ``wait`` is how long a lookup waits for another one's turn."""

    def __init__(self, connect: Callable[[], Any], close: Callable[[Any], None], what: str,
                 wait: float, lost: Callable[[Any, BaseException], bool] | None = None) -> None:
        self._connect, self._close, self._what, self._wait = connect, close, what, wait
        self._lost = lost or (lambda conn, exc: True)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._renew = False

    def run(self, work: Callable[[Any], T]) -> T:
        """``work(connection)``'s result, on the kept connection or a new one."""
        if not self._lock.acquire(timeout=self._wait):
            raise TimeoutError(f"another lookup of this worker holds the {self._what} "
                               "connection")
        try:
            kept = self._kept()
            if kept is not None:
                try:
                    return work(kept)
                except Exception as exc:
                    if not self._lost(kept, exc):
                        raise
                    self._drop()
                    log.warning("%s connection lost (%s); connecting anew", self._what, exc)
            conn = self._connect()
            self._conn, self._pid = conn, os.getpid()
            try:
                return work(conn)
            except BaseException as exc:
                if not isinstance(exc, Exception) or self._lost(conn, exc):
                    self._drop()
                raise
        finally:
            self._lock.release()

    def renew(self) -> None:
        """SIGHUP: the next lookup closes the kept connection and opens a new one."""
        self._renew = True

    def close(self) -> None:
        """Close the kept connection (``probe`` does, before the workers fork)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._drop()
            self._conn = None

    def _kept(self) -> Any:
        if self._conn is not None and self._pid != os.getpid():
            self._conn = None  # inherited over fork: the parent's socket
        elif self._renew:
            self._drop()
        self._renew = False
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._close(conn)
