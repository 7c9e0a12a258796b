"""A private Postfix instance under one directory, for integration tests and benchmarks.

:class:`PostfixInstance` writes its own main.cf and master.cf, keeps its queue, data,
Maildirs and log file under ``base`` and listens on two loopback ports only: the
injection smtpd (where tests send mail, optionally with a ``content_filter``) and the
reinjection smtpd (the after-filter listener, built by :mod:`scanner.postfix_config`
exactly as operators get it). It is driven with ``postfix -c CONFDIR start|stop``, so the
machine's default instance is never touched. Needs root and the postfix package.

Final delivery uses the ``virtual`` agent: ``user@example.test`` lands in the Maildir
``base/mail/example.test/user/``. The agent refuses ``$1`` substitution in regexp maps
(a deliberate Postfix safety rule), so the mailbox map is a ``hash:`` table of known
users: :data:`DEFAULT_USERS` in every domain, plus whatever :meth:`PostfixInstance.add_users`
or :meth:`PostfixInstance.send` registers on the fly. Other recipients are refused at
RCPT time with ``550 5.1.1 ... User unknown in virtual mailbox table``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from scanner.postfix_config import (
    TRANSPORT,
    filter_main_settings,
    filter_transport,
    master_entry,
    reinject_maxproc,
    reinject_service,
)
from scanner.testing.postfix_layout import make_dir, standard_services, write_config_file
from scanner.testing.procs import belongs, wait_gone

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTMAP = "/usr/sbin/postmap"
MAIL_USER = "nobody"  # owner of the delivered Maildirs (virtual_uid_maps)
_LOCAL_PART = re.compile(r"[a-z0-9_+=-][a-z0-9._+=-]*")

#: Local parts that have a Maildir in every domain without registration.
DEFAULT_USERS: tuple[str, ...] = (
    "user", "alice", "bob", "carol", "dave", "eve", "postmaster", "abuse", "root",
    "admin", "test", "sender", "rcpt", "recipient", "bench",
    *(f"user{i}" for i in range(100)),
)
_QUEUED_AS = re.compile(rb"queued as ([0-9A-Za-z]+)")


class PostfixError(RuntimeError):
    """The private Postfix could not be set up, started, stopped or queried."""


class DeliveryTimeout(PostfixError, TimeoutError):
    """Fewer messages than expected reached the Maildirs in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def dead_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that refuses every connection while the block runs:
    bound, never listened on. A port merely free could become the source port of a
    connection to itself (a TCP self-connect: the kernel picks ephemeral source ports
    from the same range), which then waits for a greeting instead of being refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def make_base_dir(prefix: str = "scanner-postfix-", parent: str | None = None) -> Path:
    """A new empty directory (mode 755) to use as a :class:`PostfixInstance` base.

    pytest's ``tmp_path`` does not work: it lives below a mode-700 directory that the
    postfix and nobody users cannot enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o755)
    return path


def postfix_available() -> str | None:
    """None if a private instance can run here, else the reason why not."""
    if os.geteuid() != 0:
        return "a private Postfix instance needs root"
    if not os.access(POSTFIX, os.X_OK):
        return f"{POSTFIX} is not installed"
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam(MAIL_USER)
    except KeyError as exc:
        return f"missing system user: {exc}"
    return None


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise PostfixError(
                    f"nothing listens on {host}:{port} after {timeout:g} s") from None
            time.sleep(0.05)


class PostfixInstance:
    """One private Postfix under ``base``: ``etc/``, ``spool/``, ``data/``, ``mail/``, ``log/``."""

    def __init__(
        self,
        *,
        base: Path,
        smtpd_port: int,
        reinject_port: int,
        filter: str | None = None,
        filter_protocol: Literal["smtp", "lmtp"] = "smtp",
        filter_maxproc: int = 10,
        filter_timeout: int = 720,
        domains: tuple[str, ...] = ("example.test",),
        extra_main: dict[str, str] | None = None,
        users: Iterable[str] = DEFAULT_USERS,
        smtpd_options: Sequence[tuple[str, str]] = (),
        smtpd_maxproc: int | str = "-",
        reinject_builder: Callable[..., str] = reinject_service,
    ) -> None:
        self.base = Path(base).resolve()
        self.smtpd_port = smtpd_port
        self.reinject_port = reinject_port
        self.filter = filter
        self.filter_protocol = filter_protocol
        self.filter_maxproc = filter_maxproc
        self.filter_timeout = filter_timeout
        self.domains = tuple(domain.lower() for domain in domains)
        self.extra_main = dict(extra_main or {})
        self.smtpd_options = tuple(smtpd_options)  # -o overrides of the injection smtpd
        self.smtpd_maxproc = smtpd_maxproc
        self.reinject_builder = reinject_builder  # the after-filter smtpd's master.cf entry
        self.conf_dir = self.base / "etc"
        self.queue_dir = self.base / "spool"
        self.data_dir = self.base / "data"
        self.mail_dir = self.base / "mail"
        self.log_file = self.base / "log" / "postfix.log"
        self.users: set[str] = set()
        self.add_users(*users)

    # -- configuration -------------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        """The complete main.cf of this instance, as name -> value."""
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.log_file.parent),
            "syslog_name": f"postfix-test-{self.smtpd_port}",
            "myhostname": "mx.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "biff": "no",
            "smtputf8_enable": "yes",
            "message_size_limit": str(200 * 1024 * 1024),
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "",
            "relay_domains": "",
            "default_transport": "error:5.1.2 outbound mail is disabled in this test instance",
            "relay_transport": "$default_transport",
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": str(self.mail_dir),
            "virtual_mailbox_maps": f"hash:{self._vmailbox}",
            "virtual_mailbox_limit": "0",
            "virtual_uid_maps": f"static:{self._mail_uid()}",
            "virtual_gid_maps": f"static:{self._mail_gid()}",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "queue_run_delay": "1s",
            "delay_warning_time": "0",
            "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_banner": "$myhostname ESMTP test instance",
        }
        settings.update(filter_main_settings(maxproc=self.filter_maxproc))
        if self.filter is None:
            del settings["receive_override_options"]
        else:
            settings["content_filter"] = self.filter
        settings.update(self.extra_main)
        return settings

    def master_cf(self) -> str:
        """The complete master.cf: the standard services plus our three listeners/transports."""
        parts = [
            master_entry(f"127.0.0.1:{self.smtpd_port}", "inet", "smtpd", private="n",
                         maxproc=self.smtpd_maxproc, options=self.smtpd_options),
            *standard_services(),
            filter_transport(protocol=self.filter_protocol, maxproc=self.filter_maxproc,
                             timeout=self.filter_timeout, name=TRANSPORT),
            self.reinject_builder(host="127.0.0.1", port=self.reinject_port,
                                  maxproc=reinject_maxproc(self.filter_maxproc)),
        ]
        return "# master.cf of a private test instance (generated)\n" + "".join(parts)

    @property
    def _vmailbox(self) -> Path:
        return self.conf_dir / "vmailbox"

    def vmailbox_map(self) -> str:
        """Source text of the mailbox map: every known user of every domain -> Maildir."""
        return "".join(f"{user}@{domain} {domain}/{user}/\n"
                       for domain in self.domains for user in sorted(self.users))

    def add_users(self, *names: str) -> None:
        """Give local parts (or addresses in our domains) a Maildir; works while running.

        Addresses in other domains are ignored; local parts other than plain
        ``[a-z0-9._+=-]`` ones raise :class:`PostfixError`. :meth:`send` registers
        plain recipients by itself. The map is replaced atomically and
        Postfix daemons notice the new file before their next connection.
        """
        new = {user for user in map(self._local_part, names) if user and user not in self.users}
        if not new:
            return
        self.users |= new
        if self._vmailbox.with_suffix(".db").exists():
            self._write_vmailbox()

    def _local_part(self, name: str) -> str | None:
        local, domain = _split(name)
        if domain and domain not in self.domains:
            return None
        if not _LOCAL_PART.fullmatch(local):
            raise PostfixError(f"{name!r}: test mailboxes need a plain local part "
                               f"({_LOCAL_PART.pattern})")
        return local

    def _write_vmailbox(self) -> None:
        tmp = self._vmailbox.with_name("vmailbox.new")
        write_config_file(tmp, self.vmailbox_map())
        self._run([POSTMAP, "-c", str(self.conf_dir), f"hash:{tmp}"])
        os.replace(tmp.with_name("vmailbox.new.db"), self._vmailbox.with_suffix(".db"))
        os.replace(tmp, self._vmailbox)

    def write_config(self) -> None:
        """Create the directory tree with the ownership Postfix wants and write the config."""
        self._check_base()
        postfix = pwd.getpwnam("postfix")
        make_dir(self.base, 0, 0, 0o755)
        make_dir(self.conf_dir, 0, 0, 0o755)
        make_dir(self.queue_dir, 0, 0, 0o755)
        make_dir(self.log_file.parent, 0, 0, 0o755)
        make_dir(self.data_dir, postfix.pw_uid, postfix.pw_gid, 0o700)
        make_dir(self.mail_dir, self._mail_uid(), self._mail_gid(), 0o755)
        main = "# main.cf of a private test instance\n" + "".join(
            f"{key} = {value}\n" for key, value in self.main_cf().items())
        write_config_file(self.conf_dir / "main.cf", main)
        write_config_file(self.conf_dir / "master.cf", self.master_cf())
        self._write_vmailbox()

    def _check_base(self) -> None:
        if any(ch.isspace() or ch in ",=$" for ch in str(self.base)):
            raise PostfixError(f"{self.base}: Postfix paths must not contain spaces, ',', '=' "
                               "or '$'")
        for parent in self.base.parents:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise PostfixError(
                    f"{parent} is not searchable by others (mode "
                    f"{parent.stat().st_mode & 0o777:o}); the postfix and {MAIL_USER} users "
                    f"could not reach {self.base}. Use a base directory such as "
                    "tempfile.mkdtemp() chmod 755 under /tmp."
                )

    @staticmethod
    def _mail_uid() -> int:
        return pwd.getpwnam(MAIL_USER).pw_uid

    @staticmethod
    def _mail_gid() -> int:
        return pwd.getpwnam(MAIL_USER).pw_gid

    # -- life cycle ----------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start the master and wait until both ports accept."""
        reason = postfix_available()
        if reason:
            raise PostfixError(reason)
        self.write_config()
        self._postfix("start")  # runs 'postfix check' and creates the queue directories
        try:
            wait_for_port(self.smtpd_port, timeout)
            wait_for_port(self.reinject_port, timeout)
        except PostfixError as exc:
            self.stop()
            raise PostfixError(f"{exc}\n--- log tail ---\n{self.log_tail()}") from None

    def stop(self) -> None:
        """Stop this instance only; kill leftovers of it if ``postfix stop`` left any."""
        pid = self.master_pid()
        if pid is not None:
            self._postfix("stop", check=False)
            if not wait_gone(pid, 5.0):
                self._postfix("abort", check=False)
                wait_gone(pid, 2.0)
        self._kill_leftovers(pid)

    def reload(self) -> None:
        """Make the running instance re-read main.cf and master.cf (postfix reload).

        Edit the files with a modification time in the past (see :func:`_write`), or
        every Postfix command waits up to two seconds for them to settle.
        """
        self._postfix("reload")

    def master_pid(self) -> int | None:
        """PID of this instance's running master, or None.

        The pid file may be stale, so the process must also work in our queue directory
        (the master's cwd); a recycled PID of some other process is never returned.
        """
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except (OSError, ValueError, IndexError):
            return None
        return pid if cwd == self.queue_dir else None

    def processes(self, master_pid: int | None = None) -> list[int]:
        """PIDs of processes that belong to this instance (process group or cwd)."""
        pgid = master_pid if master_pid is not None else self.master_pid()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and belongs(entry, pgid, self.queue_dir):
                found.append(int(entry.name))
        return found

    def _kill_leftovers(self, master_pid: int | None, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while pids := self.processes(master_pid):
            sig = signal.SIGKILL if time.monotonic() > deadline - timeout / 2 else signal.SIGTERM
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if time.monotonic() > deadline:
                raise PostfixError(f"processes of {self.base} survive SIGKILL: {pids}")
            time.sleep(0.1)

    def _postfix(self, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([POSTFIX, "-c", str(self.conf_dir), command], check=check)

    def _run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAIL_")}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise PostfixError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
                f"--- log tail ---\n{self.log_tail()}"
            )
        return result

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queue -----------------------------------------------------------------------

    def flush(self) -> None:
        """Ask the queue manager to retry every deferred message now (postqueue -f)."""
        self._run([POSTQUEUE, "-c", str(self.conf_dir), "-f"])

    def queue(self) -> list[dict[str, Any]]:
        """Every queued message as postqueue -j reports it (queue_name, recipients, ...)."""
        out = self._run([POSTQUEUE, "-c", str(self.conf_dir), "-j"]).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def queue_ids(self) -> list[str]:
        """Queue IDs of every message still in the queue."""
        return [str(entry["queue_id"]) for entry in self.queue()]

    # -- mail in and out -----------------------------------------------------------

    def send(
        self,
        sender: str,
        recipients: str | Iterable[str],
        data: bytes,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> str:
        """Send one message to the injection smtpd; return Postfix's queue ID."""
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        self.add_users(*(r for r in rcpts if _LOCAL_PART.fullmatch(_split(r)[0])))
        with smtplib.SMTP("127.0.0.1", self.smtpd_port, timeout=timeout) as smtp:
            smtp.ehlo("client.test")
            code, reply = smtp.mail(sender, list(mail_options))
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            refused = {}
            for rcpt in rcpts:
                code, reply = smtp.rcpt(rcpt, list(rcpt_options))
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if len(refused) == len(rcpts):
                raise smtplib.SMTPRecipientsRefused(refused)
            code, reply = smtp.data(data)
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        match = _QUEUED_AS.search(reply)
        return match.group(1).decode() if match else ""

    def maildir_messages(self, user: str | None = None) -> list[Path]:
        """Delivered message files (Maildir new/ and cur/), of one user or of everyone."""
        who = user if user is not None else "*"
        found = []
        for sub in ("new", "cur"):
            found.extend(p for p in self.mail_dir.glob(f"*/{who}/{sub}/*") if p.is_file())
        return sorted(found)

    def wait_delivered(self, n: int, timeout: float = 30.0, user: str | None = None) -> list[Path]:
        """Wait until at least ``n`` messages are delivered; explain what is stuck if not."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.maildir_messages(user)
            if len(messages) >= n:
                return messages
            if time.monotonic() > deadline:
                raise DeliveryTimeout(self._stuck_report(n, len(messages), timeout))
            time.sleep(0.05)

    def _stuck_report(self, wanted: int, got: int, timeout: float) -> str:
        try:
            queue = "\n".join(json.dumps(entry) for entry in self.queue()) or "(empty)"
        except PostfixError as exc:
            queue = f"(postqueue failed: {exc})"
        return (f"{got} of {wanted} messages delivered to {self.mail_dir} after {timeout:g} s\n"
                f"--- queue ---\n{queue}\n--- log tail ---\n{self.log_tail()}")

    def log_text(self) -> str:
        """The whole log file of this instance ('' if it has not been written yet)."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def remove(self) -> None:
        """Stop the instance if needed and delete ``base`` with everything in it."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _split(address: str) -> tuple[str, str]:
    """Lower-cased (local part, domain); a bare name is a local part with no domain."""
    local, _, domain = address.strip("<>").lower().rpartition("@")
    return (local, domain) if local else (domain, "")
