"""Reinjection: hand scanned mail to the next hop (Postfix's reinjection smtpd)."""
