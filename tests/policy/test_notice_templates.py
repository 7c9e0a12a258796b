"""Site notice templates ([notices] templates_dir, scanner.notices): every kind rendered
from a German templates dir, checks that name the file and the variable, CR/LF in a
value that cannot add a header field, and a kind without a file keeping the shipped
text."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest

from scanner import config as cfgmod
from scanner.actions.notify import build_notice
from scanner.actions.recipient_notice import build_recipient_notice
from scanner.cli.config_cmd import preflight
from scanner.config.policy import PolicyConfig
from scanner.dsn import build_failure_dsn
from scanner.errors import ConfigError
from scanner.notices import KINDS, built_in, load_templates
from scanner.pipeline.parse import parse_headers
from scanner.task import ClientInfo, Destiny, Envelope, Hit, Recipient, Task, Verdict

RAW = ("From: a@example.org\r\nTo: b@example.test\r\nSubject: Rechnung für Mai\r\n"
       "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <n1@example.org>\r\n\r\n"
       "body\r\n").encode()
HITS = [Hit("BANNED_FILE", options=("x",), part="P=p004,L=1/2/1,T=exe-ms,N=rechnung.exe"),
        Hit("CLAMAV_VIRUS", options=("Eicar-Test-Signature",)), Hit("BAD_HEADER_8BIT")]
# one German template per kind, naming each variable the kind has
GERMAN = {kind: (f"Subject: Nachricht gesperrt ({kind}): Größe ü "
                 + ("$mail_id" if "mail_id" in names else "$count") + "\n\n"
                 "Grüße aus der Prüfstelle.\n"
                 + ("[?quarantine]Quarantäne: $quarantine\n[!quarantine]Nicht aufbewahrt.\n"
                    if "quarantine" in names else "")
                 + "".join(f"{name}=${name}\n" for name in sorted(names)))
          for kind, names in KINDS.items()}


def _task(sender: str = "a@example.org", client_name: str = "mx.example.org") -> Task:
    rcpts = (Recipient("b@example.test"), Recipient("c@example.test"))
    task = Task(mail_id="abcdefghijkl", log_id="00001-01", raw=RAW, hits=HITS,
                envelope=Envelope(sender, rcpts), queue_id="4QX1",
                client=ClientInfo(addr="192.0.2.7", name=client_name))
    task.message = parse_headers(RAW)
    for r in rcpts:
        task.verdicts[r.address] = Verdict("BANNED", Destiny.DISCARD, 7.5,
                                           policy=PolicyConfig(), hits=HITS)
    return task


def _german_dir(tmp_path: Path) -> Path:
    for kind, text in GERMAN.items():
        (tmp_path / f"{kind}.txt").write_text(text, encoding="utf-8")
    return tmp_path


def _read(data: bytes) -> tuple[email.message.EmailMessage, str]:
    msg = email.message_from_bytes(data, policy=default)
    return msg, msg.get_content().replace("\r\n", "\n")  # type: ignore[return-value]


@pytest.mark.parametrize("category", ["VIRUS", "BANNED", "SPAM", "UNCHECKED", "BAD-HEADER"])
def test_each_admin_notice_is_written_from_its_german_template(tmp_path: Path,
                                                               category: str) -> None:
    templates = load_templates(str(_german_dir(tmp_path)))
    data = build_notice(_task(), "admin@example.test", category, "mx.example.test",
                        "abcdefghijkl", True, templates)
    head = data.partition(b"\r\n\r\n")[0]
    assert head.isascii()  # the umlauts of the Subject RFC 2047-encoded
    msg, body = _read(data)
    kind = "admin-" + category.lower()
    assert msg["Subject"] == f"Nachricht gesperrt ({kind}): Größe ü abcdefghijkl"
    assert f"category={category}\n" in body
    assert body.startswith("Grüße aus der Prüfstelle.\nQuarantäne: abcdefghijkl\n")
    assert "Nicht aufbewahrt" not in body
    assert "recipients=<b@example.test>\n           <c@example.test>\n" in body
    assert "subject=Rechnung für Mai\n" in body and "queue_id=4QX1\n" in body
    assert "client_name=mx.example.org\n" in body and "blocked=yes\n" in body
    extra = {"VIRUS": "virus_names=Eicar-Test-Signature\n",
             "BANNED": "banned_files=rechnung.exe\nbanned_parts=P=p004,L=1/2/1,T=exe-ms,"
                       "N=rechnung.exe\n", "SPAM": "score=7.500\n",
             "BAD-HEADER": "header_problems=BAD_HEADER_8BIT\n", "UNCHECKED": "symbols="}
    assert extra[category] in body, body


@pytest.mark.parametrize("category", ["VIRUS", "BANNED", "BAD-HEADER"])
def test_each_recipient_notice_is_written_from_its_german_template(tmp_path: Path,
                                                                   category: str) -> None:
    templates = load_templates(str(_german_dir(tmp_path)))
    data, utf8 = build_recipient_notice(_task(), "b@example.test", category,
                                        "mx.example.test", None, templates)
    msg, body = _read(data)
    assert not utf8 and data.partition(b"\r\n\r\n")[0].isascii()
    kind = "recipient-" + category.lower()
    assert msg["Subject"] == f"Nachricht gesperrt ({kind}): Größe ü abcdefghijkl"
    assert "Nicht aufbewahrt.\n" in body and "Quarantäne" not in body
    assert "recipient=b@example.test\n" in body and "date=Mon, 1 Jan 2024" in body


def test_the_dsn_text_is_written_from_its_german_template(tmp_path: Path) -> None:
    templates = load_templates(str(_german_dir(tmp_path)))
    task = _task()
    data = build_failure_dsn(task, [(task.envelope.recipients[0], "550 5.1.1 nein")],
                             "mx.example.test", templates)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.isascii() and b"\r\nContent-Type: message/delivery-status\r\n" in rest
    msg = email.message_from_bytes(data, policy=default)
    assert msg["Subject"] == "Nachricht gesperrt (dsn): Größe ü abcdefghijkl"
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert text["Content-Transfer-Encoding"] == "8bit"
    body = text.get_content().replace("\r\n", "\n")
    assert body.startswith("Grüße aus der Prüfstelle.\n")
    assert "failed=<b@example.test>: 550 5.1.1 nein\n" in body
    assert "Final-Recipient: rfc822; b@example.test" in data.decode()  # status unchanged


def test_a_kind_without_a_site_file_keeps_the_shipped_text(tmp_path: Path) -> None:
    (tmp_path / "admin-virus.txt").write_text(GERMAN["admin-virus"], encoding="utf-8")
    templates = load_templates(str(tmp_path))
    values = {"category": "BANNED", "sender": "a@example.org", "mail_id": "abcdefghijkl"}
    assert templates["admin-banned"].render(values) == built_in()["admin-banned"].render(values)
    assert templates["admin-virus"].render(values)[0] == \
        "Nachricht gesperrt (admin-virus): Größe ü abcdefghijkl"


@pytest.mark.parametrize("text, wanted", [
    ("Subject: x\n\nHallo $absender\n", "line 3: unknown variable $absender"),
    ("Subject: $betreff\n\nHallo\n", "line 1: unknown variable $betreff"),
    ("Subject: x\n\n[?ablage]Hallo\n", "line 3: unknown variable $ablage"),
    ("Subject: x\n\nKosten: 5 $\n", "line 3: '$' not followed by a variable name"),
    ("Hallo $sender\n", "the first line must be 'Subject: ...'"),
])
def test_a_bad_template_is_a_config_error_naming_file_and_variable(
        tmp_path: Path, text: str, wanted: str) -> None:
    path = tmp_path / "recipient-banned.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_templates(str(tmp_path))
    assert str(err.value).startswith(f"{path}: {wanted}"), err.value


def test_latin1_template_and_missing_dir_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "dsn.txt").write_bytes("Subject: Zurück\n\nText\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"dsn\.txt: not UTF-8 text"):
        load_templates(str(tmp_path))
    with pytest.raises(ConfigError, match="not a directory"):
        load_templates(str(tmp_path / "nowhere"))


def test_a_bom_of_a_windows_editor_is_not_taken_for_text(tmp_path: Path) -> None:
    (tmp_path / "dsn.txt").write_bytes("\ufeffSubject: Zurück\n\nText\n".encode())
    assert load_templates(str(tmp_path))["dsn"].render({}) == ("Zurück", "Text\n")


def test_a_long_dsn_subject_is_folded(tmp_path: Path) -> None:
    """A $subject in the DSN's Subject (written by hand, not by the email package) is
    folded, and its text part quoted-printable: a long one passed RFC 5322's 998
    octets a line."""
    (tmp_path / "dsn.txt").write_text("Subject: Nicht zugestellt: $subject\n\n"
                                      "Ihre Nachricht: $subject\n$failed\n", encoding="utf-8")
    task = _task()
    raw = RAW.replace(b"Rechnung f\xc3\xbcr Mai", b"word " * 300)
    task.raw, task.message = raw, parse_headers(raw)
    data = build_failure_dsn(task, [(task.envelope.recipients[0], "550 5.1.1 nein")],
                             "mx.example.test", load_templates(str(tmp_path)))
    returned = data.rindex(b"Content-Type: text/rfc822-headers")  # has it unfolded
    assert max(len(line) for line in data[:returned].split(b"\r\n")) <= 998
    msg = email.message_from_bytes(data, policy=default)
    long_subject = " ".join(["word"] * 300)
    assert " ".join(msg["Subject"].split()) == f"Nicht zugestellt: {long_subject}"
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().startswith(f"Ihre Nachricht: {long_subject}\r\n<b@example")


def test_config_check_stops_on_a_bad_template(tmp_path: Path) -> None:
    """``scanner config check`` and serve's start (preflight) name the config file,
    the template and the variable."""
    (tmp_path / "admin-spam.txt").write_text("Subject: $punkte\n\n", encoding="utf-8")
    config = cfgmod.loads(f'[notices]\ntemplates_dir = "{tmp_path}"\n'
                          '[checks]\nenabled = []\n', "scanner.toml")
    with pytest.raises(ConfigError, match=r"^scanner\.toml: .*admin-spam\.txt: line 1: "
                                          r"unknown variable \$punkte"):
        preflight(config)


def test_cr_lf_in_a_value_cannot_add_a_header_field(tmp_path: Path) -> None:
    """An XFORWARD client name (or any value) with CR LF in the Subject: the notice is
    still written, the line break a space, no Bcc field."""
    (tmp_path / "admin-banned.txt").write_text("Subject: Von $client_name\n\n$client_name\n",
                                               encoding="utf-8")
    task = _task(client_name="evil.example\r\nBcc: victim@example.net")
    data = build_notice(task, "admin@example.test", "BANNED", "mx.example.test", None,
                        True, load_templates(str(tmp_path)))
    msg, body = _read(data)
    assert msg["Bcc"] is None and b"\r\nBcc:" not in data
    assert msg["Subject"] == "Von evil.example  Bcc: victim@example.net"
    assert body == "evil.example  Bcc: victim@example.net\n"


def test_shipped_templates_are_the_shipped_texts() -> None:
    """The shipped files parse and the admin notice reads as it always did."""
    data = build_notice(_task(), "admin@example.test", "BANNED", "mx.example.test", None,
                        False)
    msg, body = _read(data)
    assert msg["Subject"] == "BANNED from <a@example.org>"
    assert body.startswith("A message was delivered as BANNED.\n\nmail_id:    abcdefghijkl\n")
    assert "Recipients: <b@example.test>\n            <c@example.test>\n" in body
    assert body.endswith("Quarantine: (not quarantined)\n")


def test_scanner_config_check_names_a_broken_template(tmp_path: Path) -> None:
    """``scanner config check`` (exit 2) names the config file, the template and the
    variable, as serve's start does."""
    import os
    import subprocess
    import sys

    broken = tmp_path / "tpl"
    broken.mkdir()
    (broken / "dsn.txt").write_text("Subject: $betreff\n\n", encoding="utf-8")
    config = tmp_path / "scanner.toml"
    config.write_text(f'[notices]\ntemplates_dir = "{broken}"\n[checks]\nenabled = []\n'
                      f'[quarantine]\ndirectory = "{tmp_path}/q"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "SCANNER_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "scanner", "config", "check", str(config)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out
    assert f"{config}: {broken}/dsn.txt: line 1: unknown variable $betreff" in out.stderr


def test_sighup_warns_of_a_template_broken_since_start(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Templates are read at start; SIGHUP checks what the next start would read."""
    from scanner.serve.master import report_config_on_hup

    (tmp_path / "dsn.txt").write_text("Subject: gut\n\n$failed\n", encoding="utf-8")
    path = tmp_path / "scanner.toml"
    path.write_text(f'[notices]\ntemplates_dir = "{tmp_path}"\n[checks]\nenabled = []\n'
                    f'[quarantine]\ndirectory = "{tmp_path}/q"\n', encoding="utf-8")
    config = cfgmod.load(str(path))
    (tmp_path / "dsn.txt").write_text("Subject: gut\n\n$fehler\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="scanner"):
        report_config_on_hup(config)
    [line] = [r.getMessage() for r in caplog.records]
    assert "dsn.txt: line 3: unknown variable $fehler" in line
    assert "still running with the configuration read at start" in line


def _reload_config(tmp_path: Path) -> cfgmod.Config:
    (tmp_path / "dsn.txt").write_text("Subject: alt\n\n$failed\n", encoding="utf-8")
    path = tmp_path / "scanner.toml"
    path.write_text(f'[notices]\ntemplates_dir = "{tmp_path}"\n[checks]\nenabled = []\n'
                    f'[quarantine]\ndirectory = "{tmp_path}/q"\nampdp_socket = ""\n',
                    encoding="utf-8")
    return cfgmod.load(str(path))


def test_sighup_reads_a_workers_templates_again(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A worker's SIGHUP reload (its checks and the processor's reloadable parts, as
    scanner.serve.worker wires them) applies an edited template without a restart; a
    broken edit keeps the templates in use and logs its file and line."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from scanner.pipeline.cpu import make_run_cpu
    from scanner.pipeline.processor import Processor
    from scanner.reinject.deliver import NextHop
    from scanner.scores import load_scores
    from scanner.serve.reload import Reloads

    config = _reload_config(tmp_path)
    hop = NextHop("127.0.0.1", 9, False, 1, 1, "scanner.test", True)
    proc = Processor(config, [], load_scores(), hop, "scanner.test")

    async def sighup() -> None:
        with ThreadPoolExecutor(1) as pool:
            run_cpu = make_run_cpu(asyncio.get_running_loop(), pool)
            await Reloads([*proc.reloadable], run_cpu).now()

    def subject() -> str:
        return proc._notices["dsn"].render({})[0]

    assert subject() == "alt"
    (tmp_path / "dsn.txt").write_text("Subject: neu\n\n$failed\n", encoding="utf-8")
    asyncio.run(sighup())
    assert subject() == "neu"
    (tmp_path / "dsn.txt").write_text("Subject: kaputt\n\n$fehler\n", encoding="utf-8")
    with caplog.at_level("ERROR", logger="scanner"):
        asyncio.run(sighup())
    assert subject() == "neu"
    assert f"{tmp_path}/dsn.txt: line 3: unknown variable $fehler" in caplog.text


def test_sighup_gives_workers_started_later_the_templates_read_then(tmp_path: Path) -> None:
    """The master reads the templates again on SIGHUP (as a start would) into what it
    hands every worker it forks: an edit reaches a worker started later too; a broken
    edit leaves the last good ones there."""
    from scanner.checks.base import LastGood
    from scanner.notices import templates_key
    from scanner.serve.master import report_config_on_hup

    config = _reload_config(tmp_path)
    last_good = LastGood()
    preflight(config, last_good)  # scanner serve's start

    def subject() -> str:
        return last_good.get(templates_key(str(tmp_path)))["dsn"].render({})[0]

    assert subject() == "alt"
    (tmp_path / "dsn.txt").write_text("Subject: neu\n\n$failed\n", encoding="utf-8")
    report_config_on_hup(config, last_good)
    assert subject() == "neu"
    (tmp_path / "dsn.txt").write_text("Subject: kaputt\n\n$fehler\n", encoding="utf-8")
    report_config_on_hup(config, last_good)
    assert subject() == "neu"
