"""Render the files `install` writes: the monitor's systemd unit, the jobs' cron file, logrotate.

Everything here is a pure function of the policy and a few install options, so tests
compare text and `install --dry-run` can diff it against what is on disk.

- The template unit `failover-engine@.service` (the Debian package ships it in
  /lib/systemd/system; install writes it to /etc/systemd/system for a pip install) runs
  the monitor (`run`) of /etc/failover-engine/<instance>.yaml. It restarts on failure but
  stops for good after `START_LIMIT_BURST` starts within `START_LIMIT_INTERVAL` (a crash
  loop must page someone, not spin), and is hardened (`HARDENING`, each directive with its
  reason; `systemd-analyze security` exposure 2.5) with `ProtectSystem=strict`.
- The drop-in `/etc/systemd/system/failover-engine@<policy>.service.d/install.conf` makes
  writable exactly the state directory, the metrics file's directory and what the policy's
  engage and restore steps write, and names the user, engine and policy path when they
  differ from the template's. A step's
  fragment says what it writes: each property marked `"x-writes": "file"` names a file
  the step creates, replaces or moves (its directory must be writable: atomic replace
  and rename need it), each marked `"x-writes": "dir"` a directory it writes into
  (HACKING.md, "A new step kind").
- `/etc/cron.d/failover-engine-<policy>` has one line per job with a `schedule`. The
  engage step `disable_cron` parks exactly this file, so a failover stops every job at once.
- `/etc/logrotate.d/failover-engine-<policy>` rotates the jobs' status logs, their cron
  output and the audit log. A rotated status log would lose the `completed ok` line that
  `check_dump_age` and `check dump-age` look for, so the last success line (and the last
  line) are carried over into the new file.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UsageError
from engine.paths import StatePaths
from engine.policy import Policy, Step
from engine.schemacheck import Schemas, load_schemas

UNIT_DIR = Path("/etc/systemd/system")
CRON_DIR = Path("/etc/cron.d")
LOGROTATE_DIR = Path("/etc/logrotate.d")
LOG_DIR = Path("/var/log/failover-engine")

RESTART_SEC = "30s"
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = "15min"  # > START_LIMIT_BURST × RESTART_SEC, so the limit can trip
TIMEOUT_STOP_SEC = "60s"

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+\Z")
_CRON_NICKNAMES = frozenset(
    {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


@dataclass(frozen=True)
class RenderedFile:
    """One file `install` writes: absolute path on the target system, text and mode."""

    path: Path
    text: str
    mode: int = 0o644


def unit_name(policy: Policy) -> str:
    """The systemd unit of the policy's monitor: an instance of the template."""
    return f"failover-engine@{policy.name}.service"


def cron_path(policy: Policy) -> Path:
    """Where the policy's cron file goes (policy names are valid cron.d file names)."""
    return CRON_DIR / f"failover-engine-{policy.name}"


def logrotate_path(policy: Policy) -> Path:
    """Where the policy's logrotate snippet goes."""
    return LOGROTATE_DIR / f"failover-engine-{policy.name}"


def job_log(policy: Policy, job: str, log_dir: Path = LOG_DIR) -> Path:
    """The file cron appends a job's stdout and stderr to.

    Never a job's status_log: `check_dump_age` reads the status log's last line, which
    must stay the job's own `completed ok` / `ERROR:` verdict, not a stray log line.
    """
    return log_dir / f"{policy.name}-{job}.cron.log"


def _header(policy: Policy, comment: str = "#") -> str:
    return (
        f"{comment} Written by `failover-engine install` from {policy.path}.\n"
        f"{comment} Edit the policy and run install again; changes made here are overwritten.\n"
    )


# --- systemd -------------------------------------------------------------------------------


def systemd_quote(word: str, *, dollar: bool = False) -> str:
    """Quote one word for a unit file: `%` → `%%` (specifiers), `$` → `$$` in Exec lines."""
    word = word.replace("%", "%%")
    if dollar:
        word = word.replace("$", "$$")
    if re.search(r'[\s"\'\\;]', word) or not word:
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def step_write_paths(step: Step, schemas: Schemas) -> list[Path]:
    """Directories `step` writes, from the `x-writes` properties of its kind's fragment.

    The loader has made `x-path` values absolute, so a relative one here came from a
    hand-built Step and is skipped (it cannot be named in a unit file).
    """
    paths = []
    for key, how in schemas.writes(f"steps/{step.kind}.json").items():
        value = step.params.get(key)
        if not (isinstance(value, str) and value.startswith("/")):
            continue
        paths.append(Path(value).parent if how == "file" else Path(value))
    return paths


def write_paths(policy: Policy, schemas: Schemas | None = None) -> list[Path]:
    """Directories the monitor must be able to write besides the state directory."""
    schemas = schemas or load_schemas()
    state_dir = Path(policy.state_dir)
    found: list[Path] = []
    for step in [*policy.engage, *policy.restore]:
        found.extend(step_write_paths(step, schemas))
    if policy.monitor.metrics_file is not None:
        found.append(Path(policy.monitor.metrics_file).parent)
    unique: list[Path] = []
    for path in found:
        inside_state = path == state_dir or state_dir in path.parents
        if path.is_absolute() and not inside_state and path not in unique:
            unique.append(path)
    return sorted(unique)


def engine_args(policy: Policy, engine_path: Path, state_dir_flag: bool = False) -> list[str]:
    """`failover-engine --policy <abs> [--state-dir <abs>]`: how the unit and cron call it.

    `state_dir_flag` passes the policy's state_dir explicitly, for an install made with a
    --state-dir override (the monitor and the jobs must use the directory install set up).
    """
    argv = [str(engine_path), "--policy", str(Path(policy.path).absolute())]
    if state_dir_flag:
        argv += ["--state-dir", str(Path(policy.state_dir).absolute())]
    return argv


# Each hardening directive of the template with the reason it is safe for the engine: the
# reason is written above it in the unit. The monitor runs engage/restore steps (files
# under x-writes paths, DNS updates, mail, SSH/SQL clients, `command` programs); jobs run
# from cron, outside this unit.
HARDENING: tuple[tuple[str, str], ...] = (
    ("UMask=0077", "state, journals and spooled mail are private to the engine"),
    ("ProtectSystem=strict", "the whole file system is read-only except ReadWritePaths"),
    ("ProtectHome=read-only", "keys or option files under /home and /root stay readable, "
     "never writable"),
    ("PrivateTmp=yes", "a private /tmp: no temp-file races with other services"),
    ("PrivateDevices=yes", "no device nodes besides /dev/null, /dev/urandom and friends"),
    ("PrivateIPC=yes", "the engine uses no System V IPC or POSIX message queues"),
    ("NoNewPrivileges=yes", "programs a `command` step runs cannot gain privileges "
     "(setuid)"),
    ("RestrictSUIDSGID=yes", "nor create setuid/setgid files"),
    ("ProtectKernelTunables=yes", "/proc/sys and /sys read-only (the boot id stays "
     "readable)"),
    ("ProtectKernelModules=yes", "no module loading"),
    ("ProtectKernelLogs=yes", "no access to the kernel log"),
    ("ProtectControlGroups=yes", "the cgroup tree is read-only"),
    ("ProtectClock=yes", "the engine reads clocks, never sets them"),
    ("ProtectHostname=yes", "the engine never changes the host name"),
    ("ProtectProc=invisible", "other users' processes are hidden; the engine's own "
     "(same uid) lock holders stay visible"),
    ("LockPersonality=yes", "no execution-domain changes"),
    ("RestrictRealtime=yes", "no realtime scheduling"),
    ("RestrictNamespaces=yes", "the engine creates no namespaces"),
    ("RemoveIPC=yes", "IPC objects go with the service"),
    ("SystemCallArchitectures=native", "native system calls only"),
    ("SystemCallFilter=@system-service", "the system calls of an ordinary service "
     "(includes chown for disable_cron's owner-keeping park)"),
    ("SystemCallErrorNumber=EPERM", "a filtered call fails with EPERM instead of killing "
     "the monitor"),
    ("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK", "sockets for probes, "
     "DNS, SMTP, SSH, SQL and the journal; netlink for getaddrinfo's AI_ADDRCONFIG"),
    ("CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER",
     "root keeps only what reading and writing other owners' files and parking a cron "
     "file with its owner and mode need"),
)
TEMPLATE_NAME = "failover-engine@.service"
POLICY_DIR = Path("/etc/failover-engine")
PACKAGED_ENGINE = Path("/usr/bin/failover-engine")
# Where the Debian package puts the template (install leaves it there, see render_all).
PACKAGED_UNIT_DIR = Path("/lib/systemd/system")
STATE_ROOT = Path("/var/lib/failover-engine")
DROPIN_NAME = "install.conf"


def template_args(engine_path: Path) -> list[str]:
    """The template's default command: the policy named by the instance, in POLICY_DIR."""
    return [str(engine_path), "--policy", f"{POLICY_DIR}/%i.yaml", "run"]


def _exec(argv: Sequence[str]) -> str:
    # The template's %i is a specifier, so it is not escaped; every other word is.
    return " ".join(w if "%i" in w else systemd_quote(w, dollar=True) for w in argv)


def render_template(engine_path: Path = PACKAGED_ENGINE) -> str:
    """The template unit `failover-engine@.service`: instance NAME runs the monitor of
    /etc/failover-engine/NAME.yaml. The Debian package ships it with /usr/bin/failover-engine;
    `install` writes it with the engine it runs (a pip install's console script)."""
    lines = [
        "# failover-engine@NAME.service runs the monitor of /etc/failover-engine/NAME.yaml.",
        "# `failover-engine --policy FILE install` adds the drop-in",
        f"# failover-engine@NAME.service.d/{DROPIN_NAME}: the paths the policy's steps "
        "write (x-writes),",
        "# its state directory, and the user or policy path when they differ from these.",
        "[Unit]",
        "Description=failover-engine monitor for policy %i",
        "Documentation=man:failover-engine(1)",
        "Wants=network-online.target",
        "After=network-online.target",
        # A crash loop must page someone, not spin.
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        # Starting an instance without its policy fails at once, with the path in the log.
        f"AssertPathExists={POLICY_DIR}/%i.yaml",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={_exec(template_args(engine_path))}",
        "# SIGHUP re-reads the policy (a broken one is refused and the old one kept).",
        "ExecReload=kill -HUP $MAINPID",
        f"Environment=FAILOVER_POLICY={POLICY_DIR}/%i.yaml",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# SIGTERM to the engine only; it finishes or abandons its step and exits cleanly.",
        "KillMode=mixed",
        f"TimeoutStopSec={TIMEOUT_STOP_SEC}",
        "# The default state directory of policy NAME and the cron output; the drop-in adds",
        "# the policy's own state_dir and what its steps write.",
        f"ReadWritePaths=-{STATE_ROOT}/%i -{LOG_DIR}",
    ]
    for directive, reason in HARDENING:
        lines += [f"# {reason}", directive]
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def dropin_path(policy: Policy) -> Path:
    """The drop-in install writes for the policy's instance."""
    return UNIT_DIR / f"failover-engine@{policy.name}.service.d" / DROPIN_NAME


def render_dropin(policy: Policy, engine_path: Path, user: str = "root",
                  state_dir_flag: bool = False) -> str:
    """The instance's drop-in: writable paths from the policy (its state_dir and the
    x-writes of its engage and restore steps), and, when they differ from the template's,
    the user, the engine and the policy path."""
    policy_path = str(Path(policy.path).absolute())
    # "-" lets the unit start when an optional path does not exist yet; the state directory
    # is created by install, so it is required.
    rw = [systemd_quote(str(policy.state_dir))]
    rw += ["-" + systemd_quote(str(p)) for p in write_paths(policy)]
    lines = [_header(policy).rstrip("\n"), "[Unit]"]
    argv = [*engine_args(policy, engine_path, state_dir_flag), "run"]
    own_command = argv != [a.replace("%i", policy.name) for a in template_args(engine_path)]
    if policy_path != f"{POLICY_DIR}/{policy.name}.yaml":
        lines += ["# The policy is not in /etc/failover-engine: check its own path instead.",
                  "AssertPathExists=", f"AssertPathExists={systemd_quote(policy_path)}"]
    lines += ["", "[Service]"]
    if user != "root":
        lines.append(f"User={user}")
    if own_command:
        lines += ["# Another engine, policy path or --state-dir than the template's.",
                  "ExecStart=", f"ExecStart={_exec(argv)}",
                  f"Environment={systemd_quote('FAILOVER_POLICY=' + policy_path)}"]
    lines += ["# The policy's state directory and what its engage and restore steps write.",
              f"ReadWritePaths={' '.join(rw)}"]
    return "\n".join(lines) + "\n"


def render_unit(policy: Policy, engine_path: Path, user: str = "root",
                state_dir_flag: bool = False) -> str:
    """The instance's unit as systemd reads it: the template with the instance name put in,
    then the drop-in (for tests and `systemd-analyze`; install writes the two files)."""
    template = render_template(engine_path).replace("%i", policy.name)
    return template + render_dropin(policy, engine_path, user, state_dir_flag)


# --- cron ----------------------------------------------------------------------------------


def check_schedule(policy: Policy, job: str, schedule: str) -> str:
    """The schedule normalised to single spaces, or UsageError naming the policy and job."""
    fields = schedule.split()
    ok = (len(fields) == 1 and fields[0] in _CRON_NICKNAMES) or (
        len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)
    )
    if not ok or "\n" in schedule:
        raise UsageError(
            f"{policy.path}: jobs.{job}.schedule {schedule!r} is not a cron schedule; "
            "use five fields like '17 * * * *' or one of @hourly, @daily, @weekly"
        )
    return " ".join(fields)


def cron_escape(command: str) -> str:
    """cron turns an unescaped `%` in a command into a newline; escape it."""
    return command.replace("%", "\\%")


def render_cron(policy: Policy, engine_path: Path, user: str = "root",
                log_dir: Path = LOG_DIR, state_dir_flag: bool = False) -> str | None:
    """The cron file, or None when no job has a schedule."""
    status_logs = {Path(j.status_log) for j in policy.jobs.values() if j.status_log}
    lines = []
    for name in sorted(policy.jobs):
        job = policy.jobs[name]
        if not job.schedule:
            continue
        when = check_schedule(policy, name, job.schedule)
        command = shlex.join([*engine_args(policy, engine_path, state_dir_flag), "job", name])
        output = job_log(policy, name, log_dir)
        if output in status_logs:
            raise UsageError(
                f"{policy.path}: a status_log is {output}, the file cron writes job {name}'s "
                "output to; give the status_log another name"
            )
        log = shlex.quote(str(output))
        lines.append(f"{when} {user} {cron_escape(command)} >> {cron_escape(log)} 2>&1")
    if not lines:
        return None
    return (
        _header(policy)
        + "# The engage step disable_cron parks this file; enable_cron puts it back.\n"
        + "SHELL=/bin/sh\n"
        + "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        + "\n".join(lines)
        + "\n"
    )


# --- logrotate -----------------------------------------------------------------------------


def _logrotate_quote(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if re.search(r"\s", text) else text


# Keeps the `completed ok` evidence across a rotation: the last success line, then the
# last line (it may be a later failure), in the order they were written.
_CARRY_OVER = (
    '    postrotate\n'
    '        old="$1.1"\n'
    '        if [ -f "$old" ]; then\n'
    '            { grep -h "completed ok" "$old" | tail -n 1; tail -n 1 "$old"; } | uniq >> "$1"\n'
    '        fi\n'
    '    endscript\n'
)


def render_logrotate(policy: Policy, log_dir: Path = LOG_DIR) -> str:
    """The logrotate snippet for status logs, cron output and the audit log."""
    status_logs = sorted({Path(j.status_log) for j in policy.jobs.values() if j.status_log})
    cron_logs = sorted(job_log(policy, n, log_dir) for n, j in policy.jobs.items() if j.schedule)
    audit = StatePaths(policy.state_dir).audit_log
    blocks = [_header(policy)]
    if status_logs:
        blocks.append(
            " ".join(_logrotate_quote(p) for p in status_logs) + " {\n"
            "    weekly\n    rotate 8\n    compress\n    delaycompress\n    missingok\n"
            "    notifempty\n    create\n" + _CARRY_OVER + "}\n"
        )
    if cron_logs:
        blocks.append(
            " ".join(_logrotate_quote(p) for p in cron_logs) + " {\n"
            "    weekly\n    rotate 8\n    compress\n    delaycompress\n    missingok\n"
            "    notifempty\n}\n"
        )
    # The audit log is the record of every change made; keep two years of it.
    blocks.append(
        _logrotate_quote(audit) + " {\n"
        "    monthly\n    rotate 24\n    compress\n    delaycompress\n    missingok\n"
        "    notifempty\n}\n"
    )
    return "\n".join(blocks)


def render_all(policy: Policy, engine_path: Path, user: str = "root",
               log_dir: Path = LOG_DIR, state_dir_flag: bool = False,
               packaged_template: bool = False) -> list[RenderedFile]:
    """Every file install writes for this policy: the template unit (unless the Debian
    package provides it, `packaged_template`), the instance's drop-in, cron, logrotate."""
    files = []
    if not packaged_template:
        files.append(RenderedFile(UNIT_DIR / TEMPLATE_NAME, render_template(engine_path)))
    files.append(RenderedFile(dropin_path(policy),
                              render_dropin(policy, engine_path, user, state_dir_flag)))
    cron = render_cron(policy, engine_path, user, log_dir, state_dir_flag)
    if cron is not None:
        files.append(RenderedFile(cron_path(policy), cron))
    files.append(RenderedFile(logrotate_path(policy), render_logrotate(policy, log_dir)))
    return files
