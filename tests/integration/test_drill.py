"""The README's first command: the drill passes end to end and prints no secret."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO, require_binary


def test_drill_passes_and_prints_no_secret(tmp_path):
    require_binary("named")
    result = subprocess.run(
        [sys.executable, str(REPO / "bin" / "failover-engine"), "drill", "--keep"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "TMPDIR": str(tmp_path),
             "HOME": str(tmp_path)})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "drill passed" in output
    for check in ["engaged", "cron file parked", "lock written",
                  "DNS primary answers the standby", "every DNS server answers production",
                  "restored to watching", "every event delivered (outbox empty)",
                  "at most 3 messages per channel", "the SMTP sink got each mail once",
                  "readiness CRITICAL names the lost grant",
                  "readiness OK once the grant is back",
                  "READINESS LOST then READINESS REGAINED mailed"]:
        assert f"✔ {check}" in output
    # One outage, engaged and restored: the warning, ENGAGED with its changes, RESTORED;
    # then the update grant lost and given back: READINESS LOST, READINESS REGAINED.
    assert "messages per channel: email 3" in output
    mails = re.findall(r"^  - (\[failover-engine drill@[^\]]+\] [A-Z ]+): ", output, re.M)
    assert [m.split("] ")[1] for m in mails] == ["WARNING", "ENGAGED", "RESTORED",
                                                 "READINESS LOST", "READINESS REGAINED"], output
    assert re.search(r"check readiness: READINESS CRITICAL - 2 of \d+ checks fail: "
                     r"engage\.\d+\.nsupdate=refused_grant, restore\.1\.nsupdate=refused_grant",
                     output), output
    assert re.search(r"check readiness: READINESS OK - all \d+ checks pass", output), output
    assert "Traceback" not in output
    kept = Path(re.search(r"kept (\S+)", output).group(1))
    try:
        secrets = re.findall(r'secret "([^"]+)"', (kept / "secrets" / "update-key.key").read_text())
        assert secrets
        private_keys = [p.read_text() for p in (kept / "pki").glob("*.key")]
        for secret in secrets:
            assert secret not in output
        for key in private_keys:
            body = "".join(key.splitlines()[1:-1])
            assert body[:40] not in output
    finally:
        shutil.rmtree(kept, ignore_errors=True)
