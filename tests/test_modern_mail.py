"""Today's phishing and ordinary mail through the whole analysis (corpora/modern)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

MODERN = REPO / "corpora" / "modern"
CONFIG = '[checks]\ndisabled = ["clamav", "auth", "dnsbl", "uribl"]\n'
PHISHING = {"SC_HTML_PASSWORD_INPUT", "SC_HTML_SCRIPT_DECODE", "SC_HTML_SCRIPT_REDIRECT",
            "SC_URI_DATA_HTML", "SC_HTML_LINK_MISMATCH", "SC_ATTACH_HTML_PHISH"}
TAG2 = 6.31  # the default spam level (policy.tag2_level)
TAG_LEVEL = 2.0  # X-Spam headers from here (policy.tag_level)


def _scan(tmp: Path, name: str) -> dict:
    cfg = tmp / "c.toml"
    cfg.write_text(CONFIG + f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), "--json",
                          str(MODERN / name)], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("name, symbols", [
    ("spam-html-attachment.eml", {"SC_HTML_PASSWORD_INPUT", "SC_HTML_SCRIPT_DECODE",
                                  "SC_ATTACH_HTML", "SC_ATTACH_HTML_PHISH"}),
    ("spam-bank-link.eml", {"SC_HTML_LINK_MISMATCH", "SC_ACCOUNT_THREAT"}),
    ("spam-mailbox-full.eml", {"SC_ACCOUNT_THREAT", "SC_URI_NUMERIC_IP"}),
    ("spam-advance-fee.eml", {"SC_ADVANCE_FEE"}),
])
def test_phishing_is_recognised(tmp_path: Path, name: str, symbols: set[str]) -> None:
    data = _scan(tmp_path, name)
    assert symbols <= set(data["symbols"]), data["symbols"]
    assert data["score"] > 2.0  # at least amavis's tag_level: it gets X-Spam headers


def test_disk_image_attachment_is_banned(tmp_path: Path) -> None:
    data = _scan(tmp_path, "spam-iso.eml")
    assert data["category"] == "BANNED" and "BANNED_FILE" in data["symbols"]


def test_tracked_newsletter_stays_clean(tmp_path: Path) -> None:
    data = _scan(tmp_path, "ham-tracked-newsletter.eml")
    assert data["category"] == "CLEAN" and data["score"] < TAG2 / 2, data["symbols"]


def test_password_reset_notice_is_not_phishing(tmp_path: Path) -> None:
    data = _scan(tmp_path, "ham-password-reset.eml")
    assert data["category"] == "CLEAN" and not PHISHING & set(data["symbols"])


@pytest.mark.parametrize("name", ["ham-code-review-notification.eml", "ham-verification-code.eml",
                                  "ham-calendar-invitation.eml", "ham-personal-german.eml",
                                  "ham-shop-order.eml", "ham-signup-confirmation.eml",
                                  "ham-security-alert.eml"])
def test_everyday_modern_ham_stays_below_tag_level(tmp_path: Path, name: str) -> None:
    data = _scan(tmp_path, name)
    assert data["category"] == "CLEAN" and data["score"] < TAG_LEVEL, data["symbols"]


@pytest.mark.parametrize("name", ["spam-crypto.eml", "spam-parcel-fee.eml",
                                  "spam-mailbox-full.eml", "spam-advance-fee.eml"])
def test_everyday_modern_spam_reaches_at_least_tag_level(tmp_path: Path, name: str) -> None:
    data = _scan(tmp_path, name)
    assert data["score"] >= TAG_LEVEL, data["symbols"]



def test_shop_footer_guarantee_is_no_sales_pitch(tmp_path: Path) -> None:
    # "Dear customer" and a money-back guarantee are ordinary in a shop's confirmation; the
    # rules give them at most a single pitch (SC_RISK_FREE), never SC_PITCH_2 or a generic
    # greeting. (The classifier, trained on 2002-2005 mail, rates this one 0.95-0.99:
    # BAYES_95, so the message carries X-Spam headers; that is the model's limit, see
    # corpora/modern/README.md.)
    data = _scan(tmp_path, "ham-shop-confirmation.eml")
    rules = {k: v for k, v in data["symbols"].items() if not k.startswith("BAYES_")}
    assert data["category"] == "CLEAN" and sum(rules.values()) <= 0.5, data["symbols"]
