"""Command line of failover-engine (DESIGN §5). Every command lives in engine/commands/.

Exit codes: 0 success, 1 a step or check failed or a request was refused, 2 bad usage,
an invalid policy or a missing dependency (Nagios codes 0–3 for `check`). An expected
error prints one line naming the file, key or host and what to do; an unexpected one
prints a one-line summary and where the traceback was saved (`<state_dir>/crash/`, the
last 10 kept) — never the traceback itself. A closed stdout (`status --json | head -c1`)
ends the command quietly with 141, as Unix tools killed by SIGPIPE do.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import select
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import FailoverError, PolicyError

DESCRIPTION = """\
A declarative failover engine. A YAML policy declares probes, thresholds and the
ordered steps that engage a failover, restore production and keep a cold standby
fresh; the engine validates it and runs it on a state machine.
"""

EPILOG = """\
policy: --policy FILE, else $FAILOVER_POLICY, else policies/gocdb.yaml.
exit codes: 0 success, 1 a step or check failed or a request was refused,
2 bad usage, invalid policy or missing dependency, 141 stdout closed early;
`check` commands use the Nagios codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
Start with `failover-engine drill` to watch an outage, an engage and a restore on
loopback servers, and `failover-engine validate` on your own policy.
"""

# command → "module:function" under engine.commands, imported only when used.
COMMANDS = {
    "validate": "validate:main",
    "dry-run": "dryrun:main",
    "run": "run:main",
    "engage": "operate:engage_main",
    "restore": "operate:restore_main",
    "reset": "operate:reset_main",
    "repair-state": "repair_state:main",
    "pause": "operate:pause_main",
    "resume": "operate:resume_main",
    "status": "status:main",
    "job": "job:main",
    "check dump-age": "check_dump_age:main",
    "check engine": "check_engine:main",
    "check readiness": "check_readiness:main",
    "install": "install:main",
    "uninstall": "install:uninstall_main",
    "dns show": "dns:main",
    "drill": "drill:main",
    "notify test": "notify:test_main",
}


# Import name → the package that provides it (pyproject.toml's dependencies).
DEPENDENCIES = {
    "yaml": "PyYAML", "jsonschema": "jsonschema", "transitions": "transitions",
    "dns": "dnspython", "paramiko": "paramiko", "pymysql": "PyMySQL",
    "cryptography": "cryptography", "croniter": "croniter", "oracledb": "oracledb",
    "aiosmtpd": "aiosmtpd",
}
CRASH_KEEP = 10
EXIT_SIGPIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE
_CHECKOUT = Path(__file__).resolve().parent.parent


class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors exit 3 (UNKNOWN) when `nagios=True` (the `check`
    commands, as monitoring systems expect), and 2 otherwise."""

    def __init__(self, *args: Any, nagios: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nagios = nagios

    def error(self, message: str) -> None:  # type: ignore[override]
        if not self.nagios:
            super().error(message)
        self.print_usage(sys.stderr)
        print(f"UNKNOWN: {self.prog}: {message}", file=sys.stderr)
        sys.exit(3)


def version() -> str:
    """The engine's version: the checkout's pyproject.toml, else the installed metadata."""
    try:
        import tomllib

        with open(_CHECKOUT / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("failover-engine")
    except PackageNotFoundError:
        return "unknown"


def missing_dependencies() -> list[str]:
    """The required packages this interpreter cannot import (extras are optional:
    engine/extras.py)."""
    from importlib.util import find_spec

    from engine.extras import is_optional

    return [package for module, package in DEPENDENCIES.items()
            if not is_optional(module) and find_spec(module) is None]


def missing_dependency_line(packages: list[str], module: str | None = None) -> str:
    """One line naming the missing package(s) and the fix."""
    from engine.extras import install_hint

    hint = install_hint(module) if module else None
    if hint:  # an optional step's package: the fix is its extra, not bootstrap
        return f"failover-engine: {hint}; it is not installed for {sys.executable}"
    what = (f"the Python package {packages[0]} is" if len(packages) == 1 else
            f"the Python packages {', '.join(packages)} are")
    via = f" (module {module!r})" if module else ""
    return (f"failover-engine: {what} not installed{via} for {sys.executable}; "
            f"run {_CHECKOUT / 'bin' / 'bootstrap'} (it builds .venv, which "
            "bin/failover-engine then uses), or `pip install` the project")


class _VersionAction(argparse.Action):
    """`--version`: the version and interpreter, and whether every dependency imports —
    so `install` can run it as cron and systemd would to prove the command works."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        missing = missing_dependencies()
        print(f"failover-engine {version()} (Python {sys.version.split()[0]}, "
              f"{sys.executable})")
        if missing:
            print(missing_dependency_line(missing), file=sys.stderr)
            sys.exit(2)
        sys.exit(0)


# With a quorum: block (engine/quorum_requests.py), for engage, restore and reset.
_QUORUM_NOTE = ("With a quorum: block: on an observer that is not one of quorum.actors the "
                "request goes through the quorum's store to an actor, and this command waits "
                "for its reply (exit 1 on a refusal or when no actor picks it up); on an actor "
                "engage, restore and reset need the quorum's leader key (refused, exit 1, "
                "when another engine holds it or the store cannot be reached).")


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", metavar="DURATION",
                   help="how long to wait for the monitor (or, through the quorum's store, an "
                   "actor) to pick the request up; nothing is done if none does (default "
                   "15s; through the store at least two monitor intervals)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with --help text for every command."""
    parser = _Parser(
        prog="failover-engine", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version and interpreter; exit 2 if a dependency "
                        "is missing")
    parser.add_argument("--policy", metavar="FILE",
                        help="policy file (default: $FAILOVER_POLICY, then policies/gocdb.yaml)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="override the policy's state_dir (state file, journal, audit log)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="log lines on stderr: readable text (default) or JSON objects")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("validate", help="check the policy (all problems at once)",
                       description="Check the policy against the schema and its references; "
                       "errors print as FILE:LINE:COL: key.path: message.")
    p.add_argument("--host", action="store_true",
                   help="also check this machine: secret files and their modes, certificates, "
                   "binaries the steps need, and (with a quorum: block) each etcd endpoint: "
                   "reachable, logged in, with a leader")

    p = sub.add_parser("dry-run", help="print what each step would change; change nothing",
                       description="Observe the world read-only and print each step's plan "
                       "(before → after, or why it would fail). Exit 1 if a step would fail.")
    p.add_argument("what", choices=["engage", "restore", "job"], help="which steps to plan")
    p.add_argument("name", nargs="?", help="the job's name (with `job`)")

    sub.add_parser("run", help="the monitor service (foreground; systemd runs it)",
                   description="Probe production every interval and engage the failover after "
                   "a prolonged outage. SIGTERM stops it between steps; SIGHUP reloads the "
                   "policy if it validates.")

    p = sub.add_parser("engage", help="engage the failover now (planned outage)",
                       description="Engage immediately. If the monitor is running it is asked to "
                       "do it; otherwise this process runs the engage steps. " + _QUORUM_NOTE)
    p.add_argument("--now", action="store_true", required=True,
                   help="required: confirms an immediate engage (overrides the hold-down)")
    p.add_argument("--force", action="store_true",
                   help="engage even when a probe step (the standby's probe) fails; the "
                   "override is written to the audit log and the ENGAGED message")
    p.add_argument("--without-quorum", action="store_true",
                   help="with a quorum: block, engage without the quorum's leader key (the "
                   "day etcd itself is gone; on an actor only); written to the log and the "
                   "audit log")
    _wait_option(p)
    p = sub.add_parser("restore", help="run the restore steps (DNS back, wait, re-arm)",
                       description="Fail back: run the policy's restore steps (DNS back to "
                       "production, wait for it to settle, re-arm). Allowed from engaged, "
                       "aborted or an interrupted restore; refused (exit 1, reason on stderr) "
                       "otherwise. With a monitor running it is asked to do it and this "
                       "command follows it. " + _QUORUM_NOTE)
    _wait_option(p)
    p = sub.add_parser("reset", help="leave `aborted` once the cause is fixed; clears the "
                       "count", description="Leave `aborted` after fixing what made a step "
                       "fail, and clear the failure count (the next failed probe starts again "
                       "from 1). Refused (exit 1) in any other state. " + _QUORUM_NOTE)
    _wait_option(p)
    p = sub.add_parser("repair-state", help="rebuild a missing or damaged state file from "
                       "the evidence", description="Conclude the engine's state from the "
                       "evidence (engage lock, parked cron file, the state file's journal, the "
                       "audit log, DNS as read now, the paused file) and show it. Without "
                       "--yes nothing is written (exit 1 when the state file would change); "
                       "with --yes the state file is written atomically (no monitor may run).")
    p.add_argument("--yes", action="store_true",
                   help="write the state the evidence supports (default: only show it)")
    p = sub.add_parser("pause", help="maintenance mode: probes run, nothing engages",
                       description="Enter maintenance mode: the `paused` switch file in the "
                       "state dir holds it across restarts; probes keep running and are "
                       "reported, nothing engages.")
    p.add_argument("--reason", default="", help="why (shown in status)")
    _wait_option(p)
    p = sub.add_parser("resume", help="leave maintenance mode",
                       description="Remove the `paused` switch file; the monitor re-arms "
                       "within a second, with the failure count cleared. With a quorum: "
                       "block pause and resume are shared through the store: an actor "
                       "holding the leader key writes them (asked through the store when "
                       "this observer only votes or its monitor runs).")
    _wait_option(p)

    p = sub.add_parser("status", help="state, failure count, last probes, last job results",
                       description="What the engine is doing, read from the state dir "
                       "without the lock: state, failure count (or how long production has "
                       "been down once engaged), probes, certificate expiry, jobs, last run.")
    p.add_argument("--json", action="store_true", help="one JSON object (see docs/operations.md)")

    p = sub.add_parser("job", help="run one job now (what cron calls)",
                       description="Run the named job's steps. Honours the job's pause_file, "
                       "refuses while the standby serves or may serve (the state, the engage "
                       "lock, the parked cron file; unless --force), never overlaps "
                       "itself, and appends `completed ok` or `ERROR: …` to its status_log.")
    p.add_argument("name", help="the job's name in the policy")
    p.add_argument("--force", action="store_true",
                   help="run even while the failover is engaged (the standby serves users!)")

    p = sub.add_parser("check", nagios=True,
                       help="Nagios/Icinga plugins (exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN)",
                       description="Monitoring plugins: one status line with perfdata, exit "
                       "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for a missing or unknown "
                       "CHECK). They need no root: see docs/operations.md (NRPE).")
    checks = p.add_subparsers(dest="check", metavar="CHECK", required=True)
    c = checks.add_parser("dump-age", nagios=True, help="is the last successful import recent?",
                          description="Age of the last `completed ok` in the import job's "
                          "status log (or, with --data-age, of the data itself).")
    c.add_argument("--warning", metavar="D", help="WARNING above this age (e.g. 4h)")
    c.add_argument("--critical", metavar="D", help="CRITICAL above this age (default 7h)")
    c.add_argument("--log", metavar="FILE", help="status log to read (default: the job's)")
    c.add_argument("--job", metavar="NAME", help="job whose status log to read")
    c.add_argument("--data-age", action="store_true",
                   help="judge the age of the data (the dump's own completion time)")
    c = checks.add_parser("engine", nagios=True,
                          help="is the monitor cycling, and is the engine healthy?",
                          description="CRITICAL when the monitor does not cycle or the engine "
                          "is aborted; WARNING when engaged, paused, disarmed (every guard "
                          "failing, or the target's probe cannot run) or a client certificate "
                          "expires soon; UNKNOWN when the state cannot be read.")
    c.add_argument("--cert-warning", metavar="D", default="14d",
                   help="WARNING when a probe's client certificate expires within D "
                   "(default 14d)")
    checks.add_parser("readiness", nagios=True,
                      help="would a failover work now? (the monitor's readiness checks)",
                      description="Reads the monitor's last readiness checks (engine/"
                      "readiness.py): CRITICAL naming each failing check and its reason, "
                      "WARNING when only margins run out or the checks are overdue, UNKNOWN "
                      "when the policy has no readiness: block or they never ran.")

    p = sub.add_parser("install", help="write the systemd unit, the cron file and logrotate",
                       description="Write the monitor's systemd unit, the jobs' cron file and "
                       "a logrotate snippet, after proving their command runs the engine "
                       "(no cron line that would crash every hour). Idempotent.")
    p.add_argument("--root", metavar="DIR", default="/", help="install under DIR (default /)")
    p.add_argument("--dry-run", action="store_true", help="print files and diffs; write nothing")
    p.add_argument("--user", metavar="USER", default="root",
                   help="user for the monitor and the cron jobs (default root)")
    p.add_argument("--check-group", metavar="GROUP",
                   help="let GROUP (e.g. nagios) read what the `check` commands read: the "
                   "state dir's state.json and job records, the status logs (nothing secret)")
    p = sub.add_parser("uninstall", help="remove exactly what install wrote",
                       description="Remove the files install recorded in its manifest "
                       "(a file changed since is kept and named).")
    p.add_argument("--root", metavar="DIR", default="/", help="installed under DIR (default /)")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed")

    p = sub.add_parser("dns", help="DNS tools", description="DNS tools.")
    dns = p.add_subparsers(dest="dns", metavar="ACTION", required=True)
    dns.add_parser("show", help="what each authoritative server answers for the alias now",
                   description="Ask every authoritative server of the zone what it answers "
                   "for the alias the policy's DNS steps change, with SOA serials.")

    p = sub.add_parser("notify", help="the event channels (email, webhook, alertmanager, command)",
                       description="The channels of the policy's notify block.")
    notify = p.add_subparsers(dest="notify", metavar="ACTION", required=True)
    q = notify.add_parser("test", help="send a test event through each channel, report each",
                          description="Send a test event through every channel of the policy's "
                          "notify block (or only CHANNEL) now, and say per channel whether its "
                          "receiver took it. Exit 0 when all did, 1 when one failed, 2 when "
                          "there is no such channel.")
    q.add_argument("channel", nargs="?", metavar="CHANNEL",
                   help="email, webhook, alertmanager or command (default: all configured)")

    p = sub.add_parser("drill", help="a full outage drill on loopback servers (no setup needed)",
                       description="Start a throwaway HTTPS production, SMTP relay and BIND on "
                       "loopback, run the monitor on policies/examples/drill.yaml, stop "
                       "production, and show the engine detect, engage and restore. With "
                       "--quorum: a 3-member etcd (Debian etcd-server) and three observer "
                       "engines (`run` processes; the standby acts, two others vote, two must "
                       "agree) show S1 production down: exactly one engage, by the standby; "
                       "S2 the standby cut from production only: no engage, quorum not "
                       "reached (1/2); S3 an observer cut from everything: it never acts, its "
                       "verdict vanishes, the other two engage once. Under a minute; exit 0 "
                       "only when every scenario held, 1 naming those that did not, 2 "
                       "without etcd.")
    p.add_argument("--keep", action="store_true", help="keep the drill's temp directory")
    p.add_argument("--quorum", action="store_true",
                   help="the several-observers drill on etcd (S1-S3 of issue 14) instead")
    return parser


def _command_key(args: argparse.Namespace) -> str:
    if args.command == "check":
        return f"check {args.check}"
    if args.command == "dns":
        return f"dns {args.dns}"
    if args.command == "notify":
        return f"notify {args.notify}"
    return args.command


def _crash_dir(args: argparse.Namespace) -> Path | None:
    """`<state_dir>/crash` of the policy the command names, or None if it cannot be found."""
    try:
        from engine.commands import load
        from engine.paths import StatePaths

        state_dir = Path(args.state_dir) if getattr(args, "state_dir", None) else \
            load(args).state_dir
        return StatePaths(state_dir).crash_dir
    except Exception:  # noqa: BLE001 - a crash while reporting a crash must not hide the first
        return None


def _write_crash(folder: Path, key: str) -> Path:
    from engine.fsutil import ensure_private_dir

    ensure_private_dir(folder)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = folder / f"{stamp}-{os.getpid()}-{key.replace(' ', '-')}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        # No locals, no argv beyond the command: a crash file must never hold a secret.
        handle.write(f"failover-engine {version()} {key}, Python {sys.version.split()[0]}, "
                     f"pid {os.getpid()}, {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        traceback.print_exc(file=handle)
    old = sorted(folder.glob("*.txt"))[:-CRASH_KEEP]
    for stale in old:
        stale.unlink(missing_ok=True)
    return path


def _crash_report(args: argparse.Namespace, key: str) -> str:
    """Save the traceback: in the state dir's crash/ (the last CRASH_KEEP kept), else in the
    temp dir when the state dir is unknown or not writable. Returns where it went."""
    folder = _crash_dir(args)
    if folder is not None:
        try:
            return str(_write_crash(folder, key))
        except OSError:
            pass
    fd, path = tempfile.mkstemp(prefix="failover-engine-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return path


def _stdout_closed() -> bool:
    """True when nobody reads our stdout any more (the reader of the pipe has gone)."""
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno(), 0)  # type: ignore[union-attr]
        return any(flags & select.POLLERR for _, flags in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _quiet_pipe_exit() -> int:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_SIGPIPE


def _missing_module(exc: ModuleNotFoundError) -> str | None:
    """The dependency a ModuleNotFoundError is about, or None for one of our own modules."""
    top = (exc.name or "").split(".")[0]
    if not top or top in ("engine", "actions", "tests", "bench"):
        return None
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the command, turn errors into one line and an exit code."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        if getattr(args, "command", None) == "check":
            print(f"UNKNOWN: unrecognized arguments: {' '.join(extras)}", file=sys.stderr)
            return 3
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    key = _command_key(args)
    nagios = key.startswith("check ")
    prefix = "UNKNOWN: " if nagios else ""
    from engine.logs import setup_logging

    setup_logging(args.log_format, args.verbose)
    # transitions narrates every callback at INFO; our own transition lines say what matters.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    module_name, function = COMMANDS[key].split(":")
    # The outbox tried at the end is that of the policy this command loads (sys.modules: a
    # lookup that cannot fail, even when a dependency of engine.commands is missing).
    loaded = sys.modules.get("engine.commands")
    if loaded is not None:
        loaded.LOADED.clear()
    try:
        module = importlib.import_module(f"engine.commands.{module_name}")
        code = int(getattr(module, function)(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 3 if nagios else exc.exit_code
    except FailoverError as exc:
        print(f"{prefix}failover-engine {key}: {exc}", file=sys.stderr)
        return 3 if nagios else exc.exit_code
    except KeyboardInterrupt:
        print(f"failover-engine {key}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if _stdout_closed():
            return _quiet_pipe_exit()
        return _crashed(args, key, prefix, nagios)
    except ModuleNotFoundError as exc:
        missing = _missing_module(exc)
        if missing is None:
            return _crashed(args, key, prefix, nagios)
        print(prefix + missing_dependency_line([DEPENDENCIES.get(missing, missing)], missing),
              file=sys.stderr)
        return 3 if nagios else 2
    except Exception:  # noqa: BLE001 - the last line of defence: never a traceback
        return _crashed(args, key, prefix, nagios)
    finally:
        _retry_outbox(key)


def _retry_outbox(key: str) -> None:
    """Every command that loaded a policy retries its event outbox at its end, within a few
    seconds (the monitor and the drill deliver on their own schedule)."""
    loaded = sys.modules.get("engine.commands")  # absent: no policy was loaded, nothing to do
    policy = loaded.take_loaded() if loaded is not None else None
    if key in ("run", "drill", "notify test") or policy is None or not policy.notify:
        return
    try:
        from engine.paths import StatePaths

        paths = StatePaths(policy.state_dir)
        if not (_has_entries(paths.outbox_dir) or _has_entries(paths.spool_dir)):
            return  # nothing waits: no need to import the mail and channel modules
        from engine.notifier import drain_for_cli

        drain_for_cli(policy, budget=2.0 if key.startswith("check ") else 5.0)
    except Exception as exc:  # noqa: BLE001 - the command's own result and exit code stand
        # (a missing dependency, a state dir this user may not read: said already, or not
        # this command's business)
        logging.getLogger("failover_engine.cli").debug(
            "event outbox not retried: %s: %s", type(exc).__name__, exc)


def _has_entries(directory: Path) -> bool:
    """True when `directory` exists and holds anything (unreadable counts as maybe)."""
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _crashed(args: argparse.Namespace, key: str, prefix: str, nagios: bool) -> int:
    """Report a bug: one line naming the saved traceback (never the traceback itself)."""
    exc = sys.exc_info()[1]
    path = _crash_report(args, key)
    print(f"{prefix}failover-engine {key}: internal error ({type(exc).__name__}: {exc}); "
          f"this is a bug, the traceback is in {path}", file=sys.stderr)
    return 3 if nagios else 1
