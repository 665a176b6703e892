"""The `probe` step against a real HTTPS server on loopback demanding a client certificate:
it passes when the standby answers, fails with the probe's reason when it does not, and
`force` turns the failure into a recorded override."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actions.base import Context
from actions.probe_step import ProbeStep
from actions.registry import step_class
from engine.drillkit.https import HttpsServer
from engine.drillkit.pki import Pki
from engine.errors import StepError
from engine.policy import ProbeSpec
from tests.support import step_context


def _context(tmp_path: Path, probes: dict[str, ProbeSpec], *, force: bool = False,
             step_id: str = "engage step 4") -> Context:
    logs: list[str] = []
    policy = SimpleNamespace(path=tmp_path / "policy.yaml", name="t", probes=probes,
                             state_dir=tmp_path / "state")

    def no_secret(name: str) -> Path:
        raise AssertionError(f"no secret expected ({name})")

    return step_context(tmp_path / "state", secret=no_secret, step_id=step_id,
                        log=logs.append, policy=policy, force=force)


def _standby(server: HttpsServer, pki: Pki, path: str = "/check", **extra: Any) -> ProbeSpec:
    return ProbeSpec("standby", "http", {
        "url": server.url(path), "timeout": "5s", "ca_file": str(pki.ca.cert),
        "client_cert": str(pki.client.cert), "client_key": str(pki.client.key), **extra})


def test_registered_as_probe() -> None:
    assert step_class("probe") is ProbeStep


def test_a_standby_that_answers_is_done(tmp_path: Path, https_server: HttpsServer,
                                        pki: Pki) -> None:
    ctx = _context(tmp_path, {"standby": _standby(https_server, pki, expect_body="all good")})
    step = ProbeStep({"name": "standby"})
    plan = step.plan(ctx)
    assert plan.done and plan.problem is None
    assert plan.summary == "standby answers: HTTP 200"
    outcome = step.apply(ctx)
    assert outcome.changed is False
    assert outcome.facts == {"probe": "standby", "probe_ok": True}


def test_a_failing_standby_fails_the_step_with_the_reason(tmp_path: Path,
                                                         https_server: HttpsServer,
                                                         pki: Pki) -> None:
    https_server.set_route("/check", 503, "maintenance")
    ctx = _context(tmp_path, {"standby": _standby(https_server, pki)})
    step = ProbeStep({"name": "standby"})
    plan = step.plan(ctx)
    assert not plan.done
    assert plan.problem == "probe standby failed: HTTP 503 (expected 200)"
    with pytest.raises(StepError) as caught:
        step.apply(ctx)
    assert str(caught.value).startswith("probe standby failed: HTTP 503 (expected 200); "
                                        "nothing after this step ran")
    assert "--force" in str(caught.value)
    assert caught.value.retryable  # `retries:` give a standby still starting a second chance


def test_a_wrong_body_fails(tmp_path: Path, https_server: HttpsServer, pki: Pki) -> None:
    ctx = _context(tmp_path, {"standby": _standby(https_server, pki, expect_body="GOCDB")})
    plan = ProbeStep({"name": "standby"}).plan(ctx)
    assert plan.problem is not None
    assert plan.problem.startswith("probe standby failed: ")
    assert "GOCDB" in plan.problem


def test_a_closed_port_names_the_refusal(tmp_path: Path, https_server: HttpsServer,
                                         pki: Pki) -> None:
    spec = _standby(https_server, pki)
    https_server.stop()
    ctx = _context(tmp_path, {"standby": spec}, step_id="restore step 1")
    with pytest.raises(StepError) as caught:
        ProbeStep({"name": "standby"}).apply(ctx)
    assert str(caught.value).startswith("probe standby failed: connection refused by 127.0.0.1:")
    assert "--force" not in str(caught.value)  # only engage has --force


def test_force_records_the_override(tmp_path: Path, https_server: HttpsServer,
                                    pki: Pki) -> None:
    https_server.set_route("/check", 500, "broken")
    ctx = _context(tmp_path, {"standby": _standby(https_server, pki)}, force=True)
    outcome = ProbeStep({"name": "standby"}).apply(ctx)
    assert outcome.changed is True
    assert outcome.summary == ("OVERRIDDEN by engage --force: probe standby failed: HTTP 500 "
                               "(expected 200)")
    assert outcome.facts["overridden"] == "probe standby failed: HTTP 500 (expected 200)"
    assert outcome.after == "overridden by --force"


def test_a_missing_client_certificate_cannot_run(tmp_path: Path, https_server: HttpsServer,
                                                 pki: Pki) -> None:
    spec = _standby(https_server, pki, client_cert=str(tmp_path / "missing.pem"),
                    client_key=str(tmp_path / "missing.key"))
    ctx = _context(tmp_path, {"standby": spec})
    plan = ProbeStep({"name": "standby"}).plan(ctx)
    assert plan.problem is not None
    assert plan.problem.startswith("probe standby failed: cannot run: ")
    assert https_server.requests == []


def test_an_undefined_probe_is_one_line(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {})
    step = ProbeStep({"name": "standby"})
    assert step.plan(ctx).problem == ("probe 'standby' is not defined (defined probes: none; "
                                      "add it under `probes:`)")
    assert step.host_problems(ctx) == [step.plan(ctx).problem]
