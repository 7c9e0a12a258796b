"""How far our Received parse agrees with SpamAssassin's: X-Spam-Relays-* per message.

Runs a small Perl program using Mail::SpamAssassin (Debian's ``spamassassin``) that
parses each message and prints ``$pms->get('X-Spam-Relays-Untrusted')`` and the
Trusted, Internal and External ones, with trusted_networks and internal_networks set to
the private and reserved ranges our rules view assumes when no Task hands it a chain
(:data:`scanner.dns.reverse.NOT_PUBLIC`) and SpamAssassin's default
originating_ip_headers (and, with ``--msa``, the same msa_networks on both sides); then
compares them with :class:`scanner.rules.views.MessageView` on the same bytes, per header
and per relay field.

Messages: every file under ``corpora/`` and a seeded sample of
``../shared/corpora/spamassassin-public.tar.xz``.

    .venv/bin/python scripts/relays_differential.py [--sample 1000] [--seed 1] [--show 10]
        [--msa 127.0.0.0/8 --msa 10.0.0.0/8]
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scanner.auth.received import ORIGINATING_IP_HEADERS  # noqa: E402
from scanner.dns.blocked import Network, parse_networks  # noqa: E402
from scanner.dns.reverse import NOT_PUBLIC  # noqa: E402
from scanner.ml.mailbox_reader import iter_messages  # noqa: E402
from scanner.rules.views import MessageView, headers_chain  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin-public.tar.xz"
HEADERS = ("X-Spam-Relays-Trusted", "X-Spam-Relays-Untrusted", "X-Spam-Relays-Internal",
           "X-Spam-Relays-External")
_RELAY = re.compile(r"\[ (.*?) \]")
PERL = r"""
use strict; use warnings;
use Mail::SpamAssassin;
my ($cf, $empty) = @ARGV;
my $sa = Mail::SpamAssassin->new({
  rules_filename => $empty, site_rules_filename => $empty,
  userprefs_filename => '/dev/null', dont_copy_prefs => 1, local_tests_only => 1,
  post_config_text => $cf });
$sa->init(1);
binmode STDIN; binmode STDOUT;
my @h = qw(X-Spam-Relays-Trusted X-Spam-Relays-Untrusted X-Spam-Relays-Internal
           X-Spam-Relays-External);
while (defined(my $len = <STDIN>)) {
  chomp $len; my $text = ''; read(STDIN, $text, $len);
  my $msg = $sa->parse($text, 1);
  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
  $pms->extract_message_metadata();
  print join("\t", (map { my $v = $pms->get($_); defined $v ? $v : '' } @h),
                  $pms->{num_relays_unparseable} || 0), "\n";
  $pms->finish(); $msg->finish();
}
"""


def messages(sample: int, seed: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of the repository's corpora and a sample of the public corpus."""
    out = [(str(p.relative_to(ROOT)), p.read_bytes())
           for p in sorted((ROOT / "corpora").rglob("*")) if p.is_file()
           and p.suffix in ("", ".eml", ".msg", ".txt") and b"\n" in p.read_bytes()[:4096]]
    if CORPUS.exists() and sample:
        public = [(f"public/{n.rsplit('/', 2)[-2]}/{n.rsplit('/', 1)[-1]}", raw)
                  for kind in ("ham", "spam")
                  for n, raw in iter_messages(f"{CORPUS}#spamassassin-public/{kind}")]
        public.sort()
        random.Random(seed).shuffle(public)
        out += public[:sample]
    return out


def spamassassin(batch: list[bytes], msa: tuple[Network, ...] = ()) -> list[list[str]]:
    """SpamAssassin's four pseudo-headers and its count of unparseable Received headers
    (``num_relays_unparseable``) per message."""
    nets = " ".join(str(n) for n in NOT_PUBLIC)
    cf = (f"trusted_networks {nets}\ninternal_networks {nets}\nclear_originating_ip_headers\n"
          f"originating_ip_headers {' '.join(ORIGINATING_IP_HEADERS)}\n")
    if msa:
        cf += f"msa_networks {' '.join(str(n) for n in msa)}\n"
    feed = b"".join(b"%d\n" % len(raw) + raw for raw in batch)
    with tempfile.TemporaryDirectory() as empty:
        proc = subprocess.run(["perl", "-e", PERL, cf, empty], input=feed,
                              capture_output=True, timeout=3600, check=True)
    lines = proc.stdout.decode("latin-1").split("\n")[:len(batch)]
    return [(line.split("\t") + [""] * 5)[:5] for line in lines]


def ours(raw: bytes, msa: tuple[Network, ...] = ()) -> list[str]:
    """Our four pseudo-headers and count of unparseable Received headers."""
    view = MessageView(raw)
    if msa:
        view = MessageView(raw, chain=headers_chain(view.headers, msa))
    return [*((view.header_text(h, b"") or b"").decode("latin-1") for h in HEADERS),
            str(view.relays_unparseable)]


def fields(value: str) -> list[dict[str, str]]:
    return [dict(kv.split("=", 1) for kv in relay.split(" ") if "=" in kv)
            for relay in _RELAY.findall(value)]


def compare(msgs: list[tuple[str, bytes]], show: int, msa: tuple[Network, ...] = ()
            ) -> dict[str, object]:
    theirs = spamassassin([raw for _, raw in msgs], msa)
    same_msg = 0
    by_header: Counter = Counter()
    by_field: Counter = Counter()
    relays_total = 0
    examples: list[str] = []
    msa_marks = [0, 0]
    unparseable: Counter = Counter()
    for (name, raw), sa_all in zip(msgs, theirs, strict=True):
        mine_all = ours(raw, msa)
        mine, sa = mine_all[:4], sa_all[:4]
        mark = (mine_all[4] != "0", sa_all[4] != "0")
        unparseable.update(["ours"] * mark[0] + ["SpamAssassin"] * mark[1]
                           + ["both"] * (mark == (True, True)))
        if mark[0] != mark[1] and len(examples) < show:
            examples.append(f"{name}: unparseable Received headers: ours {mine_all[4]} "
                            f"SA {sa_all[4]}")
        msa_marks[0] += mine[0].count(" msa=1 ]")
        msa_marks[1] += sa[0].count(" msa=1 ]")
        if mine == sa:
            same_msg += 1
            relays_total += len(fields(sa[1])) + len(fields(sa[0]))
            continue
        for header, a, b in zip(HEADERS, mine, sa, strict=True):
            if a != b:
                by_header[header] += 1
        ra, rb = fields(mine[0]) + fields(mine[1]), fields(sa[0]) + fields(sa[1])
        relays_total += len(rb)
        if len(ra) != len(rb):
            by_field["relay count"] += 1
        for x, y in zip(ra, rb, strict=False):
            for key in y:
                if x.get(key) != y[key]:
                    by_field[key] += 1
                    if len(examples) < show:
                        examples.append(f"{name}: {key}: ours {x.get(key)!r} SA {y[key]!r}")
    return {"messages": len(msgs), "identical": same_msg, "by_header": dict(by_header),
            "by_field": dict(by_field), "relays": relays_total, "examples": examples,
            "msa_marks": msa_marks, "unparseable": dict(unparseable)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=1000, help="public corpus messages")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", type=int, default=15, help="field differences to print")
    ap.add_argument("--msa", action="append", default=[],
                    help="an msa_networks entry for both sides (repeatable)")
    args = ap.parse_args()
    msgs = messages(args.sample, args.seed)
    result = compare(msgs, args.show, parse_networks(args.msa))
    pct = 100.0 * result["identical"] / max(1, result["messages"])  # type: ignore[operator]
    print(f"messages: {result['messages']}, all four pseudo-headers identical: "
          f"{result['identical']} ({pct:.1f}%)")
    print(f"differing messages by header: {result['by_header']}")
    print(f"differing relay fields (relays compared: {result['relays']}): "
          f"{result['by_field']}")
    print(f"messages with an unparseable Received header: {result['unparseable']}")
    if args.msa:
        print("relays marked msa=1 (ours, SpamAssassin's): {}, {}".format(
            *result["msa_marks"]))  # type: ignore[misc]
    for line in result["examples"]:  # type: ignore[attr-defined]
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
