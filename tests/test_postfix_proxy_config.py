"""Unit tests of ``scanner postfix-config --proxy`` (scanner.postfix_proxy): the
public smtpd's proxy settings follow the configuration, Postfix reads them back, and
what cannot work (no SMTP listener, --part with a whole-text mode) is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.config import Config, loads
from scanner.errors import ConfigError
from scanner.postfix_proxy import PROXY_MARGIN, render_proxy
from tests.test_postfix_config import POSTCONF, _section, _service


def _config(toml: str = "") -> Config:
    return loads(toml, "test.toml")


def _options(service: list[str]) -> dict[str, str]:
    return dict(line.removeprefix("-o ").split("=", 1) for line in service[1:])


def test_defaults() -> None:
    text = render_proxy(_config())
    assert not [ln for ln in _section(text, "main.cf") if ln and not ln.startswith("#")]
    master = _section(text, "master.cf")
    smtp = _service(master, "smtp")
    assert smtp[0].split() == ["smtp", "inet", "n", "-", "n", "-", "20", "smtpd"]
    assert _options(smtp) == {
        "smtpd_proxy_filter": "[127.0.0.1]:10024",
        "smtpd_proxy_timeout": f"{600 + PROXY_MARGIN}s",
        "smtpd_proxy_options": "speed_adjust",
        "smtpd_client_connection_count_limit": "10",
    }
    after = _options(_service(master, "127.0.0.1:10025"))
    # no cleanup ran before the filter: header/body checks and mappings run here
    assert after["receive_override_options"] == "no_unknown_recipient_checks,no_milters"
    assert after["content_filter"] == "" and after["smtpd_milters"] == ""
    # the shipped 600 s is too long for a client waiting at the end of DATA
    assert "# WARNING: server.message_timeout is 600 s." in text


def test_settings_follow_the_configuration() -> None:
    text = render_proxy(_config('[server]\nmessage_timeout = 200\nconcurrency = 7\n'
                                '[[listeners]]\naddress = "::1"\nport = 2527\n'
                                '[reinject]\nport = 10035\n'))
    master = _section(text, "master.cf")
    smtp = _service(master, "smtp")
    assert smtp[0].split()[6] == "7"
    assert _options(smtp)["smtpd_proxy_filter"] == "[::1]:2527"
    assert _options(smtp)["smtpd_proxy_timeout"] == f"{200 + PROXY_MARGIN}s"
    assert _options(smtp)["smtpd_client_connection_count_limit"] == "3"
    assert _service(master, "127.0.0.1:10035")
    assert "WARNING" not in text
    assert "#     -o content_filter=scanner:[::1]:2527" in text.splitlines()


def test_the_smtp_listener_is_chosen() -> None:
    """smtpd_proxy_filter speaks SMTP: an LMTP listener is passed over, and one without
    a policy bank is preferred."""
    config = _config('[[listeners]]\nport = 10024\nprotocol = "lmtp"\n'
                     '[[listeners]]\nport = 10026\npolicy_bank = "ORIGINATING"\n'
                     '[[listeners]]\nport = 10027\n')
    smtp = _service(_section(render_proxy(config), "master.cf"), "smtp")
    assert _options(smtp)["smtpd_proxy_filter"] == "[127.0.0.1]:10027"
    config = _config('[[listeners]]\nport = 10024\nprotocol = "lmtp"\n'
                     '[[listeners]]\nport = 10026\npolicy_bank = "ORIGINATING"\n')
    smtp = _service(_section(render_proxy(config), "master.cf"), "smtp")
    assert _options(smtp)["smtpd_proxy_filter"] == "[127.0.0.1]:10026"


def test_an_smtp_listener_on_a_unix_socket_is_reached_as_unix_path() -> None:
    config = _config('[[listeners]]\npath = "/var/lib/scanner/smtp.sock"\n')
    text = render_proxy(config)
    smtp = _service(_section(text, "master.cf"), "smtp")
    assert _options(smtp)["smtpd_proxy_filter"] == "unix:/var/lib/scanner/smtp.sock"
    assert "scanner's listener unix:/var/lib/scanner/smtp.sock before it" in text


def test_only_lmtp_listeners_is_an_error_naming_the_file_and_key() -> None:
    with pytest.raises(ConfigError) as err:
        render_proxy(_config('[[listeners]]\nport = 10024\nprotocol = "lmtp"\n'))
    assert "test.toml" in str(err.value) and "'listeners'" in str(err.value)


@pytest.mark.skipif(not os.access(POSTCONF, os.X_OK), reason="postconf is not installed")
def test_postconf_reads_the_services_back(tmp_path: Path) -> None:
    text = render_proxy(_config('[server]\nmessage_timeout = 250\n'))
    (tmp_path / "main.cf").write_text("")
    (tmp_path / "master.cf").write_text("\n".join(_section(text, "master.cf")) + "\n")
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-P"], capture_output=True,
                            text=True, check=True)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "smtp/inet/smtpd_proxy_filter = [127.0.0.1]:10024" in lines
    assert "smtp/inet/smtpd_proxy_timeout = 280s" in lines
    assert ("127.0.0.1:10025/inet/receive_override_options = "
            "no_unknown_recipient_checks,no_milters") in lines


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCANNER_CONFIG"}
    return subprocess.run([sys.executable, "-m", "scanner", "postfix-config", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_behind_postscreen_the_pass_service_gets_the_proxy(tmp_path: Path) -> None:
    text = render_proxy(_config(), "smtpd/pass")
    smtpd = _service(_section(text, "master.cf"), "smtpd")
    assert smtpd[0].split() == ["smtpd", "pass", "-", "-", "n", "-", "20", "smtpd"]
    assert _options(smtpd)["smtpd_proxy_filter"] == "[127.0.0.1]:10024"
    assert "#   postconf -F 'smtpd/pass/process_limit=20'" in text.splitlines()
    for bad in ("smtpd", "smtp/unix", "/inet", "a b/inet"):
        with pytest.raises(ValueError, match="NAME/TYPE"):
            render_proxy(_config(), bad)
    if not os.access(POSTCONF, os.X_OK):
        return
    (tmp_path / "main.cf").write_text("")
    (tmp_path / "master.cf").write_text("\n".join(_section(text, "master.cf")) + "\n")
    result = subprocess.run([POSTCONF, "-c", str(tmp_path), "-P", "smtpd/pass/"
                             "smtpd_proxy_filter"], capture_output=True, text=True, check=True)
    assert result.stderr == ""
    assert result.stdout.strip() == "smtpd/pass/smtpd_proxy_filter = [127.0.0.1]:10024"


def test_cli() -> None:
    result = _cli("--proxy")
    assert result.returncode == 0 and "-o smtpd_proxy_filter=" in result.stdout
    result = _cli("--proxy", "--service", "smtpd/pass")
    assert result.returncode == 0 and "\nsmtpd      pass  " in result.stdout
    result = _cli("--proxy", "--service", "smtpd")
    assert result.returncode == 2 and "give the public smtpd service as NAME/TYPE" in \
        result.stderr
    result = _cli("--service", "smtp/inet")
    assert result.returncode == 2 and "--service goes with --proxy" in result.stderr
    result = _cli("--proxy", "--part", "master")
    assert result.returncode == 2 and "--part" in result.stderr and result.stdout == ""
    result = _cli("--proxy", "--milter")
    assert result.returncode == 2 and "not allowed with" in result.stderr


@pytest.mark.skipif(not os.access(POSTCONF, os.X_OK), reason="postconf is not installed")
def test_the_postconf_recipe_turns_an_after_queue_wiring_into_this_one(tmp_path: Path) -> None:
    """README "Before-queue with Postfix's smtpd_proxy_filter": Debian's configuration
    wired after queue (README "Postfix wiring"), then the printed postconf commands:
    Postfix reads back the proxy on the public smtpd, its process limit, the
    after-filter smtpd's receive overrides, and no content_filter."""
    for name in ("main.cf", "master.cf"):
        (tmp_path / name).write_text(Path("/etc/postfix", name).read_text())
    scanner = f"{sys.executable} -m scanner postfix-config"
    after_queue = (f"{scanner} --part main | while read -r line; do {POSTCONF} -c {tmp_path} "
                   f"-e \"$line\"; done && {scanner} --part master >> {tmp_path}/master.cf")
    subprocess.run(["sh", "-c", after_queue], check=True, timeout=60)
    text = render_proxy(_config())
    commands = [ln.removeprefix("#   ") for ln in text.splitlines()
                if ln.startswith("#   postconf ")]
    assert len(commands) == 4
    for command in commands:
        subprocess.run(["sh", "-c", command.replace("postconf ", f"{POSTCONF} -c {tmp_path} ",
                                                     1)], check=True, timeout=60)
    main = subprocess.run([POSTCONF, "-c", str(tmp_path), "-n"], capture_output=True,
                          text=True, check=True).stdout
    assert "content_filter" not in main and "receive_override_options" not in main
    services = subprocess.run([POSTCONF, "-c", str(tmp_path), "-P"], capture_output=True,
                              text=True, check=True).stdout.splitlines()
    smtp = _service(_section(text, "master.cf"), "smtp")
    for name, value in _options(smtp).items():
        assert f"smtp/inet/{name} = {value}" in services
    assert ("127.0.0.1:10025/inet/receive_override_options = "
            "no_unknown_recipient_checks,no_milters") in services
    fields = subprocess.run([POSTCONF, "-c", str(tmp_path), "-F", "smtp/inet/process_limit"],
                            capture_output=True, text=True, check=True).stdout
    assert fields.strip() == "smtp/inet/process_limit = 20"
