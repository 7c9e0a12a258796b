"""The ``[sql_log]`` configuration section: amavis's SQL logging database.

amavis writes a row per message (``msgs``), one per recipient (``msgrcpt``) and the
addresses (``maddr``) into the database of ``@storage_sql_dsn``; web front ends
(iRedAdmin, Modoboa, amavisd-release-web) list mail, its verdicts and the quarantine from
there. ``database`` names that database; scanner fills the same tables the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.config.schema import opt
from scanner.dburl import is_postgresql, redact
from scanner.errors import ConfigError

MYSQL_SCHEMES = ("mysql://", "mariadb://")


@dataclass(frozen=True, slots=True)
class SqlLogConfig:
    """amavis's SQL log (``@storage_sql_dsn``): the msgs, msgrcpt and maddr rows, and
    optionally the held mail's text in its quarantine table, for web front ends (README
    "SQL logging")."""

    database: str = opt("", "'postgresql://USER@HOST/DB' (needs psycopg) or "
                        "'mysql://USER:PASSWORD@HOST/DB' (needs PyMySQL; "
                        "?unix_socket=PATH for a local socket); empty = off")
    all_messages: bool = opt(True, "a row for every message (amavis's "
                             "$sql_store_info_for_all_msgs); false = only messages kept "
                             "in the quarantine")
    quarantine_text: bool = opt(False, "also copy a held message's text into the "
                                "quarantine table (amavis's sql: quarantine method, "
                                "quar_type Q), for front ends that show it from there; "
                                "the files in quarantine.directory stay the quarantine")
    partition_tag: int = opt(0, "the partition_tag of every row (amavis's "
                             "$partition_tag)", min=0, max=2147483647)
    partition_by_week: bool = opt(False, "partition_tag = the ISO 8601 week (1-53) the "
                                  "message arrived in, amavis's documented example, so "
                                  "old weeks are purged with one DELETE per table")
    create_tables: bool = opt(True, "create amavis's tables (its documented schema) "
                              "where they are missing; false = they must exist")
    timeout: float = opt(5.0, "seconds to connect and for each statement", min=0.5,
                         max=120.0)
    max_waiting: int = opt(10000, "rows a worker keeps in memory while the database "
                           "is unreachable, written once it answers again; more are "
                           "dropped (logged)", min=1, max=1000000)

    def __post_init__(self) -> None:
        url = self.database
        if url and not (is_postgresql(url) or url.startswith(MYSQL_SCHEMES)):
            raise ConfigError(f"'sql_log.database' = {redact(url)!r}: use "
                              "'postgresql://USER@HOST/DB' or 'mysql://USER:PASSWORD@"
                              "HOST/DB'")

    @property
    def enabled(self) -> bool:
        return bool(self.database)
