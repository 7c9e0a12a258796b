"""Policy: the per-recipient decision (category, destiny, quarantine) from symbol hits."""
