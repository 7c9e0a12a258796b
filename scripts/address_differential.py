"""Differential check of the rules' ``:addr`` and ``:name`` header operators against
SpamAssassin 4 (``Mail::SpamAssassin::PerMsgStatus::get``, which reads addresses with
``Util::parse_header_addresses``).

For every message, ``From:addr``, ``From:name``, ``To:addr`` and ``To:name`` (all values,
as list context gives them) are taken from :class:`scanner.rules.views.MessageView` and
from SpamAssassin (one Perl process over all messages, scripts/sa_corpus.py) and
compared as octets. The installed SpamAssassin's own parser is the reference: Debian's
package does not pull in ``Email::Address::XS``, which SpamAssassin consults when it
is installed (and which reads some malformed values differently).

A PATH is a directory or file of messages (read recursively), or a ``.txt`` file of raw
header values, one a line (``\\n`` and ``\\t`` written as such stand for a fold), each
made into a message whose From and To are that value (corpora/addresses/values.txt).

Usage: python scripts/address_differential.py [--show N] PATH [PATH ...]
Prints the number of messages and of differing values, then the first N differences
(exit status 1 when any).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sa_corpus import messages, perl_rows

from scanner.rules.views import MessageView

SPECS = ("From:addr", "From:name", "To:addr", "To:name")
PERL = r"""
use strict; use warnings;
use Mail::SpamAssassin; use Mail::SpamAssassin::PerMsgStatus; use JSON::PP;
my $sa = Mail::SpamAssassin->new({local_tests_only => 1, dont_copy_prefs => 1,
  userprefs_filename => '/dev/null', home_dir_for_helpers => '/tmp'});
$sa->init(1);
my $json = JSON::PP->new->canonical->ascii;
binmode STDOUT;
$| = 1;
my @specs = ('From:addr', 'From:name', 'To:addr', 'To:name');
while (my $file = <STDIN>) {
  chomp $file;
  open(my $fh, '<:raw', $file) or do { print $json->encode({file => $file}), "\n"; next };
  my $text = do { local $/; <$fh> }; close $fh;
  my $msg = $sa->parse($text, 1);
  my $pms = Mail::SpamAssassin::PerMsgStatus->new($sa, $msg);
  my %row = (file => $file);
  for my $spec (@specs) { my @v = $pms->get($spec); $row{$spec} = \@v; }
  print $json->encode(\%row), "\n";
  $pms->finish; $msg->finish;
}
"""


def _octets(value: str) -> bytes:
    """A Perl string from JSON as octets: a byte string's characters are its octets; a
    character string (any character over U+00FF) is written as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def value_messages(path: Path, into: Path) -> Iterator[Path]:
    """One message per line of a ``.txt`` file of header values, written under ``into``."""
    for number, line in enumerate(path.read_bytes().split(b"\n")):
        if not line:
            continue
        value = line.replace(b"\\n", b"\n").replace(b"\\t", b"\t")
        target = into / f"{path.stem}-{number + 1:03d}.eml"
        target.write_bytes(b"From: " + value + b"\nTo: " + value +
                           b"\nSubject: t\nMessage-ID: <1@example.org>\n\nbody\n")
        yield target


def ours(raw: bytes) -> dict[str, list[bytes]]:
    view = MessageView(raw)
    return {spec: view.header(spec) for spec in SPECS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--show", type=int, default=40)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files: list[Path] = []
        for top in args.paths:
            if top.endswith(".txt"):
                files += value_messages(Path(top), Path(tmp))
            else:
                files += messages([top])
        sa = {row["file"]: row for row in perl_rows(PERL, files)}
        diffs: list[tuple[Path, str, list[bytes], list[bytes]]] = []
        for path in files:
            row = sa.get(str(path))
            if row is None or SPECS[0] not in row:
                print(f"no answer from SpamAssassin for {path}", file=sys.stderr)
                continue
            raw = path.read_bytes()
            mine = ours(raw)
            for spec in SPECS:
                theirs = [_octets(v) for v in row[spec]]
                if mine[spec] != theirs:
                    diffs.append((path, spec, mine[spec], theirs))
        print(f"messages: {len(files)}; differing values: {len(diffs)}")
        for path, spec, mine_v, theirs_v in diffs[: args.show]:
            head = path.read_bytes().split(b"\n", 1)[0] if path.parent == Path(tmp) else b""
            print(f"{path.name}\t{spec}\tours={mine_v!r}\tsa={theirs_v!r}\t{head[:70]!r}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
