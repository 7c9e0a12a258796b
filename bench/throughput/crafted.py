"""CPU of the whole analysis on crafted messages at two sizes: is any cost super-linear?

Each pattern (tag soup, unclosed tags, entity and URL soup, thousands of Received or To
entries, encoded words, folded headers, nested and many MIME parts, junk MIME parameters,
base64/QP junk (stray ``=`` too), Latin-1 text, C1 entities, iframe text, zero-width and
mixed-script text, and those of the CPU audit of
2026-12-06: quoted semicolons in a Content-Type, ``<!`` and ``<a`` soup, long dotted file
names, nested From comments, crafted PDFs, ...) is built at ``--small`` and
``--large`` bytes and run through parse, unpack, every check but ClamAV and policy, as
``profile_pipeline.py`` runs them (the DNS checks against a private NSD with
``--local-dns``). Prints the CPU time at both sizes, their ratio against the size ratio
and the milliseconds per MB at the large size; a ratio well above the size ratio marks a
super-linear cost, a high ms/MB a costly constant. Exit status 1 when any ratio exceeds
``--max-ratio`` times the size ratio.

    .venv/bin/python bench/throughput/crafted.py                        # 100 KB vs 400 KB
    .venv/bin/python bench/throughput/crafted.py --large 1600000 --local-dns
    .venv/bin/python bench/throughput/crafted.py --only "html lt,nested multipart"
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from profile_pipeline import build  # noqa: E402

from scanner.mailid import new_mail_id  # noqa: E402
from scanner.pipeline.processor import Listener  # noqa: E402
from scanner.task import Envelope, Recipient, Task  # noqa: E402
from scanner.testing.dns_server import nxdomain_server  # noqa: E402

HEAD = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: test\r\n"
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.org>\r\n"
        b"MIME-Version: 1.0\r\n")


def _body(ctype: bytes, data: bytes, cte: bytes = b"") -> bytes:
    extra = b"Content-Transfer-Encoding: " + cte + b"\r\n" if cte else b""
    return HEAD + b"Content-Type: " + ctype + b"\r\n" + extra + b"\r\n" + data


def _lines(piece: bytes, size: int, width: int = 76) -> bytes:
    data = (piece * (size // len(piece) + 1))[:size]
    return b"\r\n".join(data[i:i + width] for i in range(0, len(data), width))


def _headers(line: bytes, size: int) -> bytes:
    return HEAD + line * (size // len(line)) + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def _parts(part: bytes, size: int) -> bytes:
    return (HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            + part * (size // len(part)) + b"--B--\r\n")


def _nested(size: int) -> bytes:
    levels = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n"
                      % (i, i + 1) for i in range(size // 60))
    return HEAD + b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + levels + b"hi\r\n"


def _attach(data: bytes) -> bytes:
    """A message with ``data`` attached as a PDF (base64)."""
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (HEAD + b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
            b"Content-Type: application/pdf; name=a.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"\r\n--B--\r\n")


_INNER = zlib.compress(zlib.compress(b"\0" * (16 << 20), 9), 9)  # 16 MiB, doubly deflated


def _objstm(n: int) -> bytes:
    """One PDF object stream that inflates to 16 MiB (its filter applied twice)."""
    return (b"%d 0 obj\n<< /Type /ObjStm /Filter [/FlateDecode /FlateDecode] /Length %d >>"
            b"\nstream\n" % (n, len(_INNER)) + _INNER + b"\nendstream\nendobj\n")


_WORD = b"=?utf-8?b?" + base64.b64encode(b"hello") + b"?="
PATTERNS: dict[str, Callable[[int], bytes]] = {
    "text words": lambda s: _body(b"text/plain", _lines(b"lorem ipsum dolor ", s)),
    "one long line": lambda s: _body(b"text/plain", b"a" * s),
    "html a-href": lambda s: _body(b"text/html",
                                   _lines(b"<a href=http://x.example.com/p>t</a>", s)),
    "html b soup": lambda s: _body(b"text/html", _lines(b"<b>", s)),
    "html lt": lambda s: _body(b"text/html", _lines(b"<", s)),
    "html open comment": lambda s: _body(b"text/html", b"<!--" + _lines(b"x ", s)),
    "html entities": lambda s: _body(b"text/html", _lines(b"&#65;", s)),
    "html tag unclosed": lambda s: _body(b"text/html", b"<a " + _lines(b"b=c ", s)),
    "html many links": lambda s: _body(
        b"text/html", _lines(b"<a href='http://e1.example.com/'>www.f.example.com</a>", s)),
    "urls": lambda s: _body(b"text/plain", _lines(b"http://a.b.c.example.com/x ", s)),
    "www dots": lambda s: _body(b"text/plain", _lines(b"www.", s)),
    "distinct urls": lambda s: _body(b"text/plain", b" ".join(
        b"http://h%d.example.com/" % i for i in range(s // 25))),
    "emails": lambda s: _body(b"text/plain", _lines(b"a@b.example ", s)),
    "http only": lambda s: _body(b"text/plain", _lines(b"http://", s)),
    "base64 junk": lambda s: _body(b"application/octet-stream", _lines(b"!@#$", s),
                                   b"base64"),
    "qp soft breaks": lambda s: _body(b"text/plain", b"=\r\n" * (s // 3),
                                      b"quoted-printable"),
    "qp stray equals": lambda s: _body(b"text/plain", _lines(b"=3D=ZZ", s),
                                       b"quoted-printable"),
    "latin-1 text": lambda s: _body(b"text/plain; charset=iso-8859-1",
                                    _lines(b"caf\xe9 \x93na\xefve\x94 ", s)),
    "html c1 entities": lambda s: _body(b"text/html", _lines(b"&#150;&#x96;", s)),
    "html iframe text": lambda s: _body(b"text/html",
                                        b"<iframe>" + _lines(b"<b>x</b> ", s)),
    "zero width": lambda s: _body(b"text/plain; charset=utf-8",
                                  _lines("a\u200bb".encode(), s)),
    "mixed script": lambda s: _body(b"text/plain; charset=utf-8",
                                    _lines("p\u0430ypal ".encode(), s)),
    "blank lines": lambda s: _body(b"text/plain", b"\r\n" * (s // 2)),
    "many received": lambda s: _headers(
        b"Received: from a.example (a.example [192.0.2.1]) by b.example with ESMTP id X;"
        b" Mon, 1 Jan 2024 00:00:00 +0000\r\n", s),
    "many to": lambda s: HEAD.replace(
        b"To: b@example.test", b"To: " + b", ".join(b"u%d@example.test" % i
                                                    for i in range(s // 20)))
    + b"Content-Type: text/plain\r\n\r\nhi\r\n",
    "encoded words": lambda s: HEAD.replace(
        b"Subject: test", b"Subject: " + b" ".join([_WORD] * (s // 20)))
    + b"Content-Type: text/plain\r\n\r\nhi\r\n",
    "dkim signatures": lambda s: _headers(
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from:to; bh=abc=;"
        b" b=def=\r\n", s),
    "folded header": lambda s: HEAD + b"X-Long: a" + b"\r\n b" * (s // 4)
    + b"\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
    "nested multipart": _nested,
    "many parts": lambda s: _parts(b"--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n", s),
    "junk parameters": lambda s: _parts(
        b"--B\r\nContent-Type: text/plain" + b"; " * 2000 + b"\r\n\r\nhi\r\n", s),
    # found by the CPU audit of 2026-12-06 (quadratic or near it before its fixes)
    "quoted semicolons": lambda s: HEAD + b'Content-Type: text/plain; a="' + b";" * s
    + b'"\r\n\r\nhi\r\n',
    "many parameters": lambda s: HEAD + b"Content-Type: text/plain" + b"; a=b" * (s // 5)
    + b"\r\n\r\nhi\r\n",
    "html bang": lambda s: _body(b"text/html", _lines(b"<!", s)),
    "html a open": lambda s: _body(b"text/html", _lines(b"<a ", s)),
    "html a style": lambda s: _body(b"text/html", _lines(b"<a style=", s)),
    "long dotted name": lambda s: _parts(
        b'--B\r\nContent-Type: application/octet-stream; name="' + b"a." * (s // 2)
        + b'"\r\n\r\nhi\r\n', s + 100),
    "nested comments": lambda s: HEAD.replace(
        b"From: a@example.org", b"From: " + b"(" * 600 + b"a@example.org" + b")" * 600)
    + b"Content-Type: text/plain\r\n\r\n" + _lines(b"hi ", s),
    "long charref": lambda s: _body(b"text/html", b"<p>&#" + b"1" * s + b";</p>"),
    "pdf unclosed /EF": lambda s: _attach(b"%PDF-1.4\n1 0 obj\n" + b"/EF <<" * (s // 8)
                                          + b"\nendobj\n"),
    "pdf digit run": lambda s: _attach(b"%PDF-1.4\n1 0 obj\n<< >>\nstream\n" + b"4" * (s * 3 // 4)
                                       + b"\nendstream\nendobj\n"),
    "pdf object streams": lambda s: _attach(b"%PDF-1.4\n" + b"".join(
        _objstm(i) for i in range(max(1, s * 3 // 4 // len(_objstm(0)))))),
}


async def _cpu(processor: object, raw: bytes) -> float:
    task = Task(mail_id=new_mail_id(), raw=raw, log_id="crafted",
                envelope=Envelope("s@example.org", (Recipient("u@example.test"),)))
    start = time.process_time()
    unpacked = await processor.analyse(task, Listener(0, "ESMTP", ""))  # type: ignore[attr-defined]
    spent = time.process_time() - start
    if unpacked is not None:
        unpacked.close()
    return spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=100_000)
    p.add_argument("--large", type=int, default=400_000)
    p.add_argument("--only", default="", help="comma list of pattern names")
    p.add_argument("--local-dns", action="store_true",
                   help="DNS checks on, answered by a private NSD (needs root and nsd)")
    p.add_argument("--max-ratio", type=float, default=2.0,
                   help="fail when a pattern's time ratio exceeds this many times the "
                        "size ratio")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(PATTERNS)
    unknown = [n for n in names if n not in PATTERNS]
    if unknown:
        p.error(f"unknown patterns {unknown}; known: {', '.join(PATTERNS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        resolver = ""
        disabled = ["clamav"]
        if args.local_dns:
            server = nxdomain_server()
            server.start()
            stack.callback(server.stop)
            resolver = server.resolver
        else:
            disabled += ["auth", "dnsbl", "uribl"]
        processor, _ = build(disabled, Path(tmp), resolver)

        async def run_all() -> None:
            await _cpu(processor, PATTERNS["text words"](1000))  # warm caches
            for name in names:
                small, large = PATTERNS[name](args.small), PATTERNS[name](args.large)
                t_small, t_large = await _cpu(processor, small), await _cpu(processor, large)
                size_ratio = len(large) / len(small)
                rows.append({"pattern": name, "small_bytes": len(small),
                             "large_bytes": len(large), "small_ms": round(t_small * 1000, 1),
                             "large_ms": round(t_large * 1000, 1),
                             "time_ratio": round(t_large / max(t_small, 1e-6), 2),
                             "size_ratio": round(size_ratio, 2),
                             "ms_per_mb": round(t_large * 1000 / (len(large) / 1e6), 1)})

        asyncio.run(run_all())
    bad = [r for r in rows if r["time_ratio"] > args.max_ratio * r["size_ratio"]]
    if args.json:
        print(json.dumps({"rows": rows, "super_linear": [r["pattern"] for r in bad]},
                         indent=2))
    else:
        for r in rows:
            print(f"{r['pattern']:<18} {r['small_ms']:8.1f} ms @ {r['small_bytes'] // 1000} KB"
                  f" {r['large_ms']:8.1f} ms @ {r['large_bytes'] // 1000} KB  ratio "
                  f"{r['time_ratio']:5.1f} (size x{r['size_ratio']:.1f})  "
                  f"{r['ms_per_mb']:7.0f} ms/MB{'  SUPER-LINEAR?' if r in bad else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
