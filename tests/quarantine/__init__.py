"""Tests of the quarantine: store, index, release, CLI and the AM.PDP socket."""
