"""`failover-engine run`: the monitor service in the foreground (systemd runs it).

SIGTERM and SIGINT stop it between steps (an engage in progress stops at the next step
boundary and resumes from its journal when started again); SIGHUP reloads the policy
only if the new one validates and passes the host checks.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.policy import Policy

log = logging.getLogger("failover_engine.monitor")


def main(args: argparse.Namespace) -> int:
    """Run the monitor until SIGTERM."""
    # Signal handlers first, before the policy is loaded (a fraction of a second): a
    # SIGTERM or SIGHUP that arrives while starting must stop or reload, not kill silently.
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        log.info("%s: stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    # The heavy imports (the machine, probes, dnspython) only now, after the handlers.
    from engine.commands import load, preflight
    from engine.failover import Engine
    from engine.monitor import Monitor
    from engine.state import StateStore

    policy = load(args)
    preflight(policy)
    store = StateStore(policy.state_dir)

    def reload() -> Policy:
        fresh = load(args)
        preflight(fresh)
        return fresh

    if stop.is_set():
        log.info("stopped while starting; nothing was run")
        return 0
    with store.hold("run"):
        engine = Engine(policy, store, stop=stop)
        monitor = Monitor(engine, reload=reload)
        # A SIGHUP received while starting is honoured at the first cycle.
        monitor.reload_requested = reload_requested
        monitor.run_forever()
    return 0
