"""The readiness checks that need no server: the cron file, its parking directory, the
state dir, a client certificate that cannot be used; and the readiness block's defaults."""
from __future__ import annotations

import textwrap
from pathlib import Path

from engine.policy import load_policy
from engine.readiness import (
    DEFAULT_CERTIFICATE_DAYS,
    DEFAULT_DISK_FACTOR,
    DEFAULT_INTERVAL,
    ReadinessConfig,
    bounded,
    certificate_checks,
    file_checks,
    readiness_config,
)


def _policy(tmp_path: Path, park: str, readiness: str = "readiness: {}") -> Path:
    (tmp_path / "cron.d").mkdir(exist_ok=True)
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: t
        state_dir: state
        probes:
          production:
            http: {{url: "https://127.0.0.1:9/", client_cert: missing.pem,
                    client_key: missing.key}}
        monitor: {{target: production, interval: 1m, failures_to_engage: 3}}
        {readiness}
        engage:
          - disable_cron: {{file: cron.d/import, park_dir: {park}}}
        restore:
          - enable_cron: {{file: cron.d/import, park_dir: {park}}}
        """))
    return path


def test_cron_file_and_parking_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    policy = load_policy(_policy(tmp_path, str(blocker / "parked")))
    checks = {c.name: c for c in file_checks(policy, "watching")}
    assert (checks["cron.1"].ok, checks["cron.1"].reason) == (False, "missing")
    assert (checks["parking.1"].ok, checks["parking.1"].reason) == (False, "not_writable")
    assert checks["parking.1"].detail == f"{blocker} is not a directory"
    assert checks["state_dir"].ok
    (tmp_path / "cron.d" / "import").write_text("17 * * * * root true\n")
    good = load_policy(_policy(tmp_path, "parked"))
    assert all(c.ok for c in file_checks(good, "watching"))
    # While engaged the file is expected in its parking directory, not in cron.d.
    engaged = {c.name: c for c in file_checks(good, "engaged")}
    assert (engaged["cron.1"].ok, engaged["cron.1"].reason) == (False, "missing")
    assert "parked cron file is gone" in engaged["cron.1"].detail


def test_a_client_certificate_that_cannot_be_used(tmp_path: Path) -> None:
    policy = load_policy(_policy(tmp_path, "parked"))
    (check,) = certificate_checks(policy, 7)
    assert (check.name, check.ok, check.reason) == ("certificate.production", False,
                                                     "cannot_run")


def test_the_block_and_its_defaults(tmp_path: Path) -> None:
    assert readiness_config(load_policy(_policy(tmp_path, "parked"))) == ReadinessConfig(
        DEFAULT_INTERVAL, DEFAULT_CERTIFICATE_DAYS, DEFAULT_DISK_FACTOR)
    assert readiness_config(load_policy(_policy(tmp_path, "parked", ""))) is None
    tuned = load_policy(_policy(tmp_path, "parked", "readiness: {interval: 10m, "
                                                    "certificate_days: 30, disk_factor: 3}"))
    assert readiness_config(tuned) == ReadinessConfig(600.0, 30.0, 3.0)
    assert bounded("refused_grant") == "refused_grant" and bounded("nonsense") == "other"
