"""``from-amavis``: @storage_sql_dsn and its companions become [sql_log]."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.migrate.amavis import convert_to_toml
from scanner.quarantine.amavis_mysql import connect_arguments

PG_CONF = r"""
@storage_sql_dsn = ( ['DBI:Pg:database=mail_log;host=127.0.0.1;port=5433', 'vscan',
                      'LK40.gtk@lk/KK'] );
$sql_store_info_for_all_msgs = 0;
$partition_tag =
  sub { my($msginfo)=@_; sprintf("%02d",iso8601_week($msginfo->rx_time)) };
$spam_quarantine_method = 'sql:';
$virus_quarantine_method = 'local:virus-%m';
1;
"""


def _convert(tmp_path: Path, text: str) -> tuple[cfgmod.Config, list]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    toml, conv = convert_to_toml([path])
    return cfgmod.loads(toml, "converted"), conv.notes


def test_the_logging_database_and_its_settings(tmp_path: Path) -> None:
    config, notes = _convert(tmp_path, PG_CONF)
    s = config.sql_log
    assert s.database == "postgresql://vscan:LK40.gtk%40lk%2FKK@127.0.0.1:5433/mail_log"
    assert (s.all_messages, s.partition_by_week, s.partition_tag, s.quarantine_text) == (
        False, True, 0, True)
    assert [n.target for n in notes] == ["$virus_quarantine_method"]  # not an sql: one


@pytest.mark.parametrize(("dsn", "url"), [
    ("DBI:mysql:database=amavis;host=127.0.0.1;port=3306",
     "mysql://amavis:secret@127.0.0.1:3306/amavis"),
    ("DBI:mysql:database=amavis;host=localhost",  # DBD::mysql: the server's socket
     "mysql://amavis:secret@localhost/amavis?unix_socket=/run/mysqld/mysqld.sock"),
    ("dbi:MariaDB:dbname=amavis;mariadb_socket=/var/lib/mysql/mysql.sock",
     "mysql://amavis:secret@localhost/amavis?unix_socket=/var/lib/mysql/mysql.sock"),
])
def test_mysql_dsns(tmp_path: Path, dsn: str, url: str) -> None:
    config, _ = _convert(tmp_path, f"@storage_sql_dsn = (['{dsn}', 'amavis', 'secret']);\n1;\n")
    assert config.sql_log.database == url
    assert connect_arguments(url)["database"] == "amavis"  # the URL the writer reads


def test_sqlite_a_partition_number_and_a_fail_over_list(tmp_path: Path) -> None:
    config, notes = _convert(tmp_path, "@storage_sql_dsn = (['DBI:SQLite:dbname=/x.db', "
                                       "'', '']);\n1;\n")
    assert config.sql_log.database == ""
    assert any("the SQLite driver" in n.reason for n in notes)
    config, notes = _convert(tmp_path, "@storage_sql_dsn = (['DBI:Pg:dbname=log', 'u', "
                                       "'p'], ['DBI:Pg:dbname=log;host=db2', 'u', 'p']);\n"
                                       "$partition_tag = 7;\n1;\n")
    assert (config.sql_log.database, config.sql_log.partition_tag) == (
        "postgresql://u:p@/log", 7)
    assert any("fail-over" in n.reason for n in notes)


AMPDP_INET = r"""
$inet_socket_port = [10024, 9998];
$interface_policy{'9998'} = 'AM.PDP-INET';
$policy_bank{'AM.PDP-INET'} = {
  protocol => 'AM.PDP',
  inet_acl => [qw( 127.0.0.1 [::1] 192.0.2.10 )],
};
1;
"""


def test_the_am_pdp_port_of_a_web_front_end_is_no_mail_listener(tmp_path: Path) -> None:
    """Modoboa's and iRedMail's release port: quarantine.ampdp_inet with its ACL."""
    config, notes = _convert(tmp_path, AMPDP_INET)
    assert [(lst.address, lst.port) for lst in config.listeners] == [("127.0.0.1", 10024)]
    assert config.quarantine.ampdp_inet == "127.0.0.1:9998"
    assert config.quarantine.ampdp_inet_networks == ("127.0.0.1", "::1", "192.0.2.10")
    assert notes == []
    config, notes = _convert(tmp_path, AMPDP_INET.replace("qw( 127.0.0.1", "qw( !127.0.0.2"))
    assert config.quarantine.ampdp_inet_networks == ("::1", "192.0.2.10")
    assert any("exclusions are not converted" in n.reason for n in notes)
