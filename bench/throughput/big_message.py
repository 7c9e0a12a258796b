"""Memory of big messages in flight: a worker's peak RSS growth while they pass.

Starts ``scanner serve`` with one worker (ClamAV and the DNS checks off; decoding, the
rules and the classifier on), the test sink as next hop, and sends N copies of one
message at once over SMTP: a short text part and an attachment of random bytes,
base64-encoded (``--attachment-mib``; the default 15 MiB makes a 21.5 MB message).
Prints the message size, the worker's peak RSS (VmHWM) before and after, the growth and
the growth per message as a multiple of the message size: what README "Sizing memory"
quotes.

    .venv/bin/python bench/throughput/big_message.py                  # one message
    .venv/bin/python bench/throughput/big_message.py --parallel 4 --json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scanner.testing.filter import FilterProcess  # noqa: E402
from scanner.testing.postfix import free_port  # noqa: E402
from scanner.testing.sink import Sink  # noqa: E402
from tests.helpers import filter_config  # noqa: E402


def big_message(attachment_mib: float) -> bytes:
    """A multipart message with a text part and a base64 attachment of random bytes."""
    payload = base64.encodebytes(os.urandom(int(attachment_mib * (1 << 20))))
    return (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: big\r\n"
            b"Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--B\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + payload.replace(b"\n", b"\r\n") + b"--B--\r\n")


def peak_rss_mib(pid: int) -> int:
    """VmHWM of a process, MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def worker_pid(master: int) -> int:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    if len(pids) != 1:
        raise RuntimeError(f"expected one worker under {master}, found {pids}")
    return pids[0]


def measure(raw: bytes, parallel: int) -> dict[str, object]:
    sink = Sink(free_port()).start()
    port = free_port()
    extra = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
    text = filter_config(port, sink.port, extra=extra,
                         server_extra="max_message_size = 1073741824")
    text = text.replace("message_timeout = 20", "message_timeout = 300")
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc = FilterProcess(Path(tmp), text, [port])
        proc.start()
        try:
            assert proc.proc is not None
            worker = worker_pid(proc.proc.pid)
            before = peak_rss_mib(worker)

            def send() -> None:
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=300) as s:
                        s.sendmail("a@example.org", ["b@example.test"], raw)
                except (smtplib.SMTPException, OSError) as exc:
                    errors.append(str(exc))

            threads = [threading.Thread(target=send) for _ in range(parallel)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            after = peak_rss_mib(worker)
            delivered = len(sink.received)
        finally:
            proc.stop()
            sink.stop()
    growth = after - before
    size_mib = len(raw) / (1 << 20)
    return {"message_bytes": len(raw), "parallel": parallel, "delivered": delivered,
            "errors": errors, "peak_rss_before_mib": before, "peak_rss_after_mib": after,
            "growth_mib": growth,
            "growth_per_message_in_sizes": round(growth / parallel / size_mib, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attachment-mib", type=float, default=15.0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = measure(big_message(args.attachment_mib), args.parallel)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['parallel']} x {result['message_bytes'] / 1e6:.1f} MB, "
              f"{result['delivered']} delivered: worker peak RSS "
              f"{result['peak_rss_before_mib']} -> {result['peak_rss_after_mib']} MiB "
              f"(+{result['growth_mib']}, {result['growth_per_message_in_sizes']}x the "
              f"message per message)")
        for error in result["errors"]:
            print(f"error: {error}")
    return 0 if not result["errors"] and result["delivered"] == args.parallel else 1


if __name__ == "__main__":
    sys.exit(main())
