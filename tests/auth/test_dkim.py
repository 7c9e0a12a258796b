"""DKIM: our signer, verification of every signature with keys from NSD, ARC, genkey,
and a cross-check of our signatures with OpenDKIM's ``opendkim-testmsg``."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from scanner.auth.arc import verify_arc
from scanner.auth.dkim_sign import SigningKey, choose_keys, header_list, load_key, sign
from scanner.auth.dkim_verify import DkimResult, verify_all
from scanner.cli import main
from scanner.dns import Deadline, DnsSettings, get_client
from scanner.testing.dns_server import DnsServer, find_nsd
from tests.auth.conftest import Keys, opendkim_missing, opendkim_verifies, run, run_inline

MESSAGE = (b"From: Alice <alice@good.test>\r\nTo: bob@example.test\r\n"
           b"Subject: quarterly report\r\nDate: Mon, 02 Jun 2025 10:00:00 +0000\r\n"
           b"Message-ID: <r1@good.test>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
           b"Numbers are up.\r\nSee you.\r\n")


def signed(keys: Keys, message: bytes = MESSAGE, selector: str = "s1", key: str = "k1",
           domain: str = "good.test") -> bytes:
    k = SigningKey(domain, selector, load_key(str(keys.files[key])))
    name, value = sign(message, k)
    return f"{name}: {value}\r\n".encode() + message


def verify(settings: DnsSettings, raw: bytes) -> list[DkimResult]:
    client = get_client(settings)

    async def go() -> list[DkimResult]:
        deadline = Deadline(settings.budget)
        return await verify_all(raw, lambda n, t: client.query(n, t, deadline), run_inline)

    return run(go())


def test_our_signature_verifies(dkim_keys: Keys, dns_settings: DnsSettings) -> None:
    raw = signed(dkim_keys)
    assert raw.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    [result] = verify(dns_settings, raw)
    assert (result.result, result.domain, result.selector) == ("pass", "good.test", "s1")
    assert len(result.header_b) == 8


def test_every_signature_is_verified(dkim_keys: Keys, dns_settings: DnsSettings) -> None:
    once = signed(dkim_keys)
    twice = signed(dkim_keys, once, selector="s2", key="k2")
    results = verify(dns_settings, twice)
    assert [(r.selector, r.result) for r in results] == [("s2", "pass"), ("s1", "pass")]


def test_changed_body_fails(dkim_keys: Keys, dns_settings: DnsSettings) -> None:
    raw = signed(dkim_keys).replace(b"Numbers are up.", b"Numbers are down.")
    [result] = verify(dns_settings, raw)
    assert result.result == "fail" and "body hash" in result.reason


def test_oversigned_headers_cannot_be_added(dkim_keys: Keys, dns_settings: DnsSettings
                                            ) -> None:
    raw = signed(dkim_keys)
    for extra in (b"From: Mallory <m@evil.test>\r\n", b"Reply-To: m@evil.test\r\n",
                  b"Subject: urgent\r\n"):
        end = raw.index(b"\r\n\r\n") + 2
        tampered = raw[:end] + extra + raw[end:]
        [result] = verify(dns_settings, tampered)
        assert result.result == "fail", extra
    relaxed = raw.replace(b"Subject: quarterly report", b"subject:   quarterly  report")
    assert verify(dns_settings, relaxed)[0].result == "pass"  # relaxed canonicalisation


def test_key_problems_are_permerror(dkim_keys: Keys, dns_settings: DnsSettings) -> None:
    revoked = signed(dkim_keys, selector="revoked")
    unknown = signed(dkim_keys, selector="nosuch")
    wrong = signed(dkim_keys, selector="s2", key="k1")  # s2 publishes k2
    assert verify(dns_settings, revoked)[0].result == "permerror"
    assert verify(dns_settings, unknown)[0].reason == "no key"
    assert verify(dns_settings, wrong)[0].result == "fail"
    garbage = b"DKIM-Signature: v=1; a=rsa-sha256; this is not a tag list\r\n" + MESSAGE
    assert verify(dns_settings, garbage)[0].result == "permerror"
    assert verify(dns_settings, MESSAGE) == []


@pytest.mark.parametrize("old,new,reason", [
    (b"t=", b"x=1000000000; t=", "x= value is past"),  # expired in 2001
    (b"t=", b"t=9999999999; z=", "t= value is in the future"),
    (b"a=rsa-sha256", b"a=rsa-sha512", "unknown signature algorithm"),
    (b" b=", b" b=!!", "b= value is not valid base64"),
    (b"d=good.test", b"d=good.test; l=x", "l= value is not a decimal integer"),
])
def test_signature_tag_problems_are_permerror(dkim_keys: Keys, dns_settings: DnsSettings,
                                              old: bytes, new: bytes, reason: str) -> None:
    """RFC 6376 6.1.1: a signature with an unusable tag is PERMFAIL (permerror), and a
    message whose other signature verifies still has that pass."""
    broken = signed(dkim_keys).replace(old, new, 1)
    both = signed(dkim_keys, broken, selector="s2", key="k2")
    results = verify(dns_settings, both)
    assert [r.result for r in results] == ["pass", "permerror"]
    assert results[1].reason.startswith(reason), results[1].reason


def test_body_length_limit_covers_only_the_signed_part(dkim_keys: Keys,
                                                       dns_settings: DnsSettings) -> None:
    """l= (RFC 6376 3.5): text appended after the signed length still verifies, as the
    RFC allows; a change inside it does not."""
    pem = load_key(str(dkim_keys.files["k1"])).data
    raw = dkim.sign(MESSAGE, b"s1", b"good.test", pem, canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"from"], length=True) + MESSAGE
    assert verify(dns_settings, raw + b"appended\r\n")[0].result == "pass"
    assert verify(dns_settings, raw.replace(b"Numbers are up.", b"Numbers are down.")
                  )[0].result == "fail"


def _signed_without_from(pem: bytes, message: bytes) -> bytes:
    """A valid rsa-sha256 signature of ``message`` whose h= lists Subject alone (dkimpy
    refuses to make one), relaxed/relaxed, computed here step by step."""
    key = serialization.load_pem_private_key(pem, password=None)
    head, _, body = message.partition(b"\r\n\r\n")
    body_hash = base64.b64encode(hashlib.sha256(body.rstrip(b"\r\n") + b"\r\n").digest())
    value = (b"v=1; a=rsa-sha256; c=relaxed/relaxed; d=good.test; s=s1; h=subject; bh="
             + body_hash + b"; b=")
    subject = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"subject:")][0]
    name, _, text = subject.partition(b":")
    data = b"subject:" + b" ".join(text.split()) + b"\r\ndkim-signature:" + value
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return b"DKIM-Signature: " + value + base64.b64encode(signature) + b"\r\n" + message


def test_a_signature_that_leaves_from_out_is_permerror(dkim_keys: Keys,
                                                       dns_settings: DnsSettings) -> None:
    """RFC 6376 6.1.1: a signature whose h= does not include From MUST be ignored
    (PERMFAIL); dkimpy verifies it as a pass."""
    raw = _signed_without_from(load_key(str(dkim_keys.files["k1"])).data, MESSAGE)
    assert dkim.verify(raw, dnsfunc=lambda n, timeout=5: dkim_keys.records["k1"].encode())
    [result] = verify(dns_settings, raw)
    assert (result.result, result.reason) == ("permerror", "From is not signed (h=)")


def test_rsa_sha1_signatures_are_not_accepted(dkim_keys: Keys, dns_settings: DnsSettings
                                              ) -> None:
    """RFC 8301 3.1: rsa-sha1 MUST NOT be used for verifying (SHA-1 collisions)."""
    pem = load_key(str(dkim_keys.files["k1"])).data
    raw = dkim.sign(MESSAGE, b"s1", b"good.test", pem, signature_algorithm=b"rsa-sha1",
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from"]) + MESSAGE
    [result] = verify(dns_settings, raw)
    assert (result.result, result.reason) == ("permerror", "rsa-sha1 is not accepted (RFC 8301)")


def test_key_record_h_lists_the_hashes_it_allows(dkim_keys: Keys,
                                                 dns_settings: DnsSettings) -> None:
    """RFC 6376 6.1.2: a key whose h= lacks the signature's hash MUST NOT verify it."""
    sha1only = verify(dns_settings, signed(dkim_keys, selector="sha1only"))[0]
    assert (sha1only.result, sha1only.reason) == (
        "permerror", "the key does not allow sha256 (h=sha1)")


def test_key_record_s_is_a_list_of_services(dkim_keys: Keys,
                                            dns_settings: DnsSettings) -> None:
    """RFC 6376 3.6.1: s= (and h=) are colon-separated lists; a key for email and TLSRPT
    verifies mail, a key for TLSRPT alone does not."""
    assert verify(dns_settings, signed(dkim_keys, selector="lists"))[0].result == "pass"
    tlsrpt = verify(dns_settings, signed(dkim_keys, selector="tlsrpt"))[0]
    assert tlsrpt.result == "permerror"


def test_key_record_t_s_forbids_subdomain_identities(dkim_keys: Keys,
                                                     dns_settings: DnsSettings) -> None:
    """RFC 6376 3.6.1: with t=s the i= domain must be d= itself, not a subdomain."""
    pem = load_key(str(dkim_keys.files["k1"])).data
    for identity, expected in ((b"alice@good.test", "pass"),
                               (b"alice@mail.good.test", "permerror")):
        raw = dkim.sign(MESSAGE, b"strict", b"good.test", pem, identity=identity,
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=[b"from"]) + MESSAGE
        assert verify(dns_settings, raw)[0].result == expected, identity


def test_ed25519_signatures_sign_and_verify(dkim_keys: Keys, dns_settings: DnsSettings
                                            ) -> None:
    """RFC 8463: an Ed25519 key signs with a=ed25519-sha256 and verifies, alone and
    beside an RSA signature (the dual signing RFC 8463 asks for)."""
    raw = signed(dkim_keys, selector="ed", key="ed")
    assert raw.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;")
    [result] = verify(dns_settings, raw)
    assert (result.result, result.selector) == ("pass", "ed")
    changed = raw.replace(b"Numbers are up.", b"Numbers are down.")
    assert verify(dns_settings, changed)[0].result == "fail"
    dual = signed(dkim_keys, signed(dkim_keys), selector="ed", key="ed")
    assert [(r.selector, r.result) for r in verify(dns_settings, dual)] == [
        ("ed", "pass"), ("s1", "pass")]
    # an Ed25519 signature checked against the RSA key of s1: not a pass
    swapped = raw.replace(b"s=ed;", b"s=s1;")
    assert verify(dns_settings, swapped)[0].result in ("fail", "permerror")


def test_key_files_of_both_types_and_their_errors(dkim_keys: Keys, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from scanner.auth.dkim_sign import ED25519, RSA

    assert load_key(str(dkim_keys.files["k1"])).algorithm == RSA
    ed = load_key(str(dkim_keys.files["ed"]))
    assert ed.algorithm == ED25519
    seed_file = tmp_path / "dknewkey.key"  # dkimpy's dknewkey: the seed in base64
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    seed_file.write_text(__import__("base64").b64encode(seed).decode() + "\n")
    assert load_key(str(seed_file)).algorithm == ED25519
    pkcs8 = tmp_path / "rsa8.key"  # an RSA key as PKCS#8 ("BEGIN PRIVATE KEY")
    pkcs8.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024)
                      .private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    assert load_key(str(pkcs8)).algorithm == RSA
    ec_file = tmp_path / "ec.key"
    ec_file.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    locked = tmp_path / "locked.key"
    locked.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    for bad, words in ((ec_file, "RSA or Ed25519"), (locked, "not a usable private key"),
                       (junk, "neither a PEM private key")):
        with pytest.raises(ValueError, match=words) as err:
            load_key(str(bad))
        assert str(bad) in str(err.value)


def test_key_lookup_timeout_is_temperror(dkim_keys: Keys, black_hole) -> None:
    settings = DnsSettings(resolvers=(black_hole.resolver,), timeout=0.2, budget=0.5,
                           cache_size=0)
    [result] = verify(settings, signed(dkim_keys))
    assert result.result == "temperror"


def test_header_list_oversigns() -> None:
    names = ["Received", "From", "To", "To", "Subject", "X-Mailer"]
    h = header_list(names, ["from", "to", "subject", "reply-to", "x-mailer"],
                    ["from", "to", "reply-to"])
    assert h == ["from", "from", "to", "to", "to", "subject", "reply-to", "x-mailer"]


def test_key_choice(dkim_keys: Keys) -> None:
    pem = load_key(str(dkim_keys.files["k1"]))
    keys = [SigningKey("example.com", "a", pem), SigningKey("sub.example.com", "b", pem),
            SigningKey("exact.test", "c", pem, subdomains=False)]
    assert [k.selector for k in choose_keys(keys, ["x.sub.example.com"])] == ["b"]
    assert [k.selector for k in choose_keys(keys, ["mail.example.com"])] == ["a"]
    assert choose_keys(keys, ["mail.exact.test"]) == []
    assert [k.selector for k in choose_keys(keys, ["other.test", "exact.test"])] == ["c"]


def arc_sealed(keys: Keys) -> bytes:
    base = (b"Authentication-Results: relay.arc.test; spf=pass smtp.mailfrom=arc.test\r\n"
            + MESSAGE)
    headers = dkim.arc_sign(base, b"arc", b"arc.test", keys.files["k2"].read_bytes(),
                            b"relay.arc.test")
    return b"".join(headers) + base


def test_arc_chain(dkim_keys: Keys, dns_settings: DnsSettings, black_hole) -> None:
    client = get_client(dns_settings)

    def check(raw: bytes, settings: DnsSettings = dns_settings) -> str:
        c = get_client(settings)
        deadline = Deadline(settings.budget)
        return run(verify_arc(raw, lambda n, t: c.query(n, t, deadline), run_inline)).result

    sealed = arc_sealed(dkim_keys)
    assert check(sealed) == "pass"
    assert check(sealed.replace(b"Numbers are up.", b"Numbers are down.")) == "fail"
    assert check(MESSAGE) == "none"
    slow = DnsSettings(resolvers=(black_hole.resolver,), timeout=0.2, budget=0.5,
                       cache_size=0)
    assert check(sealed, slow) == "temperror"
    assert client is not None


def test_genkey_writes_key_and_prints_record(tmp_path: Path, capsys: pytest.CaptureFixture
                                             ) -> None:
    path = tmp_path / "example.key"
    assert main(["dkim", "genkey", "Example.COM", "sel-1", "--key-file", str(path),
                 "--bits", "1024"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sel-1._domainkey.example.com. 3600 IN TXT (")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = "".join(re.findall(r'"([^"]*)"', out))
    assert record.startswith("v=DKIM1; k=rsa; p=")
    key = SigningKey("example.com", "sel-1", load_key(str(path)))
    name, value = sign(MESSAGE, key)
    raw = f"{name}: {value}\r\n".encode() + MESSAGE
    assert dkim.verify(raw, dnsfunc=lambda n, timeout=5: record.encode())
    assert main(["dkim", "genkey", "example.com", "sel-1", "--key-file", str(path)]) == 1
    assert main(["dkim", "genkey", "nodot", "s"]) == 2
    capsys.readouterr()
    assert main(["dkim", "genkey", "example.com", "sel-1", "--key-file", str(tmp_path),
                 "--force"]) == 2  # a directory: --force would not help
    err = capsys.readouterr().err
    assert f"{tmp_path} is a directory" in err and "example.com.sel-1.key" in err
    ed_path = tmp_path / "ed.key"
    assert main(["dkim", "genkey", "example.com", "ed-1", "--type", "ed25519",
                 "--key-file", str(ed_path)]) == 0
    record = "".join(re.findall(r'"([^"]*)"', capsys.readouterr().out))
    assert record.startswith("v=DKIM1; k=ed25519; p=") and len(record) == 66
    name, value = sign(MESSAGE, SigningKey("example.com", "ed-1", load_key(str(ed_path))))
    assert "a=ed25519-sha256" in value
    raw = f"{name}: {value}\r\n".encode() + MESSAGE
    assert dkim.verify(raw, dnsfunc=lambda n, timeout=5: record.encode())


def test_opendkim_verifies_our_signature(dkim_keys: Keys, dns_server: DnsServer,
                                         tmp_path: Path) -> None:
    if missing := opendkim_missing():
        pytest.skip(missing)
    good = opendkim_verifies(dns_server, signed(dkim_keys).replace(b"\r\n", b"\n"),
                              tmp_path)
    if "Operation not permitted" in good.stderr:
        pytest.skip(f"namespaces not available here: {good.stderr.strip()}")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = opendkim_verifies(
        dns_server, signed(dkim_keys).replace(b"\r\n", b"\n").replace(b"up.", b"down."),
        tmp_path / "bad")
    assert bad.returncode != 0, "opendkim-testmsg accepted a changed body"
    ed = signed(dkim_keys, selector="ed", key="ed").replace(b"\r\n", b"\n")
    checked = opendkim_verifies(dns_server, ed, tmp_path / "ed")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    edbad = opendkim_verifies(dns_server, ed.replace(b"up.", b"down."), tmp_path / "edbad")
    assert edbad.returncode != 0, "opendkim-testmsg accepted a changed body (Ed25519)"


def test_nsd_is_available_or_skipped() -> None:
    if find_nsd() is None:
        pytest.skip("nsd is not installed (apt-get install -y nsd)")
