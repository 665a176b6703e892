"""cli: whole-process latency of `validate`, `status` and `dry-run engage` against a floor.

The floor is `python -c "import yaml, jsonschema, transitions"` (for dry-run engage also
dnspython's modules, which its nsupdate step needs: the four imports) with the same
interpreter: what any tool built on those libraries pays before doing anything.
Goals: validate and status ≤ 1.25× the floor, dry-run engage ≤ 1.6× (it also imports
dnspython and reads the live record from a loopback `named`).

Each round runs validate, floor, status, floor, dry-run, floor; each command's ratio is
taken against the floor run right after it. It also prints the `-X importtime` top
entries of validate and status and fails a row if paramiko, pymysql, oracledb or
dnspython were imported by them (they do not use them).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from bench.common import (
    LAUNCHER,
    PYTHON,
    REPO,
    Bench,
    BenchError,
    Result,
    alternate,
    child_env,
    failed_result,
    ratio_result,
    run_process,
)

NAME = "cli"
GOCDB = REPO / "policies" / "gocdb.yaml"
FLOOR = [PYTHON, "-c", "import yaml, jsonschema, transitions"]
# dry-run engage's floor has the fourth import its policy's nsupdate step needs: dnspython
# (the modules actions/nsupdate.py and actions/dnsread.py import), so the ratio prices the
# engine's own work, not a library no engage can do without.
DNS_FLOOR = [PYTHON, "-c", "import yaml, jsonschema, transitions, dns.message, dns.query,"
             " dns.update, dns.tsig, dns.rcode, dns.resolver"]
HEAVY = ("paramiko", "pymysql", "oracledb", "dns")
HEAVY_ALWAYS = ("paramiko", "pymysql", "oracledb")
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(argv: list[str]) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) of every import `argv` made."""
    import subprocess

    done = subprocess.run([PYTHON, "-X", "importtime", *argv], cwd=REPO, capture_output=True,
                          text=True, check=False, env=child_env())
    found = []
    for line in done.stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            found.append((int(match[1]), int(match[2]), len(match[3]) // 2, match[4]))
    return found


def heavy_modules(entries: list[tuple[int, int, int, str]],
                  names: tuple[str, ...] = HEAVY) -> list[str]:
    """Top-level packages among `names` that were imported."""
    return sorted({e[3].split(".")[0] for e in entries if e[3].split(".")[0] in names})


def show_importtime(bench: Bench, label: str, argv: list[str], top: int = 8) -> list[str]:
    """Print the top cumulative imports below the script and the heavy modules; return those."""
    entries = importtime(argv)
    total = sum(e[0] for e in entries)
    bench.say(f"  -X importtime {label}: {len(entries)} modules, {total / 1000:.0f} ms of imports")
    # depth 0 = imported by the script itself; the package roots are what one can act on.
    roots = sorted((e for e in entries if e[2] == 0), key=lambda e: -e[1])[:top]
    for self_us, cum_us, _depth, module in roots:
        bench.say(f"    {cum_us / 1000:7.1f} ms cumulative {self_us / 1000:6.1f} ms self  {module}")
    heavy = heavy_modules(entries)
    bench.say(f"    heavy modules imported: {', '.join(heavy) if heavy else 'none'}")
    return heavy


def dry_run_policy(bench: Bench, work: Path):  # -> (LoopbackWorld, Path)
    from bench.world import LoopbackWorld

    world = LoopbackWorld(work / "world", dns=True, smtp=True).start()
    policy = world.write_policy(work / "world" / "bench.yaml")
    return world, policy


def run(bench: Bench) -> list[Result]:
    work = Path(tempfile.mkdtemp(prefix="cli-", dir=bench.work))
    state = work / "state"
    state.mkdir()
    validate = [PYTHON, str(LAUNCHER), "--policy", str(GOCDB), "validate"]
    status = [PYTHON, str(LAUNCHER), "--policy", str(GOCDB), "--state-dir", str(state), "status"]
    for label, argv in (("validate", validate), ("status", status)):
        code = _exit_code(argv)
        if code != 0:
            bench.note(f"`{label}` on policies/gocdb.yaml exits {code} (timed all the same)")
    world = None
    dry_run: list[str] | None = None
    why = "the loopback servers did not start"
    try:
        try:
            world, policy = dry_run_policy(bench, work)
            dry_run = [PYTHON, str(LAUNCHER), "--policy", str(policy), "dry-run", "engage"]
            code = _exit_code(dry_run)
            if code != 0:
                bench.note(f"`dry-run engage` on the loopback policy exits {code}")
        except Exception as exc:  # noqa: BLE001 - report and measure the rest
            why = f"no loopback world for dry-run engage: {type(exc).__name__}: {exc}"
        contenders = [lambda: run_process(validate), lambda: run_process(FLOOR),
                      lambda: run_process(status), lambda: run_process(FLOOR)]
        if dry_run is not None:
            contenders += [lambda: run_process(dry_run), lambda: run_process(DNS_FLOOR)]
        runs = bench.runs * 2
        times = alternate(contenders, runs)
        results = [
            ratio_result("cli.validate [s]", times[0], times[1], 1.25),
            ratio_result("cli.status [s]", times[2], times[3], 1.25),
        ]
        if dry_run is not None:
            results.append(ratio_result("cli.dry-run-engage [s]", times[4], times[5], 1.6))
        else:
            results.append(failed_result("cli.dry-run-engage [s]", "≤ 1.6×", why, bench))
        heavy = []
        for label, argv in (("validate", validate[1:]), ("status", status[1:])):
            heavy += [f"{label}:{m}" for m in show_importtime(bench, label, argv)]
        if dry_run is not None:
            entries = importtime(dry_run[1:])
            extra = heavy_modules(entries, HEAVY_ALWAYS)
            bench.say(f"  dry-run engage imports: {', '.join(heavy_modules(entries)) or 'none'}"
                      " of the heavy modules (dnspython is needed there)")
            heavy += [f"dry-run:{m}" for m in extra]
        floor_entries = importtime(FLOOR[1:])
        bench.say(f"  floor: {len(floor_entries)} modules imported")
        if heavy:
            bench.note(f"heavy modules imported where not needed: {', '.join(heavy)}")
        results.append(Result("cli.heavy-imports [modules]", float(len(heavy)), 0.0, None,
                              "0 (paramiko, pymysql, oracledb; dnspython outside dry-run)",
                              not heavy, 1, None))
        return results
    finally:
        if world is not None:
            world.stop()


def _exit_code(argv: list[str]) -> int:
    import subprocess

    try:
        return subprocess.run(argv, cwd=REPO, capture_output=True, check=False,
                              timeout=60, env=child_env()).returncode
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)} did not finish in 60 s") from exc
