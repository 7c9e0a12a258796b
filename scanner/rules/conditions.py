"""``ifplugin``/``if``/``else``/``endif`` blocks of SpamAssassin rule files.

This engine answers the questions the way SpamAssassin 4.0 with Debian's default
plugin set does, so rule files select the same branches: ``plugin(X)`` and
``ifplugin X`` are true for plugins in :data:`DEFAULT_PLUGINS` or loaded by a
``loadplugin`` line; ``can(Mail::SpamAssassin::Conf::feature_*)`` and
``can(Mail::SpamAssassin::Plugin::X::has_*)`` are true when SpamAssassin 4.0.1 has the
feature (for plugins: when the plugin counts as loaded); ``version`` is 4.000001.
Rules inside a true branch that this engine cannot run (``eval:`` rules, plugin
rule types) are skipped and counted, never silently treated as hits.
"""

from __future__ import annotations

import re

from scanner.rules.expr import ExprError, evaluate_constant

SA_VERSION = 4.000001
PERL_VERSION = 5.036000
DEFAULT_PLUGINS = frozenset([
    "Check", "URIDNSBL", "SPF", "Rule2XSBody", "Pyzor", "Razor2", "SpamCop", "AutoLearnThreshold",
    "WelcomeListSubject", "WhiteListSubject", "MIMEHeader", "ReplaceTags", "DKIM", "HTTPSMismatch",
    "URIDetail", "Bayes", "BodyEval", "DNSEval", "HTMLEval", "HeaderEval", "MIMEEval", "RelayEval",
    "URIEval", "WLBLEval", "WLBLEval", "VBounce", "ImageInfo", "FreeMail", "AskDNS", "HashBL",
    "DMARC"
])
_FUNC = re.compile(r"\b(plugin|can|has)\s*\(\s*([\w:]+)\s*\)")
_MISSING_FEATURES = frozenset({"feature_dns_local_ports_permit_avoid"})


def _short(plugin: str) -> str:
    return plugin.rsplit("::", 1)[-1]


class Conditions:
    """The stack of open conditional blocks of the file being read."""

    def __init__(self, plugins: set[str] | None = None) -> None:
        self.plugins = plugins if plugins is not None else set()
        self._stack: list[tuple[bool, bool]] = []  # (this branch true, parent active)

    def loaded(self, plugin: str) -> bool:
        name = _short(plugin)
        return name in DEFAULT_PLUGINS or any(_short(p) == name for p in self.plugins)

    def depth(self) -> int:
        return len(self._stack)

    def reset(self, depth: int) -> None:
        del self._stack[depth:]

    def active(self) -> bool:
        return not self._stack or (self._stack[-1][0] and self._stack[-1][1])

    def handle(self, word: str, rest: str) -> bool:
        """True when the line was a conditional (consumed); raises ValueError if bad."""
        if word == "ifplugin":
            self._stack.append((self.loaded(rest.strip()), self.active()))
        elif word == "if":
            parent = self.active()
            self._stack.append((self.evaluate(rest) if parent else False, parent))
        elif word == "else":
            if not self._stack:
                raise ValueError("else without if")
            value, parent = self._stack.pop()
            self._stack.append((not value, parent))
        elif word == "endif":
            if not self._stack:
                raise ValueError("endif without if")
            self._stack.pop()
        else:
            return False
        return True

    def evaluate(self, text: str) -> bool:
        """Value of an ``if`` expression."""
        expr = _FUNC.sub(lambda m: "1" if self._func(m.group(1), m.group(2)) else "0", text)
        expr = re.sub(r"\bperl_version\b", str(PERL_VERSION), expr)
        expr = re.sub(r"\bversion\b", str(SA_VERSION), expr)
        try:
            return bool(evaluate_constant(expr))
        except ExprError as exc:
            raise ValueError(f"if: cannot evaluate {text!r}: {exc}") from None

    def _func(self, func: str, arg: str) -> bool:
        if func == "plugin":
            return self.loaded(arg)
        if "::Conf::" in arg:
            feature = arg.rsplit("::", 1)[-1]
            return feature not in _MISSING_FEATURES
        if "::Plugin::" in arg:
            plugin, _, method = arg.rpartition("::")
            return self.loaded(plugin) and method.startswith("has_")
        return False
