"""Helpers for tests and benchmarks: a private, throw-away Postfix instance and friends."""
