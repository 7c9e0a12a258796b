"""The msgpack model format: round trip, and clear errors for bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

from scanner.errors import ScannerError
from scanner.ml import modelformat
from scanner.ml.errors import ModelError
from scanner.ml.model import load_model, save_model
from tests.ml.conftest import CORPORA, REPO


def test_round_trip_scores_identically(trained_model_path: Path, tmp_path: Path) -> None:
    model = load_model(trained_model_path)
    copy = tmp_path / "copy.model"
    save_model(model, copy)
    assert copy.read_bytes() == trained_model_path.read_bytes()
    again = load_model(copy)
    assert np.array_equal(again.weights, model.weights)
    assert again.settings == model.settings and again.calibration == model.calibration
    raw = (CORPORA / "spam-html.eml").read_bytes()
    assert again.score_message(raw) == model.score_message(raw)
    assert 0.0 <= model.score_message(raw) <= 1.0


def test_file_is_plain_msgpack(trained_model_path: Path) -> None:
    outer = msgpack.unpackb(trained_model_path.read_bytes(), raw=False)
    assert outer["magic"] == modelformat.MAGIC
    assert outer["format_version"] == modelformat.FORMAT_VERSION
    payload = msgpack.unpackb(outer["payload"], raw=False)
    assert set(payload) >= {"feature_settings", "linear", "calibration", "training"}
    assert payload["training"]["ham"] == 60 and payload["training"]["spam"] == 40


def _expect_error(path: Path, fragment: str) -> None:
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    assert isinstance(info.value, ScannerError)


def test_truncated_file(trained_model_path: Path, tmp_path: Path) -> None:
    data = trained_model_path.read_bytes()
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.model"
        path.write_bytes(data[:cut])
        _expect_error(path, "truncated or corrupt")


def test_flipped_byte_fails_checksum(trained_model_path: Path, tmp_path: Path) -> None:
    data = bytearray(trained_model_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "flipped.model"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_foreign_files(tmp_path: Path) -> None:
    cases = {
        "empty.model": (b"", "empty"),
        "png.model": (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not a scanner spam model"),
        "json.model": (json.dumps({"magic": "x"}).encode(), "not a scanner spam model"),
        "other.model": (msgpack.packb({"magic": "something-else"}), "wrong magic"),
        "pickle.model": (b"\x80\x04\x95" + b"\0" * 20, "not a scanner spam model"),
        "trailing.model": (msgpack.packb({"magic": modelformat.MAGIC}) + b"junk",
                           "trailing data"),
    }
    for name, (data, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        _expect_error(path, fragment)


def test_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.model"
    path.write_bytes(msgpack.packb({"magic": modelformat.MAGIC, "format_version": 99,
                                    "sha256": "", "payload": b""}))
    _expect_error(path, "version 99 is not supported")


def test_tampered_payload_is_validated(trained_model_path: Path, tmp_path: Path) -> None:
    outer = msgpack.unpackb(trained_model_path.read_bytes(), raw=False)
    payload = msgpack.unpackb(outer["payload"], raw=False)
    payload["linear"]["nnz"] += 1
    path = tmp_path / "tampered.model"
    path.write_bytes(modelformat.encode(payload))  # valid checksum, inconsistent content
    _expect_error(path, "does not match the declared count")
    payload["linear"]["nnz"] -= 1
    payload["linear"]["values"] = payload["linear"]["values"][:-3]
    path.write_bytes(modelformat.encode(payload))
    _expect_error(path, "")
    payload = msgpack.unpackb(outer["payload"], raw=False)
    payload["linear"]["nnz"] -= 1
    payload["feature_settings"]["hash_bits"] = 17
    path.write_bytes(modelformat.encode(payload))
    _expect_error(path, "")


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "absent.model", "cannot read model file")


def test_scoring_does_not_import_sklearn(trained_model_path: Path) -> None:
    code = (
        "import sys\n"
        "from scanner.ml.model import load_model\n"
        f"m = load_model({str(trained_model_path)!r})\n"
        f"p = m.score_message(open({str(CORPORA / 'ham-plain.eml')!r}, 'rb').read())\n"
        "assert 0 <= p <= 1\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('sklearn', 'scipy')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == ""
