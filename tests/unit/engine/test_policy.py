"""load_policy: the corpus of broken policies, all-at-once reporting, and the built dataclasses."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cli
from engine.errors import PolicyError, UsageError
from engine.policy import load_policy
from engine.yamlsource import MAX_BYTES
from tests.support import REPO

CORPUS = REPO / "tests" / "fixtures" / "policies"

# file → (line of the single problem, or None for a whole-file problem; expected words)
BROKEN: dict[str, tuple[int | None, str]] = {
    "empty.yaml": (None, "empty file"),
    "comments-only.yaml": (None, "holds no YAML document"),
    "syntax-error.yaml": (8, "YAML syntax error: did not find expected ',' or ']'"),
    "top-level-list.yaml": (1, "the top level must be a mapping"),
    "top-level-scalar.yaml": (1, "the top level must be a mapping"),
    "two-documents.yaml": (3, "a second YAML document"),
    "duplicate-key.yaml": (11, "duplicate key 'interval' (first at line 9)"),
    "billion-laughs.yaml": (3, "alias bomb"),
    "recursive-alias.yaml": (3, "recursive alias"),
    "python-tag.yaml": (3, "unsupported YAML tag"),
    "wrong-types.yaml": (10, "monitor.failures_to_engage: must be an integer, not a string"),
    "wrong-version.yaml": (1, "version: must be 1"),
    "unknown-key.yaml": (9, "unknown key 'intervall' (did you mean 'interval'?"),
    "unknown-top-key.yaml": (4, "colour: unknown key 'colour' (allowed: engage, jobs,"),
    "unknown-step-option.yaml": (16, "restore[0].lock.colour: unknown key 'colour'"),
    "unknown-step-kind.yaml": (13, "engage[1].frob: unknown step kind 'frob' (known: notify,"),
    "two-kinds.yaml": (12, "a step has exactly one kind; this one has 2: lock, symlink"),
    "two-kind-probe.yaml": (6, "a probe has exactly one kind"),
    "empty-step.yaml": (12, "empty step: name its kind"),
    "null-step.yaml": (14, "restore[0].lock: must be a mapping, but it is empty"),
    "bad-duration.yaml": (9, "'10 minutes' is not a duration (use e.g. 30s, 10m, 7h)"),
    "bad-step-timeout.yaml": (12, "engage[0].lock.timeout: 'soon' is not a duration"),
    "bad-enum.yaml": (12, "'maybe' is not one of: \"present\", \"absent\""),
    "missing-required.yaml": (8, "monitor: missing required key 'interval'"),
    "missing-top-required.yaml": (1, "(top level): missing required key 'state_dir'"),
    "undefined-probe.yaml": (8, "monitor.target: probe 'prod' is not defined"),
    "undefined-guard.yaml": (10, "monitor.guards[0]: probe 'internet' is not defined"),
    "bad-secret-name.yaml": (5, "'tsig key' is not a valid name"),
    "duplicate-label.yaml": (13, "label 'mark' is already used by engage[0]"),
    "impossible-window.yaml": (11, "5 failures can never happen in 3 cycles"),
    "empty-string.yaml": (7, "probes.production.http.expect_body: must not be empty"),
    "key-without-cert.yaml": (7, "'client_key' needs 'client_cert' as well"),
    "date-not-string.yaml": (3, "name: must be a string, not a date (2024-01-01; quote it"),
    "undefined-alias.yaml": (4, "found undefined alias"),
}

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<rest>.+)$")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return caught.value.problems


def test_corpus_is_complete() -> None:
    on_disk = {p.name for p in CORPUS.glob("*.yaml")} - {"valid.yaml", "three-errors.yaml"}
    assert on_disk == set(BROKEN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_policy_gives_one_line_at_the_right_place(name: str) -> None:
    line, words = BROKEN[name]
    problems = problems_of(CORPUS / name)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert "\n" not in problem
    assert words in problem
    if line is None:
        assert problem.startswith(f"{CORPUS / name}: ")
    else:
        match = LINE.match(problem)
        assert match, problem
        assert match["file"] == str(CORPUS / name)
        assert int(match["line"]) == line


def test_policy_error_is_a_usage_error_exit_2() -> None:
    with pytest.raises(UsageError) as caught:
        load_policy(CORPUS / "wrong-types.yaml")
    assert caught.value.exit_code == 2


def test_all_problems_are_reported_at_once_sorted_by_line() -> None:
    problems = problems_of(CORPUS / "three-errors.yaml")
    assert len(problems) == 3
    assert [int(LINE.match(p)["line"]) for p in problems] == [6, 8, 14]
    assert "probes.production.tcp.port: must be an integer, not a string ('443')" in problems[0]
    assert "monitor.target: probe 'prod' is not defined (defined probes: production" in problems[1]
    assert "restore[0].unlock: unknown step kind 'unlock'" in problems[2]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.yaml") == [
        f"{tmp_path / 'nope.yaml'}: no such file (give the policy with --policy FILE)"
    ]
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}: is a directory")


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"version: 1\nname: \x00x\n")
    assert problems_of(nul) == [
        f"{nul}: binary file (NUL byte at offset 17); a policy is UTF-8 YAML text"
    ]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("version: 1\nname: caf\u00e9\n".encode("latin-1"))
    (problem,) = problems_of(latin)
    assert "not UTF-8 text (byte 0xe9 at offset 20)" in problem


def test_file_over_one_mib_is_refused_without_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (10 * MAX_BYTES // 10))  # a 10 MiB file
    (problem,) = problems_of(big)
    assert problem == (f"{big}: the file is 10.0 MiB; a policy is at most 1 MiB "
                       "(is this the right file?)")


def test_just_under_one_mib_is_parsed(tmp_path: Path) -> None:
    policy = (CORPUS / "valid.yaml").read_text()
    padded = tmp_path / "padded.yaml"
    padded.write_text(policy + "#" * (MAX_BYTES - len(policy) - 1) + "\n")
    assert load_policy(padded).name == "corpus"


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 600))])
def test_deep_nesting_is_one_line(tmp_path: Path, text: str) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text(text)
    (problem,) = problems_of(deep)
    assert "nesting" in problem


def test_aliases_and_merge_keys_within_budget_work(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: aliases
        state_dir: state
        probes:
          production: {tcp: &tcp {host: 127.0.0.1, port: 443}}
          other: {tcp: {<<: *tcp, port: 80}}
        monitor: {target: production, guards: [other], interval: 10m, failures_to_engage: 3}
        engage:
          - lock: &present {state: present}
        restore:
          - lock: {<<: *present, state: absent, label: unlock}
        """))
    policy = load_policy(path)
    assert policy.probes["other"].params == {"host": "127.0.0.1", "port": 80}
    assert policy.restore[0].params == {"state": "absent"}
    assert policy.restore[0].label == "unlock"


def test_valid_policy_builds_dataclasses_with_defaults() -> None:
    policy = load_policy(CORPUS / "valid.yaml")
    assert policy.path == (CORPUS / "valid.yaml").resolve()
    assert policy.name == "corpus"
    assert policy.state_dir == CORPUS / "state"  # relative to the policy's directory
    assert policy.monitor.interval == 600.0
    assert policy.monitor.hold_down == 3600.0
    assert policy.monitor.metrics_file == CORPUS / "state" / "metrics.prom"
    assert policy.monitor.guards == ["internet"]
    assert policy.monitor.window is None and policy.monitor.rise == 1
    assert policy.monitor.auto_engage is True
    assert policy.probes["production"].kind == "http"
    assert policy.probes["production"].params["timeout"] == "5s"  # durations in params stay
    (engage,) = policy.engage
    assert (engage.kind, engage.params, engage.on_error) == ("lock", {"state": "present"}, "abort")
    assert (engage.where, engage.line, engage.timeout, engage.retries) == ("engage[0]", 16, None, 0)
    assert policy.restore[0].where == "restore[0]"
    assert policy.jobs == {} and policy.secrets == {} and policy.notify is None


def test_steps_jobs_paths_and_overrides(tmp_path: Path) -> None:
    policy_dir = tmp_path / "etc"
    policy_dir.mkdir()
    path = policy_dir / "p.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: full
        state_dir: /var/lib/failover-engine/full
        secrets:
          tsig: keys/tsig.key
          abs: /etc/x.key
        probes:
          production: {tcp: {host: 127.0.0.1, port: 443}}
        monitor:
          target: production
          interval: 30
          failures_to_engage: 5
          window: {failures: 3, cycles: 10}
          rise: 2
          hold_down: 2h
          metrics_file: metrics/m.prom
          auto_engage: false
        engage:
          - lock: {state: present, timeout: 1m, retries: 3, on_error: continue, label: mark}
        restore:
          - lock: {state: absent}
        jobs:
          import:
            schedule: "17 * * * *"
            status_log: logs/import.log
            pause_file: /run/pause
            notify_on_failure: false
            allow_when_engaged: true
            steps:
              - lock: {state: present}
              - unzip: {}
          other:
            work_dir: work
            steps: []
        """))
    policy = load_policy(path, state_dir=tmp_path / "override")
    assert policy.state_dir == tmp_path / "override"
    assert policy.secrets == {"tsig": policy_dir / "keys" / "tsig.key", "abs": Path("/etc/x.key")}
    monitor = policy.monitor
    assert (monitor.interval, monitor.window, monitor.rise, monitor.hold_down) == (
        30.0, (3, 10), 2, 7200.0)
    assert monitor.metrics_file == policy_dir / "metrics" / "m.prom"
    assert monitor.auto_engage is False
    (step,) = policy.engage
    assert step.params == {"state": "present"}  # common options are not the kind's params
    assert (step.timeout, step.retries, step.on_error, step.label, step.name) == (
        60.0, 3, "continue", "mark", "mark")
    job = policy.jobs["import"]
    assert job.work_dir == tmp_path / "override" / "work" / "import"
    assert job.status_log == policy_dir / "logs" / "import.log"
    assert job.pause_file == Path("/run/pause")
    assert (job.schedule, job.notify_on_failure, job.allow_when_engaged) == (
        "17 * * * *", False, True)
    assert [s.where for s in job.steps] == ["jobs.import.steps[0]", "jobs.import.steps[1]"]
    assert [s.line for s in job.steps] == [30, 31]
    assert policy.jobs["other"].work_dir == policy_dir / "work"
    assert policy.jobs["other"].status_log is None
    assert len(policy.all_steps()) == 4


def test_notify_on_failure_needs_a_notify_block(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text((CORPUS / "valid.yaml").read_text() + textwrap.dedent("""\
        jobs:
          import:
            notify_on_failure: true
            steps: [{lock: {state: present}}]
        """))
    (problem,) = problems_of(path)
    assert re.search(r":21:\d+: jobs.import.notify_on_failure: needs the top-level `notify:`",
                     problem), problem


def test_a_guard_that_is_the_target_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text((CORPUS / "valid.yaml").read_text().replace(
        "guards: [internet]", "guards: [internet, production]"))
    (problem,) = problems_of(path)
    assert "monitor.guards[1]: probe 'production' is the target" in problem


@pytest.mark.parametrize("name", ["three-errors.yaml", "billion-laughs.yaml", "empty.yaml"])
def test_cli_validate_prints_lines_and_exits_2_without_traceback(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--policy", str(CORPUS / name), "validate"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err.strip().splitlines() == problems_of(CORPUS / name)


def test_cli_validate_ok_line(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "valid.yaml"
    assert cli.main(["--policy", str(path), "validate"]) == 0
    out, _err = capsys.readouterr()
    assert out == f"OK: {path}: policy 'corpus' (1 engage steps, 1 restore steps, 0 jobs)\n"


def test_launcher_survives_deep_nesting_in_a_subprocess(tmp_path: Path) -> None:
    # A separate interpreter: a libyaml without a depth cap would crash it, not raise.
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 200_000 + "]" * 200_000 + "\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "bin" / "failover-engine"), "--policy", str(deep), "validate"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "nesting" in result.stderr


VALID_TEXT = (CORPUS / "valid.yaml").read_text()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mangled_policy_gives_policy_error_lines_never_a_crash(
    tmp_path: Path, data: st.DataObject
) -> None:
    # Cut, insert or replace a few characters of a valid policy: whatever comes out,
    # load_policy either builds a Policy or raises PolicyError with one-line problems.
    text = VALID_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 8)))
        insert = data.draw(st.sampled_from(["", "-", ":", " ", "\n", "[", "{", "&a ", "*a",
                                            "'", '"', "x", "10", "<<: ", "\t", "!!str "]))
        text = text[:start] + insert + text[end:]
    path = tmp_path / "mangled.yaml"
    path.write_text(text)
    try:
        load_policy(path)
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert "\n" not in problem and problem.startswith(str(path))
