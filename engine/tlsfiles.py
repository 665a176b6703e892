"""Do a client certificate, its key and a CA bundle load? One line per file that does not.

Shared by the http probe's `host_problems()` and the notify relay's host check, so both
say the same thing about the same broken file.
"""
from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any


def tls_file_problems(params: Mapping[str, Any]) -> list[str]:
    """Lines `client_cert: …` / `ca_file: …` for the TLS files of `params` that do not load
    (keys `client_cert`, `client_key`, `ca_file`; absent ones are not checked)."""
    problems: list[str] = []
    cert, key, ca_file = params.get("client_cert"), params.get("client_key"), params.get("ca_file")
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            # An empty password instead of None: an encrypted key must fail, not prompt on a tty.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except (OSError, ssl.SSLError) as exc:
            files = f"{cert} with key {key}" if key else str(cert)
            problems.append(f"client_cert: cannot load {files}: {_reason(exc)} "
                            "(a PEM certificate and its private key are needed)")
    if ca_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"ca_file: cannot load {ca_file}: {_reason(exc)} "
                            "(a PEM bundle of CA certificates is needed)")
    return problems


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        # OpenSSL says only "PEM lib" (or nothing) for a file that is not PEM at all.
        if exc.reason in (None, "PEM_LIB"):
            return "not valid PEM"
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
