"""`engage --now --force` reaches the monitor: the request record carries `force` (only for
engage), and a record without it, or with a non-boolean, is not forced."""
from __future__ import annotations

import json
from pathlib import Path

from engine.monitor_requests import submit, take_pending
from engine.paths import StatePaths


def test_force_travels_in_the_engage_request(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    forced = submit(paths, "engage", "op", force=True)
    plain = submit(paths, "engage", "op")
    restore = submit(paths, "restore", "op", force=True)  # restore has no --force
    record = json.loads(paths.request_file(forced.request_id).read_text())
    assert record["force"] is True
    taken = {r.request_id: r for r in take_pending(paths)}
    assert taken[forced.request_id].force is True
    assert taken[plain.request_id].force is False
    assert taken[restore.request_id].force is False


def test_only_a_true_boolean_forces(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    request = submit(paths, "engage", "op")
    file = paths.request_file(request.request_id)
    record = json.loads(file.read_text())
    record["force"] = "yes"
    file.write_text(json.dumps(record))
    (taken,) = take_pending(paths)
    assert taken.force is False
