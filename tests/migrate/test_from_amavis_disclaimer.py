"""``scanner config from-amavis``: amavis's disclaimer settings ($allow_disclaimers,
$outbound_disclaimers_only, @altermime_args_disclaimer and the banks that allow them)."""

from __future__ import annotations

from pathlib import Path

from tests.migrate.test_from_amavis import _convert


def test_flags_and_altermime_files_are_converted_and_the_rest_explained(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("confidential\n")
    (tmp_path / "d.html").write_text("<p>confidential</p>\n")
    config, toml = _convert(tmp_path, f"""
@local_domains_acl = ( ".example.com" );
$allow_disclaimers = 1;
$outbound_disclaimers_only = 1;
@altermime_args_disclaimer = qw(--verbose --disclaimer={tmp_path}/d.txt
   --disclaimer-html={tmp_path}/d.html --force-for-bad-html);
@disclaimer_options_bysender_maps = ( {{ '.example.com' => 'd' }} );
$policy_bank{{'MYNETS'}} = {{ originating => 1, allow_disclaimers => 1, }};
1;
""")
    policy = config.policy
    assert (policy.allow_disclaimers, policy.outbound_disclaimers_only) == (True, True)
    assert (policy.disclaimer_text, policy.disclaimer_html) == (f"{tmp_path}/d.txt",
                                                                f"{tmp_path}/d.html")
    notes = toml.split("# Not converted")[1]
    assert "only --disclaimer=FILE and --disclaimer-html=FILE are converted" in notes
    assert "this bank allows disclaimers: write allow_disclaimers = true" in notes
    assert "[policy.disclaimer_options]" in notes
    assert "%defang_maps_by_ccat names 'disclaimer'" in toml.split("# Not converted")[0]


def test_a_missing_disclaimer_file_is_left_out_and_said(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "@local_domains_acl = ( '.example.com' );\n"
                                      "@altermime_args_disclaimer = "
                                      "qw(--disclaimer=/nonexistent/d.txt);\n1;\n")
    assert config.policy.disclaimer_text == ""
    assert "cannot use '/nonexistent/d.txt': No such file or directory" in toml


def test_allow_disclaimers_without_local_domains_is_refused_with_the_reason(tmp_path: Path
                                                                           ) -> None:
    config, toml = _convert(tmp_path, "$allow_disclaimers = 1;\n1;\n")
    assert config.policy.allow_disclaimers is False
    assert "allow_disclaimers' needs 'policy.local_domains'" in toml
