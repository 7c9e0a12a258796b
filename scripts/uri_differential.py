"""Differential check of URI extraction against SpamAssassin over a directory of messages.

For every message (files read recursively) this compares, as sets of lower-case host
names and IP addresses:

- ``uribl``: the hosts the URIBL check reads (:func:`scanner.checks.uribl.link_hosts`:
  body and Subject; before the check's own filters: skip_domains, private IPs) against
  the hosts SpamAssassin's URIDNSBL plugin would look up: the ``hosts`` of every entry of
  ``get_uri_detail_list`` except ``mailto:`` ones (``uridnsbl_skip_mailto`` is on by
  default) and DKIM-only ones;
- ``rules``: the hosts of the URI list ``uri`` rules see (``MessageView.uris``) against
  the hosts of SpamAssassin's ``get_uri_list``, both read by the same host parser
  (:func:`uri_host`, SpamAssassin's ``uri_to_domain`` without the registry step), so a
  difference comes from extraction, not from parsing.

SpamAssassin runs through a small Perl helper (written to a temporary file) using its
API with local tests only and Debian's rules (``/usr/share/spamassassin``: TLD list and
``redirector_pattern`` rules); our rule set is loaded from the same directory so both
sides know the same TLDs and redirectors.

Usage::

    PYTHONPATH=. .venv/bin/python scripts/uri_differential.py [--show N] [--uris] DIR...

The script runs against whichever checkout is on ``PYTHONPATH`` (an older one too), so
counts before and after a change come from the same script.

Prints each differing message (up to ``--show``, default 20) with the hosts only
SpamAssassin found (``-``) and only we found (``+``), then counts per comparison and
the most frequent differing hosts (``--json FILE``: every differing message). Host
names SpamAssassin found only as "unlinked" bare names in text (``example.com``
without ``www.`` or a scheme: mostly file names such as ``makefile.pl`` in the
public corpus) are counted apart: the URIBL check leaves them out by design.
``--uris`` also lists the differing URIs of the rules comparison. Exit status 0 (this
is a report, not a test).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from sa_corpus import messages, perl_rows

from scanner.rules.loader import load_rules
from scanner.rules.uris import text_uri_regex
from scanner.rules.views import MessageView
from scanner.testing.tasks import task_from_bytes

try:
    from scanner.checks.uribl import link_hosts
except ImportError:  # a checkout from before 2026-12-06 (PYTHONPATH=OLD for "before" counts)
    from scanner.auth.urls import from_parts
    from scanner.rules.views import html_text

    def link_hosts(task):  # type: ignore[no-redef]
        return from_parts(task.parts, html_text)

SA_RULES = "/usr/share/spamassassin"
PERL = r"""
use strict; use warnings;
use Mail::SpamAssassin; use Mail::SpamAssassin::PerMsgStatus; use JSON::PP;
my $sa = Mail::SpamAssassin->new({local_tests_only => 1, dont_copy_prefs => 1,
  userprefs_filename => '/dev/null', home_dir_for_helpers => '/tmp'});
$sa->init(1);
my $json = JSON::PP->new->canonical;
binmode STDOUT;
$| = 1;
while (my $file = <STDIN>) {
  chomp $file;
  open(my $fh, '<:raw', $file) or do { print $json->encode({file => $file}), "\n"; next };
  my $text = do { local $/; <$fh> }; close $fh;
  my $msg = $sa->parse($text, 1);
  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
  my $d = $pms->get_uri_detail_list();
  my %uris;
  while (my ($uri, $info) = each %$d) {
    $uris{$uri} = {types => [sort keys %{$info->{types} || {}}],
                   hosts => [sort keys %{$info->{hosts} || {}}]};
  }
  print $json->encode({file => $file, uris => \%uris, list => [$pms->get_uri_list()]}), "\n";
  $pms->finish; $msg->finish;
}
"""
_ENCODED = re.compile(r"%(?:2[1-9a-f]|[3-6][0-9a-f]|7[0-9a-e])", re.I)
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def spamassassin(files: list[Path]) -> dict[str, dict]:
    """SpamAssassin's URI detail list and URI list per file (one Perl process)."""
    out = {row["file"]: row for row in perl_rows(PERL, files)}
    if len(out) != len(files):
        sys.stderr.write(f"SpamAssassin answered for {len(out)} of {len(files)} files\n")
    return out


def sa_uribl_hosts(row: dict) -> tuple[set[str], set[str]]:
    """(hosts URIDNSBL would look up: non-mailto, non-DKIM-only detail entries; those of
    them found only as "unlinked" bare names in text, which we leave out by design)."""
    hosts: set[str] = set()
    linked: set[str] = set()
    for uri, info in row.get("uris", {}).items():
        if uri.lower().startswith("mailto:") or set(info["types"]) <= {"domainkeys", "dkim"}:
            continue
        names = {h.lower() for h in info["hosts"]}
        hosts |= names
        if "unlinked" not in info["types"]:
            linked |= names
    return hosts, hosts - linked


def uri_host(uri: str) -> str | None:
    """The host of one URI as SpamAssassin's ``uri_to_domain`` reads it (no registry
    step: the host name, lower case, IDN as ASCII), or None."""
    uri = uri.lower()
    if re.match(r"^(?:javascript|cid|file):", uri):
        return None
    if uri.startswith("mailto:"):
        uri = uri[7:].split("?", 1)[0]
        if uri.count("@") != 1:
            return None
        uri = uri.split("@", 1)[1]
    else:
        uri = re.sub(r"^[a-z]+:/{0,2}", "", uri)
        uri = re.split(r"[/?#]", uri, maxsplit=1)[0]
        uri = re.sub(r"^[^/]*@", "", uri)
        uri = re.sub(r":\d*$", "", uri)
    if _ENCODED.search(uri) or "." not in uri or not uri:
        return None
    try:
        return uri.encode("idna").decode("ascii") if not uri.isascii() else uri
    except UnicodeError:
        return None


def sa_rules_hosts(row: dict) -> set[str]:
    return {h for h in map(uri_host, row.get("list", [])) if h}


def our_hosts(raw: bytes, finder, redirectors) -> tuple[set[str], set[str], list[str]]:
    """(URIBL hosts and IPs, hosts of the rules' URI list, the rules' URI list)."""
    with task_from_bytes(raw) as task:
        found = link_hosts(task)
        view = MessageView(raw, task.parts, uri_finder=finder, redirectors=redirectors)
        uris = [u.decode("utf-8", "replace") for u in view.uris]
    rules = {h for h in map(uri_host, uris) if h}
    return set(found.hosts) | set(found.ips), rules, uris


def _valid(host: str) -> bool:
    """A host SpamAssassin could have looked up at all: an IPv4 address or a dotted name."""
    return bool(_IPV4.match(host)) or "." in host


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--show", type=int, default=20, help="differing messages to print")
    ap.add_argument("--uris", action="store_true", help="print differing rule URIs too")
    ap.add_argument("--json", type=argparse.FileType("w"),
                    help="write every differing message as a JSON line to this file")
    args = ap.parse_args()
    files = list(messages(args.dirs))
    sa = spamassassin(files)
    rs = load_rules([SA_RULES], shipped=True, use_hyperscan=False)
    finder = text_uri_regex(rs.tlds)
    counts: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    shown = 0
    for path in files:
        row = sa.get(str(path))
        if row is None or "uris" not in row:
            counts["spamassassin failed"] += 1
            continue
        raw = path.read_bytes()
        uribl, rules, uris = our_hosts(raw, finder, rs.redirectors)
        lines: list[str] = []
        sa_uribl, unlinked = sa_uribl_hosts(row)
        unlinked -= uribl
        counts["uribl: hosts only SpamAssassin, unlinked bare names (by design)"] += len(unlinked)
        for name, ours, theirs in (("uribl", uribl, sa_uribl - unlinked),
                                   ("rules", rules, sa_rules_hosts(row))):
            theirs = {h for h in theirs if _valid(h)}
            only_sa, only_us = sorted(theirs - ours), sorted(ours - theirs)
            counts[f"{name}: hosts both"] += len(theirs & ours)
            counts[f"{name}: hosts only SpamAssassin"] += len(only_sa)
            counts[f"{name}: hosts only ours"] += len(only_us)
            counts[f"{name}: messages differing"] += bool(only_sa or only_us)
            missing.update(f"{name} {h}" for h in only_sa)
            extra.update(f"{name} {h}" for h in only_us)
            lines += [f"  {name} - {h}" for h in only_sa] + [f"  {name} + {h}" for h in only_us]
        if args.uris:
            theirs_uris = set(row["list"])
            lines += [f"  uri - {u}" for u in sorted(theirs_uris - set(uris))]
            lines += [f"  uri + {u}" for u in sorted(set(uris) - theirs_uris)]
        counts["messages"] += 1
        if args.json and lines:
            args.json.write(json.dumps({"file": str(path), "diff": lines}) + "\n")
        if lines and shown < args.show:
            shown += 1
            print(path)
            print("\n".join(lines))
    print("\n## counts")
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    print("\n## most frequent hosts only SpamAssassin found")
    for key, n in missing.most_common(15):
        print(f"{n:5d} {key}")
    print("\n## most frequent hosts only we found")
    for key, n in extra.most_common(15):
        print(f"{n:5d} {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
