"""Decode throughput benchmark: MB/s and parts/s over the public SpamAssassin corpus and a
30 MB attachment, with peak memory.

Usage: .venv/bin/python bench/decode/bench_decode.py [--corpus PATH] [--limit N] [--json]

The corpus tarball (../shared/corpora/spamassassin-public.tar.xz by default) is extracted
with tarfile into a temporary directory; every file under ``*/ham/`` and ``*/spam/`` is
decoded with :func:`decoders.unpack.unpack`. Peak memory is tracemalloc's peak (Python
allocations) during each run and the process's max RSS at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tarfile
import tempfile
import time
import tracemalloc
import zipfile
from email.message import EmailMessage
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from decoders import unpack  # noqa: E402
from decoders.registry import load_decoders  # noqa: E402
from scanner.testing.tar_extract import extract_data  # noqa: E402

DEFAULT_CORPUS = ROOT / ".." / "shared" / "corpora" / "spamassassin-public.tar.xz"
MB = 1_000_000


def corpus_messages(tarball: Path, workdir: str, limit: int | None) -> list[bytes]:
    with tarfile.open(tarball) as tf:
        extract_data(tf, workdir)
    files = sorted(
        p for p in Path(workdir).rglob("*") if p.is_file() and p.parent.name in ("ham", "spam")
    )
    return [p.read_bytes() for p in files[:limit]]


def _decode_all(messages: list[bytes], decoders: list) -> tuple[int, int, dict[str, int]]:
    parts = produced = 0
    hits: dict[str, int] = {}
    for raw in messages:
        with unpack(raw, decoders=decoders) as result:
            parts += len(result.parts)
            produced += sum(p.size for p in result.parts[1:])
            for h in result.hits:
                hits[h.symbol] = hits.get(h.symbol, 0) + 1
    return parts, produced, hits


def run(label: str, messages: list[bytes]) -> dict[str, object]:
    """Time a pass without tracing, then a traced pass for the peak Python memory."""
    decoders = load_decoders()
    start = time.perf_counter()
    parts, produced, hits = _decode_all(messages, decoders)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    _decode_all(messages, decoders)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = sum(len(m) for m in messages)
    return {
        "run": label,
        "messages": len(messages),
        "input_MB": round(size / MB, 2),
        "decoded_MB": round(produced / MB, 2),
        "seconds": round(elapsed, 3),
        "MB_per_s": round(size / MB / elapsed, 2),
        "decoded_MB_per_s": round(produced / MB / elapsed, 2),
        "parts_per_s": round(parts / elapsed, 1),
        "messages_per_s": round(len(messages) / elapsed, 1),
        "parts": parts,
        "peak_traced_MiB": round(peak / 2**20, 1),
        "hits": hits,
    }


def attachment_message(name: str, data: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "bench@example.org"
    msg["Subject"] = "30 MB attachment"
    msg.set_content("attached")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


def big_attachments() -> list[tuple[str, bytes]]:
    random = os.urandom(30 * MB)
    line = b"line %08d of a large text export, fairly compressible\n"
    text = b"".join(line % i for i in range(560_000))
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export.csv", text[: 30 * MB])
    return [("30MB-random.bin", random), ("30MB-text.zip", buf.getvalue())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, default=None, help="decode at most N corpus messages")
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    args = ap.parse_args()
    results = []
    if args.corpus.is_file():
        with tempfile.TemporaryDirectory(prefix="bench-decode-") as workdir:
            messages = corpus_messages(args.corpus, workdir, args.limit)
        results.append(run("spamassassin-public", messages))
    else:
        print(f"corpus not found at {args.corpus}; skipping", file=sys.stderr)
    for name, data in big_attachments():
        label = f"attachment {name} ({len(data) / MB:.1f} MB)"
        results.append(run(label, [attachment_message(name, data)]))
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['run']}: {r['messages']} msgs, {r['input_MB']} MB in, "
                f"{r['decoded_MB']} MB decoded, {r['seconds']} s -> {r['MB_per_s']} MB/s in, "
                f"{r['decoded_MB_per_s']} MB/s out, {r['parts_per_s']} parts/s, "
                f"{r['messages_per_s']} msg/s, peak traced {r['peak_traced_MiB']} MiB; "
                f"hits {r['hits']}"
            )
    print(f"process max RSS: {maxrss:.0f} MiB")


if __name__ == "__main__":
    main()
