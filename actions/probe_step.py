"""probe — run one of the policy's probes as a step; a failing probe fails the step.

    probes:
      standby:                      # the standby's own service, as users will reach it
        http: {url: "https://gocdb.hartree.stfc.ac.uk/portal/", expect_status: 200,
               expect_body: "GOCDB", timeout: 20s}
    engage:
      - probe: {name: standby}      # before the DNS step: never fail over to a broken standby

The step is an observation: `plan()` runs the probe, and a probe that answers as expected
means there is nothing to do (`done`, "standby answers: HTTP 200"). A failing probe is the
plan's `problem` (a dry-run exits 1) and, in a real run, a `StepError` naming the probe and
why it failed ("probe standby failed: connection refused by 127.0.0.1:8443"), retryable so
the step's `retries:` give a standby that is still starting a second chance. The engage
stops there, before the DNS step that follows it.

`engage --now --force` (`ctx.force`) overrides a failing probe: the step then succeeds with
an outcome that says so ("OVERRIDDEN by engage --force: probe standby failed: …", fact
`overridden`), which the runner writes to the audit log like every change, and the
ENGAGED message lists it with the run's changes.

The probe is built exactly as the monitor builds its target (not a guard: an http probe
expects status 200 unless it names another one). A probe whose client certificate is
missing or expired (`cannot_run()`) fails the step with that reason.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from actions import registry
from actions.base import Context, Outcome, Plan, ProbeResult
from engine.errors import StepError


class ProbeStep:
    """Run the policy's probe `name`; fail (or, forced, record the override) when it fails."""

    kind: ClassVar[str] = "probe"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.name = str(params["name"])

    def _probe(self, ctx: Context) -> Any:
        probes = getattr(ctx.policy, "probes", None) or {}
        spec = probes.get(self.name) if isinstance(probes, Mapping) else None
        if spec is None:
            defined = ", ".join(sorted(probes)) if isinstance(probes, Mapping) else ""
            raise StepError(f"probe {self.name!r} is not defined (defined probes: "
                            f"{defined or 'none'}; add it under `probes:`)")
        return registry.probe_class(spec.kind)(spec.params)

    def _check(self, ctx: Context) -> ProbeResult:
        """The probe's verdict now; a probe that cannot run at all is a failed one."""
        probe = self._probe(ctx)
        cannot = probe.cannot_run()
        if cannot:
            return ProbeResult(False, f"cannot run: {cannot}", 0.0)
        result: ProbeResult = probe.check()
        return result

    def _failure(self, result: ProbeResult) -> str:
        return f"probe {self.name} failed: {result.detail}"

    def plan(self, ctx: Context) -> Plan:
        """Run the probe (read-only): done when it answers, the problem when it fails."""
        try:
            result = self._check(ctx)
        except StepError as exc:
            return Plan(f"probe {self.name}", problem=str(exc))
        if result.ok:
            return Plan(f"{self.name} answers: {result.detail}", done=True,
                        facts={"probe": self.name, "probe_ok": True})
        return Plan(f"probe {self.name}", problem=self._failure(result),
                    facts={"probe": self.name, "probe_ok": False})

    def apply(self, ctx: Context) -> Outcome:
        """Run the probe again; raise when it fails, unless the run is forced."""
        result = self._check(ctx)
        if result.ok:
            return Outcome(f"{self.name} answers: {result.detail}", changed=False,
                           facts={"probe": self.name, "probe_ok": True})
        failure = self._failure(result)
        if ctx.force:
            ctx.log(f"{failure}; OVERRIDDEN by --force: the run goes on")
            return Outcome(f"OVERRIDDEN by engage --force: {failure}",
                           before=failure, after="overridden by --force", changed=True,
                           facts={"probe": self.name, "probe_ok": False,
                                  "overridden": failure})
        raise StepError(f"{failure}; nothing after this step ran (`engage --now --force` "
                        "overrides it)" if ctx.step_id.startswith("engage") else failure,
                        retryable=True)

    def host_problems(self, ctx: Context) -> list[str]:
        """The probe must be defined and able to run on this host (its TLS files)."""
        try:
            probe = self._probe(ctx)
        except StepError as exc:
            return [str(exc)]
        return [f"probe {self.name}: {line}" for line in probe.host_problems(ctx)]
