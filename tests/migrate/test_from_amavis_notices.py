"""``scanner config from-amavis``: amavis's notice templates ($notify_*_templ, Debian's
read_l10n_templates) are explained with the scanner template file and variables."""

from __future__ import annotations

from pathlib import Path

from tests.migrate.test_from_amavis import _convert


def _notes(toml: str) -> list[str]:
    """The note lines, each note's continuation lines joined to it."""
    notes = toml.split("# Not converted")[1]
    return [" ".join(part.replace("\n#", " ").split()) for part in notes.split("\n# ")]


def test_each_template_setting_names_its_scanner_file_and_variables(tmp_path: Path) -> None:
    _, toml = _convert(tmp_path, """
@local_domains_acl = ( ".example.com" );
read_l10n_templates('de_DE', '/etc/amavis');
$notify_virus_admin_templ = read_text('/etc/amavis/de_DE/template-virus-admin.txt');
$notify_spam_admin_templ = read_text('/etc/amavis/de_DE/template-spam-admin.txt');
$notify_sender_templ = read_text('/etc/amavis/de_DE/template-dsn.txt');
$notify_virus_recips_templ = read_text('/etc/amavis/de_DE/template-virus-recipient.txt');
$notify_virus_sender_templ = read_text('/etc/amavis/de_DE/template-virus-sender.txt');
$notify_release_templ = read_text('/etc/amavis/de_DE/template-release-quarantine.txt');
1;
""")
    text = " ".join(_notes(toml))
    for source, target in (("template-virus-admin.txt", "admin-virus.txt, admin-banned.txt"),
                           ("template-spam-admin.txt", "admin-spam.txt"),
                           ("template-dsn.txt", "dsn.txt"),
                           ("template-virus-recipient.txt", "recipient-virus.txt")):
        assert f"copy the text of /etc/amavis/de_DE/{source} into {target}" in text, text
    assert "%s -> <$sender>" in text and "%i or [:mail_id] -> $mail_id" in text
    assert "[notices] templates_dir" in text
    assert "amavis reads its notice templates here (template-dsn.txt -> dsn.txt" in text
    assert "scanner sends no virus notice to the sender" in text
    assert "without a notice wrapped around it" in text
    assert "no scanner equivalent" not in text and "calls read_l10n_templates" not in text
