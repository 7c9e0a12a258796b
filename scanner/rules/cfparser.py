"""Read SpamAssassin ``.cf``/``.pre`` files into a :class:`ParsedConfig`.

Line syntax as SpamAssassin reads it: an unescaped ``#`` starts a comment, ``\\#`` is a
literal ``#``, leading and trailing white space is dropped. ``ifplugin``/``if``/``else``/
``endif`` blocks are evaluated (see :mod:`scanner.rules.conditions`); ``include``
follows a relative file. Rule lines (``header``, ``body``, ``rawbody``, ``full``,
``uri``, ``meta``, ``mimeheader``) and their ``score``, ``describe``, ``tflags`` and
``priority`` are collected, as is ReplaceTags data. Everything else SpamAssassin
knows is counted as skipped; a malformed line becomes a :class:`Problem` with file
and line, and reading goes on.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from scanner.rules.conditions import Conditions
from scanner.rules.model import RULE_TYPES, UNSUPPORTED_RULE_TYPES, ParsedConfig, Problem, RuleDef

RULE_NAME = re.compile(r"^[_A-Za-z][_A-Za-z0-9]{0,127}$")
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_INCLUDE_DEPTH = 10
_COMMENT = re.compile(r"(?<!\\)#.*$")
_RULE_KINDS = frozenset(RULE_TYPES)
_IGNORED = frozenset([
    "add_header", "remove_header", "clear_headers", "report", "clear_report_template",
    "report_contact", "unsafe_report", "clear_unsafe_report_template", "report_safe",
    "required_score", "required_hits", "lock_method", "bayes_ignore_header", "bayes_ignore_from",
    "bayes_ignore_to", "use_bayes", "bayes_auto_learn", "util_rb_2tld", "util_rb_3tld",
    "freemail_domains", "freemail_whitelist", "freemail_welcomelist", "def_whitelist_auth",
    "def_welcomelist_auth", "def_whitelist_from_dkim", "def_welcomelist_from_dkim",
    "def_whitelist_from_spf", "def_welcomelist_from_spf", "whitelist_from", "welcomelist_from",
    "blacklist_from", "blocklist_from", "whitelist_auth", "welcomelist_auth", "adsp_override",
    "uridnsbl_skip_domain", "enlist_uri_host", "enlist_addrlist", "url_shortener",
    "dns_local_ports_avoid", "dns_block_rule", "originating_ip_headers", "reuse", "require_version",
    "test", "tflags_default", "normalize_charset", "ok_locales", "ok_languages", "trusted_networks",
    "internal_networks", "msa_networks", "envelope_sender_header", "whitelist_from_rcvd",
    "welcomelist_from_rcvd", "def_whitelist_from_rcvd", "def_welcomelist_from_rcvd", "whitelist_to",
    "welcomelist_to", "more_spam_to", "all_spam_to", "unwhitelist_from", "unwelcomelist_from",
    "use_auto_whitelist", "use_txrep", "report_charset", "fold_headers", "rewrite_header",
    "subjprefix", "enable_compat", "body_part_scan_size", "rawbody_part_scan_size", "dns_available",
    "skip_rbl_checks", "use_razor2", "use_pyzor", "use_dcc", "bayes_path", "auto_whitelist_path",
    "whitelist_subject", "welcomelist_subject", "blacklist_subject", "blocklist_subject",
    "dkim_minimum_key_bits", "askdns_default", "urirhs_default", "util_rb_tld_default",
    "parse_dkim_uris", "dmarc_save_reports"
])


def read_files(paths: list[Path], cfg: ParsedConfig | None = None,
               conditions: Conditions | None = None) -> ParsedConfig:
    """Read ``paths`` in order into ``cfg`` (a new one by default)."""
    cfg = cfg or ParsedConfig()
    conds = conditions or Conditions(cfg.plugins)
    for path in paths:
        _read_file(path, cfg, conds, 0)
    return cfg


def rule_files(directory: Path) -> list[Path]:
    """A rule directory's ``*.pre`` then ``*.cf`` files, each in name order."""
    pre = sorted(p for p in directory.glob("*.pre") if p.is_file())
    cf = sorted(p for p in directory.glob("*.cf") if p.is_file())
    return pre + cf


def _read_file(path: Path, cfg: ParsedConfig, conds: Conditions, depth: int) -> None:
    name = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block start-up for ever
            cfg.problems.append(Problem(name, 0, "not a regular file (a directory, pipe "
                                                 "or device), skipped"))
            return
        if info.st_size > MAX_FILE_BYTES:
            cfg.problems.append(Problem(name, 0, f"file larger than {MAX_FILE_BYTES} bytes, "
                                                 "skipped"))
            return
        data = path.read_bytes()
    except OSError as exc:
        cfg.problems.append(Problem(name, 0, f"cannot read: {exc.strerror or exc}"))
        return
    cfg.files.append(name)
    read_text(data.decode("latin-1"), name, cfg, conds, depth)


def read_text(text: str, name: str, cfg: ParsedConfig, conds: Conditions | None = None,
              depth: int = 0) -> None:
    """Read the text of one file (used for files and for tests)."""
    conds = conds or Conditions(cfg.plugins)
    start_depth = conds.depth()
    for number, raw in enumerate(text.splitlines(), 1):
        cfg.lines += 1
        line = _COMMENT.sub("", raw).replace("\\#", "#").strip()
        if not line:
            continue
        word, rest = _split(line)
        word = word.lower()
        try:
            if conds.handle(word, rest):
                continue
        except ValueError as exc:
            cfg.problems.append(Problem(name, number, str(exc)))
            continue
        if not conds.active():
            continue
        try:
            _directive(word, rest, cfg, name, number, conds, depth)
        except ValueError as exc:
            cfg.problems.append(Problem(name, number, str(exc)))
    if conds.depth() != start_depth:
        cfg.problems.append(Problem(name, 0, "unterminated if/ifplugin block at end of file"))
        conds.reset(start_depth)


def _directive(word: str, rest: str, cfg: ParsedConfig, file: str, line: int,
               conds: Conditions, depth: int) -> None:
    if word in _RULE_KINDS or word in UNSUPPORTED_RULE_TYPES:
        name, text = _split(rest)
        if not RULE_NAME.match(name):
            raise ValueError(f"{word}: invalid rule name {name!r}")
        if word in UNSUPPORTED_RULE_TYPES:
            cfg.skipped[word] += 1
        cfg.rules[name] = RuleDef(name, word, text, file, line)
        return
    if word == "score":
        _score(rest, cfg)
    elif word == "describe":
        name, text = _split(rest)
        cfg.descriptions[name] = text
    elif word == "tflags":
        name, text = _split(rest)
        cfg.tflags[name] = " ".join(text.split())
    elif word == "priority":
        name, text = _split(rest)
        try:
            cfg.priorities[name] = int(text)
        except ValueError:
            raise ValueError(f"priority {name}: not an integer: {text.strip()!r}") from None
    elif word in ("replace_tag", "replace_pre", "replace_inter", "replace_post"):
        name, text = _split(rest)
        target = {"replace_tag": cfg.replace_tags, "replace_pre": cfg.replace_pre,
                  "replace_inter": cfg.replace_inter, "replace_post": cfg.replace_post}[word]
        target[name.strip()] = text.strip()
    elif word == "replace_rules":
        cfg.replace_rules.update(rest.split())
    elif word == "replace_start":
        cfg.replace_start = rest.strip()
    elif word == "replace_end":
        cfg.replace_end = rest.strip()
    elif word == "redirector_pattern":
        cfg.redirector_patterns.append((rest, file, line))
    elif word == "util_rb_tld":
        cfg.tlds.update(t.lower() for t in rest.split())
    elif word in ("loadplugin", "tryplugin"):
        plugin = rest.split()[0] if rest.split() else ""
        cfg.plugins.add(plugin)
    elif word == "include":
        _include(rest, cfg, file, line, conds, depth)
    elif word == "lang":
        cfg.skipped["lang"] += 1
    elif word in _IGNORED:
        cfg.skipped[word] += 1
    else:
        cfg.skipped[f"unknown:{word}"] += 1
        cfg.unknown.append(Problem(file, line, f"unknown directive '{word}', ignored"))


def _split(text: str) -> tuple[str, str]:
    """First word and the rest, split at any white space."""
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _score(rest: str, cfg: ParsedConfig) -> None:
    parts = rest.split()
    if len(parts) < 2:
        raise ValueError(f"score: missing value in {rest!r}")
    name, values = parts[0], parts[1:]
    if values and values[0].startswith("("):  # relative scores: (n) means "unchanged" here
        values = [v.strip("()") for v in values]
    try:
        nums = tuple(float(v) for v in values[:4])
    except ValueError:
        raise ValueError(f"score {name}: not a number in {' '.join(values)!r}") from None
    if len(nums) not in (1, 4):
        raise ValueError(f"score {name}: give 1 or 4 values, got {len(nums)}")
    cfg.scores[name] = nums


def _include(rest: str, cfg: ParsedConfig, file: str, line: int, conds: Conditions,
             depth: int) -> None:
    if depth >= MAX_INCLUDE_DEPTH:
        raise ValueError("include nested too deeply")
    target = Path(rest.strip())
    if not target.is_absolute():
        target = Path(file).parent / target
    _read_file(target, cfg, conds, depth + 1)
