"""Actions: carry out the verdicts (tag, quarantine, deliver, bounce, reject, notify)."""
