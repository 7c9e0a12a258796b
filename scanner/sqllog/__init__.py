"""amavis's SQL logging (``@storage_sql_dsn``): a row per message and recipient in the
msgs, msgrcpt and maddr tables web front ends read (:mod:`scanner.sqllog.rows` says what
goes in each column, :mod:`scanner.sqllog.writer` when and how it is written)."""

# first: scanner.config imports this package's config module, whose import of
# scanner.config.schema would otherwise find scanner.config half made
import scanner.config  # noqa: E402, F401
