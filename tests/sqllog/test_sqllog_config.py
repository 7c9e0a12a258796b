"""``[sql_log]`` in the configuration: what ``scanner config check`` says about it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner.config import loads
from scanner.errors import ConfigError
from tests.test_dburl import _scanner

from .util import fresh, rows


def _config(tmp_path: Path, database: str, extra: str = "") -> Path:
    path = tmp_path / "scanner.toml"
    path.write_text(f'[quarantine]\ndirectory = "{tmp_path / "q"}"\nampdp_socket = ""\n'
                    f'[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
                    f'[sql_log]\ndatabase = "{database}"\ntimeout = 1.0\n{extra}')
    return path


def test_an_unknown_kind_of_database_names_the_key_and_file():
    with pytest.raises(ConfigError, match=r"site.toml: 'sql_log.database' = "
                                          r"'oracle://u:\*\*\*@db/log': use"):
        loads('[sql_log]\ndatabase = "oracle://u:pw@db/log"\n', "site.toml")


def test_config_check_warns_of_a_database_it_cannot_reach(tmp_path: Path):
    done = _scanner("config", "check", str(_config(
        tmp_path, "postgresql://scanner:pw@/mail_log?host=/nonexistent")))
    assert done.returncode == 0, done.stderr
    assert "scanner: warning: sql_log.database postgresql://scanner:***@/mail_log" \
        in done.stderr and "mail is scanned and delivered all the same" in done.stderr
    assert "pw@" not in done.stderr
    shown = _scanner("config", "show", str(tmp_path / "scanner.toml"))
    assert 'database = "postgresql://scanner:***@/mail_log' in shown.stdout
    assert "pw@" not in shown.stdout


def test_config_check_makes_the_tables_or_says_they_are_missing(
        tmp_path: Path, request: pytest.FixtureRequest):
    url = fresh(request, "postgresql")
    done = _scanner("config", "check", str(_config(tmp_path, url, "create_tables = false")))
    assert done.returncode == 0
    assert "has no table maddr, msgs, msgrcpt; make amavis's tables" in done.stderr
    done = _scanner("config", "check", str(_config(tmp_path, url)))
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    assert rows(url, "SELECT count(*) FROM msgs") == [(0,)]  # made, empty
