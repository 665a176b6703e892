"""`failover-engine drill`: a whole outage, engage and restore on loopback, with a timeline.

It starts a throwaway HTTPS "production" that demands a client certificate, a plain
HTTP "outside" guard, an SMTP sink and a BIND primary + secondary, all on 127.0.0.1 and
free ports, in a temporary directory. It copies policies/examples/drill.yaml there,
fills in the ports and certificate paths, and runs the real monitor on it. Then it
stops production, lets the engine detect the outage and engage (mail sent, cron file
parked, DNS record repointed, lock written), brings production back and asks the
monitor to restore — the same request `failover-engine restore` makes. Then it takes the
failover key's update grant away on the DNS primary (a reload with a changed
update-policy): readiness turns CRITICAL naming the grant, and OK once it is back. Every
claim in the final checklist is verified against the servers, not taken from the engine.

`drill --quorum` is the several-observers drill instead (engine/commands/drill_quorum.py).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine.errors import FailoverError
from engine.resources import policies_dir

log = logging.getLogger("failover_engine.drill")


class Timeline(logging.Handler):
    """Prints every engine event as `+1.2s  message` while the drill runs."""

    def __init__(self, start: float) -> None:
        super().__init__(logging.INFO)
        self.start = start

    def emit(self, record: logging.LogRecord) -> None:
        say(self.start, record.getMessage())


def say(start: float, message: str) -> None:
    """One timeline line."""
    print(f"  +{time.monotonic() - start:5.1f}s  {message}", flush=True)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `condition` holds; FailoverError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise FailoverError(f"drill: timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _cname(server: str, name: str) -> str:
    import dns.message
    import dns.query
    import dns.rdatatype

    host, port = server.rsplit(":", 1)
    reply = dns.query.udp(dns.message.make_query(name, "CNAME"), host, port=int(port), timeout=2)
    for rrset in reply.answer:
        for rdata in rrset:
            return rdata.to_text()
    return "(no answer)"


def _render_policy(work: Path, ports: dict[str, int], pki: Any, tsig: Path,
                   dns_servers: list[str]) -> Path:
    raw = yaml.safe_load((policies_dir() / "examples" / "drill.yaml").read_text())
    http = raw["probes"]["production"]["http"]
    http["url"] = f"https://127.0.0.1:{ports['production']}/health"
    http.update(client_cert=str(pki.client.cert), client_key=str(pki.client.key),
                ca_file=str(pki.ca.cert))
    raw["probes"]["outside"]["http"]["url"] = f"http://127.0.0.1:{ports['outside']}/"
    standby = raw["probes"]["standby"]["http"]
    standby["url"] = f"https://127.0.0.1:{ports['standby']}/health"
    standby.update(client_cert=str(pki.client.cert), client_key=str(pki.client.key),
                   ca_file=str(pki.ca.cert))
    raw["notify"]["email"]["smtp"]["port"] = ports["smtp"]
    raw["secrets"]["tsig"] = str(tsig)
    primary_port = int(dns_servers[0].rsplit(":", 1)[1])
    for phase in ("engage", "restore"):
        for step in raw[phase]:
            if "nsupdate" in step:
                step["nsupdate"]["port"] = primary_port
            if "wait_dns" in step:
                step["wait_dns"]["servers"] = dns_servers
    path = work / "drill.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    (work / "cron.d").mkdir()
    (work / "cron.d" / "failover-engine-drill").write_text(
        "17 * * * * root failover-engine --policy drill.yaml job import\n")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(time.time() - 1800))
    (work / "import.log").write_text(f"{stamp} INFO: completed ok\n")
    return path


def _messages_per_channel(notifier: Any) -> dict[str, int]:
    """Channel → how many events it took during the drill (the outbox's sent markers)."""
    counts: dict[str, int] = {}
    sent = notifier.outbox.sent_dir
    for marker in sent.iterdir() if sent.is_dir() else []:
        channel = marker.name.rsplit(".", 1)[-1]
        counts[channel] = counts.get(channel, 0) + 1
    return counts


def main(args: argparse.Namespace) -> int:
    """Run the drill (`--quorum`: the several-observers drill); exit 0 when every check
    passed."""
    if getattr(args, "quorum", False):
        from engine.commands.drill_quorum import main as quorum_drill

        return quorum_drill(args)
    from engine.drillkit.https import HttpsServer
    from engine.drillkit.named import DnsLab, NamedError
    from engine.drillkit.pki import make_pki

    try:
        from engine.drillkit.smtp import SmtpSink
    except ImportError:
        raise FailoverError("the drill's SMTP sink needs aiosmtpd: pip install "
                            "'failover-engine[drill]' (bin/drill sets it up)") from None

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    work = Path(tempfile.mkdtemp(prefix="failover-drill-"))
    start = time.monotonic()
    print(f"failover-engine drill — everything on 127.0.0.1, files in {work}")
    servers: list[Any] = []
    try:
        pki = make_pki(work / "pki")
        production = HttpsServer(cert=pki.server.cert, key=pki.server.key, client_ca=pki.ca.cert,
                                 routes={"/health": (200, "OK")}).start()
        outside = HttpsServer(cert=None, key=None, routes={"/": (200, "OK")}).start()
        # The standby's own service: engage's probe step asks it before the DNS step.
        standby = HttpsServer(cert=pki.server.cert, key=pki.server.key, client_ca=pki.ca.cert,
                              routes={"/health": (200, "standby OK")}).start()
        sink = SmtpSink().start()
        servers += [production, outside, standby, sink]
        try:
            lab = DnsLab(work / "dns", zone="drill.test",
                         records={"www": ("CNAME", "production.drill.test.")}).start()
        except NamedError as exc:
            raise FailoverError(f"drill: cannot start BIND: {exc}") from None
        servers.append(lab)
        say(start, f"production https://127.0.0.1:{production.port}/health (client cert "
                   f"required), standby :{standby.port}, guard :{outside.port}, "
                   f"SMTP :{sink.port}, "
                   f"DNS {', '.join(lab.servers)}")
        tsig = work / "secrets" / "update-key.key"
        tsig.parent.mkdir(mode=0o700)
        shutil.copy(lab.update_key_file, tsig)
        tsig.chmod(0o600)
        path = _render_policy(work, {"production": production.port, "outside": outside.port,
                                     "standby": standby.port, "smtp": sink.port},
                              pki, tsig, lab.servers)
        return _run(path, work, start, production, sink, lab)
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _readiness_drill(start: float, engine: Any, monitor: Any, lab: Any,
                     sink: Any) -> list[tuple[str, bool]]:
    """After the outage: the DNS admins reload the primary without the failover key's
    update grant; readiness turns CRITICAL naming the grant (and READINESS LOST is mailed);
    the grant comes back and readiness is OK again (READINESS REGAINED)."""
    from engine.commands.check_readiness import evaluate

    def check_now() -> tuple[int, str]:
        record = monitor.readiness.run_once()
        if record is None:
            return 3, "READINESS UNKNOWN - the checks did not run"
        return evaluate(record)

    monitor.readiness.join(30)  # the run the monitor started at its start
    mails = len(sink.messages)
    say(start, ">>> DNS admins reload the primary without the failover key's update grant")
    lab.set_grant("www", False)
    lost_code, lost = check_now()
    say(start, f"check readiness: {lost}")
    say(start, ">>> the grant is restored")
    lab.set_grant("www", True)
    back_code, back = check_now()
    say(start, f"check readiness: {back}")
    engine.notifier.drain(10, wait=10)
    subjects = [str(m["Subject"]) for m in sink.messages[mails:]]
    return [
        ("readiness CRITICAL names the lost grant", lost_code == 2
         and "nsupdate=refused_grant" in lost),
        ("readiness OK once the grant is back", back_code == 0),
        ("READINESS LOST then READINESS REGAINED mailed", len(subjects) == 2
         and "READINESS LOST" in subjects[0] and "READINESS REGAINED" in subjects[1]),
    ]


def _run(path: Path, work: Path, start: float, production: Any, sink: Any, lab: Any) -> int:
    from engine.commands import preflight
    from engine.failover import Engine
    from engine.monitor import Monitor
    from engine.monitor_requests import submit
    from engine.paths import StatePaths
    from engine.policy import load_policy
    from engine.state import StateStore
    from engine.states import State

    policy = load_policy(path)
    preflight(policy)
    store = StateStore(policy.state_dir)
    stop = threading.Event()
    engine_log = logging.getLogger("failover_engine")
    handler = Timeline(start)
    engine_log.addHandler(handler)
    saved_propagate, engine_log.propagate = engine_log.propagate, False
    checks: list[tuple[str, bool]] = []
    per_channel: dict[str, int] = {}
    alias = "www.drill.test."
    try:
        with store.hold("drill"):
            engine = Engine(policy, store, stop=stop)
            monitor = Monitor(engine)
            worker = threading.Thread(target=monitor.run_forever, name="monitor", daemon=True)
            worker.start()
            wait_for(lambda: engine.record.cycles >= 3, 10, "three good cycles")
            say(start, f">>> stopping production (alias answers {_cname(lab.servers[0], alias)})")
            production.stop()
            wait_for(lambda: engine.record.state in (State.ENGAGED, State.ABORTED), 30,
                     "the engage")
            checks += [
                ("engaged", engine.record.state == State.ENGAGED),
                # The warning and ENGAGED go out in the background: the engage never waits.
                ("mail received by the SMTP sink", sink.wait_for(2, timeout=10)),
                ("cron file parked", not (work / "cron.d" / "failover-engine-drill").exists()),
                ("lock written", (policy.state_dir / "engage.lock").exists()),
                ("DNS primary answers the standby",
                 _cname(lab.servers[0], alias) == "standby.drill.test."),
            ]
            say(start, ">>> production comes back")
            production.start()
            wait_for(lambda: engine.record.production_back, 20, "production back")
            say(start, ">>> operator: failover-engine restore")
            submit(StatePaths(policy.state_dir), "restore", "the drill")
            wait_for(lambda: engine.record.state in (State.WATCHING, State.ABORTED)
                     and engine.record.counts.get("restores", 0) >= 1, 60, "the restore")
            checks += [
                ("restored to watching", engine.record.state == State.WATCHING),
                ("every DNS server answers production", all(
                    _cname(s, alias) == "production.drill.test." for s in lab.servers)),
                ("cron file back", (work / "cron.d" / "failover-engine-drill").exists()),
                ("lock removed", not (policy.state_dir / "engage.lock").exists()),
                ("audit log records the changes",
                 len(store.audit_path.read_text().splitlines()) >= 8),
            ]
            stop.set()
            worker.join(10)
            engine.notifier.drain(10, wait=10)  # what is still waiting, as a CLI command does
            per_channel = _messages_per_channel(engine.notifier)
            checks += [
                ("every event delivered (outbox empty)",
                 engine.notifier.outbox.stats().depth == 0),
                ("at most 3 messages per channel", bool(per_channel)
                 and max(per_channel.values()) <= 3),
                ("the SMTP sink got each mail once", len(sink.messages) == per_channel.get(
                    "email", 0)),
            ]
            checks += _readiness_drill(start, engine, monitor, lab, sink)
    finally:
        engine_log.removeHandler(handler)
        engine_log.propagate = saved_propagate
        stop.set()
    subjects = [m["Subject"] for m in sink.messages]
    print("\nmessages per channel: " + ", ".join(
        f"{name} {count}" for name, count in sorted(per_channel.items())))
    print(f"{len(subjects)} mails reached the SMTP sink:")
    for subject in subjects:
        print(f"  - {subject}")
    print("\nchecks:")
    for text, ok in checks:
        print(f"  {'✔' if ok else '✘'} {text}")
    failed = [text for text, ok in checks if not ok]
    print("\ndrill passed" if not failed else f"\ndrill FAILED: {', '.join(failed)}")
    sys.stdout.flush()
    return 1 if failed else 0
