"""Banned-file rules at any depth, defaults like amavis's Debian config, policy overrides."""

from __future__ import annotations

import pytest

from decoders import unpack
from scanner.banned import DEFAULT_RULES, build_rules, find_banned, rules_from_dicts
from tests.decoders.builders import libarchive_bytes, message, pe_exe, tar_bytes, zip_bytes

EXE = pe_exe()


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf.exe",
        "photo.jpg.scr",
        "a.doc.dll.",
        "setup.exe",
        "run.BAT",
        "x.cpl",
        "{12345678-1234-1234-1234-123456789abc}",
        "invoice.js",
        "scan_0042.wsf",
        "Payment.HTA",
        "document.pdf.lnk",
        "shipment.iso",
        "statement.img",
        "backup.vhdx",
        "addin.xll",
        "setup.msi",
        "update.ps1",
    ],
)
def test_default_bans_names(name: str) -> None:
    with unpack(message((name, b"harmless text\n"))) as result:
        hits = find_banned(result.parts)
        assert [h.symbol for h in hits] == ["BANNED_FILE"]
        assert hits[0].options[0] == result.parts[2].path_string()


@pytest.mark.parametrize("name", ["report.pdf", "archive.tar.gz", "notes.txt", "v1.2.txt",
                                  "styles.json", "photo.imgur.png", "isolation.docx",
                                  "data.jsonl", "archive.zip"])
def test_default_allows_ordinary_names(name: str) -> None:
    with unpack(message((name, b"harmless text\n"))) as result:
        assert find_banned(result.parts) == []


def test_executable_deep_inside_zip_is_banned_with_its_path() -> None:
    inner = zip_bytes({"stage2/tool.bin": EXE})
    raw = message(("foto.zip", zip_bytes({"nested.zip": inner})))
    with unpack(raw) as result:
        hits = find_banned(result.parts)
        assert len(hits) == 1
        assert hits[0].part.startswith("P=p005,L=1/2/1/1,T=exe-ms,N=stage2/tool.bin")


def test_a_tar_is_searched_like_a_zip() -> None:
    """amavis allows anything inside tar; Windows 11 opens .tar/.tgz in Explorer, so
    an executable in a tarball reaches users as one in a zip does."""
    raw = message(("bundle.tar.gz", tar_bytes({"bin/tool.exe": EXE, "run.js": b"x=1"},
                                              mode="w:gz")))
    with unpack(raw) as result:
        hits = find_banned(result.parts)
        names = {h.part.rsplit("N=", 1)[1].split(",")[0] for h in hits}
        assert {"bin/tool.exe", "run.js"} <= names


def test_anything_inside_cpio_is_allowed_except_double_extensions() -> None:
    raw = message(("bundle.cpio", libarchive_bytes("cpio", {"bin/tool.exe": EXE,
                                                            "doc.pdf.exe": EXE})))
    with unpack(raw) as result:
        hits = find_banned(result.parts)
        assert [h.part.rsplit("N=", 1)[1] for h in hits] == ["doc.pdf.exe"]


def test_declared_mime_type_rule() -> None:
    raw = message(("page.bin", b"<script>1</script>")).replace(
        b"application/octet-stream", b"application/hta"
    )
    with unpack(raw) as result:
        hits = find_banned(result.parts)
        assert hits and "mime:" in hits[0].options[1]


def test_policy_allow_overrides_default_ban() -> None:
    rules = build_rules([{"match": "name", "regex": r"^setup\.exe$", "action": "allow"}])
    with unpack(message(("setup.exe", b"text"))) as result:
        assert find_banned(result.parts, rules) == []
        assert find_banned(result.parts, DEFAULT_RULES)


def test_policy_can_replace_defaults() -> None:
    rules = build_rules([{"match": "type", "regex": "^zip$"}], replace_defaults=True)
    raw = message(("a.zip", zip_bytes({"x.exe": EXE})))
    with unpack(raw) as result:
        hits = find_banned(result.parts, rules)
        assert [h.part.split(",")[0] for h in hits] == ["P=p003"]


@pytest.mark.parametrize(
    "bad",
    [
        {"match": "colour", "regex": "x"},
        {"match": "name", "regex": "("},
        {"match": "name"},
        {"match": "name", "regex": "x", "action": "maybe"},
        {"match": "name", "regex": "x", "extra": 1},
    ],
)
def test_bad_rules_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rules_from_dicts([bad])


def test_script_inside_a_zip_is_banned() -> None:
    with unpack(message(("invoice.zip", zip_bytes({"invoice.pdf.js": b"WScript.Echo(1)"})))
                ) as result:
        hits = find_banned(result.parts)
        assert [h.symbol for h in hits] == ["BANNED_FILE"]
        assert hits[0].options[0].endswith("N=invoice.pdf.js")


def test_the_banned_check_warns_when_decoding_is_off() -> None:
    """With decode.enabled = false there are no parts: nothing is ever banned. serve
    and config check say so (the check's probe), instead of passing it silently."""
    import asyncio

    from scanner import config as cfgmod
    from scanner.checks.banned import BannedFiles, BannedSettings
    from scanner.checks.base import CheckContext

    async def no_cpu(*_a: object) -> None:
        return None

    def probe(text: str) -> str | None:
        config = cfgmod.loads(text, "t.toml")
        check = BannedFiles(BannedSettings(), CheckContext(config=config, run_cpu=no_cpu))
        return asyncio.run(check.probe())

    assert probe("") is None
    warning = probe("[decode]\nenabled = false\n")
    assert warning is not None and "no file name or type is ever banned" in warning
