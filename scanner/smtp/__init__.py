"""The SMTP/LMTP side: our listener (an asyncio protocol) and the protocol helpers."""
