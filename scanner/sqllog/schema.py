"""amavis's SQL logging tables as its README.sql-pg and README.sql-mysql define them.

Made when missing (``[sql_log] create_tables``); a front end or an amavis installation
usually made them already, sometimes with older column types (varchar addresses and
ids, a char time_iso): the writers look at the types they find
(:func:`scanner.sqllog.db.binary_columns`) and write each value in its column's form.
"""

from __future__ import annotations

TABLES = ("maddr", "msgs", "msgrcpt", "quarantine")

POSTGRESQL = (
    """CREATE TABLE IF NOT EXISTS maddr (
         id serial PRIMARY KEY, partition_tag integer DEFAULT 0,
         email bytea NOT NULL, domain varchar(255) NOT NULL,
         CONSTRAINT part_email UNIQUE (partition_tag, email))""",
    """CREATE TABLE IF NOT EXISTS msgs (
         partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
         secret_id bytea DEFAULT '', am_id varchar(20) NOT NULL,
         time_num integer NOT NULL CHECK (time_num >= 0),
         time_iso timestamp WITH TIME ZONE NOT NULL,
         sid integer NOT NULL CHECK (sid >= 0), policy varchar(255) DEFAULT '',
         client_addr varchar(255) DEFAULT '', size integer NOT NULL CHECK (size >= 0),
         originating char(1) DEFAULT ' ' NOT NULL, content char(1), quar_type char(1),
         quar_loc varchar(255) DEFAULT '', dsn_sent char(1), spam_level real,
         message_id varchar(255) DEFAULT '', from_addr varchar(255) DEFAULT '',
         subject varchar(255) DEFAULT '', host varchar(255) NOT NULL,
         CONSTRAINT msgs_partition_mail UNIQUE (partition_tag, mail_id),
         PRIMARY KEY (partition_tag, mail_id))""",
    "CREATE INDEX IF NOT EXISTS msgs_idx_sid ON msgs (sid)",
    "CREATE INDEX IF NOT EXISTS msgs_idx_mess_id ON msgs (message_id)",
    "CREATE INDEX IF NOT EXISTS msgs_idx_time_iso ON msgs (time_iso)",
    "CREATE INDEX IF NOT EXISTS msgs_idx_time_num ON msgs (time_num)",
    """CREATE TABLE IF NOT EXISTS msgrcpt (
         partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
         rseqnum integer DEFAULT 0 NOT NULL, rid integer NOT NULL,
         is_local char(1) DEFAULT ' ' NOT NULL, content char(1) DEFAULT ' ' NOT NULL,
         ds char(1) NOT NULL, rs char(1) NOT NULL, bl char(1) DEFAULT ' ',
         wl char(1) DEFAULT ' ', bspam_level real, smtp_resp varchar(255) DEFAULT '',
         CONSTRAINT msgrcpt_partition_mail_rseq UNIQUE (partition_tag, mail_id, rseqnum),
         PRIMARY KEY (partition_tag, mail_id, rseqnum))""",
    "CREATE INDEX IF NOT EXISTS msgrcpt_idx_mail_id ON msgrcpt (mail_id)",
    "CREATE INDEX IF NOT EXISTS msgrcpt_idx_rid ON msgrcpt (rid)",
    """CREATE TABLE IF NOT EXISTS quarantine (
         partition_tag integer DEFAULT 0, mail_id bytea NOT NULL,
         chunk_ind integer NOT NULL CHECK (chunk_ind >= 0), mail_text bytea NOT NULL,
         PRIMARY KEY (partition_tag, mail_id, chunk_ind))""",
)

MYSQL = (
    """CREATE TABLE IF NOT EXISTS maddr (
         partition_tag integer DEFAULT 0,
         id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
         email varbinary(255) NOT NULL, domain varchar(255) NOT NULL,
         CONSTRAINT part_email UNIQUE (partition_tag, email)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS msgs (
         partition_tag integer DEFAULT 0, mail_id varbinary(16) NOT NULL,
         secret_id varbinary(16) DEFAULT '', am_id varchar(20) NOT NULL,
         time_num integer unsigned NOT NULL, time_iso char(16) NOT NULL,
         sid bigint unsigned NOT NULL, policy varchar(255) DEFAULT '',
         client_addr varchar(255) DEFAULT '', size integer unsigned NOT NULL,
         originating char(1) DEFAULT ' ' NOT NULL, content char(1), quar_type char(1),
         quar_loc varbinary(255) DEFAULT '', dsn_sent char(1), spam_level float,
         message_id varchar(255) DEFAULT '',
         from_addr varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT '',
         subject varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT '',
         host varchar(255) NOT NULL, PRIMARY KEY (partition_tag, mail_id),
         INDEX msgs_idx_sid (sid), INDEX msgs_idx_mess_id (message_id),
         INDEX msgs_idx_time_num (time_num)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS msgrcpt (
         partition_tag integer DEFAULT 0, mail_id varbinary(16) NOT NULL,
         rseqnum integer DEFAULT 0 NOT NULL, rid bigint unsigned NOT NULL,
         is_local char(1) DEFAULT ' ' NOT NULL, content char(1) DEFAULT ' ' NOT NULL,
         ds char(1) NOT NULL, rs char(1) NOT NULL, bl char(1) DEFAULT ' ',
         wl char(1) DEFAULT ' ', bspam_level float, smtp_resp varchar(255) DEFAULT '',
         PRIMARY KEY (partition_tag, mail_id, rseqnum),
         INDEX msgrcpt_idx_mail_id (mail_id), INDEX msgrcpt_idx_rid (rid)) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS quarantine (
         partition_tag integer DEFAULT 0, mail_id varbinary(16) NOT NULL,
         chunk_ind integer unsigned NOT NULL, mail_text blob NOT NULL,
         PRIMARY KEY (partition_tag, mail_id, chunk_ind)) ENGINE=InnoDB""",
)

CHUNK_SIZE = 16384
"""Bytes of mail text per quarantine row (amavis's $sql_quarantine_chunksize_max)."""
