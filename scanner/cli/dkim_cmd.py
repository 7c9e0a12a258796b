"""``scanner dkim genkey DOMAIN SELECTOR``: make a signing key, print its DNS record.

The private key goes to ``--key-file`` (default ``DOMAIN.SELECTOR.key`` in the current
directory, mode 600, never overwritten without ``--force``); the TXT record to publish
is printed on standard output in zone-file syntax, and the configuration lines that use
the key on standard error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scanner.auth.keygen import (
    generate,
    generate_ed25519,
    record_text,
    write_private,
    zone_line,
)
from scanner.auth.psl import normalise


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dkim", help="DKIM signing keys")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    g = dsub.add_parser("genkey", help="generate a key pair and print the DNS TXT record")
    g.add_argument("domain", help="signing domain (d=), e.g. example.com")
    g.add_argument("selector", help="selector (s=), e.g. 2025a")
    g.add_argument("--type", choices=("rsa", "ed25519"), default="rsa", dest="key_type",
                   help="key type (default rsa; RFC 8463 asks Ed25519 signers to sign "
                   "with an RSA key as well)")
    g.add_argument("--bits", type=int, default=2048, choices=(1024, 2048, 3072, 4096),
                   help="RSA key size (default 2048)")
    g.add_argument("--key-file", help="where to write the private key "
                   "(default: DOMAIN.SELECTOR.key here)")
    g.add_argument("--force", action="store_true", help="overwrite an existing key file")
    g.add_argument("--testing", action="store_true",
                   help="publish with t=y (receivers treat failures as unsigned)")
    g.set_defaults(func=_genkey)


def _genkey(args: argparse.Namespace) -> int:
    domain = normalise(args.domain)
    selector = args.selector.strip()
    if not domain or "." not in domain:
        print(f"scanner dkim genkey: {args.domain!r} is not a domain name", file=sys.stderr)
        return 2
    if not selector or not selector.replace("-", "").replace(".", "").isalnum():
        print(f"scanner dkim genkey: {args.selector!r} is not a selector "
              "(letters, digits, - and .)", file=sys.stderr)
        return 2
    path = Path(args.key_file or f"{domain}.{selector}.key")
    if path.is_dir():  # --force could not replace a directory either
        print(f"scanner dkim genkey: {path} is a directory; give the key file's name, e.g. "
              f"--key-file {path / f'{domain}.{selector}.key'}", file=sys.stderr)
        return 2
    pem, public = generate_ed25519() if args.key_type == "ed25519" else generate(args.bits)
    try:
        write_private(path, pem, force=args.force)
    except FileExistsError:
        print(f"scanner dkim genkey: {path} exists; use --force to replace it",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"scanner dkim genkey: cannot write {path}: {exc}", file=sys.stderr)
        return 1
    print(zone_line(domain, selector, record_text(public, args.testing, args.key_type)))
    print(f"; private key written to {path.resolve()} (mode 600). Configuration:\n"
          f"; [[checks.settings.dkim_sign.keys]]\n"
          f'; domain = "{domain}"\n; selector = "{selector}"\n'
          f'; key_file = "{path.resolve()}"', file=sys.stderr)
    return 0
