"""A throwaway SMTP sink on 127.0.0.1 (aiosmtpd) that keeps every message in memory.

    sink = SmtpSink().start()        # listening on sink.port (chosen at the first start)
    ... send mail to 127.0.0.1:sink.port ...
    sink.messages[0]["Subject"]      # email.message.EmailMessage objects
    sink.wait_for(2, timeout=10)     # True once two messages have arrived
    sink.stop(); sink.start()        # a relay outage, then back on the same port

Optional STARTTLS (`tls_cert`/`tls_key`) and AUTH (`credentials=("user", "password")`,
accepted only after STARTTLS when TLS is on) exercise the notify step's full path.
`reject = "451 4.3.0 try later"` makes every DATA fail with that reply until reset to None.
"""
from __future__ import annotations

import email
import email.policy
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from engine.drillkit.ports import LOOPBACK, free_port


@dataclass(frozen=True)
class Received:
    """One delivered message: envelope sender and recipients, the parsed message, the raw bytes."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    authenticated_as: str | None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.sink.reject:
            return self.sink.reject
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(
            session.auth_data, LoginPassword) else None
        with self.sink._lock:
            self.sink._received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), message, raw, login)
            )
            self.sink._lock.notify_all()
        return "250 2.0.0 OK: queued in the drill sink"


class SmtpSink:
    """An in-memory SMTP relay on 127.0.0.1 that can be stopped and started on the same port."""

    def __init__(
        self,
        *,
        port: int = 0,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.port = port
        self.reject: str | None = None
        self._credentials = credentials
        self._tls: ssl.SSLContext | None = None
        if tls_cert:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(tls_cert), str(tls_key) if tls_key else None)
        self._received: list[Received] = []
        self._lock = threading.Condition()
        self._controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (
            self._credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    @property
    def received(self) -> list[Received]:
        """Every message delivered so far (across restarts)."""
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self.received]

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        """Listen (again) on `self.port`; the first start with port 0 picks a free port."""
        if self._controller is not None:
            return self
        if not self.port:
            self.port = free_port()
        params: dict[str, Any] = {}
        if self._tls is not None:
            params["tls_context"] = self._tls
        if self._credentials is not None:
            params["authenticator"] = self._authenticate
            params["auth_required"] = True
            # Without TLS (a plain loopback test) AUTH is allowed in clear, as on a local relay.
            params["auth_require_tls"] = self._tls is not None
        controller = Controller(_Handler(self), hostname=LOOPBACK, port=self.port,
                                server_hostname="localhost", **params)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()`."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least `count` messages arrived (True) or `timeout` passed (False).

        Mail sent on a state change may arrive just after the state file says so: tests
        wait for it rather than read `messages` at once.
        """
        with self._lock:
            return self._lock.wait_for(lambda: len(self._received) >= count, timeout)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
