"""Differential check of our DKIM and ARC verification against reference verifiers.

Test messages are made at run time with a fresh key: ARC chains sealed with dkimpy's
``arc_sign`` (valid, refolded, reordered, more than 50 sets, tampered, broken
structure) or, for ARC-Message-Signatures without ``c=`` (simple/simple), with
``tests/auth/arc_hand.py``, and DKIM signatures made by dkimpy, by our signer and by
Mail::DKIM, over bodies with bare CR, bare LF, LF-only lines, trailing white space and ``l=``, and
headers with trailing white space and obsolete folding; some are then changed the way
transport changes them (``.postfix``: Postfix makes a bare LF or CR CR LF a CRLF and
a bare CR inside a line a space; ``.lf-file``: a local file with LF lines).

Each message is verified by:

- ours: ``scanner.auth.arc.verify_arc`` and ``scanner.auth.dkim_verify.verify_all``,
  with keys served from memory;
- dkimpy alone (``dkim.arc_verify``, ``dkim.verify``);
- Mail::DKIM (Debian's libmail-dkim-perl, amavisd-new's library) through
  ``scripts/mail_dkim_verify.pl``;
- OpenDKIM (DKIM only) with ``--opendkim``: the filter itself, ``opendkim -t`` with
  the default configuration and the key given as ``TestDNSData`` (Debian's ``opendkim``),
  and ``opendkim-testmsg`` (``opendkim-tools``; root and ``nsd`` needed: it runs in
  private namespaces with an NSD on port 53, ``tests/auth/conftest.py``), which
  canonicalises as ``FixCRLF yes`` does (a bare CR or LF is hashed as CRLF); one
  process per message each.

DKIM verdicts are compared as pass / not pass (the verifiers name failures
differently). Every disagreement between ours and Mail::DKIM is printed; the ones that
are understood are listed in ``KNOWN`` with the reason, the rest make the exit status 1.

Usage: PYTHONPATH=. python scripts/auth_differential.py [--opendkim] [--keep DIR]
(PYTHONPATH pointing at another checkout verifies with that code instead.)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dkim
import dns.rdataclass
import dns.rdatatype
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key
from dns.rdtypes.ANY.TXT import TXT

from scanner.auth.arc import verify_arc
from scanner.auth.dkim_sign import SigningKey, load_key
from scanner.auth.dkim_sign import sign as our_sign
from scanner.auth.dkim_verify import verify_all
from scanner.auth.keygen import generate, record_text
from scanner.dns.client import Answer, Status

PERL = Path(__file__).with_name("mail_dkim_verify.pl")
DOMAIN = "good.test"
HEAD = (b"From: Alice <alice@good.test>\r\nTo: list@lists.test\r\nSubject: minutes\r\n"
        b"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m1@good.test>\r\n\r\n")
BODIES = {
    "crlf": b"line one\r\nline two\r\n",
    "bare-cr": b"line one\rstill line one\r\nline two\r\n",
    "bare-lf": b"line one\nline two\r\n",
    "cr-crlf": b"line one\r\r\nline two\r\n",
    "cr-at-end": b"line one\r\nline two\r",
    "no-final-eol": b"line one\r\nline two",
    "trailing-ws": b"line one \t\r\n\t line  two\t\r\n\r\n \r\n\r\n",
    "empty": b"",
    "only-eols": b"\r\n\r\n\r\n",
}
HEADER_VARIANTS = {
    "header-trailing-ws": (b"Subject: minutes\r\n", b"Subject: minutes \t\r\n"),
    "header-obs-fold": (b"Subject: minutes\r\n", b"Subject: minutes\r\n \r\n again\r\n"),
    "header-ws-before-colon": (b"Subject: minutes\r\n", b"Subject  : minutes\r\n"),
}
# Disagreements with Mail::DKIM that are understood (case name pattern, why); the
# filter gets mail from Postfix, so only CRLF lines that end in CRLF reach it.
KNOWN = [
    (re.compile(r"\.lf-file$"), "Mail::DKIM reads CRLF lines only (amavisd converts)"),
    (re.compile(r"^dkim-body-bare-lf\.[a-z-]+$"),
     "a bare LF ends a line for dkimpy and OpenDKIM, is data for Mail::DKIM; "
     "Postfix makes it CRLF (the .postfix cases agree)"),
    (re.compile(r"^dkim-body-(cr-at-end|no-final-eol)\."),
     "no final CRLF: RFC 6376 3.4.3/3.4.4 add one, Mail::DKIM does not; "
     "SMTP data always ends in CRLF"),
    (re.compile(r"^arc-51$"), "Mail::DKIM takes up to 1024 sets; RFC 8617 5.2: over 50 fail"),
]


def known(name: str) -> str:
    return next((why for pattern, why in KNOWN if pattern.search(name)), "")


class KeyRing:
    """One RSA key published under every name the cases use."""

    def __init__(self, base: Path) -> None:
        self.pem, public = generate(1024)
        self.record = record_text(public)
        self.file = base / "key.pem"
        self.file.write_bytes(self.pem)
        names = [f"s1._domainkey.{DOMAIN}"] + [f"arc._domainkey.relay{n}.test"
                                              for n in range(1, 52)]
        self.table = base / "keys.tsv"
        self.table.write_text("".join(f"{n}\t{self.record}\n" for n in names))

    async def lookup(self, name: str, rdtype: str) -> Answer:
        if rdtype != "TXT" or "._domainkey." not in name:
            return Answer(Status.NXDOMAIN)
        text = self.record.encode()
        return Answer(Status.OK, (TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                      [text[i:i + 255] for i in range(0, len(text), 255)]),))

    def dnsfunc(self, name: bytes, timeout: float = 5) -> bytes:
        return self.record.encode()


# ---------------------------------------------------------------- ARC cases

def seal(keys: KeyRing, message: bytes, relay: str, cv: str = "",
         sign: Callable[..., list[bytes]] = dkim.arc_sign) -> bytes:
    server = f"mx.{relay}".encode()
    stamp = (b"Authentication-Results: " + server + b"; spf=pass smtp.mailfrom=good.test"
             + (b"; arc=" + cv.encode() if cv else b"") + b"\r\n")
    return b"".join(sign(stamp + message, b"arc", relay.encode(), keys.pem, server)) + \
        stamp + message


def unlimited_arc_sign() -> Callable[..., list[bytes]]:
    """dkimpy's arc_sign without its limit of 50 instances."""
    method = dkim.ARC.sign
    code = method.__code__.replace(co_consts=tuple(
        1000 if c == 50 and type(c) is int else c for c in method.__code__.co_consts))
    import types
    cls = type("UnlimitedARC", (dkim.ARC,), {
        "sign": types.FunctionType(code, method.__globals__, "sign", method.__defaults__)})
    return lambda m, s, d, k, srv: cls(m).sign(s, d, k, srv)


def chain(keys: KeyRing, length: int, message: bytes = HEAD + BODIES["crlf"],
          sign: Callable[..., list[bytes]] = dkim.arc_sign) -> bytes:
    raw = seal(keys, message, "relay1.test", sign=sign)
    for n in range(2, length + 1):
        raw = seal(keys, raw, f"relay{n}.test", "pass", sign)
    return raw


def fields(raw: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return re.split(rb"\r\n(?![ \t])", head), body


def joined(header: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(header) + b"\r\n\r\n" + body


def arc_cases(keys: KeyRing) -> dict[str, bytes]:
    one, two, three = (chain(keys, n) for n in (1, 2, 3))
    h3, b3 = fields(three)  # sets 3, 2, 1 from the top: AS, AMS, AAR, A-R each
    h2, b2 = fields(two)
    listed = seal(keys, seal(keys, HEAD + BODIES["crlf"], "relay1.test").replace(
        b"Subject: minutes", b"Subject: [list] minutes"), "relay2.test", "pass")
    unlimited = unlimited_arc_sign()
    fifty = chain(keys, 50, sign=unlimited)
    return {
        "arc-none": HEAD + BODIES["crlf"],
        "arc-1": one, "arc-2": two, "arc-3": three,
        "arc-ams-folded": two.replace(b"ARC-Message-Signature: i=2;",
                                      b"ARC-Message-Signature:\r\n\ti=2;"),
        "arc-ams-tab": two.replace(b"ARC-Message-Signature: i=2;",
                                   b"ARC-Message-Signature:\ti=2;"),
        "arc-seal-folded": two.replace(b"ARC-Seal: i=2;", b"ARC-Seal:\r\n i=2;"),
        "arc-sets-reordered": joined(h2[4:7] + h2[0:3] + h2[3:4] + h2[7:], b2),
        "arc-aar-moved": joined([h2[2], h2[0], h2[1]] + h2[3:], b2),
        "arc-list-subject-tag": listed,
        "arc-50": fifty,
        "arc-51": seal(keys, fifty, "relay51.test", "pass", unlimited),
        "arc-body-changed": three.replace(b"line two", b"line 2"),
        "arc-aar1-changed": three.replace(b"; mx.relay1.test;", b"; mx.relay9.test;", 1),
        "arc-gap": joined(h3[:4] + h3[8:], b3),
        "arc-missing-aar": joined(h3[:6] + h3[7:], b3),
        "arc-duplicate-seal": joined(h3[8:9] + h3, b3),
        "arc-cv-fail-latest": seal(keys, one, "relay2.test", "fail"),
        "arc-cv-pass-first": one.replace(b"cv=none", b"cv=pass"),
        "arc-instance-0": one.replace(b"i=1;", b"i=0;"),
        **ams_without_c(keys),
    }


def ams_without_c(keys: KeyRing) -> dict[str, bytes]:
    """ARC-Message-Signatures without c= (simple/simple, RFC 8617 4.1.2, RFC 6376 3.5)
    over a header whose white space simple and relaxed see differently, sealed by
    ``tests/auth/arc_hand.py`` (dkimpy's arc_sign always writes c=relaxed/relaxed)."""
    from tests.auth.arc_hand import hand_sealed
    spaced = (HEAD + BODIES["trailing-ws"]).replace(
        b"Subject: minutes", b"Subject:  minutes \r\n\tof the meeting")
    relaxed_first = hand_sealed(spaced, keys.pem, "relay1.test", "relaxed/relaxed")
    return {
        "arc-ams-no-c-simple": hand_sealed(spaced, keys.pem, "relay1.test", None),
        "arc-ams-no-c-signed-relaxed": hand_sealed(spaced, keys.pem, "relay1.test", None,
                                                   canon="relaxed/relaxed"),
        "arc-ams-no-c-on-relaxed-set": hand_sealed(relaxed_first, keys.pem, "relay2.test",
                                                   None, cv="pass"),
    }


# ---------------------------------------------------------------- DKIM cases

def dkimpy_sign(keys: KeyRing, message: bytes, canon: bytes, length: bool = False) -> bytes:
    header, body = canon.split(b"/")
    return dkim.sign(message, b"s1", DOMAIN.encode(), keys.pem, canonicalize=(header, body),
                     include_headers=[b"from", b"to", b"subject", b"date"],
                     length=length) + message


def perl_sign(keys: KeyRing, message: bytes, canon: str, work: Path) -> bytes:
    path = work / "to-sign.eml"
    path.write_bytes(message)
    out = subprocess.run(["perl", str(PERL), "--sign", str(keys.file), DOMAIN, "s1", canon,
                          str(path)], capture_output=True, check=True).stdout
    return out.rstrip(b"\r\n").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + \
        b"\r\n" + message


def ours_sign(keys: KeyRing, message: bytes) -> bytes:
    name, value = our_sign(message, SigningKey(DOMAIN, "s1", load_key(str(keys.file))))
    return f"{name}: {value}\r\n".encode() + message


def long_l_sign(keys: KeyRing, message: bytes, extra: int) -> bytes:
    """A relaxed/relaxed signature whose l= claims ``extra`` octets more than the
    canonical body holds (the body hash is the whole body's)."""
    signer = dkim.DKIM(message, logger=None)
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    signer.hasher = dkim.HASH_ALGORITHMS[b"rsa-sha256"]
    import base64
    import hashlib
    body = canon.canonicalize_body(signer.body)
    fields_ = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
               (b"d", DOMAIN.encode()), (b"s", b"s1"), (b"l", str(len(body) + extra).encode()),
               (b"h", b"from : subject"),
               (b"bh", base64.b64encode(hashlib.sha256(body).digest())), (b"b", b"")]
    value = signer.gen_header(fields_, [b"from", b"subject"], canon, b"DKIM-Signature",
                              parse_pem_private_key(keys.pem))
    return b"DKIM-Signature: " + value + message


def postfix(raw: bytes) -> bytes:
    """What Postfix 3.7 hands the filter (tests/auth/test_postfix_dkim.py): a bare LF
    ends the line, CR CR LF is CRLF, a bare CR inside a line becomes a space."""
    return re.sub(rb"\r(?!\n)", b" ", re.sub(rb"\r*\n", b"\r\n", raw))


def dkim_cases(keys: KeyRing, work: Path) -> dict[str, bytes]:
    cases: dict[str, bytes] = {}
    messages = {f"body-{n}": HEAD + b for n, b in BODIES.items()}
    for name, (old, new) in HEADER_VARIANTS.items():
        messages[name] = (HEAD + BODIES["crlf"]).replace(old, new)
    for name, message in messages.items():
        for canon_name in ("relaxed/relaxed", "relaxed/simple", "simple/simple"):
            signed = perl_sign(keys, message, canon_name, work)
            tag = "".join(part[0] for part in canon_name.split("/"))
            cases[f"dkim-{name}.mail-dkim-{tag}"] = signed
            if postfix(message) != message:
                cases[f"dkim-{name}.mail-dkim-{tag}.postfix"] = postfix(signed)
        try:
            dkim.rfc822_parse(message)
        except dkim.MessageFormatError:
            continue  # dkimpy (and so our signer) cannot sign it
        for canon in (b"relaxed/relaxed", b"simple/simple", b"relaxed/simple"):
            signed = dkimpy_sign(keys, message, canon)
            tag = canon.decode().replace("relaxed", "r").replace("simple", "s").replace("/", "")
            cases[f"dkim-{name}.dkimpy-{tag}"] = signed
            if postfix(message) != message:
                cases[f"dkim-{name}.dkimpy-{tag}.postfix"] = postfix(signed)
        cases[f"dkim-{name}.ours"] = ours_sign(keys, message)
        lf = dkimpy_sign(keys, message, b"relaxed/relaxed").replace(b"\r\n", b"\n")
        cases[f"dkim-{name}.dkimpy-rr.lf-file"] = lf
    plain = HEAD + BODIES["crlf"]
    with_l = dkimpy_sign(keys, plain, b"relaxed/relaxed", length=True)
    cases["dkim-l.signed"] = with_l
    cases["dkim-l.footer-appended"] = with_l + b"-- \r\nlist footer\r\n"
    cases["dkim-l.body-shorter-than-l"] = long_l_sign(keys, plain, 10)
    cases["dkim-l.exact"] = long_l_sign(keys, plain, 0)
    cases["dkim-body-changed"] = dkimpy_sign(keys, plain, b"relaxed/relaxed").replace(
        b"line two", b"line 2")
    return cases


# ---------------------------------------------------------------- verifiers

async def _inline(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


def ours(keys: KeyRing, raw: bytes) -> tuple[str, str]:
    arc = asyncio.run(verify_arc(raw, keys.lookup, _inline)).result
    sigs = asyncio.run(verify_all(raw, keys.lookup, _inline))
    return arc, " ".join(s.result for s in sigs) or "-"


def dkimpy_alone(keys: KeyRing, raw: bytes) -> tuple[str, str]:
    try:
        cv = dkim.arc_verify(raw, dnsfunc=keys.dnsfunc)[0]
        arc = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    except Exception:
        arc = "fail"
    if b"dkim-signature:" not in raw.lower():
        return arc, "-"
    try:
        return arc, "pass" if dkim.verify(raw, dnsfunc=keys.dnsfunc) else "fail"
    except Exception:
        return arc, "fail"


def mail_dkim(keys: KeyRing, paths: list[Path]) -> dict[str, tuple[str, str]]:
    out = subprocess.run(["perl", str(PERL), str(keys.table), *map(str, paths)],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        path, arc, _detail, sigs = line.split("\t")
        found[Path(path).stem] = (arc, sigs)
    return found


def opendkim_testmsg(keys: KeyRing, cases: dict[str, bytes], work: Path) -> dict[str, str]:
    from scanner.testing.dns_server import DnsServer
    from tests.auth.conftest import opendkim_missing, opendkim_verifies
    from tests.auth.zones import sender_zone
    if missing := opendkim_missing():
        sys.exit(f"--opendkim: {missing}")
    server = DnsServer({DOMAIN: sender_zone(DOMAIN, None, "v=spf1 -all", {"s1": keys.record})},
                       base=work / "nsd")
    found = {}
    for name, raw in cases.items():
        if name.startswith("dkim-"):
            done = opendkim_verifies(server, raw, Path(tempfile.mkdtemp(dir=work)))
            found[name] = "pass" if done.returncode == 0 else "fail"
    return found


def opendkim_filter(keys: KeyRing, paths: list[Path], work: Path) -> dict[str, str]:
    """``opendkim -t FILE`` (verify mode, default settings, key from TestDNSData)."""
    if shutil.which("opendkim") is None:
        sys.exit("--opendkim: opendkim is missing (apt-get install -y opendkim)")
    data = work / "testdns.txt"
    data.write_text(f"s1._domainkey.{DOMAIN} {keys.record.replace(' ', '')}\n")
    conf = work / "opendkim.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestDNSData file:{data}\n")
    found = {}
    for path in paths:
        if path.stem.startswith("dkim-"):
            out = subprocess.run(["opendkim", "-x", str(conf), "-vvv", "-t", str(path)],
                                 capture_output=True, text=True).stdout
            found[path.stem] = "pass" if re.search(r"\bdkim=pass\b", out) else "fail"
    return found


def passed(dkim_results: str) -> str:
    return "pass" if dkim_results.split(" ")[0] == "pass" else "fail"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opendkim", action="store_true", help="also run opendkim-testmsg")
    parser.add_argument("--keep", type=Path, help="write the messages to this directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auth-diff-"))
    keys = KeyRing(work)
    cases = {**arc_cases(keys), **dkim_cases(keys, work)}
    where = args.keep or work / "messages"
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, raw in cases.items():
        (where / f"{name}.eml").write_bytes(raw)
        paths.append(where / f"{name}.eml")
    reference = mail_dkim(keys, paths)
    odkim = {}
    if args.opendkim:
        odkim = {"opendkim": opendkim_filter(keys, paths, work),
                 "testmsg": opendkim_testmsg(keys, cases, work)}
    return report(keys, cases, reference, odkim)


def report(keys: KeyRing, cases: dict[str, bytes], reference: dict[str, tuple[str, str]],
           odkim: dict[str, dict[str, str]]) -> int:
    agree: Counter[str] = Counter()
    unexplained = 0
    print(f"{'case':46} {'ours':9} {'dkimpy':9} {'Mail::DKIM':10} {'opendkim':9} testmsg")
    for name, raw in cases.items():
        kind = "arc" if name.startswith("arc-") else "dkim"
        pick = 0 if kind == "arc" else 1
        mine = ours(keys, raw)[pick]
        alone, ref = dkimpy_alone(keys, raw)[pick], reference[name][pick]
        if kind == "dkim":
            mine, alone, ref = passed(mine), passed(alone), passed(ref)
        others = {"Mail::DKIM": ref, "dkimpy": alone,
                  **{k: v[name] for k, v in odkim.items() if name in v}}
        for who, verdict in others.items():
            agree[f"{kind} {who} {'agree' if verdict == mine else 'differ'}"] += 1
        why = known(name)
        mark = "" if mine == ref else (f"  known: {why}" if why else "  DIFFERS")
        unexplained += mine != ref and not why
        row = [odkim.get(k, {}).get(name, "-") for k in ("opendkim", "testmsg")]
        print(f"{name:46} {mine:9} {alone:9} {ref:10} {row[0]:9} {row[1]:7}{mark}")
    print()
    for kind in ("arc", "dkim"):
        for who in ("Mail::DKIM", "dkimpy", "opendkim", "testmsg"):
            a, d = agree[f"{kind} {who} agree"], agree[f"{kind} {who} differ"]
            if a or d:
                print(f"{kind.upper()}: ours and {who}: agree {a}, differ {d}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
