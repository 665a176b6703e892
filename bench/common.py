"""Shared machinery of the benchmarks: alternating runs, medians, spread, the table, JSON.

Every figure is a ratio of runs made back to back on the same machine: after a warm-up,
`alternate()` calls ours, baseline, ours, baseline … and each round gives one ratio; the
figure is the median of those ratios and `spread` is their interquartile range divided by
that median (0.10 = the middle half of the rounds lies within a 10 % band). Absolute
times on a shared 2-core machine drift from minute to minute; ratios of neighbours drift
much less.

A `Result` has exactly the fields of `bench/results.json`:
`name, ours, baseline, ratio, goal, pass, runs, spread` (`pass` is true, false, or null
when the row is informational or could not be measured). Units are in the name.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LAUNCHER = REPO / "bin" / "failover-engine"
FIELDS = ("name", "ours", "baseline", "ratio", "goal", "pass", "runs", "spread")


@dataclass
class Result:
    """One row of the table and one object of results.json."""

    name: str
    ours: float | None
    baseline: float | None
    ratio: float | None
    goal: str | None
    passed: bool | None
    runs: int
    spread: float | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("passed")
        return {key: _round(data[key]) for key in FIELDS}


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


@dataclass
class Bench:
    """What a benchmark module gets: the mode, a scratch dir, and a place for notes."""

    quick: bool
    work: Path
    notes: list[str] = field(default_factory=list)
    large: bool = False  # `--large`: the import benchmark's 541 MB dump

    @property
    def runs(self) -> int:
        """Measured rounds per comparison (after one warm-up round)."""
        return 5 if self.quick else 7

    def say(self, message: str) -> None:
        print(message, flush=True)

    def note(self, message: str) -> None:
        """A finding printed under the table (and in BENCHMARKS.md by hand)."""
        self.notes.append(message)
        self.say(f"  note: {message}")


# -- measuring -------------------------------------------------------------------------
def alternate(contenders: Sequence[Callable[[], float]], runs: int,
              warmup: int = 1) -> list[list[float]]:
    """Call each contender in turn, `warmup` discarded rounds then `runs` measured rounds.

    Each contender returns the seconds it measured itself (so set-up and reset between
    runs stay outside the figure). Returns one list of times per contender.
    """
    times: list[list[float]] = [[] for _ in contenders]
    for round_no in range(warmup + runs):
        for index, contender in enumerate(contenders):
            elapsed = contender()
            if round_no >= warmup:
                times[index].append(elapsed)
    return times


def timed(call: Callable[[], Any]) -> float:
    """Seconds `call()` took (perf_counter)."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


_PYCACHE: dict[str, str] = {}


def use_pycache(directory: Path) -> None:
    """Child processes keep their bytecode under `directory` (see `child_env`)."""
    _PYCACHE["dir"] = str(directory)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of measured processes: bytecode caches on, as in an installed package.

    This machine sets PYTHONDONTWRITEBYTECODE=1, so the checkout's modules would be
    compiled from source at every start while the libraries' wheels ship compiled; an
    installed engine has its .pyc files. Children write and read their bytecode under a
    scratch PYTHONPYCACHEPREFIX (libraries included), filled by the warm-up round, so
    ours and the floor start on an equal footing and the checkout stays untouched.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if "dir" in _PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE["dir"]
    env.update(extra or {})
    return env


def run_process(argv: Sequence[str], *, cwd: Path = REPO, env: dict[str, str] | None = None,
                check_codes: Sequence[int] | None = None, stdin: Any = None) -> float:
    """Run a whole process (output discarded) and return its wall time in seconds."""
    env = env if env is not None else child_env()
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env=env, stdin=stdin,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if check_codes is not None and done.returncode not in check_codes:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(map(str, argv))} exited {done.returncode}: "
                         + " | ".join(tail))
    return elapsed


class BenchError(RuntimeError):
    """A benchmark could not measure (a server missing, a command failing)."""


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of at least one value."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0], ordered[0], ordered[0]
    q1, q2, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, q2, q3


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ratio_result(name: str, ours: Sequence[float], baseline: Sequence[float],
                 max_ratio: float | None, *, goal: str | None = None) -> Result:
    """A row from paired runs: the median of per-round ratios against `max_ratio`."""
    ratios = [o / b for o, b in zip(ours, baseline, strict=True) if b > 0]
    q1, med, q3 = quartiles(ratios)
    text = goal or (f"≤ {max_ratio:g}×" if max_ratio is not None else None)
    return Result(name, statistics.median(ours), statistics.median(baseline), med, text,
                  None if max_ratio is None else med <= max_ratio, len(ratios),
                  (q3 - q1) / med if med else None)


def failed_result(name: str, goal: str | None, error: str, bench: Bench) -> Result:
    """A row for a benchmark that could not run: no figures, pass null, the reason noted."""
    bench.note(f"{name}: not measured: {error}")
    return Result(name, None, None, None, goal, None, 0, None)


# -- the table and the file ------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "pass" if value else "FAIL"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table (the same one BENCHMARKS.md carries)."""
    header = ["name", "ours", "baseline", "ratio", "goal", "pass/fail", "runs", "spread"]
    rows = [[r.name, _cell(r.ours), _cell(r.baseline), _cell(r.ratio), _cell(r.goal),
             _cell(r.passed) if r.passed is not None else ("info" if r.goal is None else "-"),
             str(r.runs), "-" if r.spread is None else f"±{r.spread * 50:.1f}%"]
            for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def write_json(path: Path, results: Sequence[Result]) -> None:
    """Write results.json atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False)
                    + "\n")
    os.replace(temp, path)


def machine() -> dict[str, str]:
    """Cores, memory, Python and package versions: the header of a run."""
    from importlib import metadata

    info = {"cores": str(os.cpu_count()), "python": sys.version.split()[0]}
    try:
        with open("/proc/meminfo") as handle:
            total_kb = int(handle.readline().split()[1])
        info["memory"] = f"{total_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["memory"] = "?"
    for package in ("PyYAML", "jsonschema", "transitions", "dnspython", "PyMySQL", "paramiko",
                    "cryptography", "aiosmtpd"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    for binary, flag in (("mariadbd", "--version"), ("named", "-v")):
        try:
            done = subprocess.run([_which(binary), flag], capture_output=True, text=True,
                                  timeout=10, check=False)
            info[binary] = (done.stdout or done.stderr).strip().splitlines()[0][:80]
        except (OSError, IndexError, subprocess.SubprocessError, BenchError):
            info[binary] = "absent"
    return info


def _which(name: str) -> str:
    import shutil

    found = shutil.which(name, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"]))
    if not found:
        raise BenchError(f"{name} is not installed")
    return found


which = _which
