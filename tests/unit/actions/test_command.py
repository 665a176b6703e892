"""command: argv without a shell, exit codes, timeout, env, check-based idempotence."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from actions.base import Context
from actions.command import Command
from actions.registry import build_step
from engine.errors import StepError
from tests.support import step_context

PY = sys.executable


def _ctx(state_dir: Path, timeout: float | None = None) -> Context:
    deadline = time.monotonic() + timeout if timeout is not None else None
    return step_context(state_dir, policy_name="drill", step_id="engage/5", deadline=deadline)


def test_runs_argv_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "ran; echo injected"
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    step = build_step("command", {"argv": [PY, "-c", write, str(marker)]})
    assert isinstance(step, Command)
    plan = step.plan(_ctx(tmp_path))
    assert plan.summary.startswith("would run: ") and not plan.done
    assert not marker.exists()  # plan without check runs nothing
    outcome = step.apply(_ctx(tmp_path))
    assert outcome.changed and outcome.after == "exit 0"
    assert marker.read_text() == "x"  # the ';' was part of a file name, not shell syntax


def test_unexpected_exit_names_status_and_stderr_tail(tmp_path: Path) -> None:
    script = ("import sys; print('line1\\nline2\\nline3\\nboom: disk full', file=sys.stderr);"
              " sys.exit(3)")
    with pytest.raises(StepError) as err:
        Command({"argv": [PY, "-c", script]}).apply(_ctx(tmp_path))
    message = str(err.value)
    assert "exited 3 (expected 0)" in message
    assert message.endswith("line2 | line3 | boom: disk full")
    assert "\n" not in message
    assert err.value.retryable


def test_expect_exit_and_env(tmp_path: Path) -> None:
    script = "import os, sys; sys.exit(int(os.environ['CODE']))"
    outcome = Command({"argv": [PY, "-c", script], "expect_exit": [0, 7],
                       "env": {"CODE": "7"}}).apply(_ctx(tmp_path))
    assert outcome.after == "exit 7"


def test_timeout_from_the_step_deadline(tmp_path: Path) -> None:
    with pytest.raises(StepError, match=r"timed out after 300ms") as err:
        Command({"argv": [PY, "-c", "import time; time.sleep(30)"]}).apply(
            _ctx(tmp_path, timeout=0.3))
    assert err.value.retryable


def test_missing_program(tmp_path: Path) -> None:
    step = Command({"argv": ["no-such-program-xyz", "restart"]})
    assert "not found on PATH" in (step.plan(_ctx(tmp_path)).problem or "")
    with pytest.raises(StepError, match="'no-such-program-xyz' not found"):
        step.apply(_ctx(tmp_path))


def test_check_makes_it_idempotent(tmp_path: Path) -> None:
    flag = tmp_path / "restarted"
    step = Command({
        "argv": [PY, "-c", "import sys; open(sys.argv[1], 'w').close()", str(flag)],
        "check": [PY, "-c", "import os, sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 1)",
                  str(flag)],
    })
    plan = step.plan(_ctx(tmp_path))
    assert not plan.done and "check exited 1" in plan.summary
    assert not flag.exists()
    step.apply(_ctx(tmp_path))
    assert step.plan(_ctx(tmp_path)).done


def test_missing_check_program_is_a_problem(tmp_path: Path) -> None:
    plan = Command({"argv": [PY, "-V"], "check": ["no-such-check-xyz"]}).plan(_ctx(tmp_path))
    assert "no-such-check-xyz" in (plan.problem or "")


def test_numbers_in_argv_and_env_are_passed_as_text(tmp_path: Path) -> None:
    script = "import os, sys; sys.exit(int(sys.argv[1]) + int(os.environ['EXTRA']))"
    outcome = Command({"argv": [PY, "-c", script, 3], "env": {"EXTRA": 4},
                       "expect_exit": [7]}).apply(_ctx(tmp_path))
    assert outcome.after == "exit 7"
