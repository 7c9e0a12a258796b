"""amavis's SQL logging (``@storage_sql_dsn``): a row per message and recipient in the
msgs, msgrcpt and maddr tables web front ends read (:mod:`scanner.sqllog.rows` says what
goes in each column, :mod:`scanner.sqllog.writer` when and how it is written)."""
