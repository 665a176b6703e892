"""`failover-engine notify test [CHANNEL]`: a test event through each channel, now.

Each channel of the policy's notify block (or only CHANNEL) gets a `test` event sent
directly, not through the outbox, so the line per channel says what its receiver did
right now: `email: ok: mail to … via …` or `webhook: FAILED: …`. Exit 0 when every
channel took it, 1 when one failed, 2 when the policy has no such channel.
"""
from __future__ import annotations

import argparse
import uuid

from engine.channels import CHANNEL_KINDS, ChannelError
from engine.commands import load
from engine.errors import UsageError
from engine.events import Kind
from engine.notifier import Notifier
from engine.state import StateStore


def test_main(args: argparse.Namespace) -> int:
    """Send the test event; one line per channel; exit 1 if one failed."""
    policy = load(args)
    notifier = Notifier(policy)
    channels = notifier.channels()
    wanted = getattr(args, "channel", None)
    if not channels:
        raise UsageError(f"{policy.path}: notify: no channel configured; add one of "
                         f"{', '.join(CHANNEL_KINDS)} under `notify:`")
    if wanted is not None and wanted not in channels:
        raise UsageError(f"{policy.path}: notify.{wanted}: no such channel in the policy "
                         f"(configured: {', '.join(channels)})")
    record = StateStore(policy.state_dir).load()
    event = notifier.engine_event(
        Kind.TEST, record, key=f"test-{uuid.uuid4()}", headline="a test from notify test",
        summary="A test event sent by `failover-engine notify test`: if you read this, the "
                "channel works. Nothing happened to production or the standby.",
        next_steps=["Nothing to do."], commands=["status"])
    failed = 0
    for name, channel in channels.items():
        if wanted is not None and name != wanted:
            continue
        try:
            what = channel.send(event, 30.0)
        except ChannelError as exc:
            failed += 1
            print(f"{name}: FAILED: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one broken channel must not hide the others
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            continue
        print(f"{name}: ok: {what}")
    return 1 if failed else 0
