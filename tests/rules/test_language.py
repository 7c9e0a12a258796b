"""The language rules in German, French and Spanish: account threats as phishing writes
them, in UTF-8 and Latin-1, and the ordinary account mail they must leave alone."""

from __future__ import annotations

import pytest

from scanner.rules.compiler import RuleSet

from .helpers import message, names, run


def _mail(body: str, charset: str) -> bytes:
    head = message(subject="Konto", body="", ctype=f"text/plain; charset={charset}",
                   headers="MIME-Version: 1.0\n")
    return head + body.encode(charset)


PHISHING = [
    ("utf-8", "Sehr geehrter Kunde,\n\nIhr Konto wurde vorübergehend eingeschränkt. Bitte "
              "bestätigen Sie Ihre Daten innerhalb von 24 Stunden über den folgenden Link.\n"),
    ("latin-1", "Sehr geehrter Kunde,\n\nIhr Postfach ist voll. Verifizieren Sie jetzt Ihr "
                "E-Mail-Konto, sonst werden neue Nachrichten abgewiesen.\n"),
    ("utf-8", "Cher client,\n\nvotre compte a été suspendu. Veuillez vérifier vos "
              "informations pour le réactiver.\n"),
    ("latin-1", "Cher client,\n\nvotre accès sera bloqué demain : mettez à jour vos "
                "coordonnées bancaires.\n"),
    ("utf-8", "Estimado cliente:\n\nsu cuenta ha sido suspendida. Verifique sus datos "
              "en el siguiente enlace.\n"),
]

ORDINARY = [
    ("utf-8", "Hallo Bob,\n\nIhr Konto wurde erfolgreich angelegt. Bitte bestätigen Sie Ihre "
              "E-Mail-Adresse mit dem Link unten; er ist 24 Stunden gültig.\n"),
    ("utf-8", "Bonjour,\n\nvotre compte a été créé. Confirmez votre adresse e-mail pour "
              "commencer.\n"),
    ("latin-1", "Hola Bob:\n\nsu pedido está en camino; puede consultar su cuenta en "
                "cualquier momento.\n"),
]


@pytest.mark.parametrize(("charset", "body"), PHISHING)
def test_account_threat_in_other_languages(shipped: RuleSet, charset: str, body: str) -> None:
    assert "SC_ACCOUNT_THREAT" in names(run(shipped, _mail(body, charset)))


@pytest.mark.parametrize(("charset", "body"), ORDINARY)
def test_ordinary_account_mail_is_no_threat(shipped: RuleSet, charset: str, body: str) -> None:
    assert "SC_ACCOUNT_THREAT" not in names(run(shipped, _mail(body, charset)))
