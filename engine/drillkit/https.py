"""A throwaway HTTPS "production" on 127.0.0.1 that demands a client certificate.

    server = HttpsServer(cert=pki.server.cert, key=pki.server.key, client_ca=pki.ca.cert,
                         routes={"/check": (200, "OK")})
    server.start()            # listening on server.port (chosen at the first start)
    server.url("/check")      # https://127.0.0.1:<port>/check
    server.stop()             # an outage: connections are refused
    server.start()            # back, on the same port
    server.set_route("/check", 503, "maintenance")   # or a failing production

With `client_ca` set the TLS handshake requires a client certificate signed by that CA
(`ssl.CERT_REQUIRED`); with `cert=None` it serves plain HTTP (the drill's "internet" guard).
Each connection is handled in its own thread, and the TLS handshake happens there too,
so a client that connects and says nothing cannot stall the server.
"""
from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    """One request the server answered: path, status and the client certificate's subject CN."""

    path: str
    status: int
    client_cn: str | None


@dataclass
class _Shared:
    routes: dict[str, tuple[int, str]]
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        shared = self.server.shared
        path = self.path.split("?", 1)[0]
        with shared.lock:
            status, body = shared.routes.get(path, (404, "not found"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True
        with shared.lock:
            shared.requests.append(Request(path, status, _client_cn(self.connection)))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        """Quiet: tests and the drill print their own timeline."""


def _client_cn(connection: socket.socket) -> str | None:
    if not isinstance(connection, ssl.SSLSocket):
        return None
    peer = connection.getpeercert()
    for rdn in (peer or {}).get("subject", ()):
        for attribute in rdn:
            key, value = attribute[0], attribute[1]
            if key == "commonName":
                return str(value)
    return None


class _Server(ThreadingHTTPServer):
    # Restarting on the same port right after stop() must not fail on TIME_WAIT sockets.
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, context: ssl.SSLContext | None, shared: _Shared) -> None:
        self.context = context
        self.shared = shared
        self.handshake_failures = 0
        super().__init__((LOOPBACK, port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the per-connection thread: the TLS handshake happens here, not in accept().
        request.settimeout(10)
        if self.context is None:
            self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]
            return
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            request.close()
            return
        # wrap_socket took over the descriptor: the base class's shutdown_request() only
        # sees the detached plain socket, so the TLS socket is closed here.
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are normal in an outage drill; stay quiet."""


class HttpsServer:
    """A threaded HTTP(S) server on 127.0.0.1 that can be stopped and started on the same port."""

    def __init__(
        self,
        *,
        cert: str | Path | None,
        key: str | Path | None,
        client_ca: str | Path | None = None,
        routes: dict[str, tuple[int, str]] | None = None,
        port: int = 0,
    ) -> None:
        self.port = port
        self._context = self._make_context(cert, key, client_ca) if cert else None
        self._shared = _Shared(routes=dict(routes or {"/": (200, "OK")}))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _make_context(cert: str | Path, key: str | Path | None,
                      client_ca: str | Path | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert), str(key) if key else None)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(client_ca))
        return context

    @property
    def scheme(self) -> str:
        return "https" if self._context else "http"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def requests(self) -> list[Request]:
        """Every request answered so far (across restarts)."""
        with self._shared.lock:
            return list(self._shared.requests)

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.port}{path}"

    def set_route(self, path: str, status: int, body: str = "") -> None:
        """Answer `path` with `status` and `body` from now on (e.g. 503 to fake a broken site)."""
        with self._shared.lock:
            self._shared.routes[path] = (status, body)

    def start(self) -> HttpsServer:
        """Listen (again) on `self.port`; the first start with port 0 picks a free port."""
        if self._server is not None:
            return self
        server = _Server(self.port, self._context, self._shared)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"drill-https-{self.port}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until `start()`."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HttpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
