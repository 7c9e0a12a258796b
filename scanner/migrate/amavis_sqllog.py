"""from-amavis: amavis's SQL databases: logging (``@storage_sql_dsn``) and lookups
(``@lookup_sql_dsn``).

``@lookup_sql_dsn``'s first DSN becomes ``policy.sql_lookup`` with ``sql_lookup_tables
= "amavis"``: amavis's users, policy, wblist and mailaddr tables are read as they are
(amavis's default queries; a changed ``$sql_select_policy`` or
``$sql_select_white_black_list`` is noted). A ``DBI:SQLite:`` DSN becomes
``sqlite:PATH`` there (amavis recommends SQLite for lookups).

``@storage_sql_dsn``'s first ``[DSN, user, password]`` becomes ``sql_log.database``: a
``DBI:Pg:`` DSN a ``postgresql://`` URL, a ``DBI:mysql:`` (or ``MariaDB``) one a
``mysql://`` URL (``mysql_socket`` as ``?unix_socket=``; DBD::mysql reaches
``localhost``, or no host, through the server's socket, so that gets Debian's
``/run/mysqld/mysqld.sock``). ``$sql_store_info_for_all_msgs`` becomes
``all_messages``; a number in ``$partition_tag`` ``partition_tag``, and the
ISO-week function of amavis's documentation ``partition_by_week``. A
``$*_quarantine_method`` of ``sql:`` turns on ``quarantine_text`` (the held text goes
into the quarantine table too; scanner's files stay the quarantine). Further DSNs
(amavis's fail-over list), SQLite and other drivers are noted.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from scanner.migrate.amavis_tables import as_flag
from scanner.migrate.perlconf import UNREAD, Statement

DSN, ALL, PARTITION = "@storage_sql_dsn", "$sql_store_info_for_all_msgs", "$partition_tag"
QUARANTINE_METHODS = tuple(f"${c}_quarantine_method" for c in (
    "virus", "spam", "banned_files", "bad_header", "unchecked", "clean"))
DEBIAN_MYSQL_SOCKET = "/run/mysqld/mysqld.sock"
SEE = "README \"SQL logging\""


LOOKUP, QUERIES = "@lookup_sql_dsn", ("$sql_select_policy", "$sql_select_white_black_list")


def map_sql_lookup(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """``@lookup_sql_dsn`` (see the module docstring)."""
    dsn = last.get(LOOKUP)
    if dsn is None:
        return
    handled.add(LOOKUP)
    entries = _entries(dsn)
    url, why = _url(entries[0], sqlite=True)
    if url is None:
        conv.note(dsn, f"{why}; policy.sql_lookup takes PostgreSQL, MySQL/MariaDB or "
                       "SQLite (README \"Policy\")")
        return
    origin = f"{LOOKUP} ({dsn.where})"
    conv.set("policy", "sql_lookup", url, f"{origin}: amavis's users, policy and wblist "
             "tables, read as they are")
    conv.set("policy", "sql_lookup_tables", "amavis", origin)
    if len(entries) > 1:
        conv.note(dsn, "the DSNs after the first (amavis's fail-over list) are not "
                       "used: give policy.sql_lookup the one to read")
    for name in QUERIES:
        statement = last.get(name)
        if statement is not None:
            handled.add(name)
            conv.note(statement, "scanner reads amavis's tables with amavis's default "
                                 "query; a changed one is not converted (check what it "
                                 "selects against README \"Policy\", amavis's tables)")


def map_sql_log(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    """Convert the SQL logging settings (see the module docstring)."""
    dsn = last.get(DSN)
    if dsn is None:
        return
    handled.add(DSN)
    entries = _entries(dsn)
    url, why = _url(entries[0])
    if url is None:
        conv.note(dsn, f"{why}; scanner's SQL log (sql_log.database) takes PostgreSQL or "
                       f"MySQL/MariaDB ({SEE})")
        return
    conv.set("sql_log", "database", url,
             f"@storage_sql_dsn ({dsn.where}): amavis's SQL log; the same tables are "
             f"written ({SEE}); pen pals keep their own memory "
             "([checks.settings.penpals] database)")
    if len(entries) > 1:
        conv.note(dsn, "the DSNs after the first (amavis's fail-over list) are not "
                       "used: give sql_log.database the one to write to")
    _all_messages(last, conv, handled)
    _partition(last, conv, handled)
    sql = [s for t, s in last.items() if t in QUARANTINE_METHODS
           and isinstance(s.value, str) and s.value.startswith("sql:")]
    if sql:
        handled.update(s.target for s in sql if s.target)
        conv.set("sql_log", "quarantine_text", True,
                 f"{', '.join(s.target or '' for s in sql)} ({sql[0].where}): 'sql:' "
                 "quarantine; the held text goes into the quarantine table for the front "
                 "end, the files in quarantine.directory stay the quarantine")


def _all_messages(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    statement = last.get(ALL)
    if statement is None or statement.value is UNREAD:
        return
    flag = as_flag(statement.value)
    if flag is not None:
        handled.add(ALL)
        conv.set("sql_log", "all_messages", flag, f"{ALL} ({statement.where})")


def _partition(last: dict[str, Statement], conv: Any, handled: set[str]) -> None:
    statement = last.get(PARTITION)
    if statement is None:
        return
    value = statement.value
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        handled.add(PARTITION)
        conv.set("sql_log", "partition_tag", int(value), f"{PARTITION} ({statement.where})")
    elif "iso8601_week" in statement.text:
        handled.add(PARTITION)
        conv.set("sql_log", "partition_by_week", True,
                 f"{PARTITION} ({statement.where}): the ISO 8601 week of arrival")


def _entries(dsn: Statement) -> list[Any]:
    """A DSN list's ``[DSN, user, password]`` entries (one given alone is not nested)."""
    value = dsn.value
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return value
    return [value]


def _url(value: Any, sqlite: bool = False) -> tuple[str | None, str]:
    """``[DSN, user, password, ...]`` as a URL (``sqlite``: SQLite too), or (None, why
    not)."""
    if value is UNREAD or not isinstance(value, list) or not value \
            or not isinstance(value[0], str):
        return None, "the DSN could not be read"
    user = value[1] if len(value) > 1 and isinstance(value[1], str) else ""
    password = value[2] if len(value) > 2 and isinstance(value[2], str) else ""
    m = re.match(r"(?i)dbi:(\w+):(.*)$", value[0].strip())
    if m is None:
        return None, f"{value[0]!r} is not a DBI DSN"
    driver = m.group(1).lower()
    attrs = dict((k.strip().lower(), v.strip()) for k, _, v in
                 (part.partition("=") for part in m.group(2).split(";")) if k.strip())
    database = attrs.get("database") or attrs.get("dbname") or attrs.get("db", "")
    if not database:
        return None, f"{value[0]!r} names no database"
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    auth += "@" if auth else ""
    host, port = attrs.get("host", ""), attrs.get("port", "")
    where = f"{host}{':' + port if port else ''}"
    if driver == "sqlite" and sqlite:
        return f"sqlite:{database}", ""
    if driver == "pg":
        return f"postgresql://{auth}{where}/{quote(database, safe='')}", ""
    if driver in ("mysql", "mariadb"):
        socket = attrs.get("mysql_socket") or attrs.get("mariadb_socket", "")
        if not socket and host in ("", "localhost"):
            socket = DEBIAN_MYSQL_SOCKET  # DBD::mysql's localhost is the server's socket
        query = f"?unix_socket={socket}" if socket else ""
        return f"mysql://{auth}{where or 'localhost'}/{quote(database, safe='')}{query}", ""
    return None, f"the {m.group(1)} driver"
