"""AM.PDP over TCP (``[quarantine] ampdp_inet``, amavis's AM.PDP-INET): a web front end
releases as Modoboa's inet mode and iRedAdmin do, with the mail_id and secret_id of the
SQL log's msgs row; clients outside ``ampdp_inet_networks``, releases without a
secret_id and scans are refused."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.errors import ConfigError
from scanner.quarantine.ampdp import bind_ampdp_inet, start_ampdp_server
from scanner.quarantine.ampdp_proto import decode
from scanner.quarantine.store import Quarantine
from scanner.testing.postfix import free_port
from scanner.testing.sink import Sink

from .util import LoopThread, config_text, store


def _ask(port: int, text: str, host: str = "127.0.0.1") -> list[tuple[str, str]]:
    """Send one request as Modoboa's release client writes it (LF line ends), read the
    answer up to its empty line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect((host, port))
        sock.sendall(text.encode())
        reader = sock.makefile("rb")
        out = []
        while (line := reader.readline()) not in (b"", b"\r\n", b"\n"):
            name, _, value = line.rstrip(b"\r\n").partition(b"=")
            out.append((name.decode(), decode(value)))
        return out


@pytest.fixture
def inet(tmp_path: Path, sink: Sink):
    """Start an AM.PDP server on a TCP port; (quarantine, port)."""
    loop = LoopThread()
    servers = []

    def start(networks: str = '["127.0.0.0/8", "::1"]', host: str = "127.0.0.1"):
        text = config_text(tmp_path / "q", sink.port, None,
                           f'ampdp_inet = "{host}:{free_port()}"\n'
                           f'ampdp_inet_networks = {networks}\n')
        config = cfgmod.loads(text)
        sock = bind_ampdp_inet(config.quarantine)
        q = Quarantine(config.quarantine)
        servers.append(loop.run(start_ampdp_server(sock, q, config)))
        return q, sock.getsockname()[1]

    yield start

    async def close(srv) -> None:  # in the server's own loop
        srv.close()

    for srv in servers:
        loop.run(close(srv))
    loop.stop()


def _release(rec, secret: str | None) -> str:
    lines = ["request=release", f"mail_id={rec.mail_id}"]
    lines += [f"secret_id={secret}"] if secret is not None else []
    return "\n".join([*lines, "quar_type=Q", "recipient=bob@example.test"]) + "\n\n"


def test_a_front_end_releases_with_the_secret_id(inet, sink: Sink):
    q, port = inet()
    rec = store(q, recipients=["bob@example.test", "carol@example.test"])
    answer = _ask(port, _release(rec, rec.secret_id))
    replies = [v for k, v in answer if k == "setreply"]
    assert len(replies) == 1 and replies[0].startswith("250 2.6.0 Ok, id=rel-"), answer
    got = sink.wait_for(1)[0]
    assert got.recipients == ["bob@example.test"]
    assert b"(AM.PDP, [127.0.0.1]:" in got.data.split(b"\r\n", 1)[0]


def test_without_or_with_a_wrong_secret_nothing_is_released(inet, sink: Sink):
    q, port = inet()
    rec = store(q)
    for secret in (None, "x" * 12):
        answer = dict(_ask(port, _release(rec, secret)))
        assert answer["setreply"].startswith("550 5.7.1 Not released"), answer
    assert "required to release" in dict(_ask(port, _release(rec, None)))["setreply"]
    assert not sink.received


def test_a_client_outside_the_networks_is_refused(inet, sink: Sink):
    q, port = inet(networks='["192.0.2.0/24"]')
    rec = store(q)
    answer = dict(_ask(port, _release(rec, rec.secret_id)))
    assert answer["setreply"].startswith("554 5.7.1 permission denied: 127.0.0.1")
    assert not sink.received


def test_scans_are_not_served_over_tcp(inet):
    _, port = inet()
    answer = dict(_ask(port, "request=AM.PDP\nmail_file=/etc/shadow\n\n"))
    assert answer["setreply"].startswith("554 5.5.1 scans (request=AM.PDP) are served on "
                                         "the AM.PDP Unix socket only")


def test_ipv6_loopback(inet, sink: Sink):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    q, port = inet(host="[::1]")
    rec = store(q)
    answer = dict(_ask(port, _release(rec, rec.secret_id), host="::1"))
    assert answer["setreply"].startswith("250 2.6.0 Ok"), answer


@pytest.mark.parametrize("bad", ["localhost:9998", "127.0.0.1", "127.0.0.1:99999"])
def test_a_bad_address_names_the_key(bad: str):
    with pytest.raises(ConfigError, match=r"f.toml: 'quarantine.ampdp_inet' = .*: give "
                                          r"ADDRESS:PORT"):
        cfgmod.loads(f'[quarantine]\nampdp_inet = "{bad}"\n', "f.toml")
    with pytest.raises(ConfigError, match=r"'quarantine.ampdp_inet_networks\[0\]'"):
        cfgmod.loads('[quarantine]\nampdp_inet_networks = ["nowhere"]\n', "f.toml")
