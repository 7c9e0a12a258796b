"""Unit tests of the Postfix stanza generator (scanner.postfix_config)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scanner.config import Config, loads
from scanner.postfix_config import (
    data_done_timeout,
    filter_transport,
    master_entry,
    nexthop,
    reinject_maxproc,
    reinject_service,
    render_stanzas,
)

POSTCONF = "/usr/sbin/postconf"


def _config(toml: str = "") -> Config:
    return loads(toml, "test.toml")


def _section(text: str, name: str) -> list[str]:
    """Lines of the main.cf or master.cf part of render_stanzas output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# --- {name}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# --- ")),
               len(lines))
    return lines[start + 1 : end]


def _service(master: list[str], name: str) -> list[str]:
    """One master.cf service: its first line and its continuation lines."""
    start = next(i for i, line in enumerate(master) if line.split()[:1] == [name])
    block = [master[start]]
    for line in master[start + 1 :]:
        if not line.startswith(" "):
            break
        block.append(line.strip())
    return block


def test_defaults() -> None:
    text = render_stanzas(_config())
    main = _section(text, "main.cf")
    assert "content_filter = scanner:[127.0.0.1]:10024" in main
    assert "receive_override_options = no_address_mappings" in main
    assert "scanner_destination_concurrency_limit = 20" in main
    master = _section(text, "master.cf")
    transport = _service(master, "scanner")
    assert transport[0].split() == ["scanner", "unix", "-", "-", "n", "-", "20", "smtp"]
    assert "-o smtp_send_xforward_command=yes" in transport
    assert "-o smtp_data_done_timeout=720" in transport
    assert "-o disable_mime_output_conversion=yes" in transport
    assert "-o smtp_generic_maps=" in transport


def test_reinjection_service() -> None:
    master = _section(render_stanzas(_config()), "master.cf")
    service = _service(master, "127.0.0.1:10025")
    assert service[0].split() == ["127.0.0.1:10025", "inet", "n", "-", "n", "-", "40", "smtpd"]
    assert service[1] == "-o content_filter="
    for option in (
        "smtpd_delay_reject=no",
        "smtpd_client_restrictions=permit_mynetworks,reject",
        "smtpd_recipient_restrictions=permit_mynetworks,reject",
        "mynetworks=127.0.0.0/8",
        "smtpd_authorized_xforward_hosts=127.0.0.0/8",
        "receive_override_options=no_header_body_checks,no_unknown_recipient_checks,"
        "no_milters",
        "smtpd_milters=",
        "local_recipient_maps=",
        "relay_recipient_maps=",
        "smtpd_error_sleep_time=0",
        "smtpd_client_connection_count_limit=0",
        "smtpd_client_connection_rate_limit=0",
    ):
        assert f"-o {option}" in service


@pytest.mark.parametrize("timeout, expected", [(5.0, 125), (30.5, 151), (600.0, 720)])
def test_data_done_timeout_exceeds_message_timeout(timeout: float, expected: int) -> None:
    assert data_done_timeout(timeout) == expected
    assert data_done_timeout(timeout) > timeout


def test_message_timeout_and_concurrency_are_used() -> None:
    text = render_stanzas(_config("[server]\nconcurrency = 50\nmessage_timeout = 99.2\n"))
    master = _section(text, "master.cf")
    transport = _service(master, "scanner")
    assert transport[0].split()[6] == "50"
    assert "-o smtp_data_done_timeout=220" in transport
    reinject = _service(master, "127.0.0.1:10025")
    assert int(reinject[0].split()[6]) >= 50
    assert "scanner_destination_concurrency_limit = 50" in _section(text, "main.cf")


@pytest.mark.parametrize("maxproc", [1, 10, 20, 300])
def test_reinjection_never_has_fewer_processes(maxproc: int) -> None:
    assert reinject_maxproc(maxproc) >= maxproc


def test_lmtp_listener_gets_lmtp_transport() -> None:
    text = render_stanzas(_config('[[listeners]]\nport = 10024\nprotocol = "lmtp"\n'))
    transport = _service(_section(text, "master.cf"), "scanner")
    assert transport[0].split()[-1] == "lmtp"
    assert "-o lmtp_send_xforward_command=yes" in transport
    assert "-o lmtp_data_done_timeout=720" in transport
    assert not any("smtp_" in line for line in transport)


def test_a_unix_socket_listener_is_reached_as_unix_path() -> None:
    """A listener on a path (not a port) needs no TCP port, and Postfix's LMTP client
    reaches it as nexthop unix:PATH; an SMTP one gets a note (Postfix's SMTP client
    cannot use a socket)."""
    config = _config('[[listeners]]\npath = "/var/lib/scanner/lmtp.sock"\n'
                     'protocol = "lmtp"\n[[listeners]]\nport = 10026\n'
                     'policy_bank = "ORIGINATING"\n')
    main = _section(render_stanzas(config), "main.cf")
    assert "content_filter = scanner:unix:/var/lib/scanner/lmtp.sock" in main
    assert not any("Note:" in line for line in main)
    smtp = _section(render_stanzas(_config('[[listeners]]\npath = "/run/s.sock"\n')),
                    "main.cf")
    assert "content_filter = scanner:unix:/run/s.sock" in smtp
    assert any(line.startswith("# Note: listener unix:/run/s.sock speaks smtp") for line in smtp)
    # a path listener and a TCP one on the default port do not overlap
    assert _config('[[listeners]]\npath = "/run/s.sock"\n[[listeners]]\nport = 10024\n')


def test_policy_bank_listener_becomes_a_comment() -> None:
    text = render_stanzas(_config(
        '[[listeners]]\nport = 10026\npolicy_bank = "ORIGINATING"\n'
        '[[listeners]]\nport = 10024\n'
    ))
    main = _section(text, "main.cf")
    assert "content_filter = scanner:[127.0.0.1]:10024" in main
    assert "#     -o content_filter=scanner:[127.0.0.1]:10026" in main
    assert any("ORIGINATING" in line and line.startswith("#") for line in main)


def test_no_default_listener_sets_no_global_filter() -> None:
    text = render_stanzas(_config('[[listeners]]\nport = 10026\npolicy_bank = "ORIGINATING"\n'))
    main = _section(text, "main.cf")
    assert not any(line.startswith("content_filter") for line in main)
    assert "#     -o content_filter=scanner:[127.0.0.1]:10026" in main


def test_mixed_protocols_get_two_transports() -> None:
    text = render_stanzas(_config(
        '[[listeners]]\nport = 10024\n'
        '[[listeners]]\nport = 10026\nprotocol = "lmtp"\npolicy_bank = "ORIGINATING"\n'
    ))
    master = _section(text, "master.cf")
    assert _service(master, "scanner")[0].split()[-1] == "smtp"
    assert _service(master, "scanner_lmtp")[0].split()[-1] == "lmtp"
    assert "#     -o content_filter=scanner_lmtp:[127.0.0.1]:10026" in _section(text, "main.cf")
    # the two transports share server.concurrency (20) instead of 20 processes each
    assert [int(_service(master, n)[0].split()[6]) for n in ("scanner", "scanner_lmtp")] \
        == [10, 10]
    assert "scanner_lmtp_destination_concurrency_limit = 10" in _section(text, "main.cf")


def test_ipv6_addresses() -> None:
    text = render_stanzas(_config(
        '[[listeners]]\naddress = "::1"\nport = 10024\n[reinject]\nhost = "::1"\n'
    ))
    assert "content_filter = scanner:[::1]:10024" in _section(text, "main.cf")
    service = _service(_section(text, "master.cf"), "[::1]:10025")
    assert "-o mynetworks=127.0.0.0/8,[::1]/128" in service


def test_wildcard_listener_is_reached_over_loopback() -> None:
    assert nexthop("0.0.0.0", 10024) == "[127.0.0.1]:10024"
    assert nexthop("::", 10024) == "[::1]:10024"


def test_master_entry_rejects_whitespace_in_options() -> None:
    with pytest.raises(ValueError):
        master_entry("x", "unix", "smtp", options=[("smtp_helo_name", "a b")])


def test_filter_transport_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError):
        filter_transport(protocol="http", maxproc=1, timeout=10)


def test_private_instance_uses_the_same_pieces() -> None:
    from scanner.testing.postfix import PostfixInstance

    inst = PostfixInstance(base=Path("/nonexistent/pf"), smtpd_port=2525, reinject_port=2526,
                           filter="scanner:[127.0.0.1]:2527", filter_protocol="lmtp",
                           filter_maxproc=7, filter_timeout=321)
    master = inst.master_cf()
    assert filter_transport(protocol="lmtp", maxproc=7, timeout=321) in master
    assert reinject_service(host="127.0.0.1", port=2526, maxproc=reinject_maxproc(7)) in master
    main = inst.main_cf()
    assert main["content_filter"] == "scanner:[127.0.0.1]:2527"
    assert main["receive_override_options"] == "no_address_mappings"
    assert main["scanner_destination_concurrency_limit"] == "7"


@pytest.mark.skipif(not os.access(POSTCONF, os.X_OK), reason="postconf is not installed")
def test_postconf_accepts_the_output(tmp_path: Path) -> None:
    text = render_stanzas(_config(
        '[server]\nconcurrency = 4\n[[listeners]]\nport = 10024\n'
        '[[listeners]]\nport = 10026\nprotocol = "lmtp"\npolicy_bank = "ORIGINATING"\n'
    ))
    (tmp_path / "main.cf").write_text("\n".join(_section(text, "main.cf")) + "\n")
    (tmp_path / "master.cf").write_text("\n".join(_section(text, "master.cf")) + "\n")
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-M", "scanner/unix"],
                            capture_output=True, text=True, check=True)
    assert result.stderr == ""
    # two transports (smtp and lmtp) share server.concurrency 4
    assert result.stdout.split()[:8] == ["scanner", "unix", "-", "-", "n", "-", "2", "smtp"]
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-P"],
                            capture_output=True, text=True, check=True)
    assert result.stderr == ""
    assert "127.0.0.1:10025/inet/content_filter =" in result.stdout.splitlines()
    assert "scanner_lmtp/unix/lmtp_send_xforward_command = yes" in result.stdout
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-h", "content_filter",
                             "scanner_destination_concurrency_limit"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["scanner:[127.0.0.1]:10024", "2"]


@pytest.mark.skipif(not os.path.exists(POSTCONF), reason="postfix not installed")
def test_readme_recipe_applies_the_parts(tmp_path: Path) -> None:
    """README "Postfix wiring": the main.cf part through `postconf -e`, the master.cf
    part appended; Postfix then reads back every setting and both services."""
    import sys

    for name in ("main.cf", "master.cf"):
        (tmp_path / name).write_text(Path("/etc/postfix", name).read_text())
    script = (
        f"{sys.executable} -m scanner postfix-config --part main | "
        f"while read -r line; do {POSTCONF} -c {tmp_path} -e \"$line\"; done && "
        f"{sys.executable} -m scanner postfix-config --part master >> {tmp_path}/master.cf")
    subprocess.run(["sh", "-c", script], check=True, timeout=60)
    # "Changing the wiring later": remove the services, append them again
    rewire = (f"{POSTCONF} -c {tmp_path} -MX scanner/unix scanner_smtp/unix "
              f"scanner_lmtp/unix 127.0.0.1:10025/inet && "
              f"{sys.executable} -m scanner postfix-config --part master >> {tmp_path}/master.cf")
    subprocess.run(["sh", "-c", rewire], check=True, timeout=60)
    main = subprocess.run([POSTCONF, "-c", str(tmp_path), "-n"], capture_output=True,
                          text=True, check=True).stdout
    assert "content_filter = scanner:[127.0.0.1]:10024" in main
    assert "scanner_destination_concurrency_limit = 20" in main
    services = subprocess.run([POSTCONF, "-c", str(tmp_path), "-M"], capture_output=True,
                              text=True, check=True).stdout
    assert services.count("scanner    unix") == 1 and services.count("127.0.0.1:10025 inet") == 1
    assert "#" not in (tmp_path / "master.cf").read_text().split("127.0.0.1:10025")[-1]
    assert "smtp_data_done_timeout=720" in services


def test_milter_settings_follow_the_configuration(tmp_path: Path) -> None:
    """``postfix-config --milter``: the main.cf lines Postfix reads back, timeouts above
    server.message_timeout, amavisd-milter's command line with our socket."""
    from scanner.postfix_milter import render_milter

    text = render_milter(_config('[server]\nmessage_timeout = 200\nconcurrency = 7\n'
                                 '[quarantine]\nampdp_socket = "/run/s/scanner.sock"\n'))
    [command] = [ln[4:] for ln in text.splitlines() if ln.startswith("#   amavisd-milter ")]
    argv = command.split()
    assert argv[argv.index("-S") + 1] == "/run/s/scanner.sock"
    assert argv[argv.index("-m") + 1] == "7"
    assert int(argv[argv.index("-T") + 1]) > 200  # waits longer than we scan
    assert int(argv[argv.index("-t") + 1]) > int(argv[argv.index("-T") + 1])
    main = _section(text, "main.cf")
    (tmp_path / "main.cf").write_text("\n".join(main) + "\n")
    (tmp_path / "master.cf").write_text("")
    if not os.path.exists(POSTCONF):
        return
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-h", "smtpd_milters",
                             "milter_default_action", "milter_content_timeout"],
                            capture_output=True, text=True, check=True)
    assert result.stderr == ""
    assert result.stdout.split() == ["inet:127.0.0.1:10023", "tempfail",
                                     f"{argv[argv.index('-t') + 1]}s"]


def test_milter_settings_keep_the_reinjection_service(tmp_path: Path) -> None:
    """Before queue too, DSNs, notices and releases go out through [reinject]: the
    --milter output has its master.cf service, which takes mail without the milter."""
    from scanner.postfix_milter import render_milter

    text = render_milter(_config('[reinject]\nport = 10035\n'))
    master = _section(text, "master.cf")
    service = _service(master, "127.0.0.1:10035")
    assert "-o smtpd_milters=" in [line.strip() for line in service]
    (tmp_path / "main.cf").write_text("")
    (tmp_path / "master.cf").write_text("\n".join(master) + "\n")
    if not os.path.exists(POSTCONF):
        return
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-P", "127.0.0.1:10035/inet/"
                             "smtpd_milters"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "127.0.0.1:10035/inet/smtpd_milters ="
