"""notify: email the admins through SMTP; mail that cannot be sent is spooled, never lost.

The policy's top-level `notify` block says how mail goes out; each `notify` step says what:

    secrets:
      smtp: /etc/failover-engine/smtp.cred     # "user:password" (or user and password on
                                               # two lines), mode 0600; only if the relay
                                               # wants AUTH
    notify:
      email:
        smtp: {host: smtp.example.org, port: 587, starttls: true, credentials: smtp}
        from: failover@standby.example.org
        to: [gocdb-admins@example.org]
        subject: "gocdb failover"              # subjects read "gocdb failover: <message>"
      remind_every: 6h                         # the engine re-sends while engaged
    engage:
      - notify: {message: "Production failed 30 probes in a row; engaging the failover."}
      - notify: {message: "Failover engaged.", subject: "gocdb failover ENGAGED"}

Each mail carries the step's message, then the policy name, the engine state (when the
runner knows it), this host's name, the UTC time and the step. Headers: From, To,
Subject, Date, Message-ID and `Auto-Submitted: auto-generated` (so no vacation replies).

Every message is first written to `<state_dir>/spool/` (an .eml file, mode 0600) and
removed only once the relay has accepted it. When the relay is down the step fails with
a retryable error and the message stays spooled; `flush_spool()` — called before every
send and by the engine on every transition — delivers it later, oldest first. A message
the relay refuses for good (a 5xx reply) is moved to `spool/rejected/` and logged.
A notify step continues on error by default: a dead mail relay never blocks a failover.

Dry-run (plan) says who would get which subject through which relay; it sends nothing.
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
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine.errors import FailoverError, StepError
from engine.fsutil import atomic_write, ensure_private_dir, fsync_dir

DEFAULT_TIMEOUT = 30.0
# CRLF line ends as SMTP wants; headers are folded only past RFC 5322's hard limit, because
# Python folds a long Subject right after "Subject:", which its own parser then reads back
# with a leading space.
_WIRE = email.policy.SMTP.clone(max_line_length=998)
SecretLookup = Callable[[str], Path]


# ---------------------------------------------------------------- composing and spooling


def _email_config(notify_config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    email_cfg = (notify_config or {}).get("email")
    if not email_cfg:
        raise StepError("notify: the policy has no `notify.email` block; add one (smtp, from, "
                        "to) or remove the notify steps")
    return email_cfg


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


def compose(notify_config: Mapping[str, Any], subject: str, body: str) -> EmailMessage:
    """A ready-to-send message with From, To, Subject, Date and Message-ID."""
    cfg = _email_config(notify_config)
    msg = EmailMessage()
    msg["From"] = cfg["from"]
    msg["To"] = ", ".join(cfg["to"])
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(idstring="failover", domain=socket.getfqdn())
    # RFC 3834: tells autoresponders not to answer a machine's mail.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:16]


def spool_message(spool_dir: Path, msg: EmailMessage) -> Path:
    """Write `msg` durably into the spool (mode 0600); named so the oldest sorts first."""
    ensure_private_dir(spool_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = Path(spool_dir) / f"{stamp}-{_digest(msg['Message-ID'])}.eml"
    atomic_write(path, msg.as_bytes(policy=_WIRE), mode=0o600)
    return path


def spooled(spool_dir: Path, message_id: str) -> Path | None:
    """The spool file of `message_id` if it is still waiting, else None."""
    return next(iter(sorted(Path(spool_dir).glob(f"*-{_digest(message_id)}.eml"))), None)


def _rejected(spool_dir: Path, message_id: str) -> Path | None:
    return next(iter(Path(spool_dir, "rejected").glob(f"*-{_digest(message_id)}.eml")), None)


def pending(spool_dir: Path) -> list[Path]:
    """Spooled messages, oldest first."""
    return sorted(Path(spool_dir).glob("*.eml")) if Path(spool_dir).is_dir() else []


# ---------------------------------------------------------------- SMTP


def read_credentials(path: Path) -> tuple[str, str]:
    """`user:password` on one line, or user and password on two lines."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise StepError(f"notify: cannot read the SMTP credentials file {path}: "
                        f"{exc.strerror or exc}") from exc
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


def _relay(cfg: Mapping[str, Any]) -> str:
    smtp = cfg.get("smtp") or {}
    return f"{smtp.get('host', 'localhost')}:{int(smtp.get('port', 25))}"


@contextlib.contextmanager
def _connect(cfg: Mapping[str, Any], secret: SecretLookup, timeout: float
             ) -> Iterator[smtplib.SMTP]:
    smtp = cfg.get("smtp") or {}
    relay = _relay(cfg)
    try:
        client = smtplib.SMTP(smtp.get("host", "localhost"), int(smtp.get("port", 25)),
                              timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise StepError(f"notify: cannot reach the mail relay {relay}: {_why(exc)}",
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
            raise StepError(f"notify: the mail relay {relay} refused the login from secret "
                            f"'{smtp.get('credentials')}': {_why(exc)}") from exc
        except ssl.SSLError as exc:
            raise StepError(f"notify: STARTTLS with {relay} failed: {_why(exc)}; check "
                            "notify.email.smtp.ca_file", retryable=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise StepError(f"notify: mail relay {relay}: {_why(exc)}", retryable=True) from exc
        yield client
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.quit()
        client.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}".strip()
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
class FlushResult:
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


def _flush(notify_config: Mapping[str, Any], spool_dir: Path, secret: SecretLookup,
           timeout: float) -> FlushResult:
    result = FlushResult()
    if not pending(spool_dir):
        return result
    cfg = _email_config(notify_config)
    with _spool_lock(spool_dir):
        files = pending(spool_dir)  # again, under the lock: another process may have sent some
        if not files:
            return result
        try:
            with _connect(cfg, secret, timeout) as client:
                for path in files:
                    raw = path.read_bytes()
                    msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
                    message_id = str(msg["Message-ID"])
                    sender = parseaddr(str(msg["From"]))[1]
                    recipients = [address for _, address in getaddresses(
                        [str(v) for v in msg.get_all("To", []) + msg.get_all("Cc", [])])]
                    try:
                        # The spooled bytes go out exactly as written: no re-encoding.
                        client.sendmail(sender, recipients, raw)
                    except smtplib.SMTPException as exc:
                        if not _permanent(exc):
                            raise
                        result.rejected[message_id] = _why(exc)
                        rejected_dir = ensure_private_dir(Path(spool_dir) / "rejected")
                        path.rename(rejected_dir / path.name)
                        fsync_dir(rejected_dir)
                        continue
                    path.unlink()
                    fsync_dir(Path(spool_dir))
                    result.delivered.append(message_id)
        except StepError as exc:
            result.error = exc
        except (OSError, smtplib.SMTPException) as exc:
            result.error = StepError(f"notify: mail relay {_relay(cfg)}: {_why(exc)}",
                                     retryable=True)
    return result


def flush_spool(notify_config: Mapping[str, Any] | None, spool_dir: Path, secret: SecretLookup,
                *, timeout: float = DEFAULT_TIMEOUT,
                log: Callable[[str], None] | None = None) -> int:
    """Deliver spooled mail, oldest first; return how many messages the relay accepted.

    Without spooled mail nothing is contacted. Raises StepError (retryable) when the relay
    cannot be reached or answers 4xx: the remaining messages stay spooled for next time.
    Messages refused with 5xx go to `spool/rejected/` and are logged through `log`.
    """
    result = _flush(notify_config, spool_dir, secret, timeout)
    for message_id, reason in result.rejected.items():
        if log:
            log(f"notify: the relay refused {message_id} for good ({reason}); "
                f"kept in {Path(spool_dir) / 'rejected'}")
    if result.error is not None:
        raise result.error
    return len(result.delivered)


def _deliver(notify_config: Mapping[str, Any], spool_dir: Path, secret: SecretLookup,
             message_id: str, timeout: float, log: Callable[[str], None] | None) -> int:
    """Flush the spool and make sure `message_id` went out; return how many were delivered."""
    result = _flush(notify_config, spool_dir, secret, timeout)
    for other, reason in result.rejected.items():
        if log and other != message_id:
            log(f"notify: the relay refused {other} for good ({reason}); kept in spool/rejected")
    if message_id in result.rejected:
        raise StepError(f"notify: the relay refused the mail for good "
                        f"({result.rejected[message_id]}); check notify.email.to/from; the "
                        f"message is kept in {Path(spool_dir) / 'rejected'}")
    if spooled(spool_dir, message_id) is not None:
        error = result.error or StepError("notify: the mail is still spooled", retryable=True)
        raise StepError(f"{error}; the message is spooled in {spool_dir} and will be sent on the "
                        "next transition", retryable=error.retryable)
    return len(result.delivered)


def send_mail(notify_config: Mapping[str, Any], subject: str, body: str, *, spool_dir: Path,
              secret: SecretLookup, timeout: float = DEFAULT_TIMEOUT,
              log: Callable[[str], None] | None = None) -> str:
    """Spool a message, then deliver everything spooled; return the new message's Message-ID.

    The message is on disk before the relay is contacted, so a crash or a dead relay never
    loses it. Raises StepError when it could not be delivered now (it stays spooled).
    """
    msg = compose(notify_config, subject, body)
    spool_message(spool_dir, msg)
    message_id = str(msg["Message-ID"])
    _deliver(notify_config, spool_dir, secret, message_id, timeout, log)
    return message_id


# ---------------------------------------------------------------- the step


def _policy_notify(ctx: Context) -> Mapping[str, Any] | None:
    policy = ctx.policy
    if isinstance(policy, Mapping):
        return policy.get("notify")
    return getattr(policy, "notify", None)


def _engine_state(ctx: Context) -> str | None:
    for source in (ctx.progress.get("engine_state"), ctx.progress.get("state"),
                   getattr(ctx.policy, "state", None)):
        if isinstance(source, str) and source:
            return source
    return None


class Notify:
    """Send one notification mail (spooled when the relay is down)."""

    kind: ClassVar[str] = "notify"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.message = str(params["message"])
        self.subject: str | None = params.get("subject")

    def _subject(self, ctx: Context, cfg: Mapping[str, Any]) -> str:
        if self.subject:
            return self.subject
        # The configured subject names the service; the message's first line says what
        # happened, so a mailbox full of them can be read from the subjects alone.
        headline = self.message.strip().splitlines()[0] if self.message.strip() else ""
        if len(headline) > 80:
            headline = headline[:77].rstrip() + "..."
        base = cfg.get("subject") or f"[failover-engine] {ctx.policy_name}"
        return f"{base}: {headline}" if headline else base

    def _spool_dir(self, ctx: Context) -> Path:
        return Path(ctx.state_dir) / "spool"

    def host_problems(self, ctx: Context) -> list[str]:
        """The credentials secret must be readable and well-formed (engine.hostcheck checks
        the secret file's mode and the CA file)."""
        try:
            cfg = _email_config(_policy_notify(ctx))
        except StepError as exc:
            return [str(exc)]
        smtp = cfg.get("smtp") or {}
        problems = []
        if smtp.get("credentials"):
            try:
                read_credentials(ctx.secret(smtp["credentials"]))
            except FailoverError as exc:
                problems.append(str(exc))
        return problems

    def plan(self, ctx: Context) -> Plan:
        try:
            cfg = _email_config(_policy_notify(ctx))
        except StepError as exc:
            return Plan(summary=str(exc), problem=str(exc))
        spool_dir = self._spool_dir(ctx)
        message_id = ctx.progress.get("message_id")
        if message_id and not spooled(spool_dir, message_id) \
                and not _rejected(spool_dir, message_id):
            return Plan(summary=f"mail {message_id} already sent", done=True)
        waiting = len(pending(spool_dir))
        summary = (f"would mail {', '.join(cfg['to'])} via {_relay(cfg)}: "
                   f"subject {self._subject(ctx, cfg)!r}, message {self.message!r}")
        if waiting:
            summary += f"; {waiting} spooled message(s) would be sent first"
        return Plan(summary=summary, after=f"mail to {', '.join(cfg['to'])}")

    def apply(self, ctx: Context) -> Outcome:
        notify_cfg = _policy_notify(ctx)
        cfg = _email_config(notify_cfg)
        spool_dir = self._spool_dir(ctx)
        to = ", ".join(cfg["to"])
        timeout = ctx.remaining(DEFAULT_TIMEOUT)
        message_id = ctx.progress.get("message_id")
        if message_id and _rejected(spool_dir, message_id):
            raise StepError(f"notify: the relay refused mail {message_id} for good; it is kept "
                            f"in {spool_dir / 'rejected'}")
        if message_id and not spooled(spool_dir, message_id):
            return Outcome(summary=f"mail to {to} already sent ({message_id})",
                           after=message_id, changed=False)
        if not message_id:
            body = mail_body(self.message, policy=ctx.policy_name, state=_engine_state(ctx),
                             step=ctx.step_id)
            msg = compose(notify_cfg, self._subject(ctx, cfg), body)
            spool_message(spool_dir, msg)
            message_id = str(msg["Message-ID"])
            # Recorded before sending: a retry or a resumed run re-sends the spooled copy
            # instead of composing a second mail.
            ctx.progress["message_id"] = message_id
            ctx.save_progress()
        delivered = _deliver(notify_cfg, spool_dir, ctx.secret, message_id, timeout, ctx.log)
        extra = f" (and {delivered - 1} spooled earlier)" if delivered > 1 else ""
        return Outcome(summary=f"mail to {to} sent via {_relay(cfg)}{extra}", after=message_id)
