"""Random AM.PDP requests against our release socket (protocol fuzzing).

Hypothesis writes requests of known and unknown attributes with odd values: other and
malformed mail_ids, path tricks in mail_file (``../``), wrong secrets, broken %-escapes,
NULs, bytes that are not UTF-8, long values, odd recipients, unknown request names. For
each request on one connection:

* the answer is a complete AM.PDP answer: ``name=value`` lines, then an empty line;
* a message reaches the next hop only for a release or requeue that got a 2xx
  ``setreply``, and every such answer delivered exactly one message;
* no exception is logged; afterwards an ordinary release still works.
"""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.quarantine.ampdp_proto import format_attr, parse_reply

from .util import store

STORED = 30  # messages in the quarantine: a message is released once (no --force)
_names = st.sampled_from(["request", "mail_id", "secret_id", "quar_type", "mail_file",
                          "recipient", "requested_by", "partition_tag", "sender",
                          "protocol_state", "policy_bank", "x-junk", "REQUEST"])
_values = st.one_of(
    st.sampled_from(["release", "requeue", "report", "ping", "", "release\x00", "RELEASE",
                     "@mail_id", "@secret_id", "@mail_file", "AAAAAAAAAAAA", "../../etc/passwd",
                     "spam/../../../etc/passwd", "/etc/shadow", "s/spam-@mail_id.gz",
                     "<bob@example.test>", "<>", "<@>", "bob@example.test", "<a@b> <c@d>",
                     "Z", "F", "Q", "%", "%zz", "%00", "a\r\nb", "x" * 3000]),
    st.text(max_size=40),
)
_core = st.tuples(  # mostly a release that may succeed, so successes are tested too
    st.tuples(st.just("request"), st.sampled_from(["release"] * 4 + [
        "requeue", "requeue", "ping", "report", "", "Release"])),
    st.tuples(st.sampled_from(["mail_id"] * 3 + ["mail_file"]),
              st.sampled_from(["@mail_id"] * 4 + ["@mail_file", "s/spam-@mail_id.gz",
                              "../@mail_id", "AAAAAAAAAAAA", "@mail_id\x00", ""])),
    st.tuples(st.just("secret_id"), st.sampled_from(["@secret_id", "@secret_id", "",
                                                     "wrong", "@mail_id"])),
)
# A request without attributes would be a lone empty line, which the server skips as a
# separator between requests (ampdp_proto.read_message) and never answers: not a request.
_request = st.tuples(_core, st.lists(st.tuples(_names, _values), max_size=3),
                     st.integers(0, STORED - 1)).map(
    lambda t: ([p for p in t[0] if p[1] != ""] + t[1], t[2])).filter(lambda r: r[0])


@pytest.fixture
def known(server) -> tuple[str, list[dict[str, str]]]:  # type: ignore[no-untyped-def]
    """One running AM.PDP server and stored messages, shared by all examples."""
    config, q, path = server()
    records = [store(q, recipients=["bob@example.test"]) for _ in range(STORED)]
    return str(path), [{"mail_id": r.mail_id, "secret_id": r.secret_id,
                        "mail_file": r.relative_path} for r in records]


def _expand(value: str, ids: dict[str, str]) -> str:
    for key in ("mail_id", "secret_id", "mail_file"):
        value = value.replace("@" + key, ids[key])
    return value


def _answer(reader, sock: socket.socket) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while True:
        line = reader.readline()
        assert line, f"the server hung up in the middle of an answer: {data!r}"
        if line == b"\r\n":
            return data
        assert line.endswith(b"\r\n") and b"=" in line, line
        data += line


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests=st.lists(_request, min_size=1, max_size=4))
def test_random_requests_get_answers_and_release_only_what_they_may(
        known, sink, caplog, requests: list[tuple[list[tuple[str, str]], int]]) -> None:
    path, stored = known
    caplog.set_level(logging.WARNING)
    before = len(sink.received)
    granted = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(path)
        reader = sock.makefile("rb")
        for request, n in requests:
            wire = b"".join(format_attr(k, _expand(v, stored[n])) for k, v in request) + b"\r\n"
            sock.sendall(wire)
            answer = parse_reply(_answer(reader, sock))
            replies = [v for k, v in answer if k == "setreply"]
            assert replies or any(k == "exit_code" for k, _ in answer), answer
            # the first request attribute counts, names and value in any case
            kind = next((v.strip().lower() for k, v in request if k.lower() == "request"), "")
            if kind in ("release", "requeue") and any(r.startswith("2") for r in replies):
                granted += 1
    delivered = sink.wait_for(before + granted, timeout=10)[before:]
    assert len(delivered) == granted, (requests, granted, len(delivered))
    assert not [r for r in caplog.records if r.exc_info], caplog.text
