"""The SMTP/LMTP side: our listener (on aiosmtpd) and the protocol helpers."""
