"""A private clamd for tests and CI, with a tiny signature database the tests own.

:class:`ClamdInstance` writes its own ``clamd.conf`` and signature files under a base
directory, starts ``clamd -c CONF`` in the foreground as a child process and waits until
it answers ``PING``. Nothing is downloaded (no freshclam): the database holds only

* ``Eicar-Test-Signature`` -- the EICAR test string anywhere in a file (``.ndb``), and
* ``ClamAV-Test-File`` -- the SHA-256 of Debian's ``clamav-testfiles`` ``clam.exe``
  (``.hsb``); clamd unpacks archives, packers and mail formats itself, so the other
  files of that package are found through it.

:class:`FakeClamd` is a tiny asyncio stand-in that answers garbage, hangs or hangs up,
for the failure-mode tests.

clamd reports database signatures with the suffix ``.UNOFFICIAL``
(``Eicar-Test-Signature.UNOFFICIAL``). Start-up with this database takes well under a
second on a laptop; :attr:`ClamdInstance.startup_seconds` records the measured time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

EICAR_NAME = "Eicar-Test-Signature"
TEST_FILE_NAME = "ClamAV-Test-File"
TEST_FILE_SHA256 = "71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495"
TEST_FILE_SIZE = 544
TESTFILES_DIR = Path("/usr/share/clamav-testfiles")
"""Where Debian's ``clamav-testfiles`` package puts its harmless samples."""

_UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def eicar() -> bytes:
    """The 68-byte EICAR test string, assembled here so no repository file holds it."""
    head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$"
    tail = "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    return (head + "EICAR" + tail).encode("ascii")


def clamd_binary() -> str | None:
    """Path of the clamd executable, or None when ClamAV's daemon is not installed."""
    found = shutil.which("clamd")
    if found:
        return found
    for candidate in ("/usr/sbin/clamd", "/usr/local/sbin/clamd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_database(db_dir: Path) -> None:
    """Write the test-owned signature files into ``db_dir``."""
    db_dir.mkdir(parents=True, exist_ok=True)
    (db_dir / "scanner-test.ndb").write_text(f"{EICAR_NAME}:0:*:{eicar().hex()}\n", "ascii")
    (db_dir / "scanner-test.hsb").write_text(
        f"{TEST_FILE_SHA256}:{TEST_FILE_SIZE}:{TEST_FILE_NAME}\n", "ascii")


class ClamdInstance:
    """One private clamd: its own configuration, database, socket(s) and log file."""

    def __init__(self, base: Path, *, tcp: bool = False,
                 stream_max_length: int = 25 * 1024 * 1024, max_threads: int = 2,
                 start_timeout: float = 60.0, extra: dict[str, str] | None = None,
                 tmp_root: Path | None = None) -> None:
        self.base = Path(base)
        self.db_dir = self.base / "db"
        self.conf_path = self.base / "clamd.conf"
        self.log_path = self.base / "clamd.log"
        self.out_path = self.base / "clamd.out"
        # clamd writes every stream and every part it extracts to a file here; on tmpfs
        # (tmp_root="/dev/shm") that costs clamd about half the CPU of a disk directory
        self._tmp_made: str | None = None
        if tmp_root is not None:
            self._tmp_made = tempfile.mkdtemp(prefix="clamd-tmp-", dir=tmp_root)
        self.tmp_dir = Path(self._tmp_made) if self._tmp_made else self.base / "tmp"
        self.stream_max_length = stream_max_length
        self.max_threads = max_threads
        self.start_timeout = start_timeout
        self.extra = dict(extra or {})
        self.tcp_port: int | None = free_tcp_port() if tcp else None
        self._short_dir: str | None = None
        self.socket_path = self._socket_path()
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    def _socket_path(self) -> Path:
        wanted = self.base / "clamd.sock"
        if len(str(wanted)) <= _UNIX_PATH_MAX:
            return wanted
        self._short_dir = tempfile.mkdtemp(prefix="clamd-")
        return Path(self._short_dir) / "clamd.sock"

    @property
    def endpoints(self) -> list[str]:
        """Endpoint strings for the clamav check: the Unix socket, then TCP if enabled."""
        found = [f"unix:{self.socket_path}"]
        if self.tcp_port is not None:
            found.append(f"tcp:127.0.0.1:{self.tcp_port}")
        return found

    @property
    def unix_endpoint(self) -> str:
        return f"unix:{self.socket_path}"

    @property
    def tcp_endpoint(self) -> str:
        if self.tcp_port is None:
            raise RuntimeError("this clamd was created without tcp=True")
        return f"tcp:127.0.0.1:{self.tcp_port}"

    def config_text(self) -> str:
        """The clamd.conf this instance runs with."""
        settings: dict[str, str] = {
            "LocalSocket": str(self.socket_path),
            "LocalSocketMode": "660",
            "FixStaleSocket": "yes",
            "DatabaseDirectory": str(self.db_dir),
            "TemporaryDirectory": str(self.tmp_dir),
            "LogFile": str(self.log_path),
            "LogTime": "yes",
            "LogClean": "no",
            "LogVerbose": "no",
            "Foreground": "yes",
            "MaxThreads": str(self.max_threads),
            "MaxConnectionQueueLength": "30",
            "StreamMaxLength": str(self.stream_max_length),
            "ReadTimeout": "30",
            "CommandReadTimeout": "10",
            "IdleTimeout": "30",
            "SelfCheck": "3600",
            "Bytecode": "no",
            "ScanMail": "yes",
            "ScanArchive": "yes",
            "MaxScanSize": "200M",
            "MaxFileSize": "100M",
            "MaxRecursion": "16",
            "MaxFiles": "10000",
            "MaxScanTime": "60000",
        }
        if os.geteuid() == 0:
            settings["User"] = "root"
        if self.tcp_port is not None:
            settings["TCPSocket"] = str(self.tcp_port)
            settings["TCPAddr"] = "127.0.0.1"
        settings.update(self.extra)
        lines = ["# written by scanner.testing.clamd; private to one test run"]
        lines += [f"{key} {value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        """Write the database and configuration (``start`` does this too)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)
        write_database(self.db_dir)
        self.conf_path.write_text(self.config_text(), "utf-8")

    def start(self) -> float:
        """Start clamd and wait until it answers PING; return the seconds that took."""
        if self.running:
            return self.startup_seconds or 0.0
        binary = clamd_binary()
        if binary is None:
            raise FileNotFoundError("clamd is not installed (Debian: apt-get install "
                                    "clamav-daemon)")
        self.prepare()
        began = time.monotonic()
        with open(self.out_path, "ab") as out:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.conf_path)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(began)
        self.startup_seconds = time.monotonic() - began
        return self.startup_seconds

    def _wait_ready(self, began: float) -> None:
        assert self.process is not None
        while time.monotonic() - began < self.start_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited with status {self.process.returncode} "
                                   f"during start-up:\n{self.log_tail()}")
            if self.ping(timeout=1.0):
                return
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"clamd did not answer PING within {self.start_timeout} s:\n"
                           f"{self.log_tail()}")

    def ping(self, timeout: float = 2.0) -> bool:
        """True when clamd answers ``zPING`` with ``PONG`` on its Unix socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(b"zPING\0")
                return sock.recv(64).rstrip(b"\0") == b"PONG"
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        """Ask clamd to exit (SIGTERM); SIGKILL it if it has not gone after ``timeout``."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL clamd at once, as a crash would (the socket file stays behind)."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(15.0)
        self.process = None

    def restart(self) -> float:
        """Stop and start again; return the new start-up time in seconds."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop clamd and remove the directories made outside ``base`` (short socket
        directory, temporary directory under ``tmp_root``)."""
        self.stop()
        for made in (self._short_dir, self._tmp_made):
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
        self._short_dir = self._tmp_made = None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of clamd's log and console output, for error messages."""
        text = ""
        for path in (self.out_path, self.log_path):
            with contextlib.suppress(OSError):
                text += path.read_text("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ClamdInstance:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


Answer = bytes | None | Callable[[bytes], bytes | None]


class FakeClamd:
    """An asyncio Unix-socket server that speaks just enough clamd to misbehave on purpose.

    It reads each ``zINSTREAM`` request completely (``payloads`` keeps the data) and
    then, depending on the arguments: sends ``answer`` and closes; with ``hang=True``
    never answers; with ``answer=None`` closes without a word. ``answer`` may also be
    a function of the payload returning one of those. After ``zIDSESSION`` it answers
    each request with clamd's ``N: `` prefix and keeps the connection open (unless the
    answer is None). ``connections`` counts connections. Use inside a running
    event loop: ``async with FakeClamd(path, b"garbage\\0") as fake: ...``.
    """

    def __init__(self, socket_path: Path, answer: Answer = b"stream: OK\0", *,
                 hang: bool = False) -> None:
        self.socket_path = Path(socket_path)
        self.answer = answer
        self.hang = hang
        self.requests = 0
        self.connections = 0
        self.payloads: list[bytes] = []
        self._server: asyncio.AbstractServer | None = None
        self._hung: list[asyncio.StreamWriter] = []

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket_path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            command = await reader.readuntil(b"\0")
            session = command == b"zIDSESSION\0"
            number = 0
            while True:
                if session:
                    command = await reader.readuntil(b"\0")
                    if command == b"zEND\0":
                        break
                    number += 1
                self.requests += 1
                payload = bytearray()
                if command == b"zINSTREAM\0":
                    while size := int.from_bytes(await reader.readexactly(4), "big"):
                        payload += await reader.readexactly(size)
                self.payloads.append(bytes(payload))
                if self.hang:
                    self._hung.append(writer)
                    return
                answer = self.answer(bytes(payload)) if callable(self.answer) else self.answer
                if answer is None:
                    break
                writer.write((f"{number}: ".encode() if session else b"") + answer)
                await writer.drain()
                if not session:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> FakeClamd:
        self._server = await asyncio.start_unix_server(self._serve, str(self.socket_path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._hung:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()
