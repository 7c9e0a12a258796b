"""Mailbox formats: Maildir, mbox, MH, directories, compressed files and tar archives."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from scanner.ml.mailbox_reader import detect_format, iter_messages
from tests.ml.conftest import synthetic_message

MSGS = [synthetic_message(i % 2 == 1, i) for i in range(4)]


def collect(path: Path | str) -> tuple[list[str], list[bytes], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    items = list(iter_messages(str(path), lambda n, r: problems.append((n, r))))
    return [n for n, _ in items], [r for _, r in items], problems


def mbox_bytes(messages: list[bytes]) -> bytes:
    out = b""
    for i, msg in enumerate(messages):
        out += f"From sender{i}@example.org Mon Jan  6 10:00:0{i} 2025\n".encode()
        out += msg.replace(b"\r\n", b"\n") + b"\n"
    return out


def test_maildir(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1.host").write_bytes(MSGS[0])
    (tmp_path / "cur" / "2.host:2,S").write_bytes(MSGS[1])
    (tmp_path / "tmp" / "3.host").write_bytes(MSGS[2])  # being delivered: not read
    assert detect_format(str(tmp_path)) == "maildir"
    names, raws, problems = collect(tmp_path)
    assert raws == [MSGS[0], MSGS[1]] and not problems


def test_mh_folder(tmp_path: Path) -> None:
    for i, msg in enumerate(MSGS, start=1):
        (tmp_path / str(i * 5)).write_bytes(msg)
    (tmp_path / ".mh_sequences").write_text("unseen: 5\n")
    assert detect_format(str(tmp_path)) == "mh"
    names, raws, _ = collect(tmp_path)
    assert raws == MSGS
    assert [Path(n).name for n in names] == ["5", "10", "15", "20"]


def test_mbox_with_unescaped_from_in_body(tmp_path: Path) -> None:
    body_with_from = MSGS[0].replace(b"\nHi,\n", b"\nHi,\n\nFrom the desk of the editor\n")
    path = tmp_path / "box"
    path.write_bytes(mbox_bytes([body_with_from, MSGS[1], MSGS[2]]))
    assert detect_format(str(path)) == "mbox"
    names, raws, problems = collect(path)
    assert len(raws) == 3 and not problems
    assert b"From the desk of the editor" in raws[0]
    assert names == [f"{path}:1", f"{path}:2", f"{path}:3"]


def test_directory_of_files_with_junk(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(MSGS[0])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(MSGS[1])
    (tmp_path / "junk.bin").write_bytes(os.urandom(4096).replace(b":", b"."))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / ".hidden").write_bytes(MSGS[2])
    assert detect_format(str(tmp_path)) == "directory"
    names, raws, problems = collect(tmp_path)
    assert raws == [MSGS[0], MSGS[1]]
    assert sorted(Path(n).name for n, _ in problems) == ["empty", "junk.bin"]


@pytest.mark.parametrize("opener", [gzip.compress, lzma.compress, bz2.compress])
def test_compressed_mbox_and_message(tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    box = tmp_path / "box.z"
    box.write_bytes(opener(mbox_bytes(MSGS)))
    assert detect_format(str(box)) == "compressed"
    assert len(collect(box)[1]) == 4
    single = tmp_path / "one.z"
    single.write_bytes(opener(MSGS[3]))
    assert collect(single)[1] == [MSGS[3]]


def test_tar_xz_of_a_directory_with_prefix(tmp_path: Path) -> None:
    archive = tmp_path / "corpus.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for i, msg in enumerate(MSGS):
            info = tarfile.TarInfo(f"corpus/{'spam' if i % 2 else 'ham'}/{i}")
            info.size = len(msg)
            tar.addfile(info, io.BytesIO(msg))
    assert detect_format(str(archive)) == "tar"
    assert len(collect(archive)[1]) == 4
    names, raws, _ = collect(f"{archive}#corpus/spam")
    assert raws == [MSGS[1], MSGS[3]]
    assert names[0] == f"{archive}#corpus/spam/1"


def test_corrupt_compressed_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(MSGS[0])[:30])
    names, raws, problems = collect(path)
    assert raws == [] and problems and problems[0][0] == str(path)


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        collect(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    assert collect(tmp_path) == ([], [], [])


def test_endless_mbox_lines_are_read_in_pieces(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than MAX_LINE_PIECE is read in pieces and the message is cut at
    MAX_MESSAGE_BYTES (a .gz of one endless line must not be held whole: it was a
    MemoryError); the newline that ends a long line is not a blank line, so the
    "From " line after it separates nothing (mbox wants a blank line first)."""
    import scanner.ml.mailbox_reader as reader

    monkeypatch.setattr(reader, "MAX_LINE_PIECE", 1024)
    monkeypatch.setattr(reader, "MAX_MESSAGE_BYTES", 8192)
    separator_inside = b"y" * 1024 + b"\n" + b"From a@b Mon Jan  6 10:00:00 2025\n"
    first = MSGS[0].replace(b"\r\n", b"\n") + b"\n" + separator_inside + b"z" * 100_000 + b"\n"
    path = tmp_path / "box.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(mbox_bytes([first, MSGS[1]]))
    names, raws, problems = collect(path)
    assert not problems and names == [f"{path}:1", f"{path}:2"]
    assert 8192 <= len(raws[0]) < 8192 + 1024  # cut at the limit, a piece at most beyond
    assert raws[1].startswith(b"From sender1@example.org") and raws[1].endswith(b"\n")
    assert MSGS[1].replace(b"\r\n", b"\n") in raws[1]


def test_pipes_and_devices_are_reported_not_read(tmp_path: Path) -> None:
    """A FIFO in a mail folder would block training for ever: reported and skipped."""
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "1.eml").write_bytes(MSGS[0])
    os.mkfifo(folder / "2.eml")  # no writer: opening it would wait for ever
    (folder / "3.eml").symlink_to("/dev/zero")
    names, raws, problems = collect(folder)
    assert raws == [MSGS[0]]
    assert sorted(n for n, _ in problems) == [str(folder / "2.eml"), str(folder / "3.eml")]
    assert all("not a regular file" in why for _, why in problems)
    names, raws, problems = collect(folder / "2.eml")  # given by name: the same
    assert raws == [] and "not a regular file" in problems[0][1]


def _deny(monkeypatch: pytest.MonkeyPatch, name: str, denied: Path) -> None:
    """Make ``os.NAME`` fail with EACCES for ``denied``, as for a directory of mode 000
    when not root (the tests run as root, who may read everything)."""
    real = getattr(os, name)

    def guarded(path: object = ".", *args: object) -> object:
        if os.fspath(path) == str(denied):
            raise PermissionError(13, "Permission denied", str(denied))
        return real(path, *args)

    monkeypatch.setattr(os, name, guarded)


def test_unreadable_directories_are_reported_not_raised_or_skipped_silently(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unlistable Maildir or cur/ raised PermissionError out of iter_messages (a
    traceback in train and eval); an unlistable subdirectory of a plain directory
    was skipped by os.walk without a word."""
    maildir = tmp_path / "Maildir"
    (maildir / "cur").mkdir(parents=True)
    (maildir / "cur" / "1:2,S").write_bytes(MSGS[0])
    _deny(monkeypatch, "listdir", maildir / "cur")
    names, _, problems = collect(maildir)
    assert names == [] and problems == [(str(maildir / "cur"),
                                         "cannot read the directory: Permission denied")]

    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "a.eml").write_bytes(MSGS[1])
    (plain / "sub" / "b.eml").write_bytes(MSGS[2])
    _deny(monkeypatch, "listdir", plain)
    names, _, problems = collect(plain)
    assert names == [] and problems == [(str(plain),
                                         "cannot read the directory: Permission denied")]
    monkeypatch.undo()
    _deny(monkeypatch, "scandir", plain / "sub")
    names, _, problems = collect(plain)
    assert names == [str(plain / "a.eml")]
    assert problems == [(str(plain / "sub"), "cannot read the directory: Permission denied")]


def test_a_file_of_zeros_is_reported_not_taken_for_a_tar_archive(tmp_path: Path) -> None:
    """tarfile.is_tarfile tries LZMA's headerless format on any file and takes zeros for
    an empty archive (after decoding all of them): a Maildir file left as NULs by a crash
    was skipped without a word, and /proc/self/pagemap hung the reader."""
    (tmp_path / "1.eml").write_bytes(MSGS[0])
    (tmp_path / "2.eml").write_bytes(bytes(8192))
    names, raws, problems = collect(tmp_path)
    assert raws == [MSGS[0]]
    assert problems == [(str(tmp_path / "2.eml"),
                         "does not look like a mail message (no header at the start)")]


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_archives_plain_and_compressed(tmp_path: Path, mode: str) -> None:
    archive = tmp_path / "box.tar"
    with tarfile.open(archive, mode) as tar:
        for i, msg in enumerate(MSGS):
            info = tarfile.TarInfo(f"mail/{i}")
            info.size = len(msg)
            tar.addfile(info, io.BytesIO(msg))
    assert detect_format(str(archive)) == "tar"
    names, raws, problems = collect(archive)
    assert raws == MSGS and not problems
    names, raws, problems = collect(f"{archive}#nothing/here")
    assert raws == [] and problems == [(str(archive),
                                        "has no files under 'nothing/here' (ARCHIVE#PREFIX)")]


def test_a_prefix_on_a_file_that_is_no_tar_archive_is_reported(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.write_bytes(mbox_bytes(MSGS))
    names, raws, problems = collect(f"{box}#sub")
    assert raws == [] and problems == [(str(box), "not a tar archive, so '#sub' selects nothing")]


@pytest.mark.parametrize("name", ["/proc/kmsg", "/proc/self/pagemap"])
def test_files_of_proc_are_reported_without_hanging(name: str) -> None:
    """Regular files by stat, yet /proc/kmsg blocks a read until the kernel logs something
    and /proc/self/pagemap is a file of zeros as large as the address space."""
    import subprocess
    import sys

    try:
        os.close(os.open(name, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
        pytest.skip(f"{name} cannot be opened here")
    code = ("from scanner.ml.mailbox_reader import iter_messages\n"
            f"items = list(iter_messages({name!r}, lambda n, r: print('PROBLEM', n, r)))\n"
            "print('MESSAGES', len(items))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])  # hang guard
    assert done.returncode == 0, done.stderr
    assert f"PROBLEM {name}" in done.stdout and "MESSAGES 0" in done.stdout


@pytest.mark.parametrize("line", [b"From the desk of the CEO: lunch at 12:30 today",
                                  b"From 2019 to 2024"])
def test_a_from_line_in_a_body_with_a_time_or_year_is_body_text(tmp_path: Path,
                                                                line: bytes) -> None:
    """Only a From line with an asctime() date separates messages; one with a time of
    day or a year at its end cut the message in two (the second half skipped as "no
    header at the start")."""
    body_with_from = MSGS[0].replace(b"\nHi,\n", b"\nHi,\n\n" + line + b"\n")
    box = tmp_path / "box"
    box.write_bytes(mbox_bytes([body_with_from, MSGS[1]]))
    names, raws, problems = collect(box)
    assert not problems and len(raws) == 2 and line in raws[0]
    crlf = tmp_path / "crlf"
    crlf.write_bytes(box.read_bytes().replace(b"\n", b"\r\n"))
    names, raws, problems = collect(crlf)
    assert not problems and len(raws) == 2 and line in raws[0]


def _cl2(messages: list[bytes], lengths: list[int | None] | None = None, eol: bytes = b"\n"
         ) -> bytes:
    """An mboxcl2 file: Content-Length headers, From lines in bodies left unescaped."""
    out = b""
    for i, msg in enumerate(messages):
        head, body = msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)
        length = len(body.replace(b"\n", eol)) if lengths is None else lengths[i]
        out += f"From sender{i}@example.org Mon Jan  6 10:00:0{i} 2025\n".encode()
        if length is not None:
            head += f"\nContent-Length: {length}".encode()
        out += (head + b"\n\n" + body).replace(b"\n", eol) + eol
    return out


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_mboxcl2_content_length_keeps_from_lines_in_bodies(tmp_path: Path, eol: bytes) -> None:
    quoted = b"From alice@example.org Mon Jan  6 09:00:00 2025\nwrote: hello\n"
    first = MSGS[0].replace(b"\nHi,\n", b"\nHi,\n\n" + quoted + b"\n")
    box = tmp_path / "box"
    box.write_bytes(_cl2([first, MSGS[1], first], eol=eol))
    names, raws, problems = collect(box)
    assert not problems and names == [f"{box}:1", f"{box}:2", f"{box}:3"]
    assert quoted.replace(b"\n", eol) in raws[0] and quoted.replace(b"\n", eol) in raws[2]


@pytest.mark.parametrize("wrong", [10, 100_000])
def test_a_wrong_content_length_is_ignored(tmp_path: Path, wrong: int) -> None:
    """A Content-Length that does not end at a message boundary (too short, or beyond
    the next messages) is not trusted: every separator counts, as without it."""
    box = tmp_path / "box"
    box.write_bytes(_cl2([MSGS[0], MSGS[1], MSGS[2]], [wrong, None, None]))
    names, raws, problems = collect(box)
    assert not problems and len(raws) == 3
    assert raws[1].startswith(b"From sender1@") and raws[2].startswith(b"From sender2@")
