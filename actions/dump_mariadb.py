"""dump_mariadb: dump a MariaDB database to a file with `mariadb-dump`, keeping the last one.

    jobs:
      dump:
        steps:
          - dump_mariadb:
              options: mariadb     # secrets key: option file ([client] host, user, password)
              database: gocdb
              file: /var/lib/failover-engine/dump/gocdb.sql
              tls: true                      # optional: --ssl --ssl-verify-server-cert
              timeout: 1h

Runs `mariadb-dump` (or `mysqldump` where that is all there is) as
`mariadb-dump --defaults-extra-file=<option file> --single-transaction --routines
--events --triggers <database>`: the option file is the first argument (the client
ignores it anywhere else) and the only place the password lives, so it never appears in
argv or in logs. The client runs with TZ=UTC, so the dump's `-- Dump completed on`
trailer, which import_mariadb reads as the data's age, is in UTC.

The dump goes to a temporary file (mode 0600: it holds personal data) in the target's
directory. Only when the client exits 0 and the file ends with the `-- Dump completed`
trailer is it rotated in: the previous dump becomes `<file>_old`, the new one takes the
final name (both renames in the same directory). A failed dump leaves the previous
files exactly as they were.

The step's output is the dump file (a following job step, e.g. archive, gets it); its
fact `data_completed` is the trailer's time (UTC), recorded by the job like an import's.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

from actions.base import Context, Outcome, Plan
from actions.mariadb_dumpfile import read_trailer
from actions.mysql_options import check_mode, env_without_secrets
from engine.errors import StepError
from engine.fsutil import fsync_dir

NAME_RE = re.compile(r"^[A-Za-z0-9_$]{1,64}\Z")
CLIENTS = ("mariadb-dump", "mysqldump")
# Client exit statuses that mean "try again later" (connection problems), per mysqldump.
TRANSIENT_EXIT = {2}


def find_client() -> str | None:
    for name in CLIENTS:
        found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
        if found:
            return found
    return None


class DumpMariadb:
    """The dump_mariadb step (see the module docstring for the manual)."""

    kind = "dump_mariadb"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.options_ref: str = params["options"]
        self.database: str = params["database"]
        if not NAME_RE.match(self.database):
            raise StepError(f"dump_mariadb: database {self.database!r} must be letters,"
                            " digits, _ or $")
        self.file = Path(params["file"])
        self.tls = bool(params.get("tls", False))

    def command(self, option_file: Path, client: str) -> list[str]:
        args = [client, f"--defaults-extra-file={option_file}", "--single-transaction",
                "--routines", "--events", "--triggers"]
        if self.tls:
            args += ["--ssl", "--ssl-verify-server-cert"]
        return [*args, self.database]

    def host_problems(self, ctx: Context) -> list[str]:
        problems = []
        if find_client() is None:
            problems.append("dump_mariadb: neither mariadb-dump nor mysqldump is installed")
        if not self.file.parent.is_dir():
            problems.append(f"dump_mariadb: directory {self.file.parent} does not exist")
        return problems

    def plan(self, ctx: Context) -> Plan:
        problems = self.host_problems(ctx)
        try:
            check_mode(ctx.secret(self.options_ref))
        except Exception as exc:  # noqa: BLE001 - reported as the plan's problem
            problems.append(str(exc))
        if self.file.parent.is_dir() and not os.access(self.file.parent, os.W_OK | os.X_OK):
            problems.append(f"dump_mariadb: cannot write in {self.file.parent}")
        before = None
        if self.file.exists():
            trailer, completed = read_trailer(self.file)
            before = {"file": str(self.file), "bytes": self.file.stat().st_size,
                      "completed": completed.isoformat() if completed else trailer}
        # The output is the file itself, so a following job step (archive) gets it as input.
        return Plan(
            summary=(f"would dump {self.database} to {self.file}"
                     + (f" (current one becomes {self.file.name}_old)" if before else "")),
            before=before, after=str(self.file.absolute()),
            problem="; ".join(problems) or None,
            output=self.file.absolute(),
        )

    def apply(self, ctx: Context) -> Outcome:
        client = find_client()
        if client is None:
            raise StepError("dump_mariadb: neither mariadb-dump nor mysqldump is installed")
        option_file = ctx.secret(self.options_ref)
        check_mode(option_file)
        directory = self.file.parent
        if not directory.is_dir():
            raise StepError(f"dump_mariadb: directory {directory} does not exist; create it")
        temp = directory / f".{self.file.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            ctx.log(f"dumping {self.database} with {Path(client).name} to {temp.name}")
            with os.fdopen(fd, "wb") as out:
                try:
                    done = subprocess.run(
                        self.command(option_file, client), stdout=out, stderr=subprocess.PIPE,
                        stdin=subprocess.DEVNULL, env=env_without_secrets(), check=False,
                        timeout=ctx.remaining(default=6 * 3600.0),
                    )
                except subprocess.TimeoutExpired:
                    raise StepError(f"dump of {self.database} to {self.file} timed out",
                                    retryable=True) from None
                out.flush()
                os.fsync(out.fileno())
            if done.returncode != 0:
                lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit status {done.returncode}"
                raise StepError(f"dump of {self.database} to {self.file} failed: {reason}",
                                retryable=done.returncode in TRANSIENT_EXIT)
            trailer, completed = read_trailer(temp)
            if trailer is None:
                raise StepError(f"dump of {self.database} to {self.file} has no '-- Dump"
                                " completed' trailer; the dump is incomplete", retryable=True)
            size = temp.stat().st_size
            old = self.file.with_name(self.file.name + "_old")
            if self.file.exists():
                os.replace(self.file, old)
            os.replace(temp, self.file)
            fsync_dir(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        stamp = completed.isoformat() if completed else trailer
        ctx.log(f"dumped {self.database}: {size} bytes, completed {stamp}")
        facts = {"data_completed": completed.astimezone(UTC).isoformat()} if completed else {}
        return Outcome(
            summary=f"dumped {self.database} to {self.file} ({size} bytes, completed {stamp})",
            before=None, after=str(self.file.absolute()), output=self.file.absolute(),
            facts=facts)
