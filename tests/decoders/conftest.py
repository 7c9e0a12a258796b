"""Fixtures for the decoder tests: clamav test files, the bare test executable's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

CLAMAV_TESTFILES = Path("/usr/share/clamav-testfiles")
CORPORA = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpora"


@pytest.fixture(scope="session")
def clam_dir() -> Path:
    if not (CLAMAV_TESTFILES / "clam.exe").is_file():
        pytest.skip("Debian package clamav-testfiles is not installed")
    return CLAMAV_TESTFILES


@pytest.fixture(scope="session")
def clam_sha256(clam_dir: Path) -> str:
    return hashlib.sha256((clam_dir / "clam.exe").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    if not CORPORA.is_dir():
        pytest.skip(f"shared corpora not found at {CORPORA}")
    return CORPORA.resolve()
