"""Kept-open clamd connections (zIDSESSION), and clamd as the commands see it (`scanner
scan`, `scanner config check`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scanner.checks.clamav import ClamAV
from scanner.testing.clamd import ClamdInstance, FakeClamd, eicar
from tests.clamav_helpers import (
    fake_scan,
    mail,
    make_check,
    make_task,
    needs_clamd,
)

# --- kept-open sessions (zIDSESSION) ----------------------------------------------


@needs_clamd
def test_scans_share_one_session_connection(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0)
        plain = make_check([own.unix_endpoint], cache_size=0, reuse_connections=False)

        async def go(c: ClamAV) -> list[list[str]]:
            out = []
            for body in ("one", eicar().decode(), "three", "four"):
                out.append([h.symbol for h in await c.run(make_task(mail(body)))])
            return out

        expected = [[], ["CLAMAV_VIRUS"], [], []]
        assert asyncio.run(go(check)) == expected
        # one session for the clean scans; after "FOUND" it is closed (with AllMatch
        # clamd may send more records for that request), so the next scan opens another
        assert check.client.requests == 4 and check.client.connections == 2
        assert asyncio.run(go(plain)) == expected
        assert plain.client.requests == plain.client.connections == 4


@needs_clamd
def test_session_closed_by_a_clamd_restart_is_replaced(tmp_path: Path) -> None:
    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0)

        async def go() -> list[list[str]]:
            first = [h.symbol for h in await check.run(make_task(mail("before")))]
            own.restart()  # the kept connection dies with the old clamd
            second = [h.symbol for h in await check.run(make_task(mail(eicar().decode())))]
            return [first, second]

        assert asyncio.run(go()) == [[], ["CLAMAV_VIRUS"]]
        assert check.client.connections == 2


@needs_clamd
def test_large_pieces_and_old_sessions_get_their_own_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scanner.checks.clamd_client as client_module

    with ClamdInstance(tmp_path) as own:
        check = make_check([own.unix_endpoint], cache_size=0, scan_parts=False)

        async def go() -> None:
            await check.run(make_task(mail("small")))
            assert check.client.connections == 1
            await check.run(make_task(mail("z" * (client_module.SESSION_MAX + 10))))
            assert check.client.connections == 2  # large: a connection of its own
            await check.run(make_task(mail("small again")))
            assert check.client.connections == 2  # the session is still there
            monkeypatch.setattr(client_module, "SESSION_IDLE", 0.0)
            await check.run(make_task(mail("after a long pause")))
            assert check.client.connections == 3  # too old to trust: a new one

        asyncio.run(go())
        assert check.client.requests == 4


def test_hanging_session_fails_once_within_timeout(tmp_path: Path) -> None:
    fake = FakeClamd(tmp_path / "fake.sock", hang=True)
    hits, elapsed = fake_scan(fake, make_task(mail()), timeout=0.5)
    assert [h.symbol for h in hits] == ["CLAMAV_FAIL"]
    assert fake.requests == 1 and elapsed < 3.0  # no second attempt on a new connection


@needs_clamd
def test_scan_command_closes_its_clamd_sessions(tmp_path: Path) -> None:
    """`scanner scan` under Python's development mode: no unclosed connection is left."""
    import subprocess
    import sys

    with ClamdInstance(tmp_path / "clamd") as own:
        cfg = tmp_path / "scan.toml"
        cfg.write_text('[checks]\ndisabled = ["auth", "dnsbl", "uribl"]\n'
                       f'[checks.settings.clamav]\nendpoints = ["{own.unix_endpoint}"]\n'
                       f'[quarantine]\ndirectory = "{tmp_path / "q"}"\nampdp_socket = ""\n')
        message = tmp_path / "m.eml"
        message.write_bytes(mail(eicar().decode()))
        run = subprocess.run([sys.executable, "-X", "dev", "-m", "scanner", "scan", "-c",
                              str(cfg), str(message), str(message)],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("CLAMAV_VIRUS") == 2
    assert "ResourceWarning" not in run.stderr, run.stderr[-2000:]


def test_limit_alert_in_a_session_is_asked_again_alone(tmp_path: Path) -> None:
    """With AllMatch a limit alert may come first and a virus after it: read it all."""
    fake = FakeClamd(tmp_path / "fake.sock",
                     b"stream: Heuristics.Limits.Exceeded.MaxFiles FOUND\0"
                     b"stream: Some.Virus FOUND\0")
    hits, _ = fake_scan(fake, make_task(b"payload"))
    assert [h.symbol for h in hits] == ["CLAMAV_VIRUS"]
    assert hits[0].options == ("Some.Virus",)
    assert (fake.requests, fake.connections) == (2, 2)  # the session, then alone


@needs_clamd
def test_config_check_says_when_clamd_does_not_answer(tmp_path: Path) -> None:
    """`scanner config check` (and `serve` at start) warn when clamd is not there, and
    say what will happen to mail; the configuration itself is valid (exit 0)."""
    import subprocess
    import sys

    def check(endpoint: str, extra: str = "") -> subprocess.CompletedProcess:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[checks.settings.clamav]\nendpoints = ["{endpoint}"]\n{extra}')
        return subprocess.run([sys.executable, "-X", "dev", "-m", "scanner", "config",
                               "check", str(cfg)], capture_output=True, text=True, timeout=60)

    absent = check(f"unix:{tmp_path / 'none.sock'}")
    assert absent.returncode == 0, absent.stderr
    assert "warning: clamav: clamd at unix:" in absent.stderr
    assert "does not answer PING" in absent.stderr and "451" in absent.stderr
    unchecked = check(f"unix:{tmp_path / 'none.sock'}", 'fail_action = "unchecked"\n')
    assert "passed as UNCHECKED" in unchecked.stderr
    with ClamdInstance(tmp_path / "clamd") as own:
        present = check(own.unix_endpoint)
    assert present.returncode == 0 and "warning" not in present.stderr, present.stderr
    assert "ResourceWarning" not in present.stderr
