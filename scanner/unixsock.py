"""Listening Unix-domain sockets: the AM.PDP socket and SMTP/LMTP listeners on a path.

:func:`bind_unix_socket` replaces a stale socket file (nobody listening: a filter that
was killed), refuses a live one or a file that is not a socket, binds with no access
for anyone until the configured mode and group are set, and listens.
:func:`unlink_unix_socket` removes the file at exit, if it is still a socket.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import socket
import stat

MAX_PATH_BYTES = 107
"""Longest socket path Linux takes (sun_path is 108 bytes with the terminating NUL)."""


class UnixSocketError(Exception):
    """The socket cannot be set up; the message names the path and why."""


def bind_unix_socket(path: str, mode: int, group: str, what: str,
                     backlog: int = 64) -> socket.socket:
    """A listening, non-blocking socket at ``path``; ``what`` names it in errors
    (e.g. "AM.PDP socket")."""
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise UnixSocketError(f"{what} path {path!r} is longer than {MAX_PATH_BYTES} bytes")
    _remove_stale(path, what)
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, 0o755, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # never reachable by others between bind and chmod
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise UnixSocketError(f"cannot bind the {what} {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    try:
        if group:
            os.chown(path, -1, group_id(group))
        os.chmod(path, mode)
        sock.listen(backlog)
    except (OSError, KeyError) as exc:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise UnixSocketError(f"cannot set up the {what} {path}: {exc}") from None
    sock.setblocking(False)
    return sock


def group_id(group: str) -> int:
    """A group given by name or number (KeyError: no such group)."""
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


def _remove_stale(path: str, what: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise UnixSocketError(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise UnixSocketError(f"cannot check the old socket {path}: "
                                  f"{exc.strerror}") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise UnixSocketError(f"another process serves the {what} {path}")


def unlink_unix_socket(sock: socket.socket) -> None:
    """Remove the socket file if it is still a socket (call once, in the master, at
    exit, while ``sock`` is open)."""
    path = sock.getsockname()
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if stat.S_ISSOCK(st.st_mode):
            os.unlink(path)


FileId = tuple[int, int]
"""A file's device and inode: which file a path names."""


def file_id(path: str) -> FileId | None:
    """``path``'s :data:`FileId` (None when it cannot be looked at)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def unlink_if_same(path: str, wanted: FileId | None) -> None:
    """Remove the socket file at ``path`` if it is still the one we bound (``wanted``):
    after our listening socket was closed, another filter started meanwhile may have
    replaced it with its own, which must stay."""
    if wanted is not None and file_id(path) == wanted:
        with contextlib.suppress(OSError):
            os.unlink(path)
