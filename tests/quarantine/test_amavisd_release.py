"""Debian's own ``amavisd-release`` (package amavisd-new) releases our quarantine.

The client has its socket path built in (``$socketname`` in its "USER CONFIGURABLE"
block, ``/var/lib/amavis/amavisd.sock``). Two ways to point it at us are tested: the
unmodified program with ``/var/lib/amavis/amavisd.sock`` a symlink to our socket
(in a private mount namespace, so the machine's /var/lib/amavis is untouched), and a
copy with ``$socketname`` edited. ``$AMAVISD_RELEASE`` may name the program elsewhere
(e.g. extracted with ``apt-get download amavisd-new; dpkg-deb -x amavisd-new_*.deb DIR``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scanner.testing.sink import Sink

from .util import sample, store

CLIENT = Path(os.environ.get("AMAVISD_RELEASE") or "/usr/sbin/amavisd-release")

pytestmark = pytest.mark.skipif(
    not CLIENT.exists() or not shutil.which("perl"),
    reason=f"{CLIENT} not found (apt-get install amavisd-new, or set AMAVISD_RELEASE)")


def _edited_copy(tmp_path: Path, socket_path: Path) -> list[str]:
    text = CLIENT.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^(\s*\$socketname\s*=\s*)'[^']*';", rf"\1'{socket_path}';", text)
    assert n == 1, "amavisd-release changed: no $socketname line to edit"
    copy = tmp_path / "amavisd-release"
    copy.write_text(text, encoding="utf-8")
    return ["perl", "-T", str(copy)]


def _namespaced(tmp_path: Path, socket_path: Path) -> list[str]:
    """The unmodified client, seeing a /var/lib/amavis whose amavisd.sock is ours."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private mount namespace needs root and unshare(1)")
    fake = tmp_path / "amavis-home"
    fake.mkdir()
    (fake / "amavisd.sock").symlink_to(socket_path)
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m not permitted here: {probe.stderr.decode().strip()}")
    # Without amavisd-new installed (the client extracted from its .deb), the namespace
    # gets an empty /var/lib of its own to hold the amavis directory.
    prepare = ("" if Path("/var/lib/amavis").is_dir()
               else "mount -t tmpfs scanner-test /var/lib && mkdir /var/lib/amavis && ")
    return ["unshare", "-m", "--", "sh", "-c",
            f'{prepare}mount --bind "{fake}" /var/lib/amavis && exec "$0" "$@"', str(CLIENT)]


@pytest.mark.parametrize("how", ["symlink", "edited"])
def test_amavisd_release_releases_our_mail(server, sink: Sink, tmp_path: Path, how: str):
    _, q, path = server()
    command = (_namespaced if how == "symlink" else _edited_copy)(tmp_path, path)
    raw = sample("held by scanner", b"caf\xc3\xa9\r\n")
    first = store(q, raw, recipients=["bob@example.test"])
    second = store(q, recipients=["carol@example.test"])

    # as logged: "quarantine: 7/spam-7vykgLjHGVrk.gz"
    out = subprocess.run([*command, first.relative_path], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == (f"250 2.6.0 Ok, id=rel-{first.mail_id}, from MTA(smtp:"
                                  f"[127.0.0.1]:{sink.port}): 250 2.0.0 Ok: queued as SINK1")
    got = sink.wait_for(1)[0]
    header, _, body = got.data.partition(b"\r\n")
    assert body == raw  # the message arrives unchanged, one header in front
    who = b"amavisd-release" if how == "symlink" else b"perl"  # the peer's process name
    assert header.startswith(b"X-Quarantine-Released: by " + who + b" (AM.PDP, uid 0) at ")
    assert got.recipients == ["bob@example.test"] and got.sender == "spam@example.org"

    # released already: refused, nothing sent
    out = subprocess.run([*command, first.relative_path], capture_output=True, text=True,
                         timeout=60)
    assert out.stderr.startswith(f"550 5.7.0 Not released, id=rel-{first.mail_id}: ")
    assert "already released" in out.stderr

    # mail_id, secret_id and alternate recipients; then several requests read from stdin
    out = subprocess.run([*command, second.mail_id, second.secret_id, "admin@example.test"],
                         capture_output=True, text=True, timeout=60)
    assert out.stderr.startswith("250 2.6.0 Ok"), out.stderr
    assert sink.wait_for(2)[1].recipients == ["admin@example.test"]
    third = store(q)
    out = subprocess.run([*command, "-"], input=f"# comment\n{third.relative_path} "
                         f"wrongSECRET0\nspam-nonexistent1.gz\n", capture_output=True,
                         text=True, timeout=60)
    lines = out.stderr.splitlines()
    assert lines[0].startswith("550 5.7.1 Not released") and "wrong secret_id" in lines[0]
    assert lines[1].startswith("550 5.7.0") and "unknown mail_id nonexistent1" in lines[1]
    assert len(sink.received) == 2
