"""The file archive (``policy.archive_directory``, amavis's local: archive) through the
real Postfix: every message lands in the archive once, in a file named after its mail_id,
before it is delivered; while the copy cannot be written Postfix keeps the message
(451); a message deferred after it was archived (the reinjection is down) is archived
again by the retry and the deferred attempt's file is gone, one file per message."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.quarantine import envelope, files
from scanner.serve.scoreboard import read_board
from tests.postfix_stack import Stack, require_postfix, wait_ids
from tests.postfix_stack import summary_line as _line

pytestmark = [pytest.mark.postfix, pytest.mark.slow]


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archive-root") / "archive"


@pytest.fixture(scope="module")
def status_file(archive_dir: Path) -> Path:
    return archive_dir.parent / "status"


@pytest.fixture(scope="module")
def stack(archive_dir: Path, status_file: Path) -> Iterator[Stack]:
    require_postfix()
    extra = ('\n[checks]\nenabled = []\n[policy]\nlocal_domains = ["example.test"]\n'
             f'archive_directory = "{archive_dir}"\n'
             '[policy.recipients."carol@example.test"]\narchive_directory = ""\n')
    s = Stack(extra=extra, server_extra=f'status_file = "{status_file}"').start()
    yield s
    s.remove()


def _msg(mid: str) -> bytes:
    return (b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: archive "
            + mid.encode() + b"\r\nMessage-ID: <" + mid.encode() + b"@example.org>\r\n\r\n"
            b"archived body " + mid.encode() + b"\r\n")


def _copies(archive_dir: Path, mid: str) -> list[tuple[Path, envelope.Envelope | None,
                                                      bytes]]:
    """The archive files holding the message ``mid``: (path, envelope, message)."""
    found = []
    for path in sorted(archive_dir.rglob("archive-*.gz")):
        env, raw = envelope.split(files.read_gz(path))
        if f"<{mid}@example.org>".encode() in raw:
            found.append((path, env, raw))
    return found


def _archived_counter(status_file: Path, wanted: int, timeout: float = 10) -> int:
    """The status file's Archived counter once it reaches ``wanted`` (the worker counts
    a message just after its summary line), or its value at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = read_board(str(status_file)).totals()["action:Archived"]
        if value >= wanted or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_every_message_is_archived_once_in_a_file_named_by_its_mail_id(stack, archive_dir,
                                                                       status_file):
    stack.postfix.send("alice@example.test", ["bob@example.test", "carol@example.test"],
                       _msg("arch1"))
    wait_ids(stack, {"<arch1@example.org>"}, timeout=60, copies=2)
    line = _line(stack, "arch1")
    assert "{RelayedInbound,Archived}" in line, line
    mail_id = line.split("mail_id: ")[1].split(",")[0]
    [(path, env, raw)] = _copies(archive_dir, "arch1")
    assert path == archive_dir / mail_id[0] / f"archive-{mail_id}.gz"
    assert env is not None and env.mail_id == mail_id
    assert (env.sender, env.recipients) == ("alice@example.test", ["bob@example.test"])
    assert raw.endswith(b"\r\n\r\narchived body arch1\r\n")  # as received, Postfix's
    assert raw.startswith(b"Received: ")                       # Received: on top
    assert _archived_counter(status_file, 1) == 1  # scanner status counts it


def test_a_deferred_message_is_archived_once_when_it_goes_through(stack, archive_dir):
    stack.set_reinjection(False)
    try:
        stack.postfix.send("alice@example.test", "bob@example.test", _msg("arch2"))
        line = _line(stack, "arch2")
        assert "TempFailed" in line and "Archived" not in line, line
        assert stack.postfix.queue(), "the message must wait in Postfix's queue"
        assert "archive copy" in "\n".join(stack.filter.log_lines())  # removed again
    finally:
        stack.set_reinjection(True)
    wait_ids(stack, {"<arch2@example.org>"}, timeout=90)
    assert len(_copies(archive_dir, "arch2")) == 1
