"""scanner.throttle: one log line per condition per interval, with a count."""

from __future__ import annotations

from scanner.throttle import LogThrottle, held_note


def test_reports_once_per_interval_and_counts_what_it_held_back() -> None:
    now = [0.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.due("a") == 0  # the first event is reported at once
    assert throttle.due("a") is None and throttle.due("a") is None
    assert throttle.due("b") == 0  # keys are independent
    now[0] = 9.9
    assert throttle.due("a") is None
    now[0] = 10.0
    assert throttle.due("a") == 3  # three held back since the last report
    assert throttle.due("a") is None
    assert throttle.end("a") == 1 and throttle.end("a") is None
    assert throttle.due("a") == 0  # after the end a new condition is reported at once
    assert throttle.end("never seen") is None


def test_zero_interval_reports_everything() -> None:
    throttle = LogThrottle(0.0)
    assert [throttle.due("x") for _ in range(3)] == [0, 0, 0]


def test_held_note() -> None:
    assert held_note(0) == ""
    assert held_note(4, "more failed requests") == " (4 more failed requests since the last report)"


def test_dnsbl_and_uribl_refusals_are_logged_once_per_zone(caplog) -> None:
    import logging

    from scanner.dns.blocked import warn_refused

    now = [0.0]
    throttle = LogThrottle(600.0, clock=lambda: now[0])
    log = logging.getLogger("scanner.test.refused")
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(3):
            warn_refused(log, throttle, "DNSBL", "1-01", ["zen.example=127.255.255.254"])
        now[0] = 601.0
        warn_refused(log, throttle, "DNSBL", "1-02", ["zen.example=127.255.255.254"])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("(1-01) DNSBL query refused: zen.example=127.255.255.254;")
    assert lines[1].endswith("(2 more refusals since the last report)")
