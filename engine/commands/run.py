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

from engine.commands import load, preflight
from engine.failover import Engine
from engine.monitor import Monitor
from engine.policy import Policy
from engine.state import StateStore

log = logging.getLogger("failover_engine.monitor")


def main(args: argparse.Namespace) -> int:
    """Run the monitor until SIGTERM."""
    policy = load(args)
    preflight(policy)
    store = StateStore(policy.state_dir)
    stop = threading.Event()

    def reload() -> Policy:
        fresh = load(args)
        preflight(fresh)
        return fresh

    with store.hold("run"):
        engine = Engine(policy, store, stop=stop)
        monitor = Monitor(engine, reload=reload)

        def on_stop(signum: int, _frame: object) -> None:
            log.info("%s: stopping after the current step", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda *_: monitor.reload_requested.set())
        monitor.run_forever()
    return 0
