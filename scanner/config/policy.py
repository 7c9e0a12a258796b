"""The policy part of the configuration: levels, destinies, tagging, lists, lovers, bypass.

``PolicyConfig`` is the ``[policy]`` table. ``PolicyOverride`` has the same per-recipient
keys, all optional; it is used for policy banks (``[policy_banks.NAME]``) and for
per-recipient tables (``[policy.recipients."@example.com"]``). The effective policy of a
recipient is ``[policy]``, then its bank, then the most specific recipient entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanner.config.schema import opt

DESTINY_NAMES = ("pass", "discard", "bounce", "reject")
CATEGORY_KEYS = ("virus", "banned", "unchecked", "spam", "bad_header", "oversized")
PASSED_KEYS = (*CATEGORY_KEYS, "clean")
"""``quarantine_passed`` also takes ``clean``: amavis's $clean_quarantine_method."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Decisions per recipient (amavis's Debian defaults)."""

    tag_level: float = opt(2.0, "score from which X-Spam-* headers are added (sa_tag_level)")
    tag2_level: float = opt(6.31, "score from which mail is spam: X-Spam-Flag YES, subject "
                            "tag, address extension (sa_tag2_level)")
    kill_level: float = opt(6.31, "score from which the spam destiny applies (sa_kill_level)")
    dsn_cutoff_level: float = opt(10.0, "no bounce (DSN) when the recipient's score is at "
                                  "or above this, whatever blocked the mail")
    virus_destiny: str = opt("discard", "what happens to VIRUS mail", choices=DESTINY_NAMES)
    banned_destiny: str = opt("discard", "what happens to BANNED mail", choices=DESTINY_NAMES)
    unchecked_destiny: str = opt("pass", "what happens to UNCHECKED mail (not fully "
                                 "scanned: encrypted, bombs)", choices=DESTINY_NAMES)
    spam_destiny: str = opt("pass", "what happens to SPAM (score >= kill_level)",
                            choices=DESTINY_NAMES)
    bad_header_destiny: str = opt("pass", "what happens to BAD-HEADER mail",
                                  choices=DESTINY_NAMES)
    oversized_destiny: str = opt("pass", "what happens to OVERSIZED mail",
                                 choices=DESTINY_NAMES)
    quarantine: tuple[str, ...] = opt(
        ["virus", "banned", "unchecked", "spam", "bad_header"],
        "categories whose blocked mail is kept in the quarantine (passed mail: "
        "quarantine_passed)",
        choices=CATEGORY_KEYS)
    quarantine_passed: tuple[str, ...] = opt(
        [], "categories whose passed mail (destiny pass, or a lover) is kept in the "
        "quarantine as well, as amavis does whenever the category's *_quarantine_to is "
        "set (Debian's amavis keeps passed spam this way); clean: mail of none of virus, "
        "banned, unchecked, spam, bad_header (CLEAN, SPAMMY, OVERSIZED: amavis's "
        "$clean_quarantine_method)", choices=PASSED_KEYS)
    spam_quarantine_cutoff_level: float = opt(
        0.0, "spam at or above this score (or from a block_senders sender) is not kept "
        "in the quarantine, only its destiny applies (amavis's $sa_quarantine_cutoff_level); "
        "0 = no cutoff")
    spam_notify_admin_cutoff_level: float = opt(
        0.0, "no notify_admin notice for spam at or above this score or from a "
        "block_senders sender (amavis's @spam_notifyadmin_cutoff_level_maps); 0 = no "
        "cutoff")
    oversized_size: int = opt(0, "messages larger than this (bytes) are OVERSIZED; 0 = never",
                              min=0)
    subject_tag: str = opt("", "prefix for the Subject of mail from tag_level up to "
                           "tag2_level (amavis's $sa_spam_subject_tag1); empty = none",
                           text="header_text")
    subject_tag2: str = opt("***SPAM*** ", "prefix for the Subject of spam (>= tag2_level); "
                            "empty = none. Subject tags may hold amavis's _SCORE_, _REQD_, "
                            "_YESNO_, _YESNOCAPS_, _HOSTNAME_, _DATE_, _U_, _LOGID_, "
                            "_MAILID_ (e.g. \"***SPAM(_SCORE_)*** \")", text="header_text")
    subject_tag_unchecked: str = opt("***UNCHECKED*** ", "prefix for the Subject of "
                                     "passed UNCHECKED mail; empty = none",
                                     text="header_text")
    subject_tag_virus: str = opt("***INFECTED*** ", "prefix for the Subject of passed "
                                 "VIRUS mail (virus lovers, virus_destiny pass); empty = "
                                 "none", text="header_text")
    addr_extension_spam: str = opt("", "deliver spam (>= tag2_level) of local recipients "
                                   "to user+EXT@domain, replacing an extension the "
                                   "address has; empty = off", text="local_part")
    addr_extension_virus: str = opt("", "the same for passed VIRUS mail (amavis: the "
                                    "highest category of virus, banned, spam, bad_header "
                                    "present decides, even when its extension is empty)",
                                    text="local_part")
    addr_extension_banned: str = opt("", "the same for passed BANNED mail",
                                     text="local_part")
    addr_extension_bad_header: str = opt("", "the same for passed BAD-HEADER mail",
                                         text="local_part")
    recipient_delimiter: str = opt("+", "characters that start an address extension, as "
                                   "Postfix's recipient_delimiter (\"+-\": either); the "
                                   "first one is written; empty = no extensions",
                                   text="local_part")
    spam_lover: bool = opt(False, "pass spam to this recipient whatever the destiny")
    virus_lover: bool = opt(False, "pass viruses to this recipient (tagged)")
    banned_lover: bool = opt(False, "pass banned files to this recipient (tagged)")
    bad_header_lover: bool = opt(False, "pass bad headers to this recipient")
    unchecked_lover: bool = opt(False, "pass unchecked mail to this recipient")
    bypass_spam_checks: bool = opt(False, "ignore spam symbols for this recipient")
    bypass_virus_checks: bool = opt(False, "ignore virus symbols for this recipient")
    bypass_banned_checks: bool = opt(False, "ignore banned-file symbols for this recipient")
    bypass_header_checks: bool = opt(False, "ignore bad-header symbols for this recipient")
    allow_senders: tuple[str, ...] = opt(
        [], "senders never spam for this recipient: user@dom, user@, @dom, @.dom "
        "(subdomains); the envelope sender and the From addresses are checked")
    block_senders: tuple[str, ...] = opt([], "senders always spam for this recipient "
                                         "(same patterns)")
    allow_senders_dkim: tuple[str, ...] = opt(
        [], "From addresses never spam for this recipient when a valid DKIM signature of "
        "their domain (or a parent domain) vouches for them (same patterns; needs the "
        "auth check): allow_senders that cannot be forged")
    sender_scores: Mapping[str, float] = opt(
        {}, "sender pattern (same patterns, '<>' = the null sender) -> points added to "
        "this recipient's score (SENDER_SCORE): negative for senders you trust a little, "
        "positive for ones you distrust (amavis's @score_sender_maps, a soft list)")
    quarantine_to: str = opt("", "deliver quarantined copies to this address as well "
                             "(from <>, X-Envelope-From/-To in front; not taken = 451); "
                             "empty = store only")
    archive_to: str = opt("", "deliver a copy of every message to this address (amavis's "
                          "archive_quarantine_to): whatever the verdict, before it is "
                          "delivered or blocked, from <> with X-Envelope-From/-To in "
                          "front; not taken = 451; empty = no archive")
    archive_directory: str = opt(
        "", "write a copy of every message into this directory (amavis's local: "
        "archive_quarantine_method): one gzip file per message, DIR/7/archive-MAILID.gz "
        "(quarantine.subdir_levels), the envelope in front as in the quarantine; "
        "whatever the verdict, fsynced before anything else happens to it; not written "
        "= 451; an absolute path outside quarantine.directory; empty = none")
    on_check_failure: str = opt(
        "tempfail", "a check that crashed: tempfail (451, Postfix retries) or unchecked "
        "(pass, tagged UNCHECKED)", choices=("tempfail", "unchecked"))
    local_domains: tuple[str, ...] = opt(
        [], "domains whose recipients are local (spam headers only for them), read as "
        "amavis's @local_domains_acl: example.com (that domain), .example.com (it and its "
        "subdomains), user@example.com, '.' (every domain), '!ENTRY' (not local); the "
        "first entry that matches decides; empty = all")
    local: bool | None = opt(None, "per recipient ([policy.recipients], a policy SQL row, "
                             "LDAP amavisLocal): true = local, false = not local, whatever "
                             "local_domains says (amavis's SQL local field); unset = "
                             "local_domains decides")
    mynetworks: tuple[str, ...] = opt(
        ["127.0.0.0/8", "::1"], "client networks of the MYNETS policy bank")
    spam_headers: bool = opt(True, "add X-Spam-Flag/Score/Level/Status to local mail")
    spam_report: bool = opt(False, "also add X-Spam-Report (each symbol with its points and "
                            "description, one per line) to spam (>= tag2_level) for local "
                            "recipients (amavis's $sa_spam_report_header)")
    header_prefix: str = opt("X-Spam-", "prefix of the spam headers", text="header_name")
    remove_existing_spam_headers: bool = opt(
        True, "leave out the spam headers (header_prefix + Flag, Score, Level, Status, "
        "Report, Tests, Checker-Version) a message arrives with, for local recipients whose "
        "mail we spam-check, so a sender cannot forge a verdict (amavis's setting)")
    virus_scanned_header: str = opt("X-Virus-Scanned", "header added when mail was virus "
                                    "scanned; empty = none", text="header_name")
    virus_scanned_value: str = opt("scanner at {hostname}", "its value ({hostname} is "
                                   "replaced)", text="header_text")
    notify_admin: Mapping[str, str] = opt(
        {}, "admin address per category (virus, banned, unchecked, spam, bad_header) for "
        "a notification, e.g. { virus = \"postmaster@example.com\" }; empty = off")
    notify_recipient: tuple[str, ...] = opt(
        [], "categories whose blocked mail its local recipients are told about, with the "
        "quarantine id (amavis's $warnvirusrecip, $warnbannedrecip, $warnbadhrecip): virus, "
        "banned, bad_header; empty = off", choices=("virus", "banned", "bad_header"))
    defang: tuple[str, ...] = opt(
        [], "categories whose mail, when passed to a local recipient (a lover, a pass "
        "destiny), is wrapped: a warning as the first part and the original attached "
        "(amavis's $defang_virus, $defang_banned, $defang_undecipherable, $defang_spam, "
        "$defang_bad_header): virus, banned, unchecked, spam, bad_header; empty = off",
        choices=("virus", "banned", "unchecked", "spam", "bad_header"))
    allow_disclaimers: bool = opt(
        False, "add the disclaimer (disclaimer_text, disclaimer_html) to passed mail "
        "whose From, Sender, Resent-From, Resent-Sender or envelope sender is in "
        "local_domains (amavis's $allow_disclaimers): set it in the bank of your "
        "submission (e.g. [policy_banks.ORIGINATING]), not for mail from outside")
    outbound_disclaimers_only: bool = opt(
        False, "no disclaimer for recipients in local_domains (amavis's "
        "$outbound_disclaimers_only, off by default as there)")
    disclaimer_text: str = opt(
        "", "file (UTF-8) whose text is appended to the first text/plain part, read at "
        "start; _OPTION_ in the name is replaced by the sender's disclaimer_options "
        "value; empty = none")
    disclaimer_html: str = opt(
        "", "file (UTF-8) whose HTML goes before </body> of the first text/html part "
        "(_OPTION_ as in disclaimer_text); empty = disclaimer_text, escaped")
    disclaimer_options: Mapping[str, str] = opt(
        {}, "sender pattern (user@dom, @dom, @.dom) -> the word that replaces _OPTION_ "
        "in the disclaimer file names (amavis's @disclaimer_options_bysender_maps), "
        "looked up for the local From, Resent-From, Resent-Sender, Sender, envelope "
        "sender in turn; none matches: _OPTION_ becomes ''")
    sql_lookup: str = opt("", "per-recipient policy rows from SQL: sqlite:/path/file or "
                          "postgresql://...; table scanner_policy(pattern, settings JSON"
                          "[, priority])")
    sql_lookup_tables: str = opt(
        "scanner", "which tables sql_lookup reads: scanner (scanner_policy) or amavis "
        "(amavis's users and policy tables, as web front ends edit them; PostgreSQL, "
        "mysql://USER:PASSWORD@HOST/DB or sqlite:/path; README \"Policy\")",
        choices=("scanner", "amavis"))
    sql_timeout: float = opt(5.0, "seconds a policy SQL lookup may take (SQLite: lock wait and "
                             "statements; PostgreSQL: connection, and statement); then the "
                             "message is deferred (451)", min=1.0, max=60.0)
    ldap_lookup: str = opt("", "per-recipient policy from LDAP amavisAccount entries "
                           "(amavis's $enable_ldap): ldap://host[:port] or ldaps://host"
                           "[:port]; several URLs separated by spaces are tried in turn "
                           "(failover, as amavis's list of hostnames); empty = off (needs "
                           "ldap3: pip install 'scanner[ldap]')")
    ldap_base: str = opt("", "the search base (amavis's base; %d = the recipient's domain), "
                         "e.g. \"ou=people,dc=example,dc=com\"")
    ldap_scope: str = opt("sub", "the search scope", choices=("sub", "one", "base"))
    ldap_query_filter: str = opt("(&(objectClass=amavisAccount)(mail=%m))",
                                 "the search filter; each (ATTR=%m) matches the "
                                 "recipient's lookup keys (amavis's query_filter)")
    ldap_bind_dn: str = opt("", "DN to bind as; empty = anonymous")
    ldap_bind_password: str = opt("", "its password (shown as *** by config show)")
    ldap_tls: bool = opt(False, "StartTLS on an ldap:// connection (amavis's tls)")
    ldap_ca_file: str = opt("", "PEM file of the CA certificates the server's certificate "
                            "must chain to, for ldaps:// and ldap_tls (amavis's cafile); "
                            "empty = the system's CA certificates")
    ldap_client_cert: str = opt("", "PEM client certificate shown to the server over TLS "
                                "(amavis's clientcert); empty = none")
    ldap_client_key: str = opt("", "PEM private key of ldap_client_cert (amavis's "
                               "clientkey); empty = in the ldap_client_cert file")
    ldap_timeout: float = opt(5.0, "seconds each step of a policy LDAP lookup may take "
                              "(connection, bind, search); then the message is deferred "
                              "(451)", min=1.0, max=60.0)
    recipients: Mapping[str, PolicyOverride] = opt(
        {}, "per-recipient overrides: [policy.recipients.\"user@dom\"] (or \"@dom\", "
        "\"@.dom\", \"user@\") with any key above except local_domains/mynetworks/"
        "recipients/sql_*/ldap_*")


NOT_OVERRIDABLE = ("local_domains", "mynetworks", "recipients", "sql_lookup",
                   "sql_lookup_tables", "sql_timeout", "ldap_lookup", "ldap_base", "ldap_scope",
                   "ldap_query_filter", "ldap_bind_dn", "ldap_bind_password", "ldap_tls",
                   "ldap_ca_file", "ldap_client_cert", "ldap_client_key", "ldap_timeout")


def _override_class() -> type:
    fields = []
    for f in dataclasses.fields(PolicyConfig):
        if f.name in NOT_OVERRIDABLE:
            continue
        tp = PolicyConfig.__annotations__[f.name]
        fields.append((f.name, f"{tp} | None",
                       dataclasses.field(default=None, metadata=f.metadata)))
    cls = dataclasses.make_dataclass("PolicyOverride", fields, frozen=True, slots=True)
    cls.__doc__ = "A partial [policy]: only the keys given change the effective policy."
    cls.__module__ = __name__
    return cls


PolicyOverride = _override_class()

# Banks that mean something without a [policy_banks.NAME] table (one given replaces it).
BUILTIN_BANKS: Mapping[str, Any] = {
    "ORIGINATING": PolicyOverride(bypass_spam_checks=True, spam_headers=False),
}


def apply(base: PolicyConfig, override: Any) -> PolicyConfig:
    """``base`` with every non-None field of ``override`` replacing its own."""
    changes = {f.name: getattr(override, f.name) for f in dataclasses.fields(override)
               if getattr(override, f.name) is not None}
    return dataclasses.replace(base, **changes) if changes else base
