"""What each amavis variable means in scanner's configuration, for ``from-amavis``.

Data and small value conversions only: which scalar becomes which key (and how its value
is read), which lookup lists become per-recipient flags, what to tell an administrator
about the settings that have no equivalent. :mod:`scanner.migrate.amavis` applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scanner.migrate.perlconf import Constant

DESTINIES = {"D_PASS": "pass", "D_DISCARD": "discard", "D_BOUNCE": "bounce",
             "D_REJECT": "reject"}

# amavis scalar -> (section, key, kind)
SCALARS: dict[str, tuple[str, str, str]] = {
    "$sa_tag_level_deflt": ("policy", "tag_level", "number"),
    "$sa_tag2_level_deflt": ("policy", "tag2_level", "number"),
    "$sa_kill_level_deflt": ("policy", "kill_level", "number"),
    "$sa_dsn_cutoff_level": ("policy", "dsn_cutoff_level", "number"),
    "$sa_quarantine_cutoff_level": ("policy", "spam_quarantine_cutoff_level", "number"),
    "$sa_spam_subject_tag": ("policy", "subject_tag2", "text"),
    "$sa_spam_subject_tag1": ("policy", "subject_tag", "text"),
    "$undecipherable_subject_tag": ("policy", "subject_tag_unchecked", "text"),
    "$final_virus_destiny": ("policy", "virus_destiny", "destiny"),
    "$final_banned_destiny": ("policy", "banned_destiny", "destiny"),
    "$final_spam_destiny": ("policy", "spam_destiny", "destiny"),
    "$final_bad_header_destiny": ("policy", "bad_header_destiny", "destiny"),
    "$final_unchecked_destiny": ("policy", "unchecked_destiny", "destiny"),
    "$addr_extension_spam": ("policy", "addr_extension_spam", "text"),
    "$addr_extension_virus": ("policy", "addr_extension_virus", "text"),
    "$addr_extension_banned": ("policy", "addr_extension_banned", "text"),
    "$addr_extension_bad_header": ("policy", "addr_extension_bad_header", "text"),
    "$recipient_delimiter": ("policy", "recipient_delimiter", "text"),
    "$remove_existing_spam_headers": ("policy", "remove_existing_spam_headers", "flag"),
    "$sa_spam_report_header": ("policy", "spam_report", "flag"),
    "$X_HEADER_TAG": ("policy", "virus_scanned_header", "text"),
    "$myhostname": ("server", "hostname", "text"),
    "$max_servers": ("server", "concurrency", "count"),
    "$max_requests": ("server", "max_requests", "count"),
    "$child_timeout": ("server", "message_timeout", "number"),
    "$smtpd_timeout": ("server", "idle_timeout", "number"),
    "$DO_SYSLOG": ("server", "syslog", "flag"),
    "$log_level": ("server", "log_level", "log_level"),
    "$MAXLEVELS": ("decode", "max_depth", "count"),
    "$MAXFILES": ("decode", "max_parts", "count"),
    "$MIN_EXPANSION_QUOTA": ("decode", "min_quota", "count"),
    "$MAX_EXPANSION_QUOTA": ("decode", "max_quota", "count"),
    "$MIN_EXPANSION_FACTOR": ("decode", "min_factor", "count"),
    "$MAX_EXPANSION_FACTOR": ("decode", "max_factor", "count"),
    "$quarantine_subdir_levels": ("quarantine", "subdir_levels", "count"),
    "$penpals_halflife": ("checks.settings.penpals", "halflife_days", "days"),
}

# amavis list of lookups = (1) -> a per-recipient flag that is then true for everyone
FLAG_MAPS = {
    "@bypass_virus_checks_maps": "bypass_virus_checks",
    "@bypass_spam_checks_maps": "bypass_spam_checks",
    "@bypass_banned_checks_maps": "bypass_banned_checks",
    "@bypass_header_checks_maps": "bypass_header_checks",
    "@spam_lovers_maps": "spam_lover",
    "@virus_lovers_maps": "virus_lover",
    "@banned_files_lovers_maps": "banned_lover",
    "@bad_header_lovers_maps": "bad_header_lover",
    "@unchecked_lovers_maps": "unchecked_lover",
}

ADMINS = {"$virus_admin": "virus", "$banned_admin": "banned", "$spam_admin": "spam",
          "$bad_header_admin": "bad_header"}

# amavis's defanging flags -> policy.defang categories ($defang_spam covers SPAMMY too)
DEFANG = {"$defang_virus": "virus", "$defang_banned": "banned",
          "$defang_undecipherable": "unchecked", "$defang_spam": "spam",
          "$defang_bad_header": "bad_header"}

# amavis's recipient warnings -> policy.notify_recipient categories
WARN_RECIPIENT = {"$warnvirusrecip": "virus", "$warnbannedrecip": "banned",
                  "$warnbadhrecip": "bad_header"}

LISTENER_VARS = ("$inet_socket_port", "$inet_socket_bind")
REINJECT_VARS = ("$forward_method", "$notify_method")

PATH_VARS = {"$MYHOME", "$TEMPBASE", "$QUARANTINEDIR", "$pid_file", "$lock_file",
             "$db_home", "$LOGFILE", "$unix_socketname", "$helpers_home", "$daemon_chroot_dir",
             "$ENV{TMPDIR}", "$daemon_user", "$daemon_group"}
PROGRAM_VARS = {"$file", "$gzip", "$bzip2", "$lzop", "$rpm2cpio", "$cabextract",
                "$uncompress", "$unfreeze", "$arc", "$unarj", "$unrar", "$zoo", "$lha",
                "$pax", "$cpio", "$ar", "$ripole", "$dspam", "$tnef", "$unzoo", "$lz4",
                "$lrzip", "$rar", "$xz", "$7zip", "$7z"}

ADVICE: dict[str, str] = {
    "$banned_filename_re": "banned names and types are Perl regular expressions; write the "
    "site's own as [checks.settings.banned] rules (README \"Policy\"); the shipped defaults "
    "are amavis's Debian list plus today's script and disk-image types",
    "@banned_filename_maps": "see $banned_filename_re",
    "@av_scanners": "scanner talks to clamd itself ([checks.settings.clamav] endpoints); "
    "other scanners are not supported",
    "@av_scanners_backup": "scanner's backup is one command-line scanner run when clamd "
    "gives no answer ([checks.settings.clamav] backup_command); only a ClamAV-clamscan "
    "entry is converted",
    "$X_HEADER_LINE": "scanner writes \"scanner at HOSTNAME\" (policy.virus_scanned_value); "
    "set that key to keep the old text",
    "$sa_local_tests_only": "scanner's network checks are the auth (SPF, DKIM, DMARC), "
    "dnsbl and uribl checks; list them in [checks] disabled to stay off the network",
    "$sa_mail_body_size_limit": "scanner reads every message; the classifier and rules "
    "read a bounded part of it (docs/classifier.md, docs/rules.md)",
    "$enable_dkim_verification": "scanner verifies DKIM in the auth check (on by default)",
    "$enable_dkim_signing": "DKIM signing: [checks.settings.dkim_sign] (README \"Sender "
    "authentication\")",
    "@mynetworks": "entries with '!' cannot be expressed in policy.mynetworks",
    "$policy_bank": "policy banks are [policy_banks.NAME] tables with scanner's [policy] "
    "keys; write them by hand (README \"Policy\")",
    "$interface_policy": "only ORIGINATING is converted; other banks need a "
    "[policy_banks.NAME] table written by hand, then the listener's policy_bank",
    "@viruses_that_fake_sender_maps": "built in, as Debian's: a virus_destiny of bounce "
    "sends a DSN only for test signatures (EICAR, ClamAV's test files), never for a real "
    "virus; scanner sends no other virus notices to senders",
    "@virus_name_to_spam_score_maps": "scanner's [checks.settings.clamav] "
    "virus_name_to_spam_score starts as amavis's default list; write site changes there "
    "(README \"ClamAV\")",
    "@keep_decoded_original_maps": "scanner always gives clamd the original message",
    "@local_domains_maps": "only lists of domain strings ([\".example.com\", ...]) and "
    "read_hash/read_array files are converted; turn Perl hashes and regex tables into "
    "policy.local_domains entries by hand",
    "@bypass_virus_checks_maps": "per-recipient lookups: write [policy.recipients.\"PATTERN\"] "
    "bypass_virus_checks = true for the recipients your tables name (empty tables, as in "
    "Debian's 15-content_filter_mode, mean: check everyone, scanner's default)",
    "@bypass_spam_checks_maps": "as @bypass_virus_checks_maps, with bypass_spam_checks",
    "@bypass_banned_checks_maps": "as @bypass_virus_checks_maps, with bypass_banned_checks",
    "@bypass_header_checks_maps": "as @bypass_virus_checks_maps, with bypass_header_checks",
    "$penpals_bonus_score": "scanner's pen pals weights are PENPALS_REPLY -3.0 and "
    "PENPALS_KNOWN -1.0 (a site score file changes them); turn the check on with [checks] "
    "enabled = [\"*\", \"penpals\"] (README \"Policy\", Pen pals)",
    "$penpals_threshold_low": "see $penpals_bonus_score",
    "$warn_offsite": "scanner tells local recipients only (policy.local_domains), as amavis "
    "does by default",
    "$penpals_threshold_high": "see $penpals_bonus_score",
    "$defang_all": "scanner defangs by category (policy.defang); wrapping every passed "
    "message (amavis's testing aid) has no equivalent",
    "%defang_maps_by_ccat": "write the categories as policy.defang (per recipient in "
    "[policy.recipients.\"PATTERN\"] defang = [...])",
    "@disclaimer_options_bysender_maps": "write the table as [policy.disclaimer_options] "
    "(sender pattern = the word that replaces _OPTION_ in the disclaimer file names; "
    "README \"Policy\", Disclaimers)",
    "$altermime": "scanner adds disclaimers itself, without altermime: nothing to set",
    "@altermime_args_defang": "scanner defangs with its own wrapper (policy.defang)",
    "$bounce_killer_score": "scanner's bounce killer is the pen pals check's BOUNCE_KILLED "
    "symbol, weight 0 as amavis's default; to keep your value, give it that weight in a "
    "site score file ([symbols.BOUNCE_KILLED] weight = ...; README \"Policy\", Pen pals) "
    "and set policy.local_domains, whose domains in a returned Message-ID rescue a bounce",
    "@lookup_sql_dsn": "per-recipient policy from amavis's SQL tables is "
    "policy.sql_lookup with sql_lookup_tables = \"amavis\" (README \"Policy\")",
    "$sql_select_policy": "see @lookup_sql_dsn",
    "$sql_select_white_black_list": "per-recipient sender lists are a row's allow_senders "
    "and block_senders (see @lookup_sql_dsn)",
    "$spam_quarantine_bysender_to": "amavis's by-sender spam quarantine (one more copy "
    "of SPAM to a destination looked up by the envelope sender) has no equivalent: "
    "scanner decides copies per recipient and stores held spam once, its sender in the "
    "index (`scanner quarantine list --category spam --json` shows it); for spam your "
    "own users send, the usual use, give their policy bank ([policy_banks.ORIGINATING] "
    "or a listener's bank) quarantine_to = \"ADDRESS\" and keep \"spam\" in its "
    "quarantine (or quarantine_passed if it passes)",
    "@spam_quarantine_bysender_to_maps": "see $spam_quarantine_bysender_to",
    "@spam_notifyadmin_cutoff_level_maps": "one level for everyone: policy."
    "spam_notify_admin_cutoff_level (per recipient in [policy.recipients.\"PATTERN\"])",
    "$unix_socketname": "the AM.PDP socket for amavisd-release and amavisd-milter is "
    "[quarantine] ampdp_socket; point amavisd-release's $socketname (docs/quarantine.md) "
    "and amavisd-milter's -S at it (README \"Before-queue with amavisd-milter\", "
    "scanner postfix-config --milter)",
}
ADVICE["$QUARANTINEDIR"] = (
    "where amavis's local: quarantine keeps the mail it holds; scanner keeps its own "
    "([quarantine] directory): once amavis is stopped, bring that mail over with "
    "`scanner quarantine import-amavis DIR` (same mail_ids; docs/quarantine.md)")
# Debian's 25-amavis_helpers: the bank of amavisd-release's socket, not one to write by hand
ADVICE["$interface_policy{SOCK}"] = ADVICE["$policy_bank{AM.PDP-SOCK}"] = \
    ADVICE["$unix_socketname"]


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _as_count(value: Any) -> int | None:
    number = _as_number(value)
    return int(number) if number is not None and number == int(number) else None


def _as_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def as_flag(value: Any) -> bool | None:
    if value is None:
        return False
    if isinstance(value, int | float | str):
        return bool(value) and value != "0"
    return None


def _as_destiny(value: Any) -> str | None:
    return DESTINIES.get(value.name) if isinstance(value, Constant) else None


def _as_days(value: Any) -> float | None:
    number = _as_number(value)  # amavis counts seconds
    return round(number / 86400, 3) if number is not None and number > 0 else None


def _as_log_level(value: Any) -> str | None:
    number = _as_count(value)
    if number is None:
        return None
    return "debug" if number >= 3 else "info"


KINDS: dict[str, Callable[[Any], Any]] = {
    "number": _as_number, "count": _as_count, "text": _as_text, "flag": as_flag,
    "destiny": _as_destiny, "log_level": _as_log_level, "days": _as_days,
}
