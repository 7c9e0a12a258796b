"""``scanner rules list|test|lint``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.cli import main

from .conftest import CORPUS


def test_rules_test_reports_hits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", str(CORPUS / "hits" / "SC_SUBJ_LEET.eml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [h["rule"] for h in out["hits"]] == ["SC_SUBJ_LEET"]
    assert out["score"] == 1.5


def test_rules_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "list", "--json"]) == 0
    rules = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rules["SC_ATTACH_DOUBLE_EXT"]["score"] == 2.5


def test_rules_lint_reports_file_and_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "local.cf").write_text("body OK /fine/\nbody BROKEN /(unclosed/\n")
    assert main(["rules", "lint", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'local.cf'}:2: BROKEN:" in out
    (tmp_path / "local.cf").write_text("body OK /fine/\n")
    assert main(["rules", "lint", str(tmp_path)]) == 0


def test_rules_lint_names_unknown_directives(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in a directive ("descibe") is ignored, as SpamAssassin's parser ignores what
    it does not know, but lint says where it is."""
    (tmp_path / "local.cf").write_text("body LOCAL_OK /fine/\ndescibe LOCAL_OK typo\n")
    assert main(["rules", "lint", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'local.cf'}:2: unknown directive 'descibe', ignored" in out
    assert "1 unknown directives ignored" in out
    assert main(["rules", "lint", "--json", str(tmp_path)]) == 0
    [unknown] = json.loads(capsys.readouterr().out)["unknown_directives"]
    assert unknown["line"] == 2


def test_rules_test_names_a_file_it_cannot_read(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such.eml"
    assert main(["rules", "test", str(missing)]) == 1
    assert f"cannot read {missing}: No such file or directory" in capsys.readouterr().err


def test_rules_list_reads_the_configuration_serve_would(tmp_path: Path, monkeypatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Without --config, `rules list/test` use $SCANNER_CONFIG like every command."""
    site = tmp_path / "rules"
    site.mkdir()
    (site / "local.cf").write_text("header LOCAL_SITE Subject =~ /site/\nscore LOCAL_SITE 2\n")
    config = tmp_path / "scanner.toml"
    config.write_text(f'[checks.settings.rules]\ndirs = ["{site}"]\n')
    monkeypatch.setenv("SCANNER_CONFIG", str(config))
    assert main(["rules", "list", "--json"]) == 0
    assert "LOCAL_SITE" in {r["name"] for r in json.loads(capsys.readouterr().out)}


@pytest.mark.parametrize("action", ["list", "test"])
def test_a_missing_extra_rule_directory_is_an_error(tmp_path: Path, action: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    extra = [str(CORPUS / "hits" / "SC_SUBJ_LEET.eml")] if action == "test" else []
    assert main(["rules", action, *extra, "--dir", str(tmp_path / "mistyped")]) == 1
    assert f"{tmp_path / 'mistyped'}: no such rule directory" in capsys.readouterr().err
