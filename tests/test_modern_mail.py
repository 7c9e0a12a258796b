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


# --- the audit of 2026-12-06: 35 more ham and 12 more spam of today's kinds -------------

# Ordinary mail of a mailbox today: shops, banks, travel, doctors, schools, newsletters the
# reader signed up for, code-hosting and tracker notifications, lists, personal and shop mail in
# ten languages, calendar updates, sign-in and payment codes, bounces, auto-replies.
# Each stays below tag_level (no X-Spam headers) with the shipped model and rules.
EVERYDAY_HAM = [
    "ham-shipping-notice-esp.eml", "ham-return-refund.eml", "ham-invoice-pdf.eml",
    "ham-bank-statement.eml", "ham-flight-booking.eml", "ham-hotel-booking.eml",
    "ham-doctor-reminder.eml", "ham-school-newsletter.eml", "ham-saas-newsletter-promo.eml",
    "ham-marketing-birthday-coupon.eml", "ham-webinar-invitation.eml",
    "ham-issue-comment.eml", "ham-ci-pipeline-failed.eml",
    "ham-tracker-assigned.eml", "ham-mailing-list-discussion.eml",
    "ham-personal-long-thread.eml", "ham-phone-html-only.eml", "ham-personal-french.eml",
    "ham-order-spanish.eml", "ham-personal-italian.eml", "ham-newsletter-portuguese.eml",
    "ham-personal-polish.eml", "ham-personal-russian.eml", "ham-shipping-chinese.eml",
    "ham-personal-japanese.eml", "ham-personal-arabic.eml", "ham-calendar-update.eml",
    "ham-new-signin-alert.eml", "ham-payment-2fa-code.eml",
    "ham-subscription-payment-failed.eml", "ham-job-application-reply.eml",
    "ham-dsn-bounce.eml", "ham-out-of-office.eml",
]
# The classifier alone puts this donation receipt at BAYES_80 (0.90: "your", "our", "you",
# "will" and the verb "remove" of "remove plastic"), exactly tag_level; no rule adds to it.
# The model retrained on 2026-12-07 puts the Black Friday newsletter at BAYES_80 as well
# (0.77 before; the same settings with other seeds give BAYES_60 to BAYES_80), and its
# "don't miss out" is SC_ACT_NOW (0.3): 2.3, X-Spam headers. Both must stay far from
# tag2_level, with no rule points but that one; see corpora/modern/README.md.
CLASSIFIER_LEANS_SPAM = {"ham-charity-receipt.eml": 0.0, "ham-marketing-black-friday.eml": 0.3}


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every message of corpora/modern scanned once, by file name (one process, as
    _scan runs it)."""
    tmp = tmp_path_factory.mktemp("modern")
    cfg = tmp / "c.toml"
    cfg.write_text(CONFIG + f'[quarantine]\ndirectory = "{tmp / "q"}"\nampdp_socket = ""\n')
    files = sorted(MODERN.glob("*.eml"))
    run = subprocess.run([sys.executable, "-m", "scanner", "scan", "-c", str(cfg), "--json",
                          *map(str, files)], capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert len(results) == len(files)
    return {Path(r["file"]).name: r for r in results}


def _rule_points(data: dict) -> float:
    return sum(v for k, v in data["symbols"].items() if not k.startswith("BAYES_"))


@pytest.mark.parametrize("name", EVERYDAY_HAM)
def test_todays_ordinary_mail_stays_below_tag_level(scanned: dict[str, dict], name: str) -> None:
    data = scanned[name]
    assert data["category"] == "CLEAN" and data["score"] < TAG_LEVEL, data["symbols"]


@pytest.mark.parametrize("name", list(CLASSIFIER_LEANS_SPAM))
def test_commercial_ham_the_model_leans_on_stays_below_tag2(scanned: dict[str, dict],
                                                           name: str) -> None:
    data = scanned[name]
    assert data["category"] == "CLEAN" and data["score"] < TAG2 / 2, data["symbols"]
    assert _rule_points(data) <= CLASSIFIER_LEANS_SPAM[name], data["symbols"]


def test_every_message_of_the_audit_is_checked() -> None:
    audited = set(EVERYDAY_HAM) | set(CLASSIFIER_LEANS_SPAM) | {n for n, _ in AUDIT_SPAM}
    assert audited <= {p.name for p in MODERN.glob("*.eml")}
    assert len(audited) == 47


@pytest.mark.parametrize("name", EVERYDAY_HAM + list(CLASSIFIER_LEANS_SPAM))
def test_rules_alone_give_todays_ham_at_most_a_pitch(scanned: dict[str, dict], name: str) -> None:
    # Whatever the classifier makes of it, the rules must not turn ordinary mail into spam:
    # at most one cheap symbol (a different Reply-To: domain, "limited time" in a newsletter
    # the reader signed up for, HTML without a text part), never a fraud or phishing rule.
    data = scanned[name]
    assert _rule_points(data) <= 0.5, data["symbols"]
    assert not PHISHING & set(data["symbols"]), data["symbols"]


AUDIT_SPAM = [
    ("spam-sextortion-bitcoin.eml", {"SC_BTC_BLACKMAIL", "SC_CRYPTO_BLACKMAIL",
                                     "SC_THREAT_DEADLINE"}),
    ("spam-payment-failed-phish.eml", {"SC_ACCOUNT_THREAT", "SC_THREAT_DEADLINE"}),
    ("spam-qr-code-phish.eml", {"SC_QR_CODE_LURE"}),
    ("spam-crypto-investment.eml", {"SC_INVEST_SCAM"}),
    ("spam-antivirus-renewal.eml", {"SC_SECURITY_SCARE"}),
    ("spam-gift-card-prize.eml", {"SC_PRIZE_CLAIM"}),
    ("spam-romance.eml", {"SC_PRIVATE_EMAIL_REPLY"}),
    ("spam-seo-cold-outreach.eml", {"SC_SEO_OFFER", "SC_PITCH_2"}),
    ("spam-customs-fee.eml", {"SC_PARCEL_FEE"}),
    ("spam-image-only.eml", {"SC_HTML_IMAGE_ONLY"}),
    ("spam-office-credential.eml", {"SC_DOC_SHARE_LOGIN"}),
    ("spam-pharma.eml", {"SC_PHARMA_OFFER", "SC_PHARMA_NO_RX"}),
]


@pytest.mark.parametrize("name, symbols", AUDIT_SPAM)
def test_todays_spam_kinds_are_recognised(scanned: dict[str, dict], name: str,
                                          symbols: set[str]) -> None:
    # The floor is tag_level, as for the spam above: the classifier, trained on 2002-2005
    # mail, rates these 0.58-0.99, so several stay below tag2_level on the content
    # checks alone (corpora/modern/README.md gives each score).
    data = scanned[name]
    assert symbols <= set(data["symbols"]), data["symbols"]
    assert data["score"] >= TAG_LEVEL, data["symbols"]
