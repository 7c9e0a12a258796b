"""``scanner config from-amavis``: amavis settings mapped onto scanner.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.errors import ConfigError
from scanner.migrate.amavis import config_files, convert_to_toml

REPO = Path(__file__).resolve().parents[2]

SITE_CONF = r"""
use strict;
$mydomain = 'example.com';
$myhostname = 'mx1.example.com';
$max_servers = 4;            # amavis's processes
$max_requests = 50;
$inet_socket_port = [10024, 10026];
$interface_policy{'10026'} = 'ORIGINATING';
$forward_method = 'smtp:[127.0.0.1]:10025';
$notify_method  = $forward_method;
@local_domains_acl = ( ".$mydomain", "example.net" );
@mynetworks = qw( 127.0.0.0/8 [::1] 192.168.0.0/16 );
$sa_tag_level_deflt  = 3.0;
$sa_tag2_level_deflt = 5.5;
$sa_kill_level_deflt = 8;
$sa_dsn_cutoff_level = 12;
$sa_quarantine_cutoff_level = 25;
$sa_spam_subject_tag = '[SPAM] ';
$sa_spam_subject_tag1 = '[maybe] ';
$addr_extension_virus = 'virus';
$recipient_delimiter = '+-';
$final_virus_destiny = D_REJECT;
$final_spam_destiny  = D_DISCARD;
$virus_admin = "postmaster\@$mydomain";
$MAXLEVELS = 10;
$MAX_EXPANSION_QUOTA = 100*1024*1024;
$QUARANTINEDIR = '/var/virusmails';
$banned_filename_re = new_RE( qr'\.exe$'i );
@av_scanners = (
 ['ClamAV-clamd',
   \&ask_daemon, ["CONTSCAN {}\n", "/run/clamav/clamd.ctl"],
   qr/\bOK$/m, qr/\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ],
);
1;  # ensure a defined return
"""


def _convert(tmp_path: Path, text: str) -> tuple[cfgmod.Config, str]:
    path = tmp_path / "amavisd.conf"
    path.write_text(text, encoding="utf-8")
    toml, _ = convert_to_toml([path])
    return cfgmod.loads(toml, "converted"), toml


def test_a_site_configuration_maps_onto_scanner_keys(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, SITE_CONF)
    assert (config.server.hostname, config.server.concurrency, config.server.max_requests) \
        == ("mx1.example.com", 4, 50)
    assert [(x.address, x.port, x.policy_bank) for x in config.listeners] == [
        ("127.0.0.1", 10024, ""), ("127.0.0.1", 10026, "ORIGINATING")]
    assert (config.reinject.protocol, config.reinject.host, config.reinject.port) \
        == ("smtp", "127.0.0.1", 10025)
    policy = config.policy
    assert policy.local_domains == (".example.com", "example.net")
    assert policy.mynetworks == ("127.0.0.0/8", "::1", "192.168.0.0/16")
    assert (policy.tag_level, policy.tag2_level, policy.kill_level,
            policy.dsn_cutoff_level, policy.spam_quarantine_cutoff_level) == (3.0, 5.5, 8, 12, 25)
    assert (policy.subject_tag2, policy.subject_tag) == ("[SPAM] ", "[maybe] ")
    assert (policy.addr_extension_virus, policy.recipient_delimiter) == ("virus", "+-")
    assert (policy.virus_destiny, policy.spam_destiny) == ("reject", "discard")
    # amavis's @banned_admin_maps falls back to $virus_admin
    assert dict(policy.notify_admin) == {"virus": "postmaster@example.com",
                                         "banned": "postmaster@example.com"}
    assert (config.decode.max_depth, config.decode.max_quota) == (10, 100 * 1024 * 1024)
    assert config.checks.settings["clamav"]["endpoints"] == ["unix:/run/clamav/clamd.ctl"]
    # each converted key says where it came from; what was not converted is listed
    assert "tag2_level = 5.5  # $sa_tag2_level_deflt (" in toml
    notes = toml[toml.index("# Not converted"):]
    assert "$banned_filename_re = new_RE" in notes and "[checks.settings.banned]" in notes
    assert "$QUARANTINEDIR = '/var/virusmails'" in notes
    assert "scanner quarantine import-amavis DIR" in notes
    assert all(line.startswith("#") for line in notes.splitlines())


def test_the_last_assignment_wins_in_run_parts_order(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "20-defaults").write_text("$sa_tag2_level_deflt = 6.31;\n")
    (conf_d / "50-user").write_text("$sa_tag2_level_deflt = 5.0;\n")
    (conf_d / "50-user.dpkg-old").write_text("$sa_tag2_level_deflt = 1.0;\n")
    (conf_d / "99-editor~").write_text("$sa_tag2_level_deflt = 2.0;\n")
    assert [p.name for p in config_files([conf_d])] == ["20-defaults", "50-user"]
    toml, _ = convert_to_toml([conf_d])
    assert cfgmod.loads(toml).policy.tag2_level == 5.0


def test_a_later_unreadable_value_is_not_replaced_by_an_earlier_one(tmp_path: Path) -> None:
    _, toml = _convert(tmp_path, "@bypass_virus_checks_maps = (1);\n"
                                 "@bypass_virus_checks_maps = (\\%bypass_virus_checks);\n")
    assert "bypass_virus_checks = " not in toml.split("# Not converted")[0]
    assert "[policy.recipients.\"PATTERN\"]" in toml


def test_values_scanner_refuses_become_notes_not_errors(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "$max_servers = 0;\n$sa_tag_level_deflt = 'high';\n"
                                      "$final_spam_destiny = D_TEMPFAIL;\n")
    assert config.server.concurrency == 20 and config.policy.spam_destiny == "pass"
    assert "'server.concurrency' = 0 is too small" in toml
    assert "D_TEMPFAIL is not a valid destiny" in toml


def test_missing_inputs_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope'}: no such amavis"):
        convert_to_toml([tmp_path / "nope"])
    with pytest.raises(ConfigError, match="no amavis configuration files there"):
        convert_to_toml([tmp_path])


def _debian_root() -> Path | None:
    """The package's files as shipped (unpacked by scripts/quickstart.sh test); the
    system's own /etc/amavis would carry the site's changes."""
    for root in (REPO / ".cache" / "amavisd" / "root",):
        if (root / "etc/amavis/conf.d/20-debian_defaults").exists() \
                and (root / "usr/share/amavis/conf.d").is_dir():
            return root
    return None


@pytest.mark.skipif(_debian_root() is None,
                    reason="Debian's amavisd-new configuration is not here (scripts/"
                           "quickstart.sh test unpacks the package into .cache/amavisd)")
def test_debians_own_configuration_converts_and_validates(tmp_path: Path) -> None:
    root = _debian_root()
    assert root is not None
    share, etc = tmp_path / "share", tmp_path / "etc"
    shutil.copytree(root / "usr/share/amavis/conf.d", share)
    shutil.copytree(root / "etc/amavis/conf.d", etc)
    toml, conversion = convert_to_toml([share, etc], {"mydomain": "example.org"})
    config = cfgmod.loads(toml)
    assert config.policy.local_domains == (".example.org",)
    assert (config.policy.tag2_level, config.policy.virus_destiny) == (6.31, "discard")
    # Debian's package switches both checks off until 15-content_filter_mode is edited
    assert config.policy.bypass_virus_checks and config.policy.bypass_spam_checks
    assert len(conversion.notes) > 20
    # the administrator's usual edit: the two blocks of 15-content_filter_mode uncommented
    mode = etc / "15-content_filter_mode"
    mode.write_text(mode.read_text().replace("#@bypass", "@bypass").replace("#   \\", "   \\"))
    config = cfgmod.loads(convert_to_toml([share, etc], {"mydomain": "example.org"})[0])
    assert not config.policy.bypass_virus_checks and not config.policy.bypass_spam_checks


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCANNER_CONFIG"}
    return subprocess.run([sys.executable, "-m", "scanner", "config", "from-amavis", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=60)


def test_the_command_writes_a_file_it_will_not_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "amavisd.conf"
    source.write_text(SITE_CONF)
    out = tmp_path / "scanner.toml"
    done = _cli(str(source), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "not converted, listed as comments at the end of" in done.stderr
    assert cfgmod.load(str(out)).server.concurrency == 4
    again = _cli(str(source), "-o", str(out))
    assert again.returncode == 2 and f"{out}: exists already" in again.stderr
    missing = _cli(str(tmp_path / "none.conf"))
    assert missing.returncode == 2 and "none.conf: no such amavis" in missing.stderr
    bad_set = _cli(str(source), "--set", "no equals sign")
    assert bad_set.returncode == 2 and "expected NAME=VALUE" in bad_set.stderr


def test_local_domains_maps_of_acls_become_local_domains(tmp_path: Path) -> None:
    config, _ = _convert(tmp_path, "$mydomain = 'example.com';\n"
                                   "@local_domains_maps = ( [\".$mydomain\"], ['example.net'] );\n")
    assert config.policy.local_domains == (".example.com", "example.net")
    _, toml = _convert(tmp_path, "@local_domains_maps = ( \\%local_domains );\n")
    assert "local_domains =" not in toml.split("# Not converted")[0]
    assert "@local_domains_maps = ( \\%local_domains )" in toml


def test_pen_pals_settings_carry_over(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "$penpals_bonus_score = 8;\n"
                                      "$penpals_halflife = 14*24*60*60;\n")
    assert config.checks.settings["penpals"]["halflife_days"] == 14.0
    assert "PENPALS_REPLY -3.0" in toml  # the bonus score is explained, not converted


def test_defang_flags_become_the_defang_categories(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "$defang_virus = 1;\n$defang_banned = 1;\n"
                                      "$defang_spam = 0;\n$defang_undecipherable = 1;\n"
                                      "$defang_all = 1;\n")
    assert config.policy.defang == ("virus", "banned", "unchecked")
    assert "$defang_all = 1" in toml.split("# Not converted")[1]


def test_the_bounce_killer_score_is_explained(tmp_path: Path) -> None:
    _, toml = _convert(tmp_path, "$bounce_killer_score = 100;\n")
    assert "$bounce_killer_score = 100" in toml
    assert "[symbols.BOUNCE_KILLED] weight" in toml


# Debian's 15-content_filter_mode with its two blocks uncommented (checks turned on)
DEBIAN_CHECKS_ON = r"""
@bypass_virus_checks_maps = (
   \%bypass_virus_checks, \@bypass_virus_checks_acl, \$bypass_virus_checks_re);
@bypass_spam_checks_maps = (
   \%bypass_spam_checks, \@bypass_spam_checks_acl, \$bypass_spam_checks_re);
1;
"""


def test_debians_checks_on_form_is_converted_not_reported_unreadable(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "@bypass_virus_checks_maps = (1);\n"
                                      "@bypass_spam_checks_maps = (1);\n" + DEBIAN_CHECKS_ON)
    assert not config.policy.bypass_virus_checks and not config.policy.bypass_spam_checks
    assert "bypass_virus_checks = false  # @bypass_virus_checks_maps (" in toml
    assert "could not be read" not in toml
    # a site that fills one of the tables has a real lookup: listed for a decision
    _, toml = _convert(tmp_path, DEBIAN_CHECKS_ON
                       + "$bypass_virus_checks{'abuse@example.com'} = 1;\n")
    assert "bypass_virus_checks = " not in toml.split("# Not converted")[0]
    assert "bypass_spam_checks = false" in toml


def test_an_originating_listener_keeps_amaviss_spam_checks(tmp_path: Path) -> None:
    site = ("$inet_socket_port = [10024, 10026];\n"
            "$interface_policy{'10026'} = 'ORIGINATING';\n")
    config, toml = _convert(tmp_path, site
                            + "$policy_bank{'ORIGINATING'} = { originating => 1 };\n")
    bank = config.policy_banks["ORIGINATING"]
    assert bank.bypass_spam_checks is False
    # amavis's plain ORIGINATING bank is fully expressed, not left "to write by hand"
    assert "write them by hand" not in toml and "# Every amavis setting found was converted" in toml
    config, _ = _convert(tmp_path, site + "$policy_bank{'ORIGINATING'} = {\n"
                         "  originating => 1, bypass_spam_checks_maps => [1] };\n")
    assert config.policy_banks["ORIGINATING"].bypass_spam_checks is True


def test_debians_amavisd_release_bank_points_at_the_ampdp_socket(tmp_path: Path) -> None:
    _, toml = _convert(tmp_path, "$interface_policy{'SOCK'} = 'AM.PDP-SOCK';\n"
                                 "$policy_bank{'AM.PDP-SOCK'} = {\n"
                                 "  protocol => 'AM.PDP', auth_required_release => 0 };\n")
    notes = toml[toml.index("# Not converted"):]
    assert "write them by hand" not in notes and "only ORIGINATING is converted" not in notes
    assert notes.count("ampdp_socket") == 1  # one group: both lines under that advice


def test_a_file_without_settings_is_an_error_not_a_full_conversion(tmp_path: Path) -> None:
    path = tmp_path / "amavisd.conf-default"
    path.write_text("use strict;\n# $max_servers = 2;\n# $mydomain = 'example.com';\n1;\n")
    with pytest.raises(ConfigError, match="no amavis settings there.*amavisd -c FILE"):
        convert_to_toml([path])


def test_notes_say_what_set_does_for_an_unreadable_scalar(tmp_path: Path) -> None:
    conf = ("chomp($mydomain = `head -n 1 /nonexistent/mailname`);\n"
            "$X_HEADER_LINE = \"x\";\n@local_domains_acl = ( \".$mydomain\" );\n")
    _, toml = _convert(tmp_path, conf)
    assert "unless you give it with --set mydomain=VALUE" in toml
    assert "(uses $mydomain, whose value is not known here); give it with --set mydomain=" in toml
    path = tmp_path / "amavisd.conf"
    toml, _ = convert_to_toml([path], {"mydomain": "example.org"})
    assert "the value given with --set mydomain=example.org is used instead" in toml
    assert "local_domains = [\".example.org\"]" in toml


def test_amavis_nanny_database_becomes_the_status_file(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "$enable_db = 1;\n")
    assert config.server.status_file == "/var/lib/scanner/status"
    assert "amavisd-nanny's database" in toml
    config, _ = _convert(tmp_path, "$enable_db = 0;\n")
    assert config.server.status_file == ""


def test_recipient_warnings_become_notify_recipient(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "@local_domains_acl = ( '.example.com' );\n"
                                      "$warnbannedrecip = 1;\n$warnvirusrecip = 0;\n"
                                      "$warnbadhrecip = 1;\n$warn_offsite = 1;\n")
    assert config.policy.notify_recipient == ("banned", "bad_header")
    assert "local recipients only" in toml  # $warn_offsite is explained, not converted
    # without local domains scanner would tell everyone: left as a note with the reason
    config, toml = _convert(tmp_path, "$warnbannedrecip = 1;\n$mydomain = 'example.com';\n")
    assert config.policy.notify_recipient == ()
    assert "needs 'policy.local_domains'" in toml
    config, _ = _convert(tmp_path, "$warnvirusrecip = 0;\n$mydomain = 'example.com';\n")
    assert config.policy.notify_recipient == ()


def test_spam_report_header_setting_carries_over(tmp_path: Path) -> None:
    config, _ = _convert(tmp_path, "$sa_spam_report_header = 1;\n")
    assert config.policy.spam_report is True


def test_a_pass_destiny_notes_that_amavis_also_quarantined_passed_mail(tmp_path: Path) -> None:
    """Debian's amavis passes spam (D_PASS) and, with its default $spam_quarantine_to,
    keeps it in the quarantine too; scanner keeps blocked mail only unless told."""
    config, toml = _convert(tmp_path, "$final_spam_destiny = D_PASS;\n"
                            "$final_virus_destiny = D_DISCARD;\n1;\n")
    assert config.policy.spam_destiny == "pass" and config.policy.quarantine_passed == ()
    notes = toml[toml.index("# Not converted"):]
    assert 'add "spam" to policy.quarantine_passed' in notes
    assert 'add "virus"' not in notes


def _notes(toml: str) -> str:
    return toml[toml.index("# Not converted"):] if "# Not converted" in toml else ""


@pytest.mark.parametrize(("text", "directory", "mailbox"), [
    # Conf.pm's default $archive_quarantine_to = 'archive-quarantine' -> $QUARANTINEDIR
    ("$archive_quarantine_method = 'local:archive/%m';\n", "/var/lib/scanner/archive", ""),
    ("$archive_quarantine_method = 'local:archive-%m.gz';\n"
     "$archive_quarantine_to = '%a';\n", "/var/lib/scanner/archive", ""),
    # an address: amavis mails it ($notify_method instead of local:)
    ("$archive_quarantine_method = 'local:archive/%m';\n"
     "$archive_quarantine_to = \"archive\\@example.com\";\n", "", "archive@example.com"),
    ("$archive_quarantine_method = 'smtp:[127.0.0.1]:10025';\n"
     "$archive_quarantine_to = \"archive\\@example.com\";\n", "", "archive@example.com"),
    # amavis's default: no method, no archive
    ("$archive_quarantine_to = 'archive-quarantine';\n", "", ""),
    ("$archive_quarantine_method = 'local:archive/%m';\n$archive_quarantine_to = undef;\n",
     "", ""),
    # forms scanner has no equivalent of: noted
    ("$archive_quarantine_method = 'local:x';\n$archive_quarantine_to = 'archive-mbox';\n",
     "", ""),
    ("$archive_quarantine_method = 'sql:';\n", "", ""),
])
def test_amavis_archive_becomes_archive_directory_or_archive_to(tmp_path: Path, text: str,
                                                               directory: str, mailbox: str):
    config, toml = _convert(tmp_path, "$QUARANTINEDIR = '/var/lib/amavis/virusmails';\n"
                            + text)
    assert (config.policy.archive_directory, config.policy.archive_to) == (directory,
                                                                          mailbox)
    notes = _notes(toml)
    if directory:
        assert "amavis wrote /var/lib/amavis/virusmails/archive" in toml
    elif not mailbox and "archive_quarantine_method" in text:
        assert "archive" in notes and "$archive_quarantine_" in notes, toml
    assert "no scanner equivalent" not in notes


def test_per_recipient_archive_maps_are_noted(tmp_path: Path) -> None:
    config, toml = _convert(tmp_path, "$archive_quarantine_method = 'local:archive/%m';\n"
                            "@archive_quarantine_to_maps = ({'a@example.com' => 'x'});\n")
    assert config.policy.archive_directory == "/var/lib/scanner/archive"
    assert "per-recipient lookups: write [policy.recipients" in _notes(toml)


@pytest.mark.parametrize(("text", "kept"), [
    ("$clean_quarantine_method = 'local:clean-%m';\n", True),   # to clean-quarantine
    ("$clean_quarantine_method = 'sql:';\n", True),              # amavis's SQL quarantine
    ("$clean_quarantine_method = undef;\n", False),              # amavis's default
    ("$clean_quarantine_method = 'local:clean-%m';\n$clean_quarantine_to = undef;\n", False),
    ("$clean_quarantine_method = 'local:clean-%m';\n"
     "$clean_quarantine_to = \"clean\\@example.com\";\n", False),  # mailed, not kept: noted
])
def test_amavis_clean_quarantine_becomes_quarantine_passed_clean(tmp_path: Path, text: str,
                                                                 kept: bool):
    config, toml = _convert(tmp_path, text)
    assert config.policy.quarantine_passed == (("clean",) if kept else ())
    if "@" in text:
        assert 'policy.quarantine_passed = ["clean"]' in _notes(toml)


def test_the_by_sender_spam_quarantine_is_explained(tmp_path: Path) -> None:
    _, toml = _convert(tmp_path, "$spam_quarantine_bysender_to = 'sender-quarantine';\n")
    notes = _notes(toml)
    assert "by-sender spam quarantine" in notes and "[policy_banks.ORIGINATING]" in notes
    assert "no scanner equivalent\n" not in notes


def test_sql_lookups_read_amavis_s_own_tables(tmp_path: Path) -> None:
    """@lookup_sql_dsn becomes policy.sql_lookup reading amavis's tables as they are;
    a changed query is noted, not called unconvertible."""
    config, toml = _convert(tmp_path, "@lookup_sql_dsn = ( ['DBI:Pg:database=mail', 'u', "
                                      "'p'] );\n$sql_select_policy = 'SELECT * FROM users';\n")
    assert (config.policy.sql_lookup, config.policy.sql_lookup_tables) == (
        "postgresql://u:p@/mail", "amavis")
    tail = toml.split("# Not converted")[1]
    assert "no scanner equivalent" not in tail and "amavis's default query" in tail
    config, _ = _convert(tmp_path, "@lookup_sql_dsn = (['DBI:SQLite:dbname=/var/lib/"
                                   "amavis/lookup.sqlite', '', '']);\n")
    assert config.policy.sql_lookup == "sqlite:/var/lib/amavis/lookup.sqlite"


CLAMSCAN_BACKUP = r"""
@av_scanners_backup = (
  ['ClamAV-clamscan', PROGRAM,
    "--stdout --no-summary -r --tempdir=$TEMPBASE {}",
    [0], qr/:.*\sFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ],
  ['F-PROT Antivirus for UNIX', ['fpscan'],
    '--report --mount --adware {}', [0,8,64], [1,2,3], qr/^\[Found\s+[^\]]*\]\s+<([^ \t(>]*)/m ],
);
"""


@pytest.mark.skipif(shutil.which("clamscan") is None, reason="clamscan not installed")
def test_the_clamscan_backup_entry_becomes_backup_command(tmp_path: Path) -> None:
    """Debian's 15-av_scanners entry, with clamscan installed (amavis used it then)."""
    config, toml = _convert(tmp_path, CLAMSCAN_BACKUP.replace(
        "PROGRAM", "['/nonexistent/clamscan', 'clamscan']"))
    assert config.checks.settings["clamav"]["backup_command"] == [
        "clamscan", "--stdout", "--no-summary", "-r", "{}"]
    assert "the other backup scanners are not supported" in toml


@pytest.mark.parametrize(("program", "note"), [
    ("'/nonexistent/clamscan'", 'apt-get install clamav and backup_command = ["clamscan", '
     '"--stdout", "--no-summary", "-r", "{}"]'),
])
def test_a_clamscan_backup_that_amavis_could_not_run_is_a_note(
        tmp_path: Path, program: str, note: str) -> None:
    config, toml = _convert(tmp_path, CLAMSCAN_BACKUP.replace("PROGRAM", program))
    assert "clamav" not in config.checks.settings
    assert note in toml[toml.index("# Not converted"):]


def test_clamscan_arguments_with_a_perl_variable_are_a_note(tmp_path: Path) -> None:
    text = CLAMSCAN_BACKUP.replace("PROGRAM", "'clamscan'").replace(
        "-r --tempdir", "--database=$MYDB -r --tempdir")
    config, toml = _convert(tmp_path, text)
    assert "clamav" not in config.checks.settings
    assert "set [checks.settings.clamav]" in toml[toml.index("# Not converted"):]
