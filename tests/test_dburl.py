"""Database passwords never printed: policy.sql_lookup and quarantine.index URLs in log
lines, error messages, ``scanner config check`` and ``scanner config show``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scanner.config import loads
from scanner.dburl import redact
from scanner.errors import ConfigError

SECRET = "hunter2"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://scanner:hunter2@db.example/policy",
     "postgresql://scanner:***@db.example/policy"),
    ("postgresql://scanner:hun@ter2@db.example/policy",  # an unescaped '@' in it
     "postgresql://scanner:***@db.example/policy"),
    ("postgresql:///policy?host=/run/postgresql&password=hunter2&sslmode=disable",
     "postgresql:///policy?host=/run/postgresql&password=***&sslmode=disable"),
    ("postgres://u:hunter2@h/d?PASSWORD=hunter2", "postgres://u:***@h/d?PASSWORD=***"),
    ("host=/run/postgresql password=hunter2 dbname=policy",
     "host=/run/postgresql password=*** dbname=policy"),
    ("postgresql://scanner@db.example/policy", "postgresql://scanner@db.example/policy"),
    ("sqlite:/var/lib/scanner/p@ss:word.sqlite", "sqlite:/var/lib/scanner/p@ss:word.sqlite"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_failed_lookup_logs_no_password(tmp_path, caplog):
    """The failure log line printed everything after the URL's last '@': a password
    given as a URL parameter was printed whole."""
    pytest.importorskip("psycopg")
    from scanner.policy.sql import SqlLookupError, SqlPolicy

    url = f"postgresql:///postgres?host={tmp_path}/nonexistent&password={SECRET}"
    policy = SqlPolicy(url, loads(f'[policy]\nsql_lookup = "{url}"\n', "t.toml"))
    with pytest.raises(SqlLookupError) as failed:
        policy.override_for("u@example.test")
    assert "policy SQL lookup for <u@example.test> failed" in caplog.text
    assert "password=***" in caplog.text
    assert SECRET not in caplog.text and SECRET not in str(failed.value)
    with pytest.raises(SqlLookupError) as unread:
        policy.probe()
    assert "password=***" in str(unread.value) and SECRET not in str(unread.value)


@pytest.mark.parametrize("key", ["policy.sql_lookup", "quarantine.index"])
def test_a_misspelt_url_is_refused_without_its_password(key: str) -> None:
    section, name = key.split(".")
    with pytest.raises(ConfigError) as refused:
        loads(f'[{section}]\n{name} = "postgresq://scanner:{SECRET}@db.example/p"\n',
              "t.toml")
    assert "postgresq://scanner:***@db.example/p" in str(refused.value)
    assert SECRET not in str(refused.value)


def _scanner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=60)


def test_config_show_and_check_print_no_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    given = tmp_path / "given.toml"
    given.write_text(f'[policy]\nsql_lookup = "postgresql://scanner:{SECRET}@/p?host='
                     f'{tmp_path}/none"\n[quarantine]\ndirectory = "{tmp_path}/q"\n'
                     f'index = "postgresql://q:{SECRET}@/q?host={tmp_path}/none"\n')
    show = _scanner("config", "show", str(given))
    assert show.returncode == 0, show.stderr
    assert f'sql_lookup = "postgresql://scanner:***@/p?host={tmp_path}/none"' in show.stdout
    assert f'index = "postgresql://q:***@/q?host={tmp_path}/none"' in show.stdout
    assert SECRET not in show.stdout + show.stderr
    check = _scanner("config", "check", str(given))
    assert "policy SQL table cannot be read (postgresql://scanner:***@" in check.stderr, \
        check.stderr
    assert SECRET not in check.stdout + check.stderr
