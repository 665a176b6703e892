"""Probes: is production up? `http` (GET, optional client certificate) and `tcp` (connect).

A probe never raises: `check()` returns `ProbeResult(ok, detail, latency)` where `detail`
is one line an operator can act on ("HTTP 503 (expected 200)", "connect timeout after 30s",
"TLS: certificate verify failed (unable to get local issuer certificate)").

    probes:
      production:
        http:
          url: https://goc.egi.eu/portal/GOCDB_monitor/ops_monitor_check.php
          client_cert: /etc/grid-security/hostcert.pem   # presented to the server
          client_key: /etc/grid-security/hostkey.pem
          ca_file: /etc/pki/tls/certs/ca-bundle.crt       # default: the system's CAs
          verify: true          # false (written out) skips server certificate checks
          timeout: 30s          # the whole probe: connect, TLS handshake, response
          expect_status: 200
          expect_body: "OK"     # optional substring of the first 1 MiB of the body
      internet:
        tcp: {host: www.google.com, port: 443, timeout: 5s}

Only the standard library is used (`http.client`, `ssl`, `socket`): no proxies, no
redirects followed (a 301 is reported as such, which is what a health check wants).

A guard (`monitor.guards`) is a reachability check: the monitor builds it with
`guard=True`, and then any HTTP response — any status, a redirect included — or a
completed TLS handshake counts as reachable, unless the policy gives `expect_status`.
The target keeps `expect_status` 200 by default. `cannot_run()` says why a probe cannot
work at all (a client certificate missing, unreadable or expired): the monitor reports
the failover as disarmed then, and `certificate_not_after()` feeds the expiry warning.
"""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from actions.base import Context, ProbeResult
from engine.durations import format_duration, parse_duration
from engine.tlsfiles import tls_file_problems

_BODY_LIMIT = 1024 * 1024
_USER_AGENT = "failover-engine-probe/1"


def _connect_error(exc: OSError, host: str, port: int, timeout: float) -> str:
    """One line for a failed TCP connect."""
    if isinstance(exc, TimeoutError):
        return f"connect timeout after {format_duration(timeout)} ({host}:{port})"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}:{port}"
    return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


# TLS alerts a server sends about the client certificate → what it means to an operator.
_CLIENT_CERT_ALERTS = {
    "CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "UNKNOWN_CA": "the server rejected our client certificate (issuer not trusted there)",
    "BAD_CERTIFICATE": "the server rejected our client certificate",
    "UNSUPPORTED_CERTIFICATE": "the server rejected our client certificate",
    "CERTIFICATE_EXPIRED": "the server rejected our client certificate (expired)",
    "CERTIFICATE_REVOKED": "the server rejected our client certificate (revoked)",
    "CERTIFICATE_UNKNOWN": "the server rejected our client certificate",
    "ACCESS_DENIED": "the server rejected our client certificate (access denied)",
    "DECRYPT_ERROR": "the server rejected our client certificate (signature check failed)",
}


def _tls_error(exc: BaseException, *, client_cert: bool = False) -> str:
    """One line for a TLS failure, naming the usual cause.

    With TLS 1.3 the server checks our certificate after the handshake, and some servers
    reject it by closing the connection with no alert: the client then sees only "EOF
    occurred in violation of protocol" or a reset. With a client certificate presented,
    that is the server rejecting it, and the line says so.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        for alert, meaning in _CLIENT_CERT_ALERTS.items():
            if alert in reason.upper():
                return f"TLS: {meaning} (alert {alert.lower().replace('_', ' ')})"
        if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason.upper():
            return _closed_after_handshake(client_cert, "closed")
        return f"TLS: {reason}"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return _closed_after_handshake(client_cert, "reset")
    return f"TLS: {getattr(exc, 'strerror', None) or exc}"


def _closed_after_handshake(client_cert: bool, how: str) -> str:
    """A server that drops the connection right after the handshake, without an alert:
    with TLS 1.3 that is how many reject a client certificate (or the lack of one)."""
    if client_cert:
        return (f"TLS: the server rejected our client certificate (it {how} the connection "
                "after the handshake without an alert)")
    return (f"TLS: the server requires a client certificate, probably (it {how} the "
            "connection after the handshake without an alert; this probe presents none)")


def _left(deadline: float) -> float:
    """Seconds left before `deadline`; TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("probe deadline passed")
    return left


def _read_body(response: http.client.HTTPResponse, sock: socket.socket, deadline: float) -> bytes:
    """Up to 1 MiB of the body, within the probe's deadline."""
    chunks: list[bytes] = []
    size = 0
    while size < _BODY_LIMIT:
        sock.settimeout(_left(deadline))
        chunk = response.read1(min(65536, _BODY_LIMIT - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class TcpProbe:
    """Connect to host:port; ok when the connection is accepted."""

    kind: ClassVar[str] = "tcp"

    def __init__(self, params: Mapping[str, Any], *, guard: bool = False) -> None:
        # A connect is a reachability check already: `guard` changes nothing here.
        self.host = str(params["host"])
        self.port = int(params["port"])
        self.timeout = parse_duration(params.get("timeout", "10s"))

    def check(self) -> ProbeResult:
        start = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                pass
        except OSError as exc:
            detail = _connect_error(exc, self.host, self.port, self.timeout)
            return ProbeResult(False, detail, time.monotonic() - start)
        except Exception as exc:  # a probe never raises: anything else is still a failed probe
            return ProbeResult(False, f"probe error: {exc}", time.monotonic() - start)
        latency = time.monotonic() - start
        return ProbeResult(True, f"connected to {self.host}:{self.port}", latency)

    def host_problems(self, ctx: Context | None = None) -> list[str]:
        """Nothing on this host to check: a tcp probe needs no files."""
        return []

    def cannot_run(self) -> str | None:
        """A tcp probe needs nothing on this host: it can always run."""
        return None

    def certificate_not_after(self) -> datetime | None:
        """No client certificate."""
        return None


class HttpProbe:
    """GET a URL and compare the status (and optionally a body substring) with what is expected."""

    kind: ClassVar[str] = "http"

    def __init__(self, params: Mapping[str, Any], *, guard: bool = False) -> None:
        self.url = str(params["url"])
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r}: use http://host/... or https://host/...")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.timeout = parse_duration(params.get("timeout", "30s"))
        # None: any response will do (a guard asks "can this host reach the world?").
        wanted = params.get("expect_status")
        self.expect_status: int | None = (
            int(wanted) if wanted is not None else None if guard else 200)
        self.expect_body: str | None = params.get("expect_body")
        # A guard the policy asks nothing specific of: reached is enough.
        self.reachability = guard and self.expect_status is None and self.expect_body is None
        self.client_cert: str | None = params.get("client_cert")
        self.client_key: str | None = params.get("client_key")
        self.ca_file: str | None = params.get("ca_file")
        # Verification stays on unless the policy says `verify: false` in so many words.
        self.verify = params.get("verify", True) is not False
        self._cached: tuple[tuple[Any, ...], ssl.SSLContext] | None = None
        self._not_after: tuple[tuple[Any, ...], datetime | None] | None = None

    def _files_signature(self) -> tuple[Any, ...]:
        """What identifies the TLS files' content cheaply: (name, mtime, size) of each."""
        signature: list[Any] = []
        for name in (self.client_cert, self.client_key, self.ca_file):
            if name:
                st = os.stat(name)
                signature.append((name, st.st_mtime_ns, st.st_size))
        return tuple(signature)

    def _context(self) -> ssl.SSLContext:
        # Reused while the files are unchanged (loading them costs ~1.5 ms a probe:
        # BENCHMARKS.md); a renewed certificate or key is picked up at the next check.
        try:
            signature = self._files_signature()
        except OSError:
            signature = None
        if signature is not None and self._cached and self._cached[0] == signature:
            return self._cached[1]
        context = self._build_context()
        if signature is not None:
            self._cached = (signature, context)
        return context

    def _build_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            # An empty password, not None: an encrypted key must fail, never prompt on a tty.
            context.load_cert_chain(self.client_cert, self.client_key, password=lambda: b"")
        return context

    def host_problems(self, ctx: Context | None = None) -> list[str]:
        """Certificate, key and CA files must exist and load (for `validate --host`): one
        line per file, starting with its option (`client_cert: …`, `ca_file: …`)."""
        if not self.tls:
            return []
        return tls_file_problems({"client_cert": self.client_cert,
                                  "client_key": self.client_key, "ca_file": self.ca_file})

    def certificate_not_after(self) -> datetime | None:
        """When the client certificate expires (UTC), None without one; OSError or
        ValueError when it cannot be read. Parsed again only when the file changes."""
        if not self.client_cert:
            return None
        st = os.stat(self.client_cert)
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._not_after is None or self._not_after[0] != signature:
            from cryptography import x509

            with open(self.client_cert, "rb") as handle:
                cert = x509.load_pem_x509_certificate(handle.read())
            # cryptography < 42 (Debian 12's 38) has only the naive not_valid_after (UTC).
            after = getattr(cert, "not_valid_after_utc", None)
            if after is None:
                after = cert.not_valid_after.replace(tzinfo=UTC)
            self._not_after = (signature, after)
        return self._not_after[1]

    def cannot_run(self) -> str | None:
        """Why this probe cannot work at all, whatever the server does: its TLS files do
        not load or its client certificate has expired. None when it can run."""
        if not self.tls:
            return None
        try:
            self._context()
            not_after = self.certificate_not_after()
        except (OSError, ssl.SSLError, ValueError) as exc:
            return self._context_error(exc)
        if not_after is not None and not_after <= datetime.now(UTC):
            return (f"the client certificate {self.client_cert} expired on "
                    f"{not_after.isoformat(timespec='seconds')}")
        return None

    def _context_error(self, exc: BaseException) -> str:
        files = ", ".join(
            f"{name} {value}"
            for name, value in (("client_cert", self.client_cert), ("client_key", self.client_key),
                                ("ca_file", self.ca_file))
            if value
        )
        if isinstance(exc, ssl.SSLError) and exc.reason in (None, "PEM_LIB"):
            # OpenSSL says only "PEM lib" for a non-PEM file or an encrypted key.
            reason = "not valid PEM, or the key is encrypted (it must not be)"
        else:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        return f"cannot load TLS files ({files}): {reason}"

    def check(self) -> ProbeResult:
        start = time.monotonic()
        try:
            ok, detail = self._check()
        except Exception as exc:  # a probe never raises: an unforeseen error is a failed probe
            ok, detail = False, f"probe error: {type(exc).__name__}: {exc}"
        return ProbeResult(ok, detail, time.monotonic() - start)

    def _check(self) -> tuple[bool, str]:
        # `timeout` bounds the whole probe (connect + handshake + response), so a server
        # that trickles bytes cannot hold a monitor cycle much longer than that.
        deadline = time.monotonic() + self.timeout
        context = None
        if self.tls:
            try:
                context = self._context()
            except (OSError, ssl.SSLError, ValueError) as exc:
                return False, self._context_error(exc)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            return False, _connect_error(exc, self.host, self.port, self.timeout)
        # The TCP connect, the TLS handshake and the read are done one after the other so
        # the detail says which of them failed.
        try:
            if context is not None:
                try:
                    sock.settimeout(_left(deadline))
                    sock = context.wrap_socket(sock, server_hostname=self.host)
                except TimeoutError:
                    return False, f"TLS handshake timeout after {format_duration(self.timeout)}"
                except (ssl.SSLError, OSError) as exc:
                    return False, _tls_error(exc, client_cert=bool(self.client_cert))
            ok, detail = self._request(sock, deadline)
            if not ok and self.tls and self.reachability:
                # The handshake completed: the network works, which is all a guard asks.
                return True, f"TLS handshake completed (then {detail})"
            return ok, detail
        finally:
            sock.close()

    def _request(self, sock: socket.socket, deadline: float) -> tuple[bool, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.sock = sock  # already connected (and wrapped): http.client uses it as is
        try:
            sock.settimeout(_left(deadline))
            conn.putrequest("GET", self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.host_header)
            conn.putheader("User-Agent", _USER_AGENT)
            conn.putheader("Connection", "close")
            conn.endheaders()
            response = conn.getresponse()
            body = _read_body(response, sock, deadline) if self.expect_body is not None else b""
        except TimeoutError:
            return False, f"no response within {format_duration(self.timeout)}"
        except ssl.SSLError as exc:
            # With TLS 1.3 a rejected client certificate shows up only when we read.
            return False, _tls_error(exc, client_cert=bool(self.client_cert))
        except ConnectionResetError as exc:
            if self.tls:
                return False, _tls_error(exc, client_cert=bool(self.client_cert))
            return False, f"connection closed before a response: {exc.strerror or exc}"
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return False, f"connection closed before a response: {reason}"
        finally:
            conn.close()
        status = f"HTTP {response.status}"
        if self.reachability:
            return True, f"{status} (reachable)"
        if self.expect_status is not None and response.status != self.expect_status:
            return False, f"{status} (expected {self.expect_status})"
        if self.expect_body is not None and self.expect_body not in body.decode("utf-8", "replace"):
            return False, f"{status} but the body does not contain {self.expect_body!r}"
        return True, status
