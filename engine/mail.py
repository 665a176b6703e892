"""Mail to the admins: building messages, the spool, SMTP delivery. One module, two users.

The notify step (actions/notify.py) and the email channel of the engine's events
(engine/channels/email.py) send through here. How mail goes out comes from the policy's
top-level `notify` block:

    notify:
      email:
        smtp: {host: smtp.example.org, port: 587, starttls: true, credentials: smtp,
               ca_file: /etc/ssl/certs/relay-ca.pem}
        from: failover@standby.example.org
        to: [gocdb-admins@example.org]
        subject: "gocdb failover"

The email channel uses `compose(..., message_id=)` and `deliver()` (no spool: the event
outbox, engine/outbox.py, keeps the event until the relay took it). The notify step's API
is two calls:
- `send_mail(config, subject, body, spool_dir=…, secret=…)`: build the message, write it
  to the spool, then deliver everything spooled, oldest first. Returns `Sent` (its
  Message-ID, how many went out); raises StepError when the message could not go out
  now (it stays spooled, or was refused for good and moved to `spool/rejected/`).
- `flush_spool(config, spool_dir, secret)`: deliver what is spooled; with `require=` a
  Message-ID, raise unless that message went out (what a retried notify step needs).

Every message is on disk (`<spool_dir>/<time>-<hash of Message-ID>.eml`, mode 0600)
before the relay is contacted, so a crash or a dead relay never loses it, and it is
removed only once the relay has accepted it. Flushes hold a lock on the spool, so the
monitor and a cron job never send the same file twice. A 5xx reply moves the message to
`spool/rejected/`; a 4xx reply or an unreachable relay leaves it for the next flush.
Headers: From, To, Subject, Date, Message-ID and `Auto-Submitted: auto-generated`.
"""
from __future__ import annotations

import contextlib
import email
import email.policy
import fcntl
import hashlib
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Literal

from engine.errors import FailoverError, StepError
from engine.fsutil import atomic_write, ensure_private_dir, fsync_dir

DEFAULT_TIMEOUT = 30.0
# CRLF line ends as SMTP wants; headers are folded only past RFC 5322's hard limit, because
# Python folds a long Subject right after "Subject:", which its own parser then reads back
# with a leading space.
_WIRE = email.policy.SMTP.clone(max_line_length=998)
SecretLookup = Callable[[str], Path]
Log = Callable[[str], None]
MailStatus = Literal["spooled", "rejected", "gone"]


# ---------------------------------------------------------------- building a message


def email_config(notify_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The `email` part of the policy's notify block; StepError when there is none."""
    email_cfg = (notify_config or {}).get("email")
    if not email_cfg:
        raise StepError("notify: the policy has no `notify.email` block; add one (smtp, from, "
                        "to) or remove the notify steps")
    return email_cfg


def relay(notify_config: Mapping[str, Any] | None) -> str:
    """`host:port` of the mail relay, for messages."""
    smtp = (email_config(notify_config).get("smtp")) or {}
    return f"{smtp.get('host', 'localhost')}:{int(smtp.get('port', 25))}"


def recipients(notify_config: Mapping[str, Any] | None) -> list[str]:
    """The configured `to` addresses."""
    return list(email_config(notify_config)["to"])


def mail_body(message: str, *, policy: str, state: str | None = None,
              step: str | None = None, host: str | None = None,
              when: datetime | None = None) -> str:
    """The text of a notification: the message, then where and when it comes from."""
    when = when or datetime.now(UTC)
    facts = [("policy", policy)]
    if state:
        facts.append(("state", state))
    facts.append(("host", host or socket.getfqdn()))
    facts.append(("time", when.strftime("%Y-%m-%d %H:%M:%S UTC")))
    if step:
        facts.append(("step", step))
    lines = [message.rstrip(), ""] + [f"{name + ':':8} {value}" for name, value in facts]
    return "\n".join(lines) + "\n"


def compose(notify_config: Mapping[str, Any] | None, subject: str, body: str, *,
            message_id: str | None = None) -> EmailMessage:
    """A ready-to-send message with From, To, Subject, Date and Message-ID (`message_id`
    when given: an event's mail keeps one id however often it is retried)."""
    cfg = email_config(notify_config)
    msg = EmailMessage()
    msg["From"] = cfg["from"]
    msg["To"] = ", ".join(cfg["to"])
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id or make_msgid(idstring="failover", domain=socket.getfqdn())
    # RFC 3834: tells autoresponders not to answer a machine's mail.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


# ---------------------------------------------------------------- the spool


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:16]


def _spool_message(spool_dir: Path, msg: EmailMessage) -> Path:
    """Write `msg` durably into the spool (mode 0600); named so the oldest sorts first."""
    ensure_private_dir(spool_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = Path(spool_dir) / f"{stamp}-{_digest(msg['Message-ID'])}.eml"
    atomic_write(path, msg.as_bytes(policy=_WIRE), mode=0o600)
    return path


def pending(spool_dir: Path) -> list[Path]:
    """Spooled messages, oldest first."""
    return sorted(Path(spool_dir).glob("*.eml")) if Path(spool_dir).is_dir() else []


def status(spool_dir: Path, message_id: str) -> MailStatus:
    """Where a message is: still `spooled`, `rejected` for good, or `gone` (delivered, or
    never spooled here)."""
    digest = _digest(message_id)
    if any(Path(spool_dir).glob(f"*-{digest}.eml")):
        return "spooled"
    if any(Path(spool_dir, "rejected").glob(f"*-{digest}.eml")):
        return "rejected"
    return "gone"


# ---------------------------------------------------------------- SMTP


def read_credentials(path: Path) -> tuple[str, str]:
    """`user:password` on one line, or user and password on two lines."""
    from engine.safefile import FileRefused, read_limited

    try:  # a regular file of at most 64 KiB (engine/safefile.py)
        text = read_limited(path, "secret").decode("utf-8", errors="replace")
    except FileRefused as exc:
        raise StepError(f"notify: SMTP credentials: {exc}") from None
    lines = [line.strip("\r") for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and ":" in lines[0]:
        user, password = lines[0].split(":", 1)
    elif len(lines) == 2:
        user, password = lines
    else:
        user = password = ""
    if not user or not password:
        # Never quote the file's contents: it holds a password.
        raise StepError(f"notify: SMTP credentials file {path} must hold 'user:password' on one "
                        "line, or the user and the password on two lines")
    return user, password


@contextlib.contextmanager
def _connect(cfg: Mapping[str, Any], secret: SecretLookup, timeout: float
             ) -> Iterator[smtplib.SMTP]:
    smtp = cfg.get("smtp") or {}
    where = relay({"email": cfg})
    try:
        client = smtplib.SMTP(smtp.get("host", "localhost"), int(smtp.get("port", 25)),
                              timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise StepError(f"notify: cannot reach the mail relay {where}: {_why(exc)}",
                        retryable=True) from exc
    try:
        try:
            client.ehlo()
            if smtp.get("starttls"):
                context = ssl.create_default_context(cafile=smtp.get("ca_file"))
                client.starttls(context=context)
                client.ehlo()
            if smtp.get("credentials"):
                try:
                    path = secret(smtp["credentials"])
                except FailoverError as exc:  # a secret file too open, missing, wrong owner
                    raise StepError(f"notify: {exc}") from exc
                user, password = read_credentials(path)
                client.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise StepError(f"notify: the mail relay {where} refused the login from secret "
                            f"'{smtp.get('credentials')}': {_why(exc)}") from exc
        except ssl.SSLError as exc:
            raise StepError(f"notify: STARTTLS with {where} failed: {_why(exc)}; check "
                            "notify.email.smtp.ca_file", retryable=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise StepError(f"notify: mail relay {where}: {_why(exc)}", retryable=True) from exc
        yield client
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
        client.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}".strip()
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{rcpt}: {code} {_text(msg)}"
                         for rcpt, (code, msg) in exc.recipients.items())
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "verify_message", None) or exc.reason or str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _permanent(exc: smtplib.SMTPException) -> bool:
    """A 5xx reply to this message: sending it again will not help."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500


@dataclass
class _Flushed:
    """What one pass over the spool did."""

    delivered: list[str] = field(default_factory=list)   # Message-IDs
    rejected: dict[str, str] = field(default_factory=dict)  # Message-ID → reason
    error: StepError | None = None


@contextlib.contextmanager
def _spool_lock(spool_dir: Path) -> Iterator[None]:
    # The monitor and a cron job may flush at the same time: one at a time, no duplicates.
    ensure_private_dir(spool_dir)
    fd = os.open(Path(spool_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _send_file(client: smtplib.SMTP, path: Path, spool_dir: Path, result: _Flushed) -> None:
    raw = path.read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
    message_id = str(msg["Message-ID"])
    sender = parseaddr(str(msg["From"]))[1]
    to = [address for _, address in getaddresses(
        [str(v) for v in msg.get_all("To", []) + msg.get_all("Cc", [])])]
    try:
        # The spooled bytes go out exactly as written: no re-encoding.
        client.sendmail(sender, to, raw)
    except smtplib.SMTPException as exc:
        if not _permanent(exc):
            raise
        result.rejected[message_id] = _why(exc)
        rejected_dir = ensure_private_dir(Path(spool_dir) / "rejected")
        path.rename(rejected_dir / path.name)
        fsync_dir(rejected_dir)
        return
    path.unlink()
    fsync_dir(Path(spool_dir))
    result.delivered.append(message_id)


def _flush(notify_config: Mapping[str, Any] | None, spool_dir: Path, secret: SecretLookup,
           timeout: float) -> _Flushed:
    result = _Flushed()
    if not pending(spool_dir):
        return result
    cfg = email_config(notify_config)
    with _spool_lock(spool_dir):
        files = pending(spool_dir)  # again, under the lock: another process may have sent some
        if not files:
            return result
        try:
            with _connect(cfg, secret, timeout) as client:
                for path in files:
                    _send_file(client, path, spool_dir, result)
        except StepError as exc:
            result.error = exc
        except (OSError, smtplib.SMTPException) as exc:
            result.error = StepError(f"notify: mail relay {relay(notify_config)}: {_why(exc)}",
                                     retryable=True)
    return result


def flush_spool(notify_config: Mapping[str, Any] | None, spool_dir: Path, secret: SecretLookup,
                *, timeout: float = DEFAULT_TIMEOUT, log: Log | None = None,
                require: str | None = None) -> int:
    """Deliver spooled mail, oldest first; return how many messages the relay accepted.

    Without spooled mail nothing is contacted. Messages refused with 5xx go to
    `spool/rejected/` and are logged through `log`. Without `require`, raises StepError
    (retryable) when the relay cannot be reached or answers 4xx: the remaining messages
    stay spooled for next time. With `require` (a Message-ID), raises only when that
    message did not go out: refused for good (not retryable), or still spooled.
    """
    result = _flush(notify_config, spool_dir, secret, timeout)
    for message_id, reason in result.rejected.items():
        if log and message_id != require:
            log(f"notify: the relay refused {message_id} for good ({reason}); "
                f"kept in {Path(spool_dir) / 'rejected'}")
    if require is None:
        if result.error is not None:
            raise result.error
        return len(result.delivered)
    if require in result.rejected:
        raise StepError(f"notify: the relay refused the mail for good "
                        f"({result.rejected[require]}); check notify.email.to/from; the "
                        f"message is kept in {Path(spool_dir) / 'rejected'}")
    if status(spool_dir, require) == "spooled":
        error = result.error or StepError("notify: the mail is still spooled", retryable=True)
        raise StepError(f"{error}; the message is spooled in {spool_dir} and will be sent on the "
                        "next transition", retryable=error.retryable)
    return len(result.delivered)


def deliver(notify_config: Mapping[str, Any] | None, msg: EmailMessage, *,
            secret: SecretLookup, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Send one message now, without the spool (the event outbox keeps its own copy);
    StepError when the relay did not accept it (`retryable` False for a 5xx reply)."""
    cfg = email_config(notify_config)
    raw = msg.as_bytes(policy=_WIRE)
    sender = parseaddr(str(msg["From"]))[1]
    to = [address for _, address in getaddresses([str(v) for v in msg.get_all("To", [])])]
    with _connect(cfg, secret, timeout) as client:
        try:
            client.sendmail(sender, to, raw)
        except smtplib.SMTPException as exc:
            raise StepError(f"notify: mail relay {relay(notify_config)}: {_why(exc)}",
                            retryable=not _permanent(exc)) from None
        except OSError as exc:
            raise StepError(f"notify: mail relay {relay(notify_config)}: {_why(exc)}",
                            retryable=True) from None


@dataclass(frozen=True)
class Sent:
    """A message the relay accepted, and how many spooled messages went out with it."""

    message_id: str
    delivered: int


def send_mail(notify_config: Mapping[str, Any] | None, subject: str, body: str, *,
              spool_dir: Path, secret: SecretLookup, timeout: float = DEFAULT_TIMEOUT,
              log: Log | None = None, on_spooled: Callable[[str], None] | None = None) -> Sent:
    """Spool a new message, then deliver everything spooled, oldest first.

    The message is on disk before the relay is contacted, so a crash or a dead relay never
    loses it; `on_spooled(message_id)` runs right after that (the notify step records the
    id there, so a retry re-sends the spooled copy instead of composing a second mail).
    Raises StepError when it could not be delivered now (see `flush_spool`'s `require`).
    """
    msg = compose(notify_config, subject, body)
    _spool_message(spool_dir, msg)
    message_id = str(msg["Message-ID"])
    if on_spooled is not None:
        on_spooled(message_id)
    count = flush_spool(notify_config, spool_dir, secret, timeout=timeout, log=log,
                        require=message_id)
    return Sent(message_id, count)
