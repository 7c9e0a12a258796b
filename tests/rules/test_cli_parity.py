"""``scanner rules test`` reports what the daemon's rules check would for the same bytes.

The daemon side is the rules check inside a real Processor (parse, unpack, checks), as
``scripts/cli_differential.py`` runs it; that script also runs the comparison over the
SpamAssassin corpus.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from scanner.cli import main
from scanner.config import load

ROOT = Path(__file__).resolve().parents[2]

# "version==" LF "3D5": SpamAssassin's (and the decoders') reading is "version=5"
# (trailing blanks, then soft line breaks, then each stray "=" kept); the standard
# library's quoted-printable decoder gave "version=" "3D5".
QP_STRAY = (b"From: a@example.org\nTo: b@example.test\nSubject: qp\nDate: Sun, 6 Dec 2026 "
            b"09:00:00 +0000\nMessage-ID: <qp@example.org>\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
            b"version==\n3D5\n")


def _differential():
    spec = importlib.util.spec_from_file_location(
        "cli_differential", ROOT / "scripts" / "cli_differential.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DIFF = _differential()


def _setup(tmp: Path, rules: str = "", extra: str = "") -> Path:
    """A configuration with one site rule directory holding ``rules``."""
    site = tmp / "rules.d"
    site.mkdir()
    (site / "local.cf").write_text(rules)
    config = tmp / "scanner.toml"
    config.write_text(f'{extra}\n[checks.settings.rules]\ndirs = ["{site}"]\n')
    return config


def _command(config: Path, message: Path, capsys: pytest.CaptureFixture[str],
             *options: str) -> dict[str, float]:
    assert main(["rules", "test", "--json", "--config", str(config), str(message),
                 *options]) == 0
    out = json.loads(capsys.readouterr().out)
    return {h["rule"]: round(h["score"] * h["count"], 3) for h in out["hits"]}


def _daemon(config: Path, raw: bytes, sender: str = "") -> dict[str, float]:
    daemon = DIFF.Daemon(load(str(config)))
    try:
        found = daemon.symbols(raw, sender)
    finally:
        daemon.close()
    return {k: v for k, v in found.items() if not k.startswith("BAD_HEADER")}


def test_a_stray_qp_equals_is_decoded_as_the_daemon_decodes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _setup(tmp_path, "body LOCAL_QP_FIVE /version=5/\nscore LOCAL_QP_FIVE 1.25\n")
    message = tmp_path / "qp.eml"
    message.write_bytes(QP_STRAY)
    command = _command(config, message, capsys)
    assert command.get("LOCAL_QP_FIVE") == 1.25
    assert command == _daemon(config, QP_STRAY)


def test_a_base64_multipart_shows_its_attachment_as_in_the_daemon(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A multipart declared base64 (corpora/mime): the decoders split it decoded, so the
    daemon's attachment rules see invoice.pdf.exe; the stdlib walk saw one text part."""
    config = _setup(tmp_path)
    message = ROOT / "corpora" / "mime" / "multipart-base64.eml"
    command = _command(config, message, capsys)
    assert {"SC_ATTACH_DOUBLE_EXT", "SC_ATTACH_EXEC"} <= set(command)
    assert command == _daemon(config, message.read_bytes())


def test_sender_option_is_the_envelope_sender_and_none_reads_the_header(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _setup(tmp_path, "header LOCAL_ENV_BOUNCES EnvelopeFrom =~ /bounces\\@example\\.net/"
                              "\nscore LOCAL_ENV_BOUNCES 1\n"
                              "header LOCAL_ENV_RP EnvelopeFrom =~ /rp\\@example\\.org/\n"
                              "score LOCAL_ENV_RP 1\n")
    raw = QP_STRAY.replace(b"From:", b"Return-Path: <rp@example.org>\nFrom:", 1)
    message = tmp_path / "m.eml"
    message.write_bytes(raw)
    unset = _command(config, message, capsys)
    assert "LOCAL_ENV_RP" in unset and "LOCAL_ENV_BOUNCES" not in unset
    assert unset == _daemon(config, raw, "")
    assert _command(config, message, capsys, "--sender", "<>") == unset
    given = _command(config, message, capsys, "--sender", "<bounces@example.net>")
    assert "LOCAL_ENV_BOUNCES" in given and "LOCAL_ENV_RP" not in given
    assert given == _daemon(config, raw, "bounces@example.net")


def test_score_files_weigh_rules_as_in_the_daemon(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores = tmp_path / "site-scores.toml"
    scores.write_text("[symbols.SC_SUBJ_LEET]\nweight = 4.0\n")
    config = _setup(tmp_path, extra=f'[checks]\nscore_files = ["{scores}"]\n')
    message = ROOT / "corpora" / "rules" / "hits" / "SC_SUBJ_LEET.eml"
    command = _command(config, message, capsys)
    assert command["SC_SUBJ_LEET"] == 4.0
    assert command == _daemon(config, message.read_bytes())


def test_smtputf8_option_allows_8bit_header_text(capsys: pytest.CaptureFixture[str]) -> None:
    message = ROOT / "corpora" / "rules" / "badheader" / "hits" / "BAD_HEADER_8BIT.eml"
    for options, expected in (((), ["BAD_HEADER_8BIT"]), (("--smtputf8",), [])):
        assert main(["rules", "test", "--json", str(message), *options]) == 0
        bad = json.loads(capsys.readouterr().out)["bad_header"]
        assert [b["symbol"] for b in bad] == expected


@pytest.mark.slow
@pytest.mark.parametrize("decode", ["true", "false"])
def test_corpora_differential_finds_no_difference(tmp_path: Path, decode: str) -> None:
    """Every message of corpora/: the command's symbols and points equal the daemon's
    rules check's (with the decoders off, both walk the raw MIME)."""
    config = tmp_path / "scanner.toml"
    config.write_text(f"[decode]\nenabled = {decode}\n")
    found = {name: lines for name, lines in DIFF.compare([str(ROOT / "corpora")], str(config))
             if lines}
    assert found == {}


@pytest.mark.corpora
@pytest.mark.slow
@pytest.mark.skipif(not DIFF.SHARED.exists(),
                    reason=f"{DIFF.SHARED} is missing: the sample reads ../shared/corpora")
def test_spamassassin_corpus_sample_differential_finds_no_difference(tmp_path: Path) -> None:
    """Every 20th message of the SpamAssassin public corpus (about 300; 30-60 s)."""
    config = tmp_path / "scanner.toml"
    config.write_text("")
    found = {name: lines for name, lines in DIFF.compare([str(DIFF.SHARED)], str(config))
             if lines}
    assert found == {}


def test_rules_test_keeps_compiled_databases_where_the_daemon_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``cache_dir`` as the daemon reads it: with Debian's rules a start without the
    cache compiles Hyperscan databases for minutes, with it a few seconds."""
    pytest.importorskip("hyperscan")
    cache = tmp_path / "cache"
    config = _setup(tmp_path, "body LOCAL_QP_FIVE /version=5/\n")
    config.write_text(config.read_text() + f'cache_dir = "{cache}"\n')
    message = tmp_path / "qp.eml"
    message.write_bytes(QP_STRAY)
    assert "LOCAL_QP_FIVE" in _command(config, message, capsys)
    assert list(cache.glob("hs-*.db"))
