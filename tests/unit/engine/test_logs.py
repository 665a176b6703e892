"""Log lines: readable text without timestamps, or one JSON object per line with every field."""
from __future__ import annotations

import io
import json
import logging
import os

import pytest

from engine.logs import event, setup_logging, stderr_is_journal


@pytest.fixture
def capture():
    stream = io.StringIO()
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_failover_engine", False)]:
        root.removeHandler(handler)


def test_text_is_one_line_per_event_without_time(capture):
    setup_logging("text", False, stream=capture)
    log = logging.getLogger("engine.monitor")
    event(log, "probe.failed", "probe production failed (3/30)", level=logging.WARNING,
          probe="production", failures=3)
    log.debug("hidden unless verbose")
    log.info("multi\nline")
    assert capture.getvalue() == (
        "warning probe.failed: probe production failed (3/30)\n"
        "info multi\\nline\n"
    )


def test_text_verbose_adds_fields_and_debug(capture):
    setup_logging("text", True, stream=capture)
    log = logging.getLogger("engine.runner")
    event(log, "step.finished", "engage step 2 lock: lock created", step="lock", duration=0.25,
          detail="a b")
    log.debug("details")
    lines = capture.getvalue().splitlines()
    assert lines == [
        'info step.finished: engage step 2 lock: lock created step=lock duration=0.25 detail="a b"',
        "debug details",
    ]


def test_json_has_time_level_event_message_and_fields(capture):
    setup_logging("json", False, stream=capture)
    log = logging.getLogger("engine.monitor")
    event(log, "state.changed", "watching → suspect", before="watching", after="suspect")
    log.warning("plain %s", "call", extra={"host": "ns.example.org"})
    first, second = [json.loads(line) for line in capture.getvalue().splitlines()]
    assert first["event"] == "state.changed" and first["level"] == "info"
    assert first["message"] == "watching → suspect"
    assert (first["before"], first["after"], first["logger"]) == ("watching", "suspect",
                                                                  "engine.monitor")
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second == {**second, "event": "log", "level": "warning", "message": "plain call",
                      "host": "ns.example.org"}


def test_fields_named_like_secrets_are_masked(capture):
    setup_logging("json", True, stream=capture)
    event(logging.getLogger("x"), "db.connect", "connecting", user="gocdb",
          password="hunter2", tsig_secret="c2VjcmV0")
    text = capture.getvalue()
    assert "hunter2" not in text and "c2VjcmV0" not in text
    assert json.loads(text)["user"] == "gocdb"


def test_setting_up_twice_keeps_one_handler(capture):
    setup_logging("text", False, stream=io.StringIO())
    setup_logging("text", False, stream=capture)
    logging.getLogger("y").info("once")
    assert capture.getvalue() == "info once\n"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        setup_logging("xml", False)


def test_journal_stream_gets_syslog_priority_prefix(capture, tmp_path, monkeypatch):
    path = tmp_path / "stderr"
    with open(path, "w") as handle:
        info = os.fstat(handle.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert stderr_is_journal(handle)
        setup_logging("text", False, stream=handle)
        logging.getLogger("z").error("bad")
    assert path.read_text() == "<3>error bad\n"
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not stderr_is_journal(capture)


def test_paramiko_connection_chatter_is_debug_and_logged_once(capture):
    chatter = logging.getLogger("paramiko.transport")
    setup_logging("text", verbose=False, stream=capture)
    chatter.info("Connected (version 2.0, client OpenSSH_9.2p1)")
    chatter.warning("Unknown exception: boom")  # a library's warning still shows
    assert capture.getvalue().splitlines() == ["warning Unknown exception: boom"]

    verbose = io.StringIO()
    setup_logging("text", verbose=True, stream=verbose)
    for _ in range(2):  # a fetch connects more than once (plan, then apply)
        chatter.info("Connected (version 2.0, client OpenSSH_9.2p1)")
        chatter.info("Authentication (publickey) successful!")
    assert verbose.getvalue().splitlines() == [
        "debug Connected (version 2.0, client OpenSSH_9.2p1)",
        "debug Authentication (publickey) successful!"]
