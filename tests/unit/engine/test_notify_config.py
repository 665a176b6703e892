"""The notify block's schema (schemas/notify-config.json): the four channels, routes, warn_at,
secret references and paths, through the real loader."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.channels import build_channels, routes_for
from engine.errors import PolicyError
from engine.policy import load_policy

BASE = """\
version: 1
name: n
state_dir: state
secrets: {hook: hook.key}
probes:
  production:
    tcp: {host: 127.0.0.1, port: 9, timeout: 1s}
monitor: {target: production, interval: 1s, failures_to_engage: 4}
engage:
  - lock: {state: present}
restore:
  - lock: {state: absent}
notify:
"""


def _load(tmp_path: Path, notify: str):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(notify), "  "))
    return load_policy(path)


def test_every_channel_kind_validates_and_is_built(tmp_path):
    policy = _load(tmp_path, """\
        email: {smtp: {host: 127.0.0.1}, from: a@b.test, to: [c@d.test], events: [engaged]}
        webhook: {url: "https://hooks.test/x", secret: hook, client_cert: pki/c.pem,
                  client_key: pki/c.key, ca_file: pki/ca.pem, timeout: 5s}
        alertmanager: {url: "http://127.0.0.1:9093"}
        command: {argv: [/bin/true], timeout: 2s, events: [aborted, disarmed]}
        warn_at: 2
        """)
    webhook = policy.notify["webhook"]
    assert webhook["client_cert"] == str(tmp_path / "pki" / "c.pem")  # x-path: made absolute
    channels = build_channels(policy.notify, lambda name: tmp_path / name)
    assert list(channels) == ["email", "webhook", "alertmanager", "command"]
    assert routes_for(channels, "engaged") == ["email", "webhook", "alertmanager"]
    assert routes_for(channels, "aborted") == ["webhook", "alertmanager", "command"]
    assert routes_for(channels, "outage_warning") == ["webhook"]


def test_the_old_email_only_block_stays_valid(tmp_path):
    policy = _load(tmp_path, """\
        email: {smtp: {host: 127.0.0.1, port: 25}, from: a@b.test, to: [c@d.test],
                subject: old}
        remind_every: 6h
        """)
    assert list(build_channels(policy.notify, lambda n: tmp_path)) == ["email"]


@pytest.mark.parametrize(("notify", "where", "words"), [
    ('webhook: {url: "https://h.test/", secret: nope}\n', "notify.webhook.secret",
     "secret 'nope' is not defined"),
    ('webhook: {url: "ftp://h.test/"}\n', "notify.webhook.url", ""),
    ("command: {argv: []}\n", "notify.command.argv", ""),
    ("email: {smtp: {host: h}, from: a@b.test, to: [c@d.test], events: [sometimes]}\n",
     "notify.email.events", ""),
    ("alertmanager: {url: 'http://h:9093', timeout: 0s}\n", "notify.alertmanager.timeout", ""),
    ("warn_at: 0\n", "notify.warn_at", ""),
    ("pager: {argv: [/bin/true]}\n", "notify", "pager"),
])
def test_bad_notify_blocks_are_one_line_each(tmp_path, notify, where, words):
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, notify)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert f": {where}" in problems[0] and words in problems[0], problems
