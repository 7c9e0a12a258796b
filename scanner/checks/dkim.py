"""dkim_sign: DKIM-sign mail of our own users (the ORIGINATING policy bank).

A check only by registration: ``run`` finds nothing. The work is ``sign(task, data)``,
which the processor calls on the final outgoing bytes (after our Received and added
headers) and whose ``DKIM-Signature`` headers it prepends. The key is chosen by the
author's domain (From), else the envelope sender's; ``subdomains = true`` lets a
domain's key sign for its subdomains. Keys are read at start (a bad key stops start-up)
and again on SIGHUP. A signing error raises: the message is deferred (451), not sent
unsigned, since unsigned mail from a DMARC ``p=reject`` domain would bounce elsewhere;
only a message whose header section dkimpy cannot parse (it never could be signed)
goes out unsigned, with a warning.

Keys come from ``scanner dkim genkey DOMAIN SELECTOR``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import dkim

from scanner.auth import dkim_sign
from scanner.auth.identity import address_domain, from_domains
from scanner.auth.psl import normalise
from scanner.checks.base import CheckContext
from scanner.config.schema import opt
from scanner.errors import ConfigError
from scanner.policy.effective import any_bank_in
from scanner.task import Hit, Task

log = logging.getLogger("scanner.dkim")


@dataclass(frozen=True, slots=True)
class KeySettings:
    """One signing key ([[checks.settings.dkim_sign.keys]])."""

    domain: str = opt("", "signing domain (d=)")
    selector: str = opt("", "selector (s=): the key is published at SELECTOR._domainkey.DOMAIN")
    key_file: str = opt("", "private key file, RSA or Ed25519 (scanner dkim genkey writes one)")
    subdomains: bool = opt(True, "also sign mail whose author is in a subdomain of domain")


@dataclass(frozen=True, slots=True)
class DkimSignSettings:
    """Settings of the DKIM signer ([checks.settings.dkim_sign])."""

    keys: tuple[KeySettings, ...] = opt([], "signing keys; none = sign nothing")
    policy_banks: tuple[str, ...] = opt(["ORIGINATING"], "sign mail of these policy banks")
    headers: tuple[str, ...] = opt(list(dkim_sign.SIGN_HEADERS),
                                   "header fields signed (every occurrence)")
    oversign: tuple[str, ...] = opt(list(dkim_sign.OVERSIGN_HEADERS),
                                    "header fields signed once more than present, so no "
                                    "instance can be added")


class DkimSign:
    """DKIM signing of originating mail (the processor's ``sign`` hook)."""

    name: ClassVar[str] = "dkim_sign"
    description: ClassVar[str] = "DKIM-signs mail of the ORIGINATING policy bank"
    symbols: ClassVar[dict[str, str]] = {}
    default_enabled: ClassVar[bool] = True
    kind: ClassVar[str] = "other"
    Settings: ClassVar[type] = DkimSignSettings

    def __init__(self, settings: DkimSignSettings, context: CheckContext) -> None:
        self._s = settings
        self._source = context.config.source
        self._run_cpu = context.run_cpu
        self._banks = {b.upper() for b in settings.policy_banks}
        self._last_good = context.last_good
        try:
            self._keys = self._last_good.keep(("dkim_sign", settings), self._load())
        except ConfigError as exc:
            before = self._last_good.get(("dkim_sign", settings))
            if before is None:
                raise
            # a key file broke since start-up: a worker started now keeps the keys
            log.error("DKIM keys read before kept: %s", exc)
            self._keys = before

    def _load(self) -> list[dkim_sign.SigningKey]:
        keys = []
        for i, k in enumerate(self._s.keys):
            where = f"checks.settings.dkim_sign.keys[{i}]"
            domain = normalise(k.domain)
            if not domain or "." not in domain:
                raise ConfigError(f"{self._source}: '{where}.domain' = {k.domain!r} is not "
                                  "a domain name")
            if not k.selector or not k.selector.replace("-", "").replace(".", "").isalnum():
                raise ConfigError(f"{self._source}: '{where}.selector' = {k.selector!r} is "
                                  "not a selector (letters, digits, - and .)")
            try:
                key = dkim_sign.load_key(k.key_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self._source}: '{where}.key_file': {exc}") from None
            keys.append(dkim_sign.SigningKey(domain, k.selector, key, k.subdomains,
                                             k.key_file))
        if "from" not in {h.lower() for h in self._s.headers}:
            raise ConfigError(f"{self._source}: 'checks.settings.dkim_sign.headers' must "
                              "include From (RFC 6376)")
        return keys

    def reload(self) -> None:
        """SIGHUP: read the key files again; keep the old keys if that fails."""
        try:
            self._keys = self._last_good.keep(("dkim_sign", self._s), self._load())
        except ConfigError as exc:
            log.error("DKIM keys not reloaded: %s", exc)

    async def run(self, task: Task) -> Iterable[Hit]:
        return []

    def keys_for(self, task: Task) -> list[dkim_sign.SigningKey]:
        """The keys that sign this message ([] when it is not ours to sign)."""
        if not self._keys or not any_bank_in(task.policy_bank, self._banks):
            return []
        domains = from_domains(task.message)[:1] + [address_domain(task.envelope.sender)]
        return dkim_sign.choose_keys(self._keys, domains)

    async def sign(self, task: Task, data: bytes) -> list[tuple[str, str]]:
        """``DKIM-Signature`` headers for the outgoing ``data`` (may be [])."""
        keys = self.keys_for(task)
        headers = []
        for key in keys:
            try:
                headers.append(await self._run_cpu(dkim_sign.sign, data, key,
                                                   self._s.headers, self._s.oversign))
            except (dkim.MessageFormatError, IndexError) as exc:
                # a header section dkimpy cannot parse will never sign: send it unsigned
                log.warning("(%s) not DKIM-signed, malformed message: %s", task.log_id, exc)
                return []
            log.info("(%s) DKIM signed: d=%s s=%s", task.log_id, key.domain, key.selector)
            if (signed := f"{key.selector}:{key.domain}") not in task.dkim_new:
                task.dkim_new.append(signed)
        return headers
