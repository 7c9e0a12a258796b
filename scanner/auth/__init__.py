"""Sender authentication: SPF, DKIM, DMARC, ARC, the client from the Received chain,
the public suffix list, Authentication-Results headers and DKIM signing.

Everything here is protocol logic over :mod:`scanner.dns`; the checks in
``scanner/checks/`` (auth, dkim, dnsbl, uribl) wire it to the pipeline.
"""
