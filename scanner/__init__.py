"""scanner: a transactional content filter for Postfix (an amavisd-new successor)."""

__version__ = "0.1.0"
PRODUCT = "scanner"
