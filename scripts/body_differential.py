"""Differential check of the text views rules match against SpamAssassin's.

For every message (files read recursively) this compares, per view:

- ``body``: SpamAssassin's ``get_decoded_stripped_body_text_array`` (Subject, then every
  text/plain and text/html part, HTML rendered, white space normalised) against
  ``MessageView.body``;
- ``rawbody``: ``get_decoded_body_text_array`` (text and message parts, transfer-decoded)
  against ``MessageView.rawbody``;
- ``full``: ``$msg->get_pristine`` (what ``full`` rules read) against ``MessageView.full``;
- ``header NAME``: the string a ``header`` rule on NAME matches (SpamAssassin's ``get``
  in list context, values joined as its Check plugin joins them) against
  ``MessageView.header_text``, for a fixed list of names and modifiers (:data:`HEADERS`).

Both sides are normalised the same way before comparing: the pieces of a view are
concatenated, CR LF becomes LF, and every run of white space becomes one space (so a
difference in how a view is cut into lines or pieces, or in white space alone, does not
count; ``--exact`` counts those too).

SpamAssassin runs through a small Perl helper (written to a temporary file) using its
API with local tests only, no user preferences and its default configuration
(``normalize_charset 1``); our views are built as the filter builds them (the decoders'
part tree of :func:`scanner.testing.tasks.task_from_bytes`).

Usage::

    PYTHONPATH=. .venv/bin/python scripts/body_differential.py [--show N] [--exact]
        [--view NAME] [--json FILE] DIR_OR_FILE...

The script runs against whichever checkout is on ``PYTHONPATH`` (an older one too), so
counts before and after a change come from the same script. It prints up to ``--show``
(default 10) differing messages per view with a short sample around the first
difference (``-`` SpamAssassin, ``+`` ours), then the count of differing messages per
view. Exit status 0 (this is a report, not a test).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from sa_corpus import messages, perl_rows

from scanner.rules.views import MessageView
from scanner.testing.tasks import task_from_bytes

HEADERS = ("Subject", "Subject:raw", "From", "From:raw", "From:addr", "From:name", "To",
           "To:addr", "To:name", "Cc:addr", "Reply-To:addr", "Reply-To:name", "ToCc",
           "Content-Type", "X-Mailer", "MESSAGEID", "ALL")
PERL = r"""
use strict; use warnings;
use Mail::SpamAssassin; use Mail::SpamAssassin::PerMsgStatus; use JSON::PP;
my $sa = Mail::SpamAssassin->new({local_tests_only => 1, dont_copy_prefs => 1,
  userprefs_filename => '/dev/null', home_dir_for_helpers => '/tmp'});
$sa->init(1);
my $json = JSON::PP->new->ascii->canonical;
my @headers = split /,/, shift @ARGV;
sub octets { my $s = shift; return undef unless defined $s;
  utf8::encode($s) if utf8::is_utf8($s); return $s }
binmode STDOUT;
$| = 1;
while (my $file = <STDIN>) {
  chomp $file;
  open(my $fh, '<:raw', $file) or do { print $json->encode({file => $file}), "\n"; next };
  my $text = do { local $/; <$fh> }; close $fh;
  my $msg = $sa->parse($text, 1);
  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
  my %h;
  for my $name (@headers) {
    my @v = $pms->get($name);
    $h{$name} = @v ? join($v[0] =~ /\n\z/ ? "" : "\n", map { octets($_) } @v) : undef;
  }
  print $json->encode({file => $file,
    body => [map { octets($_) } @{$pms->get_decoded_stripped_body_text_array()}],
    rawbody => [map { octets($_) } @{$pms->get_decoded_body_text_array()}],
    full => octets($msg->get_pristine()), headers => \%h}), "\n";
  $pms->finish; $msg->finish;
}
"""
_WS = re.compile(rb"\s+")


def octets(value: str | None) -> bytes | None:
    """A JSON string of the helper (octets as code points 0-255) back to bytes."""
    return None if value is None else value.encode("latin-1")


def ours(raw: bytes) -> dict[str, bytes | None]:
    """Our views of one message, pieces concatenated."""
    with task_from_bytes(raw) as task:
        view = MessageView(raw, task.parts)
        out: dict[str, bytes | None] = {
            "body": b"".join(view.body), "rawbody": b"".join(view.rawbody),
            "full": view.full}
        for name in HEADERS:
            out[f"header {name}"] = view.header_text(name, None)
    return out


def theirs(row: dict) -> dict[str, bytes | None]:
    """SpamAssassin's views of one message (a row of the helper), pieces concatenated."""
    out: dict[str, bytes | None] = {
        "body": b"".join(octets(s) or b"" for s in row["body"]),
        "rawbody": b"".join(octets(s) or b"" for s in row["rawbody"]),
        "full": octets(row["full"])}
    for name in HEADERS:
        out[f"header {name}"] = octets(row["headers"].get(name))
    return out


def normalise(text: bytes | None, exact: bool) -> bytes | None:
    """CR LF as LF and white space runs as one space (unless ``exact``)."""
    if text is None or exact:
        return text
    return _WS.sub(b" ", text.replace(b"\r\n", b"\n")).strip()


def sample(a: bytes | None, b: bytes | None, width: int = 70) -> tuple[str, str]:
    """The two texts around their first difference, printable."""
    if a is None or b is None:
        return repr(a)[:width * 2], repr(b)[:width * 2]
    i = 0
    n = min(len(a), len(b))
    while i < n and a[i] == b[i]:
        i += 1
    start = max(0, i - width // 2)
    return repr(a[start:start + width * 2])[1:], repr(b[start:start + width * 2])[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--show", type=int, default=10, help="differing messages per view")
    ap.add_argument("--exact", action="store_true", help="compare without normalising")
    ap.add_argument("--view", action="append", help="only these views (repeatable)")
    ap.add_argument("--json", type=argparse.FileType("w"),
                    help="write every difference as a JSON line to this file")
    args = ap.parse_args()
    files = list(messages(args.paths))
    counts: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    for row in perl_rows(PERL, files, [",".join(HEADERS)]):
        if "body" not in row:
            counts["spamassassin failed"] += 1
            continue
        raw = Path(row["file"]).read_bytes()
        try:
            mine = ours(raw)
        except Exception as exc:  # noqa: BLE001 - a report: count and go on
            counts["ours failed"] += 1
            print(f"{row['file']}: ours failed: {exc!r}")
            continue
        counts["messages"] += 1
        for view, sa_text in theirs(row).items():
            if args.view and view not in args.view:
                continue
            a, b = normalise(sa_text, args.exact), normalise(mine[view], args.exact)
            if a == b:
                continue
            counts[view] += 1
            left, right = sample(a, b)
            if args.json:
                args.json.write(json.dumps({"file": row["file"], "view": view,
                                            "sa": left, "ours": right}) + "\n")
            if shown[view] < args.show:
                shown[view] += 1
                print(f"{view}: {row['file']}\n  - {left}\n  + {right}")
    print("\n## messages differing per view")
    for key in sorted(counts):
        print(f"{key}: {counts[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
