"""The test zones NSD serves for the authentication tests.

Addresses are from the documentation ranges: 192.0.2.1 is the "good" client of most
domains, 192.0.2.66..70 are on the test DNSBL, 2001:db8::/32 is IPv6. Domains under
``.test`` are unknown to the public suffix list, so ``x.good.test`` reduces to
``good.test``. Names outside these zones get REFUSED from NSD: the server-failure path.
"""

from __future__ import annotations

from pathlib import Path

from scanner.auth.keygen import generate, generate_ed25519, record_text
from scanner.testing.dns_server import zone_text

GOOD_IP = "192.0.2.1"
BAD_IP = "192.0.2.99"


def txt(text: str) -> str:
    """A TXT rdata: the text in quoted strings of at most 255 characters."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255)) or '""'


def spf_zone() -> str:
    many = " ".join(["a:a.spf.test"] * 11)
    records = f"""
@            TXT {txt("v=spf1 ip4:192.0.2.0/25 -all")}
ip4          TXT {txt("v=spf1 ip4:192.0.2.1 -all")}
ip4net       TXT {txt("v=spf1 ip4:192.0.2.0/24 -all")}
ip6          TXT {txt("v=spf1 ip6:2001:db8::/32 -all")}
a            TXT {txt("v=spf1 a -all")}
a            A 192.0.2.10
a            AAAA 2001:db8::10
acidr        TXT {txt("v=spf1 a:host.spf.test/24 -all")}
a6cidr       TXT {txt("v=spf1 a:a.spf.test/32//64 -all")}
host         A 198.51.100.7
mx           TXT {txt("v=spf1 mx -all")}
mx           MX 10 mail1.spf.test.
mx           MX 20 mail2.spf.test.
mail1        A 192.0.2.20
mail2        A 192.0.2.21
mxcidr       TXT {txt("v=spf1 mx:mx.spf.test/30 -all")}
nullmx       TXT {txt("v=spf1 mx:nomx.spf.test -all")}
nomx         MX 0 .
include      TXT {txt("v=spf1 include:ip4.spf.test -all")}
incnone      TXT {txt("v=spf1 include:nospf.spf.test -all")}
incsoft      TXT {txt("v=spf1 include:soft.spf.test -all")}
nospf        A 192.0.2.1
exists       TXT {txt("v=spf1 exists:%{i}._ex.spf.test -all")}
192.0.2.30._ex A 127.0.0.2
ptr          TXT {txt("v=spf1 ptr -all")}
host40.ptr   A 192.0.2.40
liar.ptr     A 198.51.100.9
redirect     TXT {txt("v=spf1 redirect=ip4.spf.test")}
redirnone    TXT {txt("v=spf1 redirect=nospf.spf.test")}
redirall     TXT {txt("v=spf1 ?all redirect=ip4.spf.test")}
exp          TXT {txt("v=spf1 -all exp=explain.spf.test")}
explain      TXT {txt("%{i} may not send mail for %{d} (%{l})")}
soft         TXT {txt("v=spf1 ~all")}
neutral      TXT {txt("v=spf1 ?all")}
default      TXT {txt("v=spf1 ip4:203.0.113.1")}
plusall      TXT {txt("v=spf1 +all")}
two          TXT {txt("v=spf1 -all")}
two          TXT {txt("v=spf1 +all")}
other        TXT {txt("not an spf record")}
syntax       TXT {txt("v=spf1 ip4:192.0.2.1 foo:bar -all")}
badcidr      TXT {txt("v=spf1 ip4:192.0.2.1/33 -all")}
badmacro     TXT {txt("v=spf1 exists:%{x}.spf.test -all")}
loop         TXT {txt("v=spf1 include:loop.spf.test -all")}
voids        TXT {txt("v=spf1 a:nx1.spf.test a:nx2.spf.test a:nx3.spf.test -all")}
twovoids     TXT {txt("v=spf1 a:nx1.spf.test a:nx2.spf.test ip4:192.0.2.1 -all")}
many         TXT {txt(f"v=spf1 {many} -all")}
ten          TXT {txt("v=spf1 " + " ".join(["a:a.spf.test"] * 9) + " ip4:192.0.2.1 -all")}
macro        TXT {txt("v=spf1 exists:%{l1r+}.%{o}._m.spf.test -all")}
user.macro.spf.test._m A 127.0.0.2
macroip      TXT {txt("v=spf1 exists:%{ir}.%{v}._i.spf.test -all")}
1.2.0.192.in-addr._i A 127.0.0.2
macroh       TXT {txt("v=spf1 exists:%{h}._h.spf.test -all")}
helo.spf.test._h A 127.0.0.2
helo         TXT {txt("v=spf1 a -all")}
helo         A 192.0.2.1
temp         TXT {txt("v=spf1 include:outside.invalid -all")}
tempmx       TXT {txt("v=spf1 mx:outside.invalid -all")}
"""
    return zone_text("spf.test", records)


def reverse_zone() -> str:
    return zone_text("2.0.192.in-addr.arpa", """
40  PTR host40.ptr.spf.test.
41  PTR liar.ptr.spf.test.
1   PTR mail.good.test.
""")


def sender_zone(domain: str, dmarc: str | None, spf: str, keys: dict[str, str],
                extra: str = "") -> str:
    """A sender domain: SPF at the apex, DKIM keys, optional DMARC record."""
    lines = [f"@ TXT {txt(spf)}", "mail A 192.0.2.1"]
    for selector, record in keys.items():
        lines.append(f"{selector}._domainkey TXT {txt(record)}")
    if dmarc is not None:
        lines.append(f"_dmarc TXT {txt(dmarc)}")
    return zone_text(domain, "\n".join(lines) + "\n" + extra)


def dnsbl_zones() -> dict[str, str]:
    v6 = ".".join(reversed("20010db8000000000000000000000066"))
    return {
        "bl.test": zone_text("bl.test", f"""
66.2.0.192  A 127.0.0.2
67.2.0.192  A 127.0.0.4
68.2.0.192  A 127.0.0.2
68.2.0.192  A 127.0.0.10
69.2.0.192  A 127.255.255.254
70.2.0.192  A 203.0.113.5
{v6}        A 127.0.0.2
72.2.0.192  CNAME sbl-listed
73.2.0.192  CNAME 72.2.0.192
sbl-listed  A 127.0.0.2
74.2.0.192  CNAME nowhere
"""),
        "refused.test": zone_text("refused.test", "*  A 127.255.255.254\n"),
        # a dead list left with a wildcard: lists everything, RFC 5782's 127.0.0.1 too
        "dead.test": zone_text("dead.test", "*  A 127.0.0.2\n"),
        "ubl.test": zone_text("ubl.test", """
evil-domain.test    A 127.0.1.2
phish.test          A 127.0.1.4
"""),
        "mbl.test": zone_text("mbl.test", """
grey.test           A 127.0.0.6
quota.test          A 127.0.0.1
5.113.0.203         A 127.0.0.8
"""),
    }


def make_keys(base: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Key files in ``base`` and their ``v=DKIM1`` records, by the names the zones use:
    k1 (RSA 1024 bits), k2 (RSA 2048 bits), ed (Ed25519)."""
    files, records = {}, {}
    for name, bits in (("k1", 1024), ("k2", 2048), ("ed", 0)):
        pem, public = generate_ed25519() if name == "ed" else generate(bits)
        files[name] = base / f"{name}.key"
        files[name].write_bytes(pem)
        records[name] = record_text(public, key_type="ed25519" if name == "ed" else "rsa")
    return files, records


def all_zones(public_keys: dict[str, str]) -> dict[str, str]:
    """Every zone; ``public_keys`` maps a key name (k1, k2, ed) to its ``v=DKIM1`` record."""
    k1, k2, ed = public_keys["k1"], public_keys["k2"], public_keys["ed"]
    good_spf = "v=spf1 ip4:192.0.2.1 -all"
    zones = {
        "spf.test": spf_zone(),
        "2.0.192.in-addr.arpa": reverse_zone(),
        "good.test": sender_zone("good.test", "v=DMARC1; p=reject; rua=mailto:d@good.test",
                                 good_spf, {"s1": k1, "s2": k2, "ed": ed,
                                            "revoked": "v=DKIM1; k=rsa; p=",
                                            # key records that restrict their use
                                            "sha1only": k1.replace("k=rsa; ", "k=rsa; h=sha1; "),
                                            "lists": k1.replace(
                                                "k=rsa; ", "k=rsa; h=sha1:sha256; "
                                                "s=email:tlsrpt; "),
                                            "tlsrpt": k1.replace("k=rsa; ", "k=rsa; s=tlsrpt; "),
                                            "strict": k1.replace("k=rsa; ", "k=rsa; t=y:s; "),
                                            "testing": k1.replace("k=rsa; ", "k=rsa; t=y; ")},
                                 # subdomains whose own records are broken (RFC 7489 6.6.3)
                                 f"_dmarc.twice TXT {txt('v=DMARC1; p=none')}\n"
                                 f"_dmarc.twice TXT {txt('v=DMARC1; p=quarantine')}\n"
                                 f"_dmarc.typo TXT {txt('v=DMARC1; p=rejcet')}\n"
                                 f"_dmarc.upper TXT {txt('V = DMARC1; p=none')}\n"),
        "xn--bcher-kva.test": sender_zone("xn--bcher-kva.test", "v=DMARC1; p=reject",
                                          good_spf, {}),
        "quar.test": sender_zone("quar.test", "v=DMARC1; p=quarantine", good_spf,
                                 {"s1": k1}),
        "none.test": sender_zone("none.test", "v=DMARC1; p=none", good_spf, {"s1": k1}),
        "strict.test": sender_zone("strict.test", "v=DMARC1; p=reject; adkim=s; aspf=s",
                                   good_spf, {"s1": k1}),
        "sub.test": sender_zone("sub.test", "v=DMARC1; p=none; sp=reject", good_spf,
                                {"s1": k1}, "child TXT \"v=spf1 ip4:192.0.2.1 -all\"\n"),
        "pct.test": sender_zone("pct.test", "v=DMARC1; p=reject; pct=0", good_spf,
                                {"s1": k1}),
        "nodmarc.test": sender_zone("nodmarc.test", None, good_spf, {"s1": k1}),
        "soft.test": sender_zone("soft.test", "v=DMARC1; p=reject", "v=spf1 ~all", {}),
        "signer.test": sender_zone("signer.test", "v=DMARC1; p=reject", good_spf,
                                   {"s1": k1, "s2": k2, "ed": ed}),
        "arc.test": sender_zone("arc.test", None, good_spf, {"arc": k2},
                                # a list host sealing under a subdomain
                                f"arc._domainkey.lists TXT {txt(k2)}\n"),
        # an ARC sealer no test trusts
        "untrusted.test": sender_zone("untrusted.test", None, good_spf, {"arc": k2}),
    }
    zones.update(dnsbl_zones())
    return zones
