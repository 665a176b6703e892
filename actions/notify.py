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

The step only decides what to say; `engine.mail` builds, spools and sends the message,
as it does for the engine's transition mail and a job's failure mail. Every message is
first written to `<state_dir>/spool/` (an .eml file, mode 0600) and removed only once the
relay has accepted it. When the relay is down the step fails with a retryable error and
the message stays spooled; every later send flushes the spool first, oldest first, and
so do the monitor (on the event outbox's schedule, at least every minute) and every CLI
command at its end (engine/notifier.py). A message the relay refuses for good (a 5xx reply) is moved
to `spool/rejected/` and logged. The Message-ID is recorded in the step's progress as soon
as the message is spooled, so a retry or a resumed run sends that copy, never a second one.
A notify step continues on error by default: a dead mail relay never blocks a failover.
The engine's own events already mail the admins (warning, engaged, restored, aborted…):
`validate` warns when a notify step repeats one of them.

Dry-run (plan) says who would get which subject through which relay; it sends nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from actions.base import Context, Outcome, Plan
from engine import mail
from engine.errors import FailoverError, StepError
from engine.paths import StatePaths


def _policy_notify(ctx: Context) -> Mapping[str, Any] | None:
    policy = ctx.policy
    if isinstance(policy, Mapping):
        return policy.get("notify")
    return getattr(policy, "notify", None)


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
        return StatePaths(ctx.state_dir).spool_dir

    def host_problems(self, ctx: Context) -> list[str]:
        """The credentials secret must be readable and well-formed (engine.hostcheck checks
        the secret file's mode and the CA file)."""
        try:
            cfg = mail.email_config(_policy_notify(ctx))
        except StepError as exc:
            return [str(exc)]
        smtp = cfg.get("smtp") or {}
        problems = []
        if smtp.get("credentials"):
            try:
                mail.read_credentials(ctx.secret(smtp["credentials"]))
            except FailoverError as exc:
                problems.append(str(exc))
        return problems

    def plan(self, ctx: Context) -> Plan:
        notify_cfg = _policy_notify(ctx)
        try:
            cfg = mail.email_config(notify_cfg)
        except StepError as exc:
            return Plan(summary=str(exc), problem=str(exc))
        spool_dir = self._spool_dir(ctx)
        message_id = ctx.progress.get("message_id")
        if message_id and mail.status(spool_dir, message_id) == "gone":
            return Plan(summary=f"mail {message_id} already sent", done=True)
        to = ", ".join(mail.recipients(notify_cfg))
        waiting = len(mail.pending(spool_dir))
        summary = (f"would mail {to} via {mail.relay(notify_cfg)}: "
                   f"subject {self._subject(ctx, cfg)!r}, message {self.message!r}")
        if waiting:
            summary += f"; {waiting} spooled message(s) would be sent first"
        return Plan(summary=summary, after=f"mail to {to}")

    def apply(self, ctx: Context) -> Outcome:
        notify_cfg = _policy_notify(ctx)
        cfg = mail.email_config(notify_cfg)
        spool_dir = self._spool_dir(ctx)
        to = ", ".join(mail.recipients(notify_cfg))
        timeout = ctx.remaining(mail.DEFAULT_TIMEOUT)
        message_id = ctx.progress.get("message_id")
        if message_id:
            where = mail.status(spool_dir, message_id)
            if where == "rejected":
                raise StepError(f"notify: the relay refused mail {message_id} for good; it is "
                                f"kept in {spool_dir / 'rejected'}")
            if where == "gone":
                return Outcome(summary=f"mail to {to} already sent ({message_id})",
                               after=message_id, changed=False)
            # Spooled by an earlier attempt: send that copy, never compose a second mail.
            delivered = mail.flush_spool(notify_cfg, spool_dir, ctx.secret, timeout=timeout,
                                         log=ctx.log, require=message_id)
        else:
            body = mail.mail_body(self.message, policy=ctx.policy_name,
                                  state=ctx.engine_state, step=ctx.step_id)
            sent = mail.send_mail(notify_cfg, self._subject(ctx, cfg), body,
                                  spool_dir=spool_dir, secret=ctx.secret, timeout=timeout,
                                  log=ctx.log, on_spooled=self._remember(ctx))
            message_id, delivered = sent.message_id, sent.delivered
        extra = f" (and {delivered - 1} spooled earlier)" if delivered > 1 else ""
        return Outcome(summary=f"mail to {to} sent via {mail.relay(notify_cfg)}{extra}",
                       after=message_id)

    @staticmethod
    def _remember(ctx: Context) -> Callable[[str], None]:
        def record(message_id: str) -> None:
            # Recorded once spooled, before sending: a retry or a resumed run re-sends the
            # spooled copy instead of composing a second mail.
            ctx.progress["message_id"] = message_id
            ctx.save_progress()
        return record
