"""What the listener knows of one connection (:class:`FilterSession`) and of the
transaction in it (:class:`FilterEnvelope`); the handler's hooks get both."""

from __future__ import annotations

from typing import Any

from scanner.smtp import params as esmtp


class FilterSession:
    """One connection: the client, its greeting and the XFORWARD attributes Postfix
    sent for the next mail."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.host_name: str | None = None
        self.extended_smtp = False
        self.xforward: dict[str, str | None] = {}
        self.xforward_allowed = False


class FilterEnvelope:
    """One transaction; ESMTP parameters keep their original case."""

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.mail_options: list[str] = []
        self.mail_params: list[esmtp.Param] = []
        self.smtp_utf8 = False
        self.rcpt_tos: list[str] = []
        self.rcpt_params: list[list[esmtp.Param]] = []
        self.content: bytes | None = None
        self.original_content: bytes | None = None
