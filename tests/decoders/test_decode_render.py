"""Tree text and JSON renderings of a part tree."""

from __future__ import annotations

import json

from decoders import unpack
from decoders.render import parts_json, tree_text
from tests.decoders.builders import message, zip_bytes


def test_tree_text_indents_by_depth_and_shows_details() -> None:
    raw = message(("foto.zip", zip_bytes({"foto/expander.exe": b"MZ" + b"\0" * 100})))
    with unpack(raw) as result:
        lines = tree_text(result.parts).splitlines()
        assert lines[0].startswith("p001 T=mail")
        assert lines[2].startswith("  p003 T=zip M=application/octet-stream N='foto.zip'")
        assert lines[3].startswith("    p004 ") and "N='foto/expander.exe'" in lines[3]
        assert lines[3].endswith("102 B")


def test_parts_json_round_trips() -> None:
    raw = message(("a.zip", zip_bytes({"x.txt": b"hello"})))
    with unpack(raw) as result:
        data = json.loads(json.dumps(parts_json(result.parts)))
        leaf = data[-1]
        assert leaf["path"] == "P=p004,L=1/2/1,T=asc,N=x.txt"
        assert leaf["size"] == 5
        assert leaf["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        assert leaf["flags"] == [] and leaf["leaf"] is True
        assert data[2]["leaf"] is False
