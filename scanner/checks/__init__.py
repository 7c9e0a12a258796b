"""Built-in checks. Each module holds one check, registered under ``scanner.checks``."""
