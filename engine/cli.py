"""Command line of failover-engine (DESIGN §5). Every command lives in engine/commands/.

Exit codes: 0 success, 1 a step or check failed, 2 bad usage or an invalid policy
(Nagios codes 0–3 for `check`). An expected error prints one line naming the file,
key or host and what to do; an unexpected one prints a one-line summary and where the
traceback was saved — never the traceback itself.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from engine.errors import FailoverError, PolicyError

DESCRIPTION = """\
A declarative failover engine. A YAML policy declares probes, thresholds and the
ordered steps that engage a failover, restore production and keep a cold standby
fresh; the engine validates it and runs it on a state machine.
"""

EPILOG = """\
policy: --policy FILE, else $FAILOVER_POLICY, else policies/gocdb.yaml.
exit codes: 0 success, 1 a step or check failed, 2 bad usage or invalid policy;
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
    "pause": "operate:pause_main",
    "resume": "operate:resume_main",
    "status": "status:main",
    "job": "job:main",
    "check dump-age": "check_dump_age:main",
    "check engine": "check_engine:main",
    "install": "install:main",
    "uninstall": "install:uninstall_main",
    "dns show": "dns:main",
    "drill": "drill:main",
}


class _NagiosParser(argparse.ArgumentParser):
    """A parser whose usage errors exit 3 (UNKNOWN), as monitoring systems expect."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"UNKNOWN: {self.prog}: {message}", file=sys.stderr)
        sys.exit(3)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, with --help text for every command."""
    parser = argparse.ArgumentParser(
        prog="failover-engine", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
                   "binaries the steps need")

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
                       "do it; otherwise this process runs the engage steps.")
    p.add_argument("--now", action="store_true", required=True,
                   help="required: confirms an immediate engage (overrides the hold-down)")
    sub.add_parser("restore", help="run the restore steps (DNS back, wait, re-arm)")
    sub.add_parser("reset", help="leave `aborted` once the cause is fixed")
    p = sub.add_parser("pause", help="maintenance mode: probes run, nothing engages")
    p.add_argument("--reason", default="", help="why (shown in status)")
    sub.add_parser("resume", help="leave maintenance mode")

    p = sub.add_parser("status", help="state, failure count, last probes, last job results")
    p.add_argument("--json", action="store_true", help="one JSON object (see docs/operations.md)")

    p = sub.add_parser("job", help="run one job now (what cron calls)",
                       description="Run the named job's steps. Honours the job's pause_file, "
                       "refuses while the failover is engaged (unless --force), never overlaps "
                       "itself, and appends `completed ok` or `ERROR: …` to its status_log.")
    p.add_argument("name", help="the job's name in the policy")
    p.add_argument("--force", action="store_true",
                   help="run even while the failover is engaged (the standby serves users!)")

    p = sub.add_parser("check", help="Nagios/Icinga plugins (exit 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN)")
    checks = p.add_subparsers(dest="check", metavar="CHECK", required=True,
                              parser_class=_NagiosParser)
    c = checks.add_parser("dump-age", help="is the last successful import recent?")
    c.add_argument("--warning", metavar="D", help="WARNING above this age (e.g. 4h)")
    c.add_argument("--critical", metavar="D", help="CRITICAL above this age (default 7h)")
    c.add_argument("--log", metavar="FILE", help="status log to read (default: the job's)")
    c.add_argument("--job", metavar="NAME", help="job whose status log to read")
    c.add_argument("--data-age", action="store_true",
                   help="judge the age of the data (the dump's own completion time)")
    checks.add_parser("engine", help="is the monitor cycling, and is the engine healthy?")

    p = sub.add_parser("install", help="write the systemd unit, the cron file and logrotate")
    p.add_argument("--root", metavar="DIR", default="/", help="install under DIR (default /)")
    p.add_argument("--dry-run", action="store_true", help="print files and diffs; write nothing")
    p.add_argument("--user", metavar="USER", default="root",
                   help="user for the monitor and the cron jobs (default root)")
    p = sub.add_parser("uninstall", help="remove exactly what install wrote")
    p.add_argument("--root", metavar="DIR", default="/", help="installed under DIR (default /)")
    p.add_argument("--dry-run", action="store_true", help="print what would be removed")

    p = sub.add_parser("dns", help="DNS tools")
    dns = p.add_subparsers(dest="dns", metavar="ACTION", required=True)
    dns.add_parser("show", help="what each authoritative server answers for the alias now")

    p = sub.add_parser("drill", help="a full outage drill on loopback servers (no setup needed)",
                       description="Start a throwaway HTTPS production, SMTP relay and BIND on "
                       "loopback, run the monitor on policies/examples/drill.yaml, stop "
                       "production, and show the engine detect, engage and restore.")
    p.add_argument("--keep", action="store_true", help="keep the drill's temp directory")
    return parser


def _command_key(args: argparse.Namespace) -> str:
    if args.command == "check":
        return f"check {args.check}"
    if args.command == "dns":
        return f"dns {args.dns}"
    return args.command


def _crash_report() -> str:
    fd, path = tempfile.mkstemp(prefix="failover-engine-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return path


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
    from engine.logs import setup_logging

    setup_logging(args.log_format, args.verbose)
    # transitions narrates every callback at INFO; our own transition lines say what matters.
    logging.getLogger("transitions").setLevel(logging.WARNING)
    module_name, function = COMMANDS[key].split(":")
    try:
        module = importlib.import_module(f"engine.commands.{module_name}")
        return int(getattr(module, function)(args) or 0)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 3 if nagios else exc.exit_code
    except FailoverError as exc:
        print(f"{'UNKNOWN: ' if nagios else ''}failover-engine {key}: {exc}", file=sys.stderr)
        return 3 if nagios else exc.exit_code
    except KeyboardInterrupt:
        print(f"failover-engine {key}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        path = _crash_report()
        print(f"{'UNKNOWN: ' if nagios else ''}failover-engine {key}: internal error "
              f"({type(exc).__name__}: {exc}); this is a bug, the traceback is in {path}",
              file=sys.stderr)
        return 3 if nagios else 1
