"""The README stays true: its configuration reference matches the code."""

from __future__ import annotations

from scanner.config import reference
from tests.helpers import REPO


def test_readme_configuration_reference_is_current():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert reference() in readme, "run `scanner config keys` and paste it into README.md"


def test_readme_quick_start_has_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "scripts/quickstart.sh serve" in readme and "scripts/quickstart.sh test" in readme
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/quickstart.sh test" in ci
