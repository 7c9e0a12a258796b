"""Differential check of the header-editing path over a directory of raw messages.

Each message goes through what ``scanner.actions.run`` does to a delivered copy:
leave out our forged Authentication-Results and the arriving X-Spam-* fields
(``without``), prefix the Subject (``prefix_subject``) and put the trace, auth, spam
and quarantine headers in front (``prepend_headers``). The result is compared with an
independent expectation:

- the body (everything after the header section) is byte-identical;
- the header fields we did not touch are byte-identical and in order; the left-out
  ones are exactly the named fields; the Subject differs only by the prefix, or, when
  it held raw 8-bit octets (the message is not SMTPUTF8), is written anew: ASCII,
  folded, reading back as the prefix and the original text (as UTF-8, else
  Windows-1252);
- every added line is at most 998 octets, ASCII, without NUL or bare CR, folded with
  WSP continuations, and ends like the message's own lines (LF or CRLF);
- Python's ``email`` (policy.default) reads each added field back as intended and
  the Subject as the prefix plus the original text.

Usage: python scripts/header_differential.py [--crlf] DIR [DIR ...]   (read recursively;
--crlf: check each message with its bare LFs made CRLF, as Postfix hands mail over)
Exit status 1 when any message fails; the first failures are printed.
"""

from __future__ import annotations

import email
import email.policy
import re
import sys
from collections import Counter
from pathlib import Path

from scanner.actions.headers import prefix_subject, without
from scanner.actions.tagging import spam_header_fields, spam_headers
from scanner.auth import authres
from scanner.config import loads
from scanner.scores import load_scores
from scanner.task import Destiny, Envelope, Hit, Recipient, Task, Verdict
from scanner.trace import prepend_headers, received_header

PREFIX = "***SPAM*** "
AUTHSERV = "mx.example.org"
SCORES = load_scores()
POLICY = loads("[policy]\nlocal_domains=['example.test']\nspam_report=true\n", "t").policy
SPAM_NAMES = {"x-spam-" + n.lower() for n in
              ("Flag", "Score", "Level", "Status", "Report", "Tests", "Checker-Version")}
_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def added_headers(task: Task) -> list[tuple[str, str]]:
    """A realistic set: trace, Authentication-Results, quarantine id, virus and spam."""
    hits = [Hit(s, source="rules") for s in sorted(SCORES.symbols)[:40]]
    verdict = Verdict("SPAM", Destiny.PASS, 23.5, hits=hits, policy=POLICY)
    auth = authres.header(AUTHSERV, [
        authres.ResInfo("spf", "pass", props=[("smtp.mailfrom", "alice@example.com")]),
        authres.ResInfo("dkim", "fail", "signature did not verify (body hash)",
                        [("header.d", "example.com"), ("header.s", "s1"),
                         ("header.b", "AbCdEfGh")]),
        authres.ResInfo("dmarc", "fail", "p=reject dis=none", [("header.from", "example.com")]),
    ])
    return [received_header(task, "filter.example.test", 10024, "ESMTP", ["bob@example.test"]),
            auth, ("X-Quarantine-ID", f"<{task.mail_id}>"),
            ("X-Virus-Scanned", "scanner at filter.example.test"),
            *spam_headers(verdict, POLICY, SCORES)]


def edit(raw: bytes, headers: list[tuple[str, str]], smtputf8: bool = False) -> bytes:
    """What ``run._deliver_groups`` makes of ``raw`` for a tagged local recipient."""
    dropped = authres.own_fields(raw, AUTHSERV) + spam_header_fields(raw, "X-Spam-")
    return prepend_headers(prefix_subject(without(raw, dropped), PREFIX, smtputf8), headers)


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """(header fields as raw chunks, the rest from the blank line on). A line that is
    neither a continuation nor empty starts a field (a ``From `` line or a line
    without a colon is a field of its own)."""
    fields: list[bytes] = []
    pos = 0
    while pos < len(raw):
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        line = raw[pos:end]
        if line in (b"\n", b"\r\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = end
    return fields, raw[pos:]


def name_of(chunk: bytes) -> str:
    m = _NAME.match(chunk)
    return m.group(1).decode("ascii").lower() if m else ""


def eol_of(raw: bytes) -> bytes:
    nl = raw.find(b"\n")
    return b"\r\n" if nl < 0 or raw[nl - 1:nl] == b"\r" else b"\n"


def is_own_authres(chunk: bytes) -> bool:
    return name_of(chunk) == "authentication-results" and bool(
        authres.own_fields(chunk if chunk.endswith(b"\n") else chunk + b"\n", AUTHSERV))


def subject_text(raw: bytes) -> list[str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return [str(v) for v in msg.get_all("Subject") or []]


def eight_bit_text(field: bytes) -> str:
    """The text of a raw 8-bit Subject field: unfolded, UTF-8 else Windows-1252."""
    value = re.sub(rb"\r?\n(?=[ \t])", b"", field.partition(b":")[2]).strip()
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace")


def rewritten_problems(field: bytes, eol: bytes, want: str) -> list[str]:
    """What is wrong with a Subject field written anew whose text should be ``want``."""
    problems = []
    lines = field.split(eol)
    if lines[-1] != b"" or not field.isascii():
        problems.append(f"rewritten Subject not ASCII or unterminated: {field[:60]!r}")
    if any(len(ln) > 998 or ln[:1] not in (b" ", b"\t") for ln in lines[1:-1]):
        problems.append(f"rewritten Subject badly folded: {field[:60]!r}")
    got = email.message_from_bytes(field + eol, policy=email.policy.default)["Subject"]
    if " ".join(str(got).split()) != " ".join(want.split()):
        problems.append(f"rewritten Subject reads {str(got)[:60]!r}, not {want[:60]!r}")
    return problems


def check(raw: bytes, task: Task) -> list[str]:
    problems: list[str] = []
    headers = added_headers(task)
    smtputf8 = task.envelope.smtputf8
    out = edit(raw, headers, smtputf8)
    eol = eol_of(raw)
    fields, rest = split(raw)
    # expected: the fields without the left-out ones, the first Subject prefixed
    kept = [f for f in fields if not (name_of(f) in SPAM_NAMES or is_own_authres(f))]
    subjects = [i for i, f in enumerate(kept) if name_of(f) == "subject"]
    expect = list(kept)
    rewritten = {i: eight_bit_text(kept[i]) for i in subjects
                 if not smtputf8 and not kept[i].isascii()}
    for i in subjects:
        m = re.match(rb"(?i)subject[ \t]*:[ \t]*", expect[i])
        assert m is not None
        expect[i] = expect[i][: m.end()] + PREFIX.encode() + expect[i][m.end():]
    # a Subject we add (there was none) counts as one of the added lines
    block_len = len(out) - len(b"".join(expect)) - len(rest)
    if rewritten:  # the added block's length from the fields that follow it
        out_fields = split(out)[0]
        block_len = len(out) - len(rest) - sum(map(len, out_fields[len(out_fields) - len(kept):]))
    added, tail = out[:block_len], out[block_len:]
    got_fields, _ = split(tail)
    for i, text in rewritten.items():
        if i < len(got_fields) and name_of(got_fields[i]) == "subject":
            problems += rewritten_problems(got_fields[i], eol, PREFIX + text)
            expect[i] = got_fields[i]
    if tail != b"".join(expect) + rest:
        got_fields, got_rest = split(tail)
        if got_rest != rest:
            problems.append("body changed")
        else:
            pairs = zip(got_fields + [b""] * 99, expect + [b""] * 99, strict=False)
            problems.append(f"kept fields changed: {next(p for p in pairs if p[0] != p[1])!r}")
    # the added lines
    lines = added.split(b"\n")
    if lines[-1] != b"":
        problems.append("added block does not end with a line end")
    for ln in lines[:-1]:
        full = ln + b"\n"
        if len(ln.rstrip(b"\r")) > 998:
            problems.append("added line longer than 998 octets")
        if not full.isascii():
            problems.append(f"non-ASCII added line {ln[:60]!r}")
        if b"\0" in ln or b"\r" in ln.rstrip(b"\r") or ln.count(b"\r") > 1:
            problems.append(f"NUL or bare CR in added line {ln[:60]!r}")
        if not full.endswith(eol) or (eol == b"\n" and ln.endswith(b"\r")):
            problems.append(f"added line ends with {full[-2:]!r}, the message with {eol!r}")
            break
    # parsed back
    msg = email.message_from_bytes(out, policy=email.policy.default)
    for name, value in headers:
        want = value.replace("\r\n", "")
        got = [str(v) for v in msg.get_all(name) or []]
        if want not in got and " ".join(want.split()) not in [" ".join(g.split()) for g in got]:
            problems.append(f"{name} reads back as {got[:2]!r}, not {want[:60]!r}")
    # Python's reader ends the header section at a line that is no field (``Subject :``,
    # a line without a colon, an mbox ``From `` line); we, amavis and Postfix's
    # is_header() read on to the blank line (and Postfix's cleanup has put one before
    # such a line by the time mail reaches us). Where the readers differ, the bytes
    # compared above are the check.
    py_names = [k.lower() for k in email.message_from_bytes(raw, policy=email.policy.compat32)]
    if py_names != [name_of(f) for f in fields if name_of(f)]:
        return problems
    before, after = subject_text(raw), subject_text(out)
    if rewritten:  # compared with the independent reading above
        return problems
    if not before:
        if after != [PREFIX.rstrip()]:
            problems.append(f"missing Subject: got {after!r}")
    elif not after or after[0] != PREFIX + before[0] and \
            " ".join(after[0].split()) != " ".join((PREFIX + before[0]).split()):
        problems.append(f"Subject {before[:1]!r} became {after[:1]!r}")
    elif any(not a.startswith(PREFIX) for a in after):
        problems.append(f"an untagged Subject is left: {after!r}")
    return problems


def main(args: list[str]) -> int:
    crlf = "--crlf" in args
    dirs = [a for a in args if a != "--crlf"]
    task = Task(mail_id="abcdefghijkl", envelope=Envelope("a@example.org",
                (Recipient("bob@example.test"),)), raw=b"", peer=("127.0.0.1", 4567),
                helo="localhost")
    files = sorted(p for d in dirs for p in Path(d).rglob("*") if p.is_file())
    failed: Counter[str] = Counter()
    shown = bad = 0
    for path in files:
        try:
            raw = path.read_bytes()
            if crlf:
                raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
            problems = check(raw, task)
        except Exception as exc:  # a crash is a failure too
            problems = [f"crash: {exc!r}"]
        for p in problems:
            failed[p.split(":")[0][:50]] += 1
        bad += bool(problems)
        if problems and shown < 15:
            shown += 1
            print(f"{path}: {problems[:3]}")
    print(f"{len(files)} messages, {bad} failed; kinds of failure: {dict(failed)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
