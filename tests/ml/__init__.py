"""Tests of the spam classifier (scanner.ml) and its commands."""
