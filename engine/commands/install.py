"""`install [--root DIR] [--dry-run] [--user USER] [--check-group GROUP]` and `uninstall`.

install writes the monitor's systemd unit, the jobs' cron file and a logrotate snippet
(engine/render.py), creates the state and log directories, and records every file and
directory it created in `<root>/<state_dir>/installed.json`. uninstall reads that manifest
and removes exactly those files (a file changed since install is kept and named) and the
directories install created, when they are empty. Both are idempotent: running install
twice changes nothing the second time and says so.

`--root` writes under a staging root instead of `/` (packaging, tests); `--dry-run` prints
each file and a unified diff against what is installed, and writes nothing.

Before writing anything install runs the very command the unit and cron will run
(`<engine> --version`, with cron's bare environment): if that command cannot import the
engine and its dependencies it refuses, rather than install a cron line that crashes
every hour. `--check-group GROUP` lets a monitoring user (NRPE's `nagios`) run the
`check` commands without root: the state directory, its `jobs/` records and the status
logs' directories become group GROUP, mode 2750 (setgid, so files created later keep the
group), and the files the checks read (state.json, engine.lock, job records, status logs)
0640. Nothing secret is in them; the spool, requests, journal and parked cron files stay
private (0700 directories).
"""
from __future__ import annotations

import argparse
import difflib
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.commands import load
from engine.errors import FailoverError, UsageError
from engine.fsutil import atomic_write
from engine.policy import Policy
from engine.render import (
    LOG_DIR,
    PACKAGED_ENGINE,
    PACKAGED_UNIT_DIR,
    TEMPLATE_NAME,
    UNIT_DIR,
    RenderedFile,
    render_all,
    unit_name,
)
from engine.state import isotime

MANIFEST = "installed.json"
MANIFEST_VERSION = 1
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")  # \Z: no trailing newline
_CHECKOUT_BIN = Path(__file__).resolve().parents[2] / "bin" / "failover-engine"


@dataclass
class Change:
    """What install would do to one file: create, update, keep or remove it."""

    target: Path  # path on the target system, e.g. /etc/cron.d/failover-engine-gocdb
    real: Path  # where that is under --root
    action: str  # create | update | unchanged | remove
    new: str | None
    old: str | None
    mode: int = 0o644


def under(root: Path, path: Path) -> Path:
    """`path` (absolute on the target system) inside the staging root."""
    return root / Path(path).absolute().relative_to("/")


def sha256(text: str) -> str:
    """The manifest's fingerprint of a file's text."""
    return hashlib.sha256(text.encode()).hexdigest()


def engine_executable() -> Path:
    """The absolute path cron and systemd must run: this very `failover-engine`.

    The console script beside the running interpreter comes first: it runs with this
    interpreter and its dependencies, where a checkout's `bin/failover-engine` would run
    with whatever `python3` is first on cron's PATH.
    """
    beside = Path(sys.executable).parent / "failover-engine"
    if os.access(beside, os.X_OK):
        return beside
    argv0 = Path(sys.argv[0])
    if argv0.name == "failover-engine" and os.access(argv0, os.X_OK):
        return argv0.absolute()
    found = shutil.which("failover-engine")
    return Path(found).absolute() if found else _CHECKOUT_BIN


# cron runs its lines with next to no environment; systemd's is as bare.
_CRON_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/"}
ENGINE_CHECK_TIMEOUT = 120.0


def check_engine_command(engine: Path) -> str:
    """Run `<engine> --version` as cron and systemd will; return its line, or raise
    FailoverError naming what is wrong (so no unit or cron line that cannot work is written).

    A subprocess, because what matters is what that command does in cron's environment,
    with its own interpreter: not what this process can import.
    """
    try:
        done = subprocess.run([str(engine), "--version"], env=_CRON_ENV, cwd="/",
                              capture_output=True, text=True, timeout=ENGINE_CHECK_TIMEOUT,
                              check=False)
    except OSError as exc:
        raise FailoverError(
            f"{engine}: cannot run it ({exc.strerror}); the unit and the cron lines would "
            "fail the same way, so nothing was written. Run bin/bootstrap, or install the "
            "project (pip install .) and run install with that failover-engine") from None
    except subprocess.TimeoutExpired:
        raise FailoverError(f"{engine} --version did not answer within "
                            f"{ENGINE_CHECK_TIMEOUT:.0f}s; nothing was written") from None
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise FailoverError(
            f"{engine} cannot run the engine with cron's environment (exit "
            f"{done.returncode}: {lines[-1]}); the unit and the cron lines would fail the "
            "same way, so nothing was written")
    return (done.stdout.strip().splitlines() or [str(engine)])[0]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise FailoverError(
            f"{path}: cannot read the installed file ({exc}); fix or remove it"
        ) from None


def manifest_path(policy: Policy, root: Path) -> Path:
    """Where install records what it wrote (inside the state directory)."""
    return under(root, Path(policy.state_dir)) / MANIFEST


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a previous install, or None when there is none."""
    text = _read(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("no files map")
    except ValueError as exc:
        raise FailoverError(
            f"{path}: the install manifest is damaged ({exc}); remove the installed files by "
            "hand, delete the manifest and run install again"
        ) from None
    return data


def plan_install(policy: Policy, root: Path, rendered: list[RenderedFile],
                 manifest: dict[str, Any] | None) -> list[Change]:
    """Compare what should be installed with what is, file by file."""
    changes = []
    wanted = {str(f.path) for f in rendered}
    for item in rendered:
        real = under(root, item.path)
        old = _read(real)
        action = "create" if old is None else ("unchanged" if old == item.text else "update")
        if action == "unchanged" and real.stat().st_mode & 0o7777 != item.mode:
            action = "update"
        changes.append(Change(item.path, real, action, item.text, old, item.mode))
    # Files an earlier install wrote that this policy no longer needs (a job lost its schedule).
    for target, info in sorted((manifest or {}).get("files", {}).items()):
        if target in wanted:
            continue
        real = under(root, Path(target))
        old = _read(real)
        if old is not None and sha256(old) == info.get("sha256"):
            changes.append(Change(Path(target), real, "remove", None, old))
    return changes


def _diff(change: Change) -> str:
    old = (change.old or "").splitlines(keepends=True)
    new = (change.new or "").splitlines(keepends=True)
    before = f"{change.target} (installed)" if change.old is not None else "/dev/null"
    after = f"{change.target} (rendered)" if change.new is not None else "/dev/null"
    return "".join(difflib.unified_diff(old, new, before, after))


def print_plan(changes: list[Change]) -> None:
    """--dry-run output: each file, then the diff against what is installed."""
    for change in changes:
        if change.action == "unchanged":
            print(f"unchanged: {change.target}")
            continue
        print(f"would {change.action}: {change.target} (mode {change.mode:04o})")
        if change.new is not None:
            print(f"--- content of {change.target} ---")
            print(change.new, end="" if change.new.endswith("\n") else "\n")
        if change.action == "create":  # a diff against nothing would repeat the content
            continue
        diff = _diff(change)
        if diff:
            print(f"--- diff against {change.real} ---")
            print(diff, end="" if diff.endswith("\n") else "\n")


def _make_dirs(path: Path, mode: int, created: list[Path], root: Path) -> None:
    """mkdir -p that records every directory it creates (target-system paths)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(mode=mode)
        os.chmod(directory, mode)  # mkdir's mode is filtered by the umask
        created.append(Path("/") / directory.relative_to(root))


def _check_user(user: str, root: Path) -> pwd.struct_passwd | None:
    if not _USER.match(user):
        raise UsageError(f"--user {user!r} is not a valid user name (letters, digits, _ . -)")
    try:
        return pwd.getpwnam(user)
    except KeyError:
        if root == Path("/"):
            raise UsageError(
                f"--user {user!r}: no such user on this host; create it first (adduser --system)"
            ) from None
        return None  # staging for another host


def _check_group(name: str | None, root: Path) -> int | None:
    """The gid of --check-group (None without it); a group missing on this host is an error
    unless staging under --root for another host."""
    if not name:
        return None
    if not _USER.match(name):
        raise UsageError(f"--check-group {name!r} is not a valid group name")
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if root == Path("/"):
            raise UsageError(f"--check-group {name!r}: no such group on this host "
                             "(NRPE's is usually `nagios`)") from None
        return None


def check_readable_paths(policy: Policy, root: Path) -> tuple[list[Path], list[Path]]:
    """(directories, files) the `check` commands read, under `root`: the state directory,
    its jobs/ records, state.json, engine.lock, and each job's status log and its directory."""
    from engine.paths import StatePaths

    paths = StatePaths(Path(policy.state_dir))
    dirs = [under(root, paths.state_dir), under(root, paths.jobs_dir),
            under(root, paths.outbox_dir)]  # check engine reads the event outbox
    files = [under(root, paths.state_file), under(root, paths.engine_lock)]
    for job in policy.jobs.values():
        files.append(under(root, paths.job_record(job.name)))
        if job.status_log is not None:
            dirs.append(under(root, Path(job.status_log).parent))
            files.append(under(root, Path(job.status_log)))
    return list(dict.fromkeys(dirs)), list(dict.fromkeys(files))


def grant_check_group(policy: Policy, root: Path, gid: int | None, created: list[Path],
                      owned: set[str]) -> None:
    """Make what the checks read readable by group `gid` (directories 2750, files 0640).

    Their parent directories must let the group through too: those install created
    (`owned`, target-system paths) get the same treatment; any other parent the group
    cannot enter is named, for the operator to decide."""
    dirs, files = check_readable_paths(policy, root)
    for directory in dirs:
        _make_dirs(directory, 0o750, created, root)
    owned = owned | {str(p) for p in created}
    parents: list[Path] = []
    for directory in dirs:
        for parent in directory.parents:
            if parent == root or root not in parent.parents:
                break
            if parent not in dirs and parent not in parents:
                parents.append(parent)
    for directory in [*dirs, *[p for p in parents if str(Path("/") / p.relative_to(root))
                                in owned]]:
        if gid is not None:
            os.chown(directory, -1, gid)
        # setgid: state.json (replaced every cycle) and new records keep the group.
        os.chmod(directory, 0o2750)
    for parent in parents:
        if str(Path("/") / parent.relative_to(root)) in owned:
            continue
        info = parent.stat()
        if not info.st_mode & 0o001 and not (gid is not None and info.st_gid == gid
                                             and info.st_mode & 0o010):
            print(f"warning: {parent} does not let group {gid} through (mode "
                  f"{info.st_mode & 0o7777:04o}); the checks cannot read below it")
    for path in files:
        if path.is_file():
            if gid is not None:
                os.chown(path, -1, gid)
            os.chmod(path, 0o640)
    print(f"check group: {len(dirs)} directories and the files the checks read are "
          f"readable by group {gid if gid is not None else '(staged)'}")


def main(args: argparse.Namespace) -> int:
    """Write (or with --dry-run, show) the unit, cron file and logrotate snippet."""
    policy = load(args)
    root = Path(getattr(args, "root", None) or "/").absolute()
    user = getattr(args, "user", None) or "root"
    account = _check_user(user, root)
    group_name = getattr(args, "check_group", None)
    gid = _check_group(group_name, root)
    engine = Path(getattr(args, "engine", None) or engine_executable())
    print(f"engine command: {engine} ({check_engine_command(engine)})")
    # With --state-dir the unit and cron must pass it on, or they would use another dir.
    # The Debian package ships the template in /lib/systemd/system; a copy in /etc would
    # hide the package's next version of it.
    packaged = engine == PACKAGED_ENGINE and under(root, PACKAGED_UNIT_DIR / TEMPLATE_NAME).exists()
    rendered = render_all(policy, engine, user,
                          state_dir_flag=bool(getattr(args, "state_dir", None)),
                          packaged_template=packaged)
    mpath = manifest_path(policy, root)
    manifest = read_manifest(mpath)
    changes = plan_install(policy, root, rendered, manifest)
    pending = [c for c in changes if c.action != "unchanged"]

    if getattr(args, "dry_run", False):
        print_plan(changes)
        if not pending:
            print(f"nothing to change: {len(changes)} files already installed under {root}")
        return 0
    if not pending and manifest is not None and not group_name:
        print(f"nothing to change: {len(changes)} files already installed under {root}")
        return 0

    created: list[Path] = []
    try:
        # The engine's own directories: state (private), cron output (cron's `>>` fails
        # without it) and the status logs' directories (a job cannot report without them).
        own = {under(root, Path(policy.state_dir)): 0o700, under(root, LOG_DIR): 0o750}
        for job in policy.jobs.values():
            if job.status_log is not None:
                own.setdefault(under(root, Path(job.status_log).parent), 0o750)
        for directory, mode in own.items():
            fresh: list[Path] = []
            _make_dirs(directory, mode, fresh, root)
            created.extend(fresh)
            if fresh and account is not None and user != "root" and os.geteuid() == 0:
                os.chown(directory, account.pw_uid, account.pw_gid)
        if group_name:
            grant_check_group(policy, root, gid, created,
                              set((manifest or {}).get("dirs", [])))
        for change in pending:
            if change.action == "remove":
                change.real.unlink()
                print(f"removed {change.target} (no longer in the policy)")
                continue
            _make_dirs(change.real.parent, 0o755, created, root)
            atomic_write(change.real, change.new or "", mode=change.mode)
            print(f"{'created' if change.action == 'create' else 'updated'} {change.target}")
        files = {str(c.target): {"sha256": sha256(c.new or ""), "mode": f"{c.mode:04o}"}
                 for c in changes if c.action != "remove"}
        dirs = list(dict.fromkeys([*(manifest or {}).get("dirs", []), *map(str, created)]))
        data = {"version": MANIFEST_VERSION, "policy": str(Path(policy.path).absolute()),
                "unit": unit_name(policy), "installed_at": isotime(), "engine": str(engine),
                "user": user, "files": files, "dirs": dirs}
        atomic_write(mpath, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)
    except PermissionError as exc:
        raise FailoverError(
            f"{exc.filename}: permission denied; run install as root, or use --root DIR to stage"
        ) from None
    except OSError as exc:
        raise FailoverError(f"{exc.filename}: cannot write ({exc.strerror})") from None
    print(f"recorded in {mpath}")
    if root == Path("/"):
        print(f"next: systemctl daemon-reload && systemctl enable --now {unit_name(policy)}")
    return 0


def other_instances(policy: Policy, root: Path) -> list[str]:
    """Instances of the template that another policy's install configured (their drop-in
    directories), which still need the template when this policy is uninstalled."""
    unit_dir = under(root, UNIT_DIR)
    mine = f"{unit_name(policy)}.d"
    if not unit_dir.is_dir():
        return []
    return sorted(d.name.removesuffix(".d") for d in unit_dir.glob("failover-engine@?*.service.d")
                  if d.name != mine and d.is_dir())


def uninstall_main(args: argparse.Namespace) -> int:
    """Remove exactly what install recorded in its manifest, and nothing else."""
    policy = load(args)
    root = Path(getattr(args, "root", None) or "/").absolute()
    dry_run = getattr(args, "dry_run", False)
    mpath = manifest_path(policy, root)
    manifest = read_manifest(mpath)
    if manifest is None:
        print(f"nothing to uninstall: {mpath} does not exist")
        return 0
    verb = "would remove" if dry_run else "removed"
    if root == Path("/") and not dry_run:
        print(f"stop the service first if it runs: systemctl disable --now {manifest.get('unit')}")
    others = other_instances(policy, root)
    try:
        for target, info in sorted(manifest["files"].items()):
            real = under(root, Path(target))
            text = _read(real)
            if text is None:
                print(f"already gone: {target}")
            elif target == str(UNIT_DIR / TEMPLATE_NAME) and others:
                print(f"kept {target}: the template of {', '.join(others)} too")
            elif sha256(text) != info.get("sha256"):
                print(f"kept {target}: changed since install; remove it by hand if unwanted")
            else:
                if not dry_run:
                    real.unlink()
                print(f"{verb} {target}")
        if not dry_run:
            mpath.unlink()
        print(f"{verb} {mpath}")
        # Deepest first, and only when empty: the state directory may hold state by now.
        for target in sorted(manifest.get("dirs", []), key=lambda d: d.count("/"), reverse=True):
            real = under(root, Path(target))
            if dry_run:
                if real.is_dir():
                    print(f"would remove {target} if it is empty then")
                continue
            try:
                real.rmdir()
                print(f"removed {target}/")
            except FileNotFoundError:
                pass
            except OSError:
                print(f"kept {target}/: not empty")
    except PermissionError as exc:
        raise FailoverError(f"{exc.filename}: permission denied; run uninstall as root") from None
    if root == Path("/") and not dry_run:
        print("next: systemctl daemon-reload")
    return 0
